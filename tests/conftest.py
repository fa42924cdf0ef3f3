"""Shared fixtures: the tiny random-weight model, voice prompts, and a runner for the real CLI.

The tiny model has the real architecture and file layout and "speaks" noise for a length
proportional to the text, so end-to-end runs are real but take seconds on a CPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

# One thread: two OpenMP threads stall whenever another process holds a core (CI machines
# have two), and the tiny model gains nothing from a second thread.
torch.set_num_threads(1)

sys.path.insert(0, str(Path(__file__).parent))

from make_tiny_model import make_tiny_model  # noqa: E402

PROMPT_RATE = 16000


def prompt_audio(seconds: float, amplitude: float = 0.3) -> np.ndarray:
    """A voice-like test signal: a few harmonics of a gliding pitch, modulated like syllables."""
    t = np.arange(int(seconds * PROMPT_RATE)) / PROMPT_RATE
    pitch = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / PROMPT_RATE
    voiced = sum(np.sin(k * phase) / k for k in (1, 2, 3, 5, 8))
    syllables = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t)
    return (amplitude * voiced * syllables / 2).astype(np.float32)


def error_line(stderr: str) -> str:
    """The single line the CLI printed on stderr; fails if there is anything else."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("narrate: error: "), stderr
    return lines[0]


@pytest.fixture(autouse=True)
def _user_data(tmp_path_factory, monkeypatch):
    """The user's data folder (kept voices) is a fresh temporary one in every test, also for the
    narrate subprocesses (cli_env copies the environment): tests never see or touch the real one."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("data")))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="session")
def voice_wav(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("voice") / "prompt.wav"
    sf.write(str(path), prompt_audio(3.0), PROMPT_RATE)
    return path


def cli_env(**extra: str) -> dict:
    # One thread: the tiny model gains nothing from more, and on a busy machine they thrash.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **extra}
    env.pop("PYTHONWARNINGS", None)
    return env


@pytest.fixture(scope="session")
def narrate_cmd(tiny_model, voice_wav):
    """Run ``python -m narrate ARGS`` with the tiny model and test voice unless ARGS override them.

    Returns the CompletedProcess (stdout as bytes, stderr as text).
    """

    def run(*args, model=True, voice=True, input_bytes=None, cwd=None, env=None, timeout=300):
        cmd = [sys.executable, "-m", "narrate", *map(str, args)]
        if model:
            cmd += ["--model", str(tiny_model)]
        if voice:
            cmd += ["--voice", str(voice_wav)]
        proc = subprocess.run(cmd, input=input_bytes, capture_output=True, cwd=cwd,
                              env=env or cli_env(), timeout=timeout)
        proc.stderr = proc.stderr.decode("utf-8", "replace")
        return proc

    return run
