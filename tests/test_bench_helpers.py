"""The benchmark's pure helpers on synthetic arrays (no models): pause detection and statistics,
seam jumps, RTF arithmetic, sentence and scoring windows, median F0, memory growth, cloning
bars, what a section left running, and report formatting."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/ is not an installed package

from bench import report  # noqa: E402
from bench.analysis import (frame_db, jump_stats, max_jump, ratio, relative_growth, rtf, seam_pauses,  # noqa: E402
                            same_text_pairs, sentence_windows, silence_runs, summary)

SR = 1000  # 1 kHz keeps the arithmetic readable: 10 ms = 10 samples


def tone(seconds: float, amp: float = 0.5, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * 50 * t)).astype(np.float32)


def test_rtf_and_ratio():
    assert rtf(30.0, 60.0) == 0.5
    assert rtf(1.0, 0.0) == math.inf
    assert ratio(0.6, 0.2) == pytest.approx(3.0)
    assert ratio(1.0, 0.0) == math.inf


def test_frame_db_is_relative_to_peak():
    x = np.concatenate([tone(0.1, 0.5), tone(0.1, 0.005)])
    db = frame_db(x, SR)
    assert len(db) == 20
    assert db[:10].max() <= 0 and db[:10].min() > -4  # sine RMS is -3 dB of its peak
    assert db[10:].max() < -40


def test_silence_runs_finds_pauses_of_at_least_min_length():
    x = np.concatenate([tone(0.2), np.zeros(int(0.08 * SR), np.float32), tone(0.2),
                        np.zeros(int(0.03 * SR), np.float32), tone(0.2)])
    runs = silence_runs(x, SR)
    assert runs == [(200, 280)]  # the 30 ms gap is too short to count


def test_silence_runs_digital_silence_and_empty():
    assert silence_runs(np.zeros(500, np.float32), SR) == [(0, 500)]  # all of it is quiet
    assert silence_runs(np.zeros(0, np.float32), SR) == []


def test_seam_pauses_splits_join_pauses_from_inner_pauses():
    runs = [(200, 300), (600, 660)]
    at, inner = seam_pauses(runs, seams=[305, 900], sr=SR, tolerance_ms=20)
    assert at == [pytest.approx(0.1), 0.0]  # 305 is within 20 ms of the first run; 900 has none
    assert inner == [pytest.approx(0.06)]


def test_max_jump_and_jump_stats_find_a_click_at_a_seam():
    x = tone(1.0, 0.1)
    x[500:] += 0.8  # a step: a click exactly at the seam
    assert max_jump(x, 500, SR, half_ms=5) == pytest.approx(0.8, abs=0.05)
    at, elsewhere = jump_stats(x, [500], SR, half_ms=5)
    assert at[0] > 0.7
    assert max(elsewhere) < 0.05
    assert len(elsewhere) > 50


def test_sentence_windows_group_by_end_and_merge_a_short_tail():
    # five 25 s sentences at 1 kHz; 60 s windows -> [0,1] end in 0-60, [2,3] in 60-120, [4] tail merged
    spans = [(i, i * 25000, (i + 1) * 25000) for i in range(5)]
    w = sentence_windows(spans, 60.0, SR)
    assert [x["sentences"] for x in w] == [[0, 1], [2, 3, 4]]
    assert w[0]["start"] == 0 and w[0]["end"] == 50000 and w[1]["end"] == 125000


def test_relative_growth_and_summary():
    assert relative_growth({0.5: 400.0, 2.0: 410.0, 5.0: 420.0}) == pytest.approx(0.05)
    s = summary([1.0, 2.0, 3.0])
    assert s["n"] == 3 and s["median"] == 2.0 and s["max"] == 3.0
    assert math.isnan(summary([])["mean"])


def test_report_formatting_helpers():
    assert report.fmt(None) == "-" and report.fmt(float("nan")) == "-" and report.fmt(0.123456) == "0.123"
    assert report.fmt(7) == "7" and report.fmt(float("inf")) == "inf"
    assert report.pct(0.051) == "+5.1%" and report.pct(None) == "-"
    assert report.times(3.0, 1.5) == "2.00x" and report.times(None, 1.0) == "-"
    t = report.table(["a", "b"], [[1.5, "x"]])
    assert t.splitlines() == ["| a | b |", "|---|---|", "| 1.5 | x |"]


def test_a_report_links_only_the_figures_beside_it(tmp_path):
    (tmp_path / "speed.png").write_bytes(b"png")
    r = {"speed": {"figure": "speed.png", "x": 1}, "drift": {"figure": "drift.png", "x": 2}, "meta": {"quick": True}}
    kept = report.present_figures(r, tmp_path)
    assert kept == {"speed": {"figure": "speed.png", "x": 1}, "drift": {"x": 2}, "meta": {"quick": True}}
    assert r["drift"]["figure"] == "drift.png"  # (results.json's record is left as it was)


def test_behind_says_plainly_which_is_slower():
    r = {"speed": {"narrate": {"rtf": 0.6}, "piper": {"rtf": 0.05}}}
    lines = report.behind(r)
    assert len(lines) == 1 and "**behind**" in lines[0] and "12.00x" in lines[0]


def test_update_keeps_sections_not_redone_with_their_origin():
    from bench.run import carry_over

    meta = {"command": "python -m bench.run --sections memory", "started": "2026-01-01T00:00:00",
            "git": "abc123def4567890", "model": {"sha256": "f" * 64}}
    old = {"meta": meta, "config": {"memory_min": [1.0, 10.0, 60.0]}, "timings_s": {"memory": 900.0, "speed": 5.0},
           "memory": {"growth": 0.01}, "speed": {"rtf": 0.3}}
    new = {"meta": {**meta, "command": "python -m bench.run --sections speed"}, "config": {}, "timings_s": {"speed": 4.0},
           "speed": {"rtf": 0.2}}
    carry_over(old, new, ["speed"])
    assert new["speed"] == {"rtf": 0.2} and new["memory"] == {"growth": 0.01}  # redone stays new, the rest is kept
    assert new["timings_s"] == {"speed": 4.0, "memory": 900.0}
    assert set(new["earlier"]) == {"memory"} and new["earlier"]["memory"]["command"].endswith("--sections memory")
    again = {"meta": {**meta, "command": "third"}, "config": {}, "timings_s": {}}
    carry_over(new, again, [])  # carried twice: still names the run that measured it
    assert again["earlier"]["memory"]["command"].endswith("--sections memory") and again["speed"] == {"rtf": 0.2}


def test_same_text_pairs_match_each_late_sentence_with_its_first_time():
    texts = ["a", "b", "c", "a", "b", "c", "d", "a", "b"]
    assert same_text_pairs(texts, [6, 7, 8]) == [(0, 7), (1, 8)]  # "d" was never spoken before
    assert same_text_pairs(texts, []) == []


def test_the_long_text_replays_its_first_window_at_the_end():
    from bench.texts import Sentence, replaying

    sentences = [Sentence("everyday", f"s{i}") for i in range(7)]
    ends: list[int] = []
    out = []
    for text in replaying(sentences, ends, sr=10, length_s=30.0, window_s=6.0):
        out.append(text)
        ends.append(len(out) * 25)  # each sentence 2.5 s long, "rendered" as soon as it is read
    # 240 samples (24 s) = 30 - 6 s: ten sentences, then the two that ended within the first 6 s
    assert out == [f"s{i % 7}" for i in range(10)] + ["s0", "s1"]


def test_balanced_streams_hold_about_the_same_text_in_cycle_order():
    from bench.texts import Sentence, balanced

    sentences = [Sentence("everyday", "x" * n) for n in (50, 5, 40, 10, 30, 20, 25, 15)]
    streams = balanced(sentences, 2, 4)
    assert [len(s) for s in streams] == [4, 4]
    assert sorted(t.text for s in streams for t in s) == sorted(t.text for t in sentences)  # each once
    loads = [sum(len(t.text) for t in s) for s in streams]
    assert abs(loads[0] - loads[1]) <= 10  # 100 vs 95 here; cycle order within a stream is kept:
    assert all([sentences.index(t) for t in s] == sorted(sentences.index(t) for t in s) for s in streams)


def test_pause_stats_count_pauses_between_the_first_and_last_sound():
    from bench.analysis import pause_stats

    gap = lambda s: np.zeros(int(s * SR), np.float32)  # noqa: E731
    # leading 0.4 s, tone, 0.5 s, tone, 1.5 s, tone, 0.1 s, tone, trailing 0.6 s
    parts = [gap(0.4), tone(1.0), gap(0.5), tone(1.0), gap(1.5), tone(1.0), gap(0.1), tone(1.0), gap(0.6)]
    x = np.concatenate(parts)
    seams = [1650, 3900, 5450]  # inside the 0.5 s, 1.5 s and 0.1 s gaps
    p = pause_stats(x, SR, seams)
    assert p["n_pauses"] == 2 and p["n_long"] == 1  # the 0.1 s gap is no pause; leading/trailing silence neither
    assert p["silence_s"] == pytest.approx(2.0, abs=0.02) and p["longest_s"] == pytest.approx(1.5, abs=0.01)
    assert p["silence_share"] == pytest.approx(2.0 / 7.1, abs=0.005)
    assert p["sentence_pause_s"]["n"] == 3 and p["sentence_pause_s"]["median"] == pytest.approx(0.5, abs=0.01)
    assert p["sentence_pause_s"]["max"] == pytest.approx(1.5, abs=0.01)


def test_pause_stats_of_speech_without_pauses():
    from bench.analysis import pause_stats

    p = pause_stats(tone(3.0), SR, [1000, 2000])
    assert p["n_pauses"] == 0 and p["silence_s"] == 0 and p["longest_s"] == 0
    assert p["sentence_pause_s"]["max"] == 0  # joins without a pause


def test_score_windows_cover_the_audio_in_whole_windows():
    from bench.analysis import score_windows

    assert score_windows(25, 10) == [(0, 10), (10, 20), (15, 25)]  # a remainder of half a window: the last 10
    assert score_windows(24, 10) == [(0, 10), (10, 20)]              # a shorter one is left out
    assert score_windows(5, 10) == [(0, 5)] and score_windows(0, 10) == []


def test_median_pitch_of_a_voiced_tone_with_silence():
    from narrate.pitch import median_pitch

    sr = 16000
    t = np.arange(sr) / sr
    voiced = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in (1, 2, 3)) * 0.3
    x = np.concatenate([voiced, np.zeros(sr // 2)])  # silence is unvoiced: the median is the tone's
    assert median_pitch(x, sr) == pytest.approx(150, rel=0.02)
    assert math.isnan(median_pitch(np.zeros(sr), sr))  # nothing voiced


def test_median_pitch_of_a_low_voice_without_its_fundamental():
    """An 85 Hz pulse train through three formants and a 250 Hz high-pass (a deep voice over a
    small speaker): WORLD's dio found nothing voiced here."""
    from scipy.signal import butter, lfilter

    from narrate.pitch import median_pitch

    sr, f0 = 22050, 85.0
    x = np.zeros(2 * sr)
    x[np.round(np.arange(0, len(x) - 1, sr / f0)).astype(int)] = 1.0
    for fc, bw in ((500, 80), (1500, 120), (2500, 150)):
        r, th = np.exp(-np.pi * bw / sr), 2 * np.pi * fc / sr
        x = lfilter([1 - r], [1, -2 * r * np.cos(th), r * r], x)
    b, a = butter(4, 250 / (sr / 2), "high")
    x = lfilter(b, a, x)
    assert median_pitch(0.5 * x / np.abs(x).max(), sr) == pytest.approx(f0, rel=0.02)


