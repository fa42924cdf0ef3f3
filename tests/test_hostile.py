"""Hostile and odd input (issue 17): each case is a one-line error or correct output, never a
traceback, a payload run, a network lookup, or memory and time out of bounds."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import cli_env
from narrate import hub
from narrate.audio.lock import lock_path
from narrate.audio.resume import record_path
from narrate.audio.sinks import open_sink
from narrate.errors import ModelError, NarrateError, OutputError
from narrate.pipeline import Job, make_plan, plan_output, run
from narrate.progress import Progress


def one_line_error(proc) -> str:
    """The CLI's stderr as a single 'narrate: error: ...' line (no traceback)."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("narrate: error: "), proc.stderr
    return lines[0]


# --- security ---------------------------------------------------------------------------------


class _Payload:
    """Unpickling this makes a folder: proof that code in a checkpoint ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_encodec_checkpoint_is_loaded_weights_only(tmp_path, monkeypatch):
    from narrate.codec.encodec_backend import EncodecCodec

    marker = tmp_path / "payload-ran"
    checkpoint = tmp_path / "encodec.th"
    torch.save({"weight": _Payload(marker)}, checkpoint)
    # The environment cannot turn the weights-only loader off for a path a config names.
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(ModelError, match="not a plain weights file") as e:
        EncodecCodec(checkpoint=str(checkpoint))
    assert not marker.exists()
    assert "\n" not in str(e.value)
    checkpoint.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelError, match="not a plain weights file"):
        EncodecCodec(checkpoint=str(checkpoint))


@pytest.fixture
def no_hub(monkeypatch):
    import huggingface_hub

    def refuse(*args, **kwargs):
        raise AssertionError("the Hub was asked")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)


def test_model_path_that_exists_but_is_broken_never_reaches_the_hub(tmp_path, monkeypatch, no_hub):
    monkeypatch.chdir(tmp_path)
    Path("m").mkdir()
    os.symlink("loop", "m/loop")  # points at itself
    os.symlink("nothing-here", "m/dangling")
    Path("m/file").write_text("{}")
    for name, why in (("m/loop", "link loop"), ("m/dangling", "link to nothing"), ("m/file", "a file")):
        with pytest.raises(ModelError, match=why):
            hub.resolve(name)


def test_cli_model_symlink_loop_is_one_line(tmp_path, narrate_cmd):
    book = tmp_path / "b.txt"
    book.write_text("Hello there.")
    (tmp_path / "m").mkdir()
    os.symlink("loop", tmp_path / "m" / "loop")
    proc = narrate_cmd(book, "--model", "m/loop", model=False, cwd=tmp_path,
                       env=cli_env(HF_HUB_OFFLINE="0"))
    assert "symbolic link loop" in one_line_error(proc)


def test_output_that_is_not_a_regular_file_is_never_replaced(tmp_path):
    book = tmp_path / "b.txt"
    book.write_text("Hello there.")
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    for target in ("/dev/null", str(fifo)):
        with pytest.raises(OutputError, match="not a regular file"):
            plan_output(str(book), target, None, None, stdout_is_tty=True)
        with pytest.raises(OutputError, match="not a regular file"):
            open_sink(target, "wav", 16000, force=True)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_cli_device_output_with_force_is_refused(tmp_path, narrate_cmd):
    book = tmp_path / "b.txt"
    book.write_text("Hello there.")
    proc = narrate_cmd(book, "-o", "/dev/null", "--force")
    assert "not a regular file" in one_line_error(proc)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


_HOLD_LOCK = """
import sys
from pathlib import Path
from narrate.audio.lock import OutputLock
OutputLock(Path(sys.argv[1])).acquire()
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def book(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text("One sentence here. Another one.\n", encoding="utf-8")
    return path


def test_second_run_on_a_locked_output_fails_at_once(tmp_path, book):
    out = tmp_path / "out.wav"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=cli_env())
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputError, match=f"another narrate run \\(pid {holder.pid}\\)"):
            make_plan(Job(str(book), str(out)), stdout_is_tty=True)
        # The refused run touched nothing: no record, no output, the lock still the holder's.
        assert not record_path(out).exists() and not out.exists()
        assert lock_path(out).read_text().strip() == str(holder.pid)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert not lock_path(out).exists()  # released and removed when the holder ended
    plan = make_plan(Job(str(book), str(out)), stdout_is_tty=True)
    assert lock_path(out).exists()
    plan.lock.release()
    assert not lock_path(out).exists()


def test_cli_second_run_on_a_locked_output_is_one_line(tmp_path, book, narrate_cmd):
    out = tmp_path / "out.wav"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=cli_env())
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = narrate_cmd(book, "-o", out, "--force")
        assert f"pid {holder.pid}" in one_line_error(proc)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


class _FailingNarrator:
    sample_rate = 16000

    def narrate(self, sentences, live=False):
        raise ModelError("the model made no sound")
        yield


def test_a_run_that_fails_before_any_audio_leaves_no_resume_record(tmp_path, book):
    out = tmp_path / "out.wav"
    plan = make_plan(Job(str(book), str(out)), stdout_is_tty=True)
    with pytest.raises(ModelError):
        run(_FailingNarrator(), plan, Progress.for_terminal(True))
    assert not record_path(out).exists() and not out.exists() and not lock_path(out).exists()
    make_plan(Job(str(book), str(out)), stdout_is_tty=True).lock.release()  # a plain rerun is fine
