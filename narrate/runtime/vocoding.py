"""Turning decoded frames into audio: in a child process of its own, or inline.

Decoding is a chain of small torch operations on one core; vocoding (Griffin-Lim) is a few
large ones. On the second core they overlap. A thread would share the interpreter lock, and
handing it back and forth on every small operation slows decoding badly (docs/performance.md);
a forked child process shares nothing but a pipe. Jobs run in the order they are sent, so each stream's audio
stays in order; a bounded number in flight keeps memory flat. ``Vocoding(process=False)`` runs
the same jobs inline: the reference, with the same samples.

A signal that tears the pipe (narrate.runtime.children) stops the child, and vocoding goes on
inline (the same samples; the streams it held start afresh).

Parent -> child: ``VocodeStep`` (one decoder step's jobs), ``EndStream``, None to exit.
Child -> parent: ``Vocoded`` (the parts of each job) or ``VocodeFailed``, each message answered
once, in order.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from narrate.errors import NarrateError
from narrate.runtime.children import ChildEnd, ChildProcess, can_fork, sendable


@dataclass
class VocodeJob:
    stream: int            # key of the stream (its decoder is made on first use)
    frames: np.ndarray     # one decoder step: features [r, F] (kind "features") or codes [K, r]
    kind: str
    ends: list[int]        # for each sentence that ends with these frames, the stream's frame count it ends at
    flush: bool            # nothing follows for now (stream paused or done): emit everything
    pitch: float = math.nan  # median pitch (Hz) of the voice speaking these frames (narrate.codec.pitched)


class StreamVocoder:
    """One stream's decoder, fed without a break across sentences (a flush would restart the
    phase estimate: a click at the join), and the sample positions where sentences end."""

    def __init__(self, codec, kernel: bool):
        self.decoder = codec.stream_decoder(kernel)
        self.samples_per_frame = int(round(codec.sample_rate / codec.frame_rate))
        self.emitted = 0       # samples emitted
        self.ends: deque = deque()  # sample positions of sentence ends not yet emitted


def run_job(codec, kernel: bool, streams: dict, job: VocodeJob) -> list[np.ndarray]:
    """The samples of each sentence whose end is now emitted (one array each), then what is
    final of the sentence still going (possibly empty). kernel: the backend."""
    st = streams.get(job.stream)
    if st is None:
        st = streams[job.stream] = StreamVocoder(codec, kernel)
    frames = torch.from_numpy(job.frames)
    if math.isfinite(job.pitch):
        st.decoder.speak_at(job.pitch)
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


@dataclass
class VocodeStep:
    jobs: list[VocodeJob]  # one decoder step's jobs, one per stream


@dataclass
class EndStream:
    stream: int  # the stream is over: its decoder is dropped


@dataclass
class Vocoded:
    parts: list[list[np.ndarray]]  # ``run_job``'s answer for each job of the step, in order
    seconds: float                 # spent vocoding so far, in all


@dataclass
class VocodeFailed:
    error: BaseException           # raised in the parent


def _serve(codec, kernel: bool, end: ChildEnd) -> None:
    """The child: run each step's jobs until the parent says no more. Answers go out from a
    thread of their own, so the child always goes back to reading: however much the parent has
    sent, neither side waits on the other with both pipes full."""
    torch.set_num_threads(1)
    answers: queue.SimpleQueue = queue.SimpleQueue()
    threading.Thread(target=_answer, args=(end, answers), daemon=True).start()
    streams: dict = {}
    busy = 0.0
    for msg in end.messages():
        if isinstance(msg, EndStream):
            streams.pop(msg.stream, None)
            continue
        t = time.perf_counter()
        try:
            parts = [run_job(codec, kernel, streams, job) for job in msg.jobs]
        except Exception as e:  # re-raised in the parent
            answers.put(VocodeFailed(sendable(e)))
            continue
        busy += time.perf_counter() - t
        answers.put(Vocoded(parts, busy))
    answers.put(None)


def _answer(end: ChildEnd, answers: queue.SimpleQueue) -> None:
    while (answer := answers.get()) is not None:
        try:
            end.send(answer)
        except OSError:
            return


VOCODER_ENDED = "the vocoder process ended unexpectedly (killed, or out of memory?)"


class Vocoding:
    """Vocode jobs in order. A message is one decoder step's jobs (one per stream, each with a
    tag) and belongs to an owner (one narrating call); ``results`` hands an owner back its
    (tag, parts) in the order sent, so a call abandoned half-way (its answers still in flight)
    cannot mix into the next one. At most ``backlog`` messages are in flight: memory stays flat
    however far decoding runs ahead. kernel: the backend (``narrate.kernels.choose``)."""

    def __init__(self, codec, kernel: bool, process: bool = True, backlog: int = 64):
        self.codec, self.kernel, self.backlog = codec, kernel, backlog
        self.sent: deque = deque()    # (owner, tags) of each message sent and not yet answered
        self.done: list = []          # answered (owner, tag, parts), not yet collected
        self.streams: dict = {}       # inline mode's StreamVocoders
        self.seconds = 0.0            # spent vocoding (in the child: as it reports)
        self.process: ChildProcess | None = None
        if process and can_fork():
            self.process = ChildProcess(_serve, (codec, kernel), "narrate-vocoder", VOCODER_ENDED)

    @property
    def in_process(self) -> bool:
        return self.process is not None

    @property
    def torn(self) -> bool:
        return self.process is not None and self.process.torn

    def send(self, owner, tagged: Sequence[tuple[object, VocodeJob]]) -> None:
        """One message: jobs with their tags."""
        if not tagged:
            return
        tags, jobs = zip(*tagged)
        self._mend()
        if self.process is None:
            t = time.perf_counter()
            self.done.extend((owner, tag, run_job(self.codec, self.kernel, self.streams, job)) for tag, job in tagged)
            self.seconds += time.perf_counter() - t
            return
        while len(self.sent) >= self.backlog:
            self._receive(self.process)
        self.process.send(VocodeStep(list(jobs)), counted=lambda: self.sent.append((owner, tags)))

    def end_stream(self, stream: int) -> None:
        """Drop the stream's decoder (quietly if the process is gone: nothing is lost then)."""
        if self.process is None:
            self.streams.pop(stream, None)
        else:
            self.process.send_quietly(EndStream(stream))

    def _receive(self, process: ChildProcess) -> None:
        answered: list = []
        answer = process.receive(counted=lambda _: answered.append(self.sent.popleft()))
        (owner, tags), = answered
        if isinstance(answer, VocodeFailed):
            raise answer.error
        self.seconds = answer.seconds
        self.done.extend((owner, tag, p) for tag, p in zip(tags, answer.parts))

    def results(self, owner, wait: bool = False) -> Iterator[tuple[object, list[np.ndarray]]]:
        """The owner's answers so far, in order; wait=True: to its last job sent."""
        self._mend()
        process = self.process
        while self.sent and process is not None and (
                process.poll() or (wait and any(o is owner for o, _ in self.sent))):
            self._receive(process)
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
        if self.process is not None and self.process.torn:
            self.process.kill()
            self.process = None
            self.sent.clear()

    def close(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None