def test_median_pitch_follows_a_known_pitch_shift_of_the_teacher_voice():
    import soundfile as sf

    from narrate.pitch import median_pitch
    from narrate.train.vocoder_data import pitch_shift
    from narrate.voices import bundled_voices

    joe, sr = sf.read(str(bundled_voices()["joe"]), dtype="float32")
    high = pitch_shift(joe, 600, sr)  # sox: +600 cents
    assert median_pitch(high, sr) / median_pitch(joe, sr) == pytest.approx(2 ** 0.5, rel=0.05)


def _natural(p808, ovrl, silence, longest):
    return {"dnsmos": {"p808": p808, "sig": 3.0, "bak": 3.5, "ovrl": ovrl},
            "pauses": {"silence_s": silence, "silence_share": 0.1, "n_pauses": 3, "n_long": 0, "longest_s": longest,
                       "sentence_pause_s": {"median": 0.3, "p95": 0.5}}}


def test_naturalness_bars_say_met_and_not_met():
    q = {"narrate_joe": _natural(3.95, 2.9, 13.0, 1.1), "piper": _natural(4.2, 3.3, 10.0, 0.8)}
    bars = report.naturalness_bars(q)
    assert [row[-1] for row in bars] == ["met", "**not met**", "met", "met"]  # OVRL 0.4 below piper's
    q["narrate_joe"] = _natural(3.8, 3.1, 13.5, 1.3)
    assert [row[-1] for row in report.naturalness_bars(q)] == ["**not met**", "met", "**not met**", "**not met**"]
    assert report.natural_row("x", q["piper"])[:2] == ["x", 4.2] and len(report.NATURAL_HEADERS) == 12


