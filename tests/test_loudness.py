"""Loudness normalization while streaming (narrate.audio.loudness), held to pyloudnorm's meter."""

from __future__ import annotations

import json

import numpy as np
import pytest

from narrate.audio.loudness import CEILING, TARGET, LoudnessMeter, Normalizer, true_peaks

pyloudnorm = pytest.importorskip("pyloudnorm")

RATE = 22050


def speechlike(seconds: float, level_db: float, seed: int = 0) -> np.ndarray:
    """Bursts of filtered noise (0.1-0.6 s) and silences, like sentences and pauses, with loud
    peaks now and then."""
    rng = np.random.default_rng(seed)
    out, total = [], int(seconds * RATE)
    n = 0
    while n < total:
        burst = rng.standard_normal(int(rng.uniform(0.1, 0.6) * RATE))
        burst = np.convolve(burst, np.hanning(12), mode="same") * rng.uniform(0.3, 1.0)
        burst[rng.integers(len(burst))] *= 6  # a plosive
        gap = np.zeros(int(rng.uniform(0.05, 0.5) * RATE))
        out += [burst, gap]
        n += len(burst) + len(gap)
    x = np.concatenate(out)[:total].astype(np.float32)
    return x * (10 ** ((level_db - pyloudnorm.Meter(RATE).integrated_loudness(x)) / 20))


def stream(normalizer: Normalizer, x: np.ndarray, sizes, flush_every: int = 0) -> np.ndarray:
    out, i, k = [], 0, 0
    while i < len(x):
        size = sizes[k % len(sizes)]
        out.append(normalizer.process(x[i:i + size]))
        i, k = i + size, k + 1
        if flush_every and k % flush_every == 0:
            out.append(normalizer.flush())
    out.append(normalizer.flush())
    return np.concatenate(out)


def test_the_meter_agrees_with_pyloudnorm():
    for level in (-30.0, -18.0):
        x = speechlike(30, level, seed=1)
        meter = LoudnessMeter(RATE)
        for i in range(0, len(x), 5000):
            meter.feed(x[i:i + 5000])
        assert meter.integrated() == pytest.approx(pyloudnorm.Meter(RATE).integrated_loudness(x), abs=0.1)


def test_a_quiet_stream_comes_out_at_the_target_under_the_peak_ceiling():
    x = speechlike(120, -30.0, seed=2)
    y = stream(Normalizer(RATE), x, [1000, 7777, 313, 20000], flush_every=7)
    assert len(y) == len(x)
    assert pyloudnorm.Meter(RATE).integrated_loudness(y) == pytest.approx(TARGET, abs=1.0)
    assert 20 * np.log10(true_peaks(y).max()) <= CEILING
    assert np.abs(y).max() < 1.0


def test_chunk_sizes_do_not_change_the_samples():
    x = speechlike(20, -26.0, seed=3)
    a = stream(Normalizer(RATE), x, [len(x)])
    b = stream(Normalizer(RATE), x, [997, 4410, 50])
    assert len(a) == len(b) == len(x)
    assert np.abs(a - b).max() < 1e-3


def test_a_resumed_stream_goes_on_with_the_gain_it_had():
    x = speechlike(60, -28.0, seed=4)
    whole = Normalizer(RATE)
    first = stream(whole, x[: 40 * RATE], [2048])
    resumed = Normalizer(RATE)
    resumed.restore(json.loads(json.dumps(whole.state())))  # as the resume record keeps it
    assert resumed.gain == whole.gain and resumed.meter.integrated() == whole.meter.integrated()
    fresh = Normalizer(RATE)
    rest = stream(resumed, x[40 * RATE:], [2048])
    assert np.array_equal(rest, stream(whole, x[40 * RATE:], [2048]))
    # a fresh normalizer would start from its prior instead
    assert not np.allclose(stream(fresh, x[40 * RATE:], [2048]), rest, atol=1e-3)
    assert len(first) == 40 * RATE


def test_the_cli_default_is_the_target():
    from narrate import cli

    assert cli.core.LOUDNESS == TARGET


def test_a_damaged_models_loud_output_is_measured_and_turned_down():
    # far over full scale (a random or broken model's vocoder): the meter stays in its histogram
    # and reads it as loud, and the gain goes all the way down instead of failing
    x = speechlike(10, -20.0, seed=5) * np.float32(10 ** (60 / 20))
    meter = LoudnessMeter(RATE)
    meter.feed(x)
    assert meter.integrated() > 29.0
    huge = np.full(RATE, 1e30, np.float32)
    meter.feed(huge)
    assert np.isfinite(meter.integrated())
    normalizer = Normalizer(RATE)
    y = stream(normalizer, x, [4096])
    assert len(y) == len(x) and normalizer.gain == pytest.approx(-24.0)
    assert 20 * np.log10(true_peaks(y).max()) <= CEILING


def test_an_empty_chunk_changes_nothing():
    # A narrator may hand over a chunk of no samples (a sentence's end arriving on its own).
    # scipy's lfilter returns an uninitialized filter state for empty input: whatever numpy's
    # freed memory held (filled with huge numbers here) became the K-weighting's state, and
    # narrating two short sentences with the tiny model failed with an OverflowError in the
    # meter or came out at a different level run to run.
    x = speechlike(5, -26.0, seed=6)
    plain, gapped = Normalizer(RATE), Normalizer(RATE)
    a = [plain.process(x[:RATE]), plain.process(x[RATE:]), plain.flush()]
    b = [gapped.process(x[:RATE])]
    for _ in range(20):
        junk = [np.full(2, 1e200) for _ in range(100)]
        del junk
    b += [gapped.process(np.zeros(0, np.float32)), gapped.process(x[RATE:]), gapped.flush()]
    for ours, theirs in zip(gapped.meter.states, plain.meter.states):
        assert np.array_equal(ours, theirs)
    assert np.array_equal(np.concatenate(b), np.concatenate(a))
