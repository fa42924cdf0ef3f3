"""Turning decoded frames into audio: in a child process of its own, or inline.

Decoding is a chain of small torch operations on one core; vocoding (Griffin-Lim) is a few
large ones. On the second core they overlap. A thread would share the interpreter lock, and
handing it back and forth on every small operation slows decoding badly (docs/performance.md);
a forked child process shares nothing but a pipe. Jobs run in the order they are sent, so each stream's audio
stays in order; a bounded number in flight keeps memory flat. ``Vocoding(process=False)`` runs
the same jobs inline: the reference, with the same samples.

A signal (Ctrl-C, SIGTERM) raises wherever the parent is, also half-way through writing a
message or just after reading an answer and before matching it to its message. Then the pipe
is out of step: an answer would be waited for that never comes. So each message and answer is
marked torn until it is accounted for; a torn pipe is not read again: the child is stopped and
vocoding goes on inline (the same samples; the streams it held start afresh).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from narrate.runtime.children import can_fork, child_signals, fork_child, kill_child, sendable, stop_child
from narrate.errors import NarrateError


@dataclass
class VocodeJob:
    stream: int            # key of the stream (its decoder is made on first use)
    frames: np.ndarray     # one decoder step: features [r, F] (kind "features") or codes [K, r]
    kind: str
    ends: list[int]        # for each sentence that ends with these frames, the stream's frame count it ends at
    flush: bool            # nothing follows for now (stream paused or done): emit everything


class StreamVocoder:
    """One stream's decoder, fed without a break across sentences (a flush would restart the
    phase estimate: a click at the join), and the sample positions where sentences end."""

    def __init__(self, codec):
        self.decoder = codec.stream_decoder()
        self.samples_per_frame = int(round(codec.sample_rate / codec.frame_rate))
        self.emitted = 0       # samples emitted
        self.ends: deque = deque()  # sample positions of sentence ends not yet emitted


def run_job(codec, streams: dict, job: VocodeJob) -> list[np.ndarray]:
    """The samples of each sentence whose end is now emitted (one array each), then what is
    final of the sentence still going (possibly empty)."""
    st = streams.get(job.stream)
    if st is None:
        st = streams[job.stream] = StreamVocoder(codec)
    frames = torch.from_numpy(job.frames)
    samples = st.decoder.push_features(frames) if job.kind == "features" else st.decoder.push(frames)
    st.ends.extend(f * st.samples_per_frame for f in job.ends)  # (where already emitted: at once)
    if job.flush:
        samples = np.concatenate([samples, st.decoder.flush()])
    parts = []
    while st.ends and (st.ends[0] <= st.emitted + len(samples) or job.flush):
        cut = max(0, min(st.ends.popleft() - st.emitted, len(samples)))
        parts.append(samples[:cut])
        samples = samples[cut:]
        st.emitted += cut
    st.emitted += len(samples)
    parts.append(samples)
    return parts


def _serve(codec, conn) -> None:
    """The child: run each message's jobs until the pipe closes; answer (parts of each job,
    seconds spent vocoding so far). Answers go out from a thread of their own, so the child
    always goes back to reading: however much the parent has sent, neither side waits on the
    other with both pipes full."""
    child_signals()
    torch.set_num_threads(1)
    answers: queue.SimpleQueue = queue.SimpleQueue()
    threading.Thread(target=_answer, args=(conn, answers), daemon=True).start()
    streams: dict = {}
    busy = 0.0
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break
        if msg is None:
            break
        if isinstance(msg, int):  # the stream is over: drop its decoder
            streams.pop(msg, None)
            continue
        t = time.perf_counter()
        try:
            parts = [run_job(codec, streams, job) for job in msg]
        except Exception as e:  # re-raised in the parent
            answers.put((sendable(e), busy))
            continue
        busy += time.perf_counter() - t
        answers.put((parts, busy))
    answers.put(None)


def _answer(conn, answers: queue.SimpleQueue) -> None:
    while (answer := answers.get()) is not None:
        try:
            conn.send(answer)
        except OSError:
            return


def _ended() -> NarrateError:
    return NarrateError("the vocoder process ended unexpectedly (killed, or out of memory?)")


class Vocoding:
    """Vocode jobs in order. A message is one decoder step's jobs (one per stream, each with a
    tag) and belongs to an owner (one narrating call); ``results`` hands an owner back its
    (tag, parts) in the order sent, so a call abandoned half-way (its answers still in flight)
    cannot mix into the next one. At most ``backlog`` messages are in flight: memory stays flat
    however far decoding runs ahead."""

    def __init__(self, codec, process: bool = True, backlog: int = 64):
        self.codec, self.backlog = codec, backlog
        self.sent: deque = deque()    # (owner, tags) of each message sent and not yet answered
        self.done: list = []          # answered (owner, tag, parts), not yet collected
        self.streams: dict = {}       # inline mode's StreamVocoders
        self.seconds = 0.0            # spent vocoding (in the child: as it reports)
        self.torn = False             # a message or answer was cut short: the pipe is out of step
        self.proc = None
        if process and can_fork():
            self.proc, self.conn = fork_child(_serve, (codec,), "narrate-vocoder")

    @property
    def in_process(self) -> bool:
        return self.proc is not None

    def send(self, owner, tagged: list[tuple[object, VocodeJob]]) -> None:
        """One message: jobs with their tags."""
        if not tagged:
            return
        tags, jobs = zip(*tagged)
        self._mend()
        if self.proc is None:
            t = time.perf_counter()
            self.done.extend((owner, tag, run_job(self.codec, self.streams, job)) for tag, job in tagged)
            self.seconds += time.perf_counter() - t
            return
        while len(self.sent) >= self.backlog:
            self._receive()
        self.torn = True  # until the message is written and counted
        try:
            self.conn.send(list(jobs))
        except OSError:
            raise _ended() from None
        self.sent.append((owner, tags))
        self.torn = False

    def end_stream(self, stream: int) -> None:
        """Drop the stream's decoder (quietly if the process is gone: nothing is lost then)."""
        if self.proc is None:
            self.streams.pop(stream, None)
            return
        try:
            self.conn.send(stream)
        except OSError:
            pass

    def _receive(self) -> None:
        self.torn = True  # until the answer is read and matched to its message
        try:
            parts, self.seconds = self.conn.recv()
        except (EOFError, OSError):
            raise _ended() from None
        owner, tags = self.sent.popleft()
        self.torn = False
        if isinstance(parts, BaseException):
            raise parts
        self.done.extend((owner, tag, p) for tag, p in zip(tags, parts))

    def results(self, owner, wait: bool = False) -> Iterator[tuple[object, list[np.ndarray]]]:
        """The owner's answers so far, in order; wait=True: to its last job sent."""
        self._mend()
        while self.sent and (self.conn.poll() or (wait and any(o is owner for o, _ in self.sent))):
            self._receive()
        mine = [d for d in self.done if d[0] is owner]
        self.done = [d for d in self.done if d[0] is not owner]
        for _, tag, parts in mine:
            yield tag, parts

    def discard(self, owner) -> None:
        """Forget the owner's jobs (a call that stopped early): its answers are dropped."""
        try:
            for _ in self.results(owner, wait=True):
                pass
        except NarrateError:  # the process is gone (a signal to the whole group): nothing to wait for
            self.sent = deque(s for s in self.sent if s[0] is not owner)

    def _mend(self) -> None:
        """After a torn message or answer: stop the child (its answers cannot be told apart any
        more; those not yet read are lost, as the interrupted call is) and vocode inline."""
        if self.torn and self.proc is not None:
            kill_child(self.proc, self.conn)
            self.proc = None
            self.sent.clear()
        self.torn = False

    def close(self) -> None:
        if self.proc is not None:
            stop_child(self.proc, self.conn)
            self.proc = None