def test_cloning_verdicts_against_the_default_voice():
    from bench.cloning import verdicts

    held = {"kind": "held out", "similarity": 0.80, "default_similarity": 0.65, "f0_output": 190.0,
            "f0_prompt": 175.0, "wer": 0.11}
    assert verdicts(held, default_wer=0.10) == {"similarity": True, "f0": True, "wer": True}
    held.update(default_similarity=0.75, f0_output=120.0, wer=0.13)  # only 0.05 above the default; F0 31% low
    assert verdicts(held, default_wer=0.10) == {"similarity": False, "f0": False, "wer": False}
    assert verdicts({"kind": "seen", "similarity": 0.86}, 0.1) == {"similarity": True}
    assert verdicts({"kind": "seen", "similarity": 0.84}, 0.1) == {"similarity": False}
    held.update(kind="not trained on")  # a bundled voice the model was not trained on: the held-out bars
    assert verdicts(held, default_wer=0.10) == {"similarity": False, "f0": False, "wer": False}


def test_a_bundled_voice_is_seen_only_where_its_description_says_so(tmp_path):
    from bench.cloning import PROMPTS, _bundled_kind

    (tmp_path / "a.txt").write_text("US English male narrator: the teacher voice itself; seen in training\n")
    (tmp_path / "b.txt").write_text("US English female narrator: ...; not in the bundled model's training\n")
    assert [_bundled_kind(tmp_path / f"{n}.wav") for n in "abc"] == ["seen", "not trained on", "not trained on"]
    assert PROMPTS["joe"].kind == "seen" and PROMPTS["joan"].kind == "not trained on"


