"""Live narration from standard input through the real command: a sentence's audio reaches
stdout while the writer is still composing the next one."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np

from conftest import cli_env

FIRST_AUDIO_TIMEOUT = 60.0  # model load included, on a busy machine


class Reader(threading.Thread):
    """Collects a pipe's bytes as they arrive."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream, self.data, self.first = stream, bytearray(), threading.Event()

    def run(self):
        while True:
            block = self.stream.read1(65536) if hasattr(self.stream, "read1") else self.stream.read(4096)
            if not block:
                return
            self.data += block
            self.first.set()


def wait_until_quiet(reader: Reader, quiet: float = 1.5, timeout: float = 60.0) -> int:
    """Bytes received once nothing more has arrived for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    size = len(reader.data)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        if len(reader.data) == size:
            return size
        size = len(reader.data)
    raise AssertionError("the audio never paused while waiting for the next sentence")


def test_first_sentence_is_heard_before_the_second_is_written(tiny_model, voice_wav):
    proc = subprocess.Popen(
        [sys.executable, "-m", "narrate", "-", "-o", "-", "--format", "raw",
         "--model", str(tiny_model), "--voice", str(voice_wav)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env())
    out, err = Reader(proc.stdout), Reader(proc.stderr)
    out.start()
    err.start()
    try:
        proc.stdin.write(b"Hello there. \n")
        proc.stdin.flush()
        assert out.first.wait(FIRST_AUDIO_TIMEOUT), f"no audio yet: {err.data.decode(errors='replace')}"
        # The rest of sentence one follows without sentence two: wait until the audio stops.
        heard = wait_until_quiet(out)
        assert proc.poll() is None  # still listening for more text
        proc.stdin.write(b"How are you today?\n")
        proc.stdin.close()
        assert proc.wait(timeout=120) == 0, err.data.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
    out.join(timeout=10)
    err.join(timeout=10)
    total = len(out.data)
    assert total % 2 == 0
    samples = np.frombuffer(bytes(out.data), "<i2")
    assert np.abs(samples[: heard // 2]).max() > 0  # sentence one is sound, not silence
    assert total > heard  # sentence two was spoken after it was written
    assert "Traceback" not in err.data.decode(errors="replace")


def test_empty_standard_input_is_an_error(tiny_model, voice_wav):
    proc = subprocess.run(
        [sys.executable, "-m", "narrate", "-", "-o", "-", "--format", "raw",
         "--model", str(tiny_model), "--voice", str(voice_wav)],
        input=b"", capture_output=True, env=cli_env(), timeout=300)
    assert proc.returncode == 1
    assert proc.stdout == b""
    lines = [line for line in proc.stderr.decode().splitlines() if line.strip()]
    assert lines == ["narrate: error: standard input had no text to read"]
