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
    stream: int            # key of the stream's decoder (made on first use)
    frames: np.ndarray     # one decoder step: features [r, F] (kind "features") or codes [K, r]
    kind: str
    ends: int              # sentences that end with these frames: flush once per end


def run_job(codec, decoders: dict, job: VocodeJob) -> list[np.ndarray]:
    """The samples of each sentence that ends (job.ends arrays), then what is final of the
    sentence still going (possibly empty)."""
    dec = decoders.get(job.stream)
    if dec is None:
        dec = decoders[job.stream] = codec.stream_decoder()
    frames = torch.from_numpy(job.frames)
    samples = dec.push_features(frames) if job.kind == "features" else dec.push(frames)
    parts = []
    for _ in range(job.ends):
        parts.append(np.concatenate([samples, dec.flush()]))
        samples = np.zeros(0, np.float32)
    parts.append(samples)
    return parts


def _serve(codec, conn) -> None:
    """The child: run jobs until the pipe closes; reply (parts, seconds spent vocoding so far)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler: just end
    torch.set_num_threads(1)
    decoders: dict = {}
    busy = 0.0
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        if isinstance(msg, int):  # the stream is over: drop its decoder
            decoders.pop(msg, None)
            continue
        t = time.perf_counter()
        try:
            parts = run_job(codec, decoders, msg)
        except Exception as e:  # re-raised in the parent
            conn.send((e, busy))
            continue
        busy += time.perf_counter() - t
        conn.send((parts, busy))


def _ended() -> NarrateError:
    return NarrateError("the vocoder process ended unexpectedly (killed, or out of memory?)")


class Vocoding:
    """Vocode jobs in order; ``results`` hands back (tag, parts) in the order jobs were sent."""

    def __init__(self, codec, process: bool = True, backlog: int = 48):
        self.codec, self.backlog = codec, backlog
        self.tags: deque = deque()    # tag of each job sent and not yet answered
        self.done: deque = deque()    # answered (tag, parts), not yet collected
        self.decoders: dict = {}      # inline mode's stream decoders
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

    def send(self, tag, job: VocodeJob) -> None:
        if self.proc is None:
            t = time.perf_counter()
            self.done.append((tag, run_job(self.codec, self.decoders, job)))
            self.seconds += time.perf_counter() - t
            return
        while len(self.tags) >= self.backlog:
            self._receive()
        try:
            self.conn.send(job)
        except OSError:
            raise _ended() from None
        self.tags.append(tag)

    def end_stream(self, stream: int) -> None:
        """Drop the stream's decoder (quietly if the process is gone: nothing is lost then)."""
        if self.proc is None:
            self.decoders.pop(stream, None)
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
        if isinstance(parts, BaseException):
            raise parts
        self.done.append((self.tags.popleft(), parts))

    def results(self, wait: bool = False) -> Iterator[tuple[object, list[np.ndarray]]]:
        """Answers so far, in order; wait=True: every job sent."""
        while self.tags and (wait or self.conn.poll()):
            self._receive()
        while self.done:
            yield self.done.popleft()

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
