"""Many streams on every core: decoder processes, each narrating its share of the streams.

One process steps a batch of streams on one core (the vocoder process takes some of the
other). Past four streams that core is the limit, while the other sits partly idle; threads
would share the interpreter lock, which the decoder's small operations hand back and forth
on every step (two threads of 4 streams gave 1.6-2.5x one stream here, against 3.3-3.8x
for one thread of 8). So several streams are narrated by forked worker processes instead: each
holds its own narrator (vocoding inline, on its own core) and decodes its streams as one
batch. The parent hands out streams and their sentences, and passes the audio on.

A stream's audio equals what it is in the parent's own batch: the same seed (its number), and
a stream's decoding does not depend on the streams beside it.

Messages carry their call's number, so the answers of a call the caller abandoned half-way
(still in flight) are told apart from the next call's and dropped. A signal that lands while
the parent reads a worker's message tears that pipe (the next read would start in the middle
of a message): that worker is stopped before the next call, as in narrate.runtime.vocoding.

Parent -> worker: ("call", c, live, width) ("start", c, n) ("text", c, n, sentence)
("end", c, n) ("no more", c) ("abandon", c), None to exit.
Worker -> parent: ("audio", c, n, chunk) ("took", c, n) ("finished", c, n, cpu_seconds)
("error", c, exception).
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from multiprocessing.connection import wait
from typing import Callable, Iterable, Iterator

from narrate.runtime.children import can_fork, child_signals, fork_child, kill_child, sendable, stop_child
from narrate.errors import NarrateError
from narrate.runtime.feeding import Feeder

AHEAD = 4  # sentences a stream's text runs ahead of what its worker has taken
_EOF = object()


# --- the worker ---------------------------------------------------------------------------------


class _Call:
    """A worker's side of one narrating call: the streams the parent starts on it and their text."""

    def __init__(self, number: int, live: bool, width: int):
        self.number, self.live, self.width = number, live, width
        self.starts: queue.SimpleQueue = queue.SimpleQueue()  # stream numbers; None: no more
        self.texts: dict[int, queue.SimpleQueue] = {}
        self.abandoned = False

    def streams(self, send) -> Iterator[tuple[int, Iterator[str]]]:
        while (n := self.starts.get()) is not None:
            yield n, self._sentences(n, send)

    def _sentences(self, n: int, send) -> Iterator[str]:
        q = self.texts[n]
        while (s := q.get()) is not _EOF:
            send(("took", self.number, n))
            yield s

    def abandon(self) -> None:
        self.abandoned = True
        for q in self.texts.values():
            q.put(_EOF)
        self.starts.put(None)


def _read(conn, calls: queue.SimpleQueue) -> None:
    """The worker's reader thread: it always goes back to reading, so the parent never waits on
    a full pipe (see narrate.runtime.vocoding)."""
    call: _Call | None = None
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            msg = None
        if msg is None:
            if call is not None:
                call.abandon()
            calls.put(None)
            return
        kind, number = msg[0], msg[1]
        if kind == "call":
            if call is not None:
                call.abandon()
            call = _Call(number, msg[2], msg[3])
            calls.put(call)
        elif call is None or number != call.number:
            continue  # an abandoned call's last words
        elif kind == "start":
            call.texts[msg[2]] = queue.SimpleQueue()
            call.starts.put(msg[2])
        elif kind == "text":
            call.texts[msg[2]].put(msg[3])
        elif kind == "end":
            call.texts[msg[2]].put(_EOF)
        elif kind == "no more":
            call.starts.put(None)
        elif kind == "abandon":
            call.abandon()


def _serve(make_narrator: Callable, conn) -> None:
    """The worker: narrate each call's streams with a narrator of its own (inline vocoding)."""
    child_signals()
    narrator = make_narrator()
    lock = threading.Lock()

    def send(msg) -> None:
        with lock:
            conn.send(msg)

    calls: queue.SimpleQueue = queue.SimpleQueue()
    threading.Thread(target=_read, args=(conn, calls), daemon=True).start()
    try:
        while (call := calls.get()) is not None:
            c = call.number

            def finished(n: int, c=c) -> None:
                send(("finished", c, n, time.process_time()))

            try:
                for n, chunk in narrator.decode_streams(call.streams(send), call.live, call.width, finished):
                    if call.abandoned:
                        break
                    send(("audio", c, n, chunk))
            except Exception as e:  # the parent raises it
                send(("error", c, sendable(e)))
    except OSError:  # the parent is gone
        pass
    finally:
        narrator.close()


# --- the parent -------------------------------------------------------------------------------------


