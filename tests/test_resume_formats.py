"""--resume in every output format, through the real CLI with the tiny model: a run killed with
SIGKILL leaves playable audio and nothing under the final name; the resumed run finishes a file
equal to a clean run's (the same samples for flac, the same length and chapter marks for m4b)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import cli_env
from narrate.audio.resume import load_record, record_path
from narrate.audio.sinks import unfinished_path

needs_ffmpeg = pytest.mark.skipif(not (shutil.which("ffmpeg") and shutil.which("ffprobe")),
                                  reason="ffmpeg/ffprobe not installed")
KILLER = Path(__file__).with_name("kill_at_chapter.py")


@pytest.fixture(scope="module")
def two_chapters(tmp_path_factory) -> Path:
    md = tmp_path_factory.mktemp("text") / "two.md"
    md.write_text("## First part\n\nThe first part has two sentences. This is the second.\n\n"
                  "## Second part\n\nThe second part is short. It ends here.\n", encoding="utf-8")
    return md


@pytest.fixture(scope="module")
def clean_wav(two_chapters, narrate_cmd, tmp_path_factory) -> np.ndarray:
    """The samples of an uninterrupted run (wav: written directly, without an intermediate)."""
    out = tmp_path_factory.mktemp("clean") / "clean.wav"
    proc = narrate_cmd(two_chapters, "-o", out, "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    samples, rate = sf.read(str(out), dtype="int16")
    assert reported_seconds(proc.stderr) == pytest.approx(samples.size / rate, abs=0.05)
    return samples


def reported_seconds(stderr: str) -> float:
    """The audio the run's summary line says the output holds."""
    return float(re.match(r"narrate: ([\d.]+) s of audio in ", stderr.strip().splitlines()[-1]).group(1))


def killed_at_second_chapter(text: Path, out: Path, tiny_model, voice_wav) -> int:
    """Run into ``out`` until chapter two is about to begin, kill -9 it there; the samples kept."""
    cmd = [sys.executable, str(KILLER), "1", str(text), "-o", str(out), "--seed", "3",
           "--model", str(tiny_model), "--voice", str(voice_wav)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=cli_env(), timeout=300)
    assert proc.returncode == -9, proc.stderr
    record = load_record(out)
    assert (record.chapter, record.sentences_done) == (1, 0)
    assert not out.exists()  # nothing under the final name looks finished
    kept = unfinished_path(out, out.suffix[1:])
    assert sf.info(str(kept)).frames >= record.samples_written > 0  # playable as it is
    return record.samples_written


def resume(text: Path, out: Path, narrate_cmd) -> str:
    """Resume the run into ``out``; its summary line, which must say it was resumed."""
    proc = narrate_cmd(text, "-o", out, "--seed", "3", "--resume")
    assert proc.returncode == 0, proc.stderr
    assert load_record(out) is None and not record_path(out).exists()
    assert not unfinished_path(out, out.suffix[1:]).exists()
    summary = proc.stderr.strip().splitlines()[-1]
    assert re.search(r"; resumed: [\d.]+ s kept from the interrupted run, [\d.]+ s new", summary), summary
    return proc.stderr


def test_killed_flac_resumes_to_the_clean_runs_samples(two_chapters, clean_wav, tmp_path,
                                                       tiny_model, voice_wav, narrate_cmd):
    out = tmp_path / "book.flac"
    boundary = killed_at_second_chapter(two_chapters, out, tiny_model, voice_wav)
    stderr = resume(two_chapters, out, narrate_cmd)
    assert np.array_equal(sf.read(str(out), dtype="int16")[0], clean_wav)
    rate = sf.info(str(out)).samplerate
    assert reported_seconds(stderr) == pytest.approx(clean_wav.size / rate, abs=0.05)  # the whole file
    kept = float(re.search(r"resumed: ([\d.]+) s kept", stderr).group(1))
    assert kept == pytest.approx(boundary / rate, abs=0.05)


@needs_ffmpeg
def test_killed_m4b_resumes_with_the_clean_runs_length_and_chapters(
        two_chapters, clean_wav, tmp_path, tiny_model, voice_wav, narrate_cmd):
    out = tmp_path / "book.m4b"
    boundary = killed_at_second_chapter(two_chapters, out, tiny_model, voice_wav)
    resume(two_chapters, out, narrate_cmd)
    probe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-show_chapters", "-show_streams", "-of", "json", str(out)],
        capture_output=True, text=True, check=True).stdout)
    assert abs(int(probe["streams"][0]["duration_ts"]) - clean_wav.size) <= 1024  # one AAC frame
    rate = int(probe["streams"][0]["sample_rate"])
    marks = [(c["tags"]["title"], round(float(c["start_time"]) * 1000)) for c in probe["chapters"]]
    # Chapter two starts where the killed run's first chapter ended (a clean run's boundary:
    # the flac test shows those samples are the clean run's).
    assert marks == [("First part", 0), ("Second part", round(boundary / rate * 1000))]


def test_batch_skips_finished_documents_and_resumes_the_unfinished(tmp_path, two_chapters,
                                                                   tiny_model, voice_wav, narrate_cmd):
    first, never = tmp_path / "first.txt", tmp_path / "never.txt"
    first.write_text("A short first document.", encoding="utf-8")
    never.write_text("This one was never begun.", encoding="utf-8")
    docs, out = [first, two_chapters, never], tmp_path / "out"
    cmd = [sys.executable, str(KILLER), "1", "batch", *map(str, docs), "--out-dir", str(out),
           "--format", "flac", "--seed", "3", "--model", str(tiny_model), "--voice", str(voice_wav)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=cli_env(), timeout=300)
    assert proc.returncode == -9, proc.stderr  # killed in two.md, as chapter two began
    done = (out / "first.flac").read_bytes()
    assert load_record(out / "two.flac").chapter == 1 and not (out / "two.flac").exists()
    assert not (out / "never.flac").exists()

    # (a table wide enough that no cell wraps: how long tmp_path is varies from run to run)
    proc = narrate_cmd("batch", *docs, "--out-dir", out, "--format", "flac", "--seed", "3", env=cli_env(COLUMNS="400"))
    assert proc.returncode == 0, proc.stderr
    table = proc.stdout.decode()
    assert "finished earlier: skipped" in table and "resumed" in table, table
    assert (out / "first.flac").read_bytes() == done  # not narrated again
    assert sf.info(str(out / "two.flac")).duration > 2 and sf.info(str(out / "never.flac")).duration > 0.5
    assert not list(out.glob("*.narrate.json")) and not list(out.glob(".*"))
