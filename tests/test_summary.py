"""The run's last line tells the truth: the audio the output holds (a resumed run's included, and
how much is new), chapters left out or not chosen, and that warnings were printed."""

from __future__ import annotations

import pytest
import soundfile as sf

from narrate import errors
from narrate.jobs.pipeline import Job, make_plan, run
from narrate.cli.progress import Progress, Stats, summary_line


def test_a_plain_run_says_only_what_it_made():
    assert summary_line(Stats(63.0, 20.0), "book.wav") == \
        "narrate: 1 min 3 s of audio in 20.0 s (3.1x real time) -> book.wav"


def test_a_resumed_run_says_total_and_new_and_speed_counts_the_new():
    stats = Stats(100.0, 10.0, kept_seconds=40.0, resumed=True, notes=["1 chapter without words left out"])
    assert summary_line(stats, "b.m4b", warnings=2) == (
        "narrate: 1 min 40 s of audio in 10.0 s (6.0x real time) -> b.m4b; resumed: 40.0 s kept "
        "from the interrupted run, 1 min 0 s new; 1 chapter without words left out; 2 warnings above")


def test_progress_reports_the_finished_outputs_length():
    progress = Progress(live=False)
    progress.begin("b", 3, 1000)
    progress.resumed(4000)
    progress.audio(1500)
    assert progress.stats().audio_seconds == 5.5  # kept + counted while running
    progress.finished(6000)  # what the file holds (the normalizer's tail included)
    stats = progress.end()
    assert (stats.audio_seconds, stats.kept_seconds, stats.new_seconds, stats.resumed) == (6.0, 4.0, 2.0, True)
    progress.begin("next", 1, 1000)  # the next document starts from nothing
    fresh = progress.stats()
    assert (fresh.audio_seconds, fresh.kept_seconds, fresh.resumed, fresh.notes) == (0.0, 0.0, False, [])


def test_warnings_are_counted(capsys):
    before = errors.warnings_shown()
    errors.warn("something odd")
    assert capsys.readouterr().err == "narrate: warning: something odd\n"
    assert errors.warnings_shown() == before + 1


@pytest.fixture
def book(tmp_path):
    md = tmp_path / "book.md"
    md.write_text("## One\n\nThe first chapter has words.\n\n## Pictures\n\n\u00a7 \u00a7 \u00a7\n\n"
                  "## Two\n\nThe second chapter has words too.\n", encoding="utf-8")
    return md


def test_the_plan_says_what_is_not_read(book, tmp_path):
    plan = make_plan(Job(str(book), str(tmp_path / "a.wav")), stdout_is_tty=True)
    plan.lock.release()
    assert plan.notes == ["1 chapter without words left out"]
    plan = make_plan(Job(str(book), str(tmp_path / "b.wav"), chapters="2"), stdout_is_tty=True)
    plan.lock.release()
    assert plan.notes == ["1 chapter without words left out", "1 of 2 chapters read (--chapters 2)"]


def test_the_summary_counts_what_the_file_holds(book, tmp_path, tiny_model, voice_wav):
    import torch

    from narrate.runtime.narrator import NarrateSettings, Narrator

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    narrator = Narrator.load(str(tiny_model), str(voice_wav), NarrateSettings(seed=0, vocoder_process=False))
    try:
        out = tmp_path / "book.wav"
        progress = Progress(live=False)
        run(narrator, make_plan(Job(str(book), str(out), settings={"seed": 0}), stdout_is_tty=True), progress)
        stats = progress.end()
    finally:
        narrator.close()
        torch.set_num_threads(threads)
    # to the sample: chapter pauses and the loudness normalizer's tail are counted too
    assert stats.audio_seconds == sf.info(str(out)).frames / narrator.sample_rate
    assert stats.notes == ["1 chapter without words left out"] and not stats.resumed
    assert "; 1 chapter without words left out" in summary_line(stats, str(out))
