"""Choosing a vocoder by several measures at once (bench.vocoder_select)."""

from __future__ import annotations

import numpy as np

from bench.vocoder_select import BANDS, band_difference, compare, ltas, select

BASE = {"p808": 3.00, "ovrl": 2.60, "wer": 0.130, "sim": 0.800}


def test_better_on_every_measure_is_better():
    better, score, worse = compare({"p808": 3.1, "ovrl": 2.7, "wer": 0.12, "sim": 0.82}, BASE)
    assert better and worse == [] and score > 0


def test_one_measure_up_and_another_down_is_not_better():
    # a large DNSMOS gain does not buy a similarity loss beyond its tolerance
    better, score, worse = compare({"p808": 3.5, "ovrl": 3.1, "wer": 0.13, "sim": 0.79}, BASE)
    assert not better and worse == ["sim"] and score > 0
    better, _, worse = compare({"p808": 3.0, "ovrl": 2.6, "wer": 0.145, "sim": 0.85}, BASE)
    assert not better and worse == ["wer"]


def test_changes_within_noise_count_only_through_the_combined_score():
    better, score, _ = compare({"p808": 2.98, "ovrl": 2.61, "wer": 0.135, "sim": 0.83}, BASE)
    assert better and score > 0  # small losses within tolerance, a clear similarity gain
    better, score, worse = compare({"p808": 2.98, "ovrl": 2.59, "wer": 0.135, "sim": 0.80}, BASE)
    assert not better and worse == [] and score < 0
    # every measure a little up, none beyond its noise: not better (measured: a student 3.01 / 2.70 /
    # 0.140 / 0.806 against the shipped 2.98 / 2.68 / 0.136 / 0.807 scores +0.19 but gains nothing real)
    better, score, worse = compare({"p808": 3.02, "ovrl": 2.62, "wer": 0.125, "sim": 0.804}, BASE)
    assert not better and worse == [] and score > 0


def test_select_takes_the_best_of_those_better_together_or_none():
    cands = {"a": {"p808": 3.05, "ovrl": 2.65, "wer": 0.13, "sim": 0.81},
             "b": {"p808": 3.10, "ovrl": 2.70, "wer": 0.12, "sim": 0.84},
             "c": {"p808": 3.90, "ovrl": 3.50, "wer": 0.20, "sim": 0.90}}  # far up, but WER far down
    assert select(cands, BASE) == "b"
    assert select({"c": cands["c"]}, BASE) is None


def test_ltas_leaves_silence_out_and_band_difference_reads_a_tilt_in_db():
    centres = np.linspace(0, 8000, 82)[1:-1]
    speech = np.tile(np.log(np.linspace(1.0, 0.1, 80)), (50, 1))
    silence = np.full((50, 80), np.log(1e-5))
    assert np.allclose(ltas([speech, silence]), speech[0])  # the silent frames do not pull it down
    tilted = speech[0] + np.log(10 ** (np.linspace(0, -12, 80) / 20))  # 0 dB at 0 Hz to -12 dB at 8 kHz
    diff = band_difference(tilted, speech[0], centres)
    assert list(diff) == [f"{lo}-{hi}" for lo, hi in BANDS]
    values = list(diff.values())
    assert values == sorted(values, reverse=True) and -0.8 < values[0] < 0 and -12 < values[-1] < -8


def test_the_voiced_share_counts_where_both_runs_have_it_and_is_left_out_where_one_lacks_it():
    with_voicing = {**BASE, "voiced": 0.30}
    better, _, worse = compare({**BASE, "voiced": 0.20}, with_voicing)
    assert not better and worse == ["voiced"]  # a breathier vocoder is worse, whatever else held
    better, _, worse = compare({**BASE, "voiced": 0.40}, with_voicing)
    assert better and worse == []
    assert compare({**BASE, "voiced": 0.10}, BASE)[2] == []  # an older baseline without it