def test_the_report_says_what_a_section_left_running():
    r = {"left_behind": {"quality": {"processes": [], "threads": []},
                         "memory": {"processes": [{"pid": 7, "cmd": "python -m narrate"}], "threads": ["narrate-text"]}}}
    lines = report.left_behind_lines(r)
    assert "Left running" in lines[0] and lines[2] == "- memory: pid 7 `python -m narrate`; threads: narrate-text"
    r["left_behind"]["memory"] = {"processes": [], "threads": []}
    assert report.left_behind_lines(r)[0].startswith("No section left")


def test_left_behind_finds_a_process_and_a_thread_and_ends_the_process():
    import subprocess
    import threading

    from bench import leftovers

    before = leftovers.snapshot()
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="lingering", daemon=True)
    thread.start()
    library = threading.Thread(target=stop.wait, name="tqdm_monitor", daemon=True)  # kept by design: not listed
    library.start()
    proc = subprocess.Popen(["sleep", "30"])
    kept = subprocess.Popen(["sleep", "30"])
    try:
        left = leftovers.left_behind(before, keep={kept.pid})
        assert [p["pid"] for p in left["processes"]] == [proc.pid] and left["threads"] == ["lingering"]
        leftovers.end(left["processes"])
        assert proc.poll() is not None
        stop.set()
        thread.join()
        assert leftovers.left_behind(before, keep={kept.pid}) == {"processes": [], "threads": []}
    finally:
        for p in (proc, kept):
            p.kill()
            p.wait()


def test_subtitle_cues_are_matched_to_the_nearest_heard_first_word():
    from bench.subtitle_timing import first_word_offsets

    heard = [("The", 1.0, 1.2), ("dog", 1.2, 1.5), ("saw", 1.5, 1.8), ("the", 1.8, 2.0), ("cat.", 2.0, 2.4),
             ("The", 3.0, 3.2), ("end.", 3.2, 3.6)]
    cues = [(1, 1.05, 2.5, "The dog saw the cat."), (2, 2.9, 3.7, "The end."), (3, 9.0, 9.5, "Unheard.")]
    # the second cue's "the" is the one at 3.0 s, not the nearer in order at 1.8 s
    assert [round(o, 3) for o in first_word_offsets(cues, heard)] == [0.05, -0.1]


def test_the_dialogue_bench_splits_the_audio_where_the_narrator_says_each_piece_ends():
    from bench.dialogue import render, story_sentences
    from narrate.runtime.narrator import AudioChunk

    sentences = story_sentences()
    quoted = [s.dialogue for s in sentences]
    assert sum(quoted) >= 4 and len(quoted) - sum(quoted) >= 4  # quotes and narration alike
    assert all(s.text.startswith('"') for s in sentences if s.dialogue)

    class Fake:  # each sentence in two chunks of its own length, the second its last
        def narrate(self, given):
            for i, _ in enumerate(given):
                yield AudioChunk(np.full(i + 1, i, np.float32), i)
                yield AudioChunk(np.full(2, i, np.float32), i, final=True)

    audio, spans = render(Fake(), sentences)
    assert len(spans) == len(sentences) and spans[0] == (0, 3) and spans[-1][1] == len(audio)
    assert all(np.all(audio[a:b] == i) for i, (a, b) in enumerate(spans))
