"""Turning decoded frames into audio: in a child process of its own, or inline.

Decoding is a chain of small torch operations on one core; vocoding (Griffin-Lim) is a few
large ones. On the second core they overlap. A thread would share the interpreter lock, and
handing it back and forth on every small operation slowed decoding by ~40% here; a forked child
process shares nothing but a pipe. Jobs run in the order they are sent, so each stream's audio
stays in order; a bounded number in flight keeps memory flat. ``Vocoding(process=False)`` runs
the same jobs inline: the reference, with the same samples.
"""

from __future__ import annotations

import multiprocessing
import signal
import time
from collections import deque
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from narrate.errors import NarrateError


@dataclass
class VocodeJob:
    stream: int            # key of the stream (its decoder is made on first use)
    frames: np.ndarray     # one decoder step: features [r, F] (kind "features") or codes [K, r]
    kind: str
    ends: int              # sentences that end with these frames
    flush: bool            # nothing follows for now (stream paused or done): emit everything


class StreamVocoder:
    """One stream's decoder, fed without a break across sentences (a flush would restart the
    phase estimate: a click at the join), and the sample positions where sentences end."""

    def __init__(self, codec):
        self.decoder = codec.stream_decoder()
        self.samples_per_frame = int(round(codec.sample_rate / codec.frame_rate))
        self.frames = 0        # frames pushed
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
    st.frames += frames.shape[0] if job.kind == "features" else frames.shape[1]
    st.ends.extend([st.frames * st.samples_per_frame] * job.ends)
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
    """The child: run jobs until the pipe closes; reply (parts, seconds spent vocoding so far)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler: just end
    torch.set_num_threads(1)
    streams: dict = {}
    busy = 0.0
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        if isinstance(msg, int):  # the stream is over: drop its decoder
            streams.pop(msg, None)
            continue
        t = time.perf_counter()
        try:
            parts = run_job(codec, streams, msg)
        except Exception as e:  # re-raised in the parent
            conn.send((e, busy))
            continue
        busy += time.perf_counter() - t
        conn.send((parts, busy))


def _ended() -> NarrateError:
    return NarrateError("the vocoder process ended unexpectedly (killed, or out of memory?)")


class Vocoding:
    """Vocode jobs in order. Each job belongs to an owner (one narrating call); ``results``
    hands an owner back its answers in the order its jobs were sent, so a call abandoned
    half-way (its answers still in flight) cannot mix into the next one."""

    def __init__(self, codec, process: bool = True, backlog: int = 48, backlog_bytes: int = 16384):
        self.codec, self.backlog, self.backlog_bytes = codec, backlog, backlog_bytes
        self.sent: deque = deque()    # (owner, tag, bytes) of each job sent and not yet answered
        self.sent_bytes = 0
        self.done: list = []          # answered (owner, tag, parts), not yet collected
        self.streams: dict = {}       # inline mode's StreamVocoders
        self.seconds = 0.0            # spent vocoding (in the child: as it reports)
        self.proc = None
        if process and "fork" in multiprocessing.get_all_start_methods():
            ctx = multiprocessing.get_context("fork")
            self.conn, child = ctx.Pipe()
            self.proc = ctx.Process(target=_serve, args=(codec, child), daemon=True, name="narrate-vocoder")
            self.proc.start()
            child.close()

    @property
    def in_process(self) -> bool:
        return self.proc is not None

    def send(self, owner, tag, job: VocodeJob) -> None:
        if self.proc is None:
            t = time.perf_counter()
            self.done.append((owner, tag, run_job(self.codec, self.streams, job)))
            self.seconds += time.perf_counter() - t
            return
        # Jobs in flight stay well under the connection's buffer (a socket pair's, ~200 kB), so
        # this send never blocks while the child waits for its answers to be read (a deadlock).
        size = job.frames.nbytes + 512
        while self.sent and (len(self.sent) >= self.backlog or self.sent_bytes + size > self.backlog_bytes):
            self._receive()
        try:
            self.conn.send(job)
        except OSError:
            raise _ended() from None
        self.sent.append((owner, tag, size))
        self.sent_bytes += size

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
        try:
            parts, self.seconds = self.conn.recv()
        except (EOFError, OSError):
            raise _ended() from None
        owner, tag, size = self.sent.popleft()
        self.sent_bytes -= size
        if isinstance(parts, BaseException):
            raise parts
        self.done.append((owner, tag, parts))

    def results(self, owner, wait: bool = False) -> Iterator[tuple[object, list[np.ndarray]]]:
        """The owner's answers so far, in order; wait=True: to its last job sent."""
        while self.sent and (self.conn.poll() or (wait and any(o is owner for o, _, _ in self.sent))):
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
            self.sent_bytes = sum(size for _, _, size in self.sent)

    def close(self) -> None:
        if self.proc is not None:
            try:
                self.conn.send(None)
                self.conn.close()
            except OSError:
                pass
            self.proc.join(timeout=5)
            if self.proc.is_alive():
                self.proc.kill()
            self.proc = None