class _Feed:
    """The parent's side of one stream: a thread sending its sentences to its worker, at most
    AHEAD beyond what the worker has taken (its credit)."""

    def __init__(self, number: int, worker: "_Worker", call: int, sentences: Iterable[str]):
        self.number, self.worker, self.call = number, worker, call
        self.credit = threading.Semaphore(AHEAD)
        self.error: BaseException | None = None
        self.feeder = Feeder(sentences, self._send, self._end, self.credit.release, f"narrate-text-{number}")
        self.feeder.start()  # (after the assignment: the thread uses it)

    def _send(self, sentence: str) -> None:
        self.credit.acquire()
        if not self.feeder.stopping.is_set():
            self.worker.send(("text", self.call, self.number, sentence))

    def _end(self, error: BaseException | None) -> None:
        self.error = error  # raised in the caller when the stream finishes
        try:
            self.worker.send(("end", self.call, self.number))
        except NarrateError:  # the worker is gone: the caller hears of it from its pipe
            pass

    def stop(self) -> None:
        self.feeder.stop()


class _Worker:
    def __init__(self, make_narrator: Callable, name: str):
        self.proc, self.conn = fork_child(_serve, (make_narrator,), name)
        self.lock = threading.Lock()  # the caller and the feed threads all send
        self.slots = 0                # streams it may hold in the current call (0: any number)
        self.streams = 0              # streams it holds now
        self.cpu_seconds = 0.0        # its CPU time, as last reported
        self.torn = False             # a read was cut short: the pipe is out of step

    def send(self, msg) -> None:
        try:
            with self.lock:
                self.conn.send(msg)
        except OSError:
            raise _ended() from None

    def free(self) -> bool:
        return not self.slots or self.streams < self.slots


def _ended() -> NarrateError:
    return NarrateError("a decoder process ended unexpectedly (killed, or out of memory?)")


class DecoderProcesses:
    """``processes`` forked workers, each making its narrator with ``make_narrator()``. Fork
    them before starting threads (as the vocoder process is)."""

    def __init__(self, make_narrator: Callable, processes: int):
        if not can_fork():
            raise NarrateError("decoder processes need the 'fork' start method (Linux, macOS)")
        self.workers = [_Worker(make_narrator, f"narrate-decoder-{k}") for k in range(processes)]
        self._calls = itertools.count()

    @property
    def cpu_seconds(self) -> float:
        """CPU time the workers have spent, as they last reported it (when a stream finished)."""
        return sum(w.cpu_seconds for w in self.workers)

    def mend(self) -> bool:
        """Stop the workers whose pipe is torn (their answers cannot be read in step any more);
        True if any worker is left."""
        for w in [w for w in self.workers if w.torn]:
            kill_child(w.proc, w.conn)
            self.workers.remove(w)
        return bool(self.workers)

    def narrate_many(self, pending: Iterator[tuple[int, Iterable[str]]], live: bool,
                     width: int) -> Iterator[tuple[int, object]]:
        """``Narrator.narrate_many`` on the workers: (number, sentences) streams in, (number,
        AudioChunk) out. width > 0: at most that many at once over all workers (split between
        them), the next starting as soon as one finishes."""
        call = next(self._calls)
        workers = self.workers
        if width:
            for k, w in enumerate(workers):
                w.slots = width // len(workers) + (k < width % len(workers))
            workers = [w for w in workers if w.slots]
        for w in workers:
            w.streams = 0
            w.send(("call", call, live, w.slots))
        feeds: dict[int, _Feed] = {}
        exhausted = False

        def assign() -> None:
            nonlocal exhausted
            while not exhausted and any(w.free() for w in workers):
                item = next(pending, None)
                if item is None:
                    exhausted = True
                    for w in workers:
                        w.send(("no more", call))
                    return
                n, sentences = item
                w = min((w for w in workers if w.free()), key=lambda w: w.streams)
                w.streams += 1
                w.send(("start", call, n))
                feeds[n] = _Feed(n, w, call, sentences)

        complete = False
        try:
            assign()
            by_conn = {w.conn: w for w in workers}
            while feeds:
                for conn in wait(list(by_conn)):
                    w = by_conn[conn]
                    w.torn = True  # until the message is read whole
                    try:
                        msg = conn.recv()
                    except (EOFError, OSError):
                        raise _ended() from None
                    w.torn = False
                    if msg[1] != call:
                        continue  # from a call abandoned earlier
                    kind = msg[0]
                    if kind == "audio":
                        yield msg[2], msg[3]
                    elif kind == "took":
                        if msg[2] in feeds:
                            feeds[msg[2]].credit.release()
                    elif kind == "finished":
                        feed = feeds.pop(msg[2])
                        feed.stop()  # it has ended (or ends now)
                        w.streams -= 1
                        w.cpu_seconds = msg[3]
                        if feed.error is not None:
                            raise feed.error
                        assign()
                    elif kind == "error":
                        raise msg[2]
            complete = True
        finally:
            for feed in feeds.values():
                feed.stop()
            if not complete:
                for w in workers:
                    try:
                        w.send(("abandon", call))
                    except NarrateError:  # gone already
                        pass

    def close(self) -> None:
        for w in self.workers:
            stop_child(w.proc, w.conn)
        self.workers = []
