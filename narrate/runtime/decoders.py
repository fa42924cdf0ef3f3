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
(still in flight) are told apart from the next call's and dropped. A worker whose pipe a signal
tore (narrate.runtime.children) is stopped before the next call, as the vocoder process is.

Parent -> worker: ``Call``, then per stream ``Start``, ``Text``... ``End``; ``NoMore`` (no
more streams in the call), ``Abandon``; None to exit.
Worker -> parent: ``Audio``, ``Took`` (a sentence: credit for one more), ``Finished`` (a
stream), ``Failed``.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from narrate.errors import NarrateError
from narrate.runtime.children import ChildEnd, ChildProcess, can_fork, sendable
from narrate.runtime.feeding import Feeder

if TYPE_CHECKING:
    from narrate.runtime.narrator import AudioChunk

AHEAD = 4  # sentences a stream's text runs ahead of what its worker has taken
_EOF = object()


# --- messages ---------------------------------------------------------------------------------


@dataclass
class Call:
    call: int
    live: bool
    width: int  # streams the worker decodes at once (0: all it is given)


@dataclass
class Start:
    call: int
    stream: int


@dataclass
class Text:
    call: int
    stream: int
    sentence: object  # a str or narrate.runtime.pauses.Sentence


@dataclass
class End:
    call: int
    stream: int


@dataclass
class NoMore:
    call: int


@dataclass
class Abandon:
    call: int


@dataclass
class Audio:
    call: int
    stream: int
    chunk: AudioChunk
    batch: int  # streams the worker is decoding as one batch (taken and not finished)


@dataclass
class Took:
    call: int
    stream: int


@dataclass
class Finished:
    call: int
    stream: int
    cpu_seconds: float  # the worker's CPU time so far


@dataclass
class Failed:
    call: int
    error: BaseException  # raised in the parent


# --- the worker ---------------------------------------------------------------------------------


class _Call:
    """A worker's side of one narrating call: the streams the parent starts on it and their text."""

    def __init__(self, msg: Call):
        self.number, self.live, self.width = msg.call, msg.live, msg.width
        self.starts: queue.SimpleQueue = queue.SimpleQueue()  # stream numbers; None: no more
        self.texts: dict[int, queue.SimpleQueue] = {}
        self.abandoned = False
        self.batch = 0  # streams being decoded: taken from ``streams`` and not finished

    def streams(self, end: ChildEnd) -> Iterator[tuple[int, Iterator[object]]]:
        while (n := self.starts.get()) is not None:
            self.batch += 1  # (taken by the narrator as it makes room in its batch)
            yield n, self._sentences(n, end)

    def _sentences(self, n: int, end: ChildEnd) -> Iterator[object]:
        q = self.texts[n]
        while (s := q.get()) is not _EOF:
            end.send(Took(self.number, n))
            yield s

    def take(self, msg) -> None:
        """One of the call's messages (``Start``, ``Text``, ``End``, ``NoMore``, ``Abandon``)."""
        if isinstance(msg, Start):
            self.texts[msg.stream] = queue.SimpleQueue()
            self.starts.put(msg.stream)
        elif isinstance(msg, Text):
            self.texts[msg.stream].put(msg.sentence)
        elif isinstance(msg, End):
            self.texts[msg.stream].put(_EOF)
        elif isinstance(msg, NoMore):
            self.starts.put(None)
        elif isinstance(msg, Abandon):
            self.abandon()

    def abandon(self) -> None:
        self.abandoned = True
        for q in self.texts.values():
            q.put(_EOF)
        self.starts.put(None)


def _read(end: ChildEnd, calls: queue.SimpleQueue) -> None:
    """The worker's reader thread: it always goes back to reading, so the parent never waits on
    a full pipe (see narrate.runtime.vocoding)."""
    call: _Call | None = None
    for msg in end.messages():
        if isinstance(msg, Call):
            if call is not None:
                call.abandon()
            call = _Call(msg)
            calls.put(call)
        elif call is not None and msg.call == call.number:  # (else an abandoned call's last words)
            call.take(msg)
    if call is not None:
        call.abandon()
    calls.put(None)


def _serve(make_narrator: Callable, end: ChildEnd) -> None:
    """The worker: narrate each call's streams with a narrator of its own (inline vocoding)."""
    narrator = make_narrator()
    calls: queue.SimpleQueue = queue.SimpleQueue()
    threading.Thread(target=_read, args=(end, calls), daemon=True).start()
    try:
        while (call := calls.get()) is not None:
            c = call.number

            def finished(n: int, c: int = c, call: _Call = call) -> None:
                call.batch -= 1
                end.send(Finished(c, n, time.process_time()))

            try:
                for n, chunk in narrator.decode_streams(call.streams(end), call.live, call.width, finished):
                    if call.abandoned:
                        break
                    end.send(Audio(c, n, chunk, call.batch))
            except Exception as e:  # the parent raises it
                end.send(Failed(c, sendable(e)))
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
            self.worker.send(Text(self.call, self.number, sentence))

    def _end(self, error: BaseException | None) -> None:
        self.error = error  # raised in the caller when the stream finishes
        self.worker.send_quietly(End(self.call, self.number))  # (a worker gone: the caller hears of it from its pipe)

    def stop(self) -> None:
        self.feeder.stop()


DECODER_ENDED = "a decoder process ended unexpectedly (killed, or out of memory?)"


class _Worker(ChildProcess):
    """A decoder process; the caller and the feed threads all send to it."""

    def __init__(self, make_narrator: Callable, name: str):
        super().__init__(_serve, (make_narrator,), name, DECODER_ENDED)
        self.slots = 0                # streams it may hold in the current call (0: any number)
        self.streams = 0              # streams it holds now
        self.cpu_seconds = 0.0        # its CPU time, as last reported
        self.batch = 0                # streams it was decoding as one batch, as last reported

    def free(self) -> bool:
        return not self.slots or self.streams < self.slots


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
            w.kill()
            self.workers.remove(w)
        return bool(self.workers)

    def narrate_many(self, pending: Iterator[tuple[int, Iterable[str]]], live: bool,
                     width: int) -> Iterator[tuple[int, AudioChunk]]:
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
            w.send(Call(call, live, w.slots))
        feeds: dict[int, _Feed] = {}
        exhausted = False

        def assign() -> None:
            nonlocal exhausted
            while not exhausted and any(w.free() for w in workers):
                item = next(pending, None)
                if item is None:
                    exhausted = True
                    for w in workers:
                        w.send(NoMore(call))
                    return
                n, sentences = item
                w = min((w for w in workers if w.free()), key=lambda w: w.streams)
                w.streams += 1
                w.send(Start(call, n))
                feeds[n] = _Feed(n, w, call, sentences)

        complete = False
        try:
            assign()
            by_conn = {w.conn: w for w in workers}
            while feeds:
                for conn in wait(list(by_conn)):
                    w = by_conn[conn]
                    msg = w.receive()
                    if msg.call != call:
                        continue  # from a call abandoned earlier
                    if isinstance(msg, Audio):
                        w.batch = msg.batch
                        yield msg.stream, msg.chunk
                    elif isinstance(msg, Took):
                        if msg.stream in feeds:
                            feeds[msg.stream].credit.release()
                    elif isinstance(msg, Finished):
                        feed = feeds.pop(msg.stream)
                        feed.stop()  # it has ended (or ends now)
                        w.streams -= 1
                        w.cpu_seconds = msg.cpu_seconds
                        if feed.error is not None:
                            raise feed.error
                        assign()
                    elif isinstance(msg, Failed):
                        raise msg.error
            complete = True
        finally:
            for feed in feeds.values():
                feed.stop()
            if not complete:
                for w in workers:
                    w.send_quietly(Abandon(call))  # (a worker gone already: nothing to abandon)

    def close(self) -> None:
        for w in self.workers:
            w.stop()
        self.workers = []
