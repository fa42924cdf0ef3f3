"""The streaming source-filter synthesizer (narrate/codec/source_filter.py)."""

import math

import numpy as np
import pytest
import torch

from narrate.codec.mel import MelConfig, MelSpec
from narrate.codec.source_filter import SourceFilter
from narrate.pitch import median_pitch, voiced_share

SR, HOP = 22050, 256


def _frames(T: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Speech-like log-mel frames (a vowel-ish envelope whose formants drift, loudness rising
    and falling) and an F0 contour with an unvoiced stretch."""
    rng = np.random.default_rng(seed)
    m = np.arange(80)[None]
    t = np.arange(T)[:, None]
    f1 = 12 + 4 * np.sin(t / 17)
    f2 = 35 + 6 * np.cos(t / 23)
    mel = -2.0 - 0.06 * m + 2.0 * np.exp(-((m - f1) / 4) ** 2) + 1.5 * np.exp(-((m - f2) / 6) ** 2)
    mel = mel - 3.0 * (1 - np.sin(np.pi * (t + 5) / (T + 10))) + 0.1 * rng.standard_normal((T, 80))
    f0 = 110 + 20 * np.sin(np.arange(T) / 15)
    f0[40:55] = 0.0
    return mel.astype(np.float32), f0


def _streamed(sf: SourceFilter, mel, f0, sizes) -> np.ndarray:
    out, i, k = [], 0, 0
    while i < len(mel):
        n = sizes[k % len(sizes)]
        out.append(sf.push(mel[i : i + n], f0[i : i + n]))
        i, k = i + n, k + 1
    return np.concatenate(out + [sf.flush()])


@pytest.mark.parametrize("sizes,block", [([1], 1), ([3], 1), ([7, 1, 2], 1), ([50], 1), ([3], 24), ([7, 1, 2], 5)])
@pytest.mark.parametrize("min_phase", [True, False])
def test_chunking_gives_the_same_samples(sizes, block, min_phase):
    mel, f0 = _frames()
    whole = SourceFilter(min_phase=min_phase).synthesize(mel, f0)
    parts = _streamed(SourceFilter(block=block, min_phase=min_phase), mel, f0, sizes)
    assert len(whole) == len(parts) == len(mel) * HOP
    assert np.abs(whole).max() > 0.01
    np.testing.assert_allclose(parts, whole, atol=2e-4 * np.abs(whole).max())


def test_samples_are_final_two_frames_on_and_flush_starts_a_new_stream():
    mel, f0 = _frames(40)
    sf = SourceFilter(block=1)
    assert len(sf.push(mel[:10], f0[:10])) == (10 - 1) * HOP  # frame 9's window reaches a hop on
    assert len(sf.push(mel[10:], f0[10:])) == (40 - 10) * HOP
    assert len(sf.flush()) == HOP
    again = np.concatenate([sf.push(mel, f0), sf.flush()])  # after a flush: the same stream anew
    np.testing.assert_allclose(again, SourceFilter().synthesize(mel, f0), atol=1e-6)
    blocked = SourceFilter(block=16)
    assert len(blocked.push(mel[:10], f0[:10])) == 0  # not a block yet
    assert len(blocked.push(mel[10:20], f0[10:20])) == (20 - 1) * HOP
    zero = SourceFilter(block=1, min_phase=False)  # a zero-phase filter rings back: (1024 - 512) / 2 more
    assert len(zero.push(mel[:10], f0[:10])) == (10 - 2) * HOP
    assert len(zero.flush()) == 2 * HOP


@pytest.mark.parametrize("window", [300, 256, 768, 1024, 128])
def test_a_synthesis_window_must_be_two_hops_to_half_the_fft_in_whole_hops(window):
    with pytest.raises(ValueError, match="synthesis window"):
        SourceFilter(window=window)


def _flat_frames(T: int) -> np.ndarray:
    """A steady vowel-ish envelope."""
    m = np.arange(80)[None]
    return np.repeat(-2.0 - 0.05 * m + 2.0 * np.exp(-((m - 14) / 5) ** 2), T, axis=0).astype(np.float32)


@pytest.mark.parametrize("hz", [85.0, 140.0, 220.0])
def test_a_constant_f0_is_the_output_pitch(hz):
    mel = _flat_frames(172)  # 2 s
    wav = SourceFilter().synthesize(mel, np.full(len(mel), hz))
    assert median_pitch(wav, SR) == pytest.approx(hz, rel=0.01)
    assert voiced_share(wav, SR) > 0.95
    # plain autocorrelation agrees: the strongest peak within 60-500 Hz lags is one period
    x = wav[SR // 2 : SR // 2 + 4096].astype(np.float64)
    ac = np.correlate(x, x, "full")[len(x) - 1 :]
    lo, hi = int(SR / 500), int(SR / 60)
    lag = lo + int(np.argmax(ac[lo:hi]))
    assert SR / lag == pytest.approx(hz, rel=0.03) or SR / lag == pytest.approx(hz / 2, rel=0.03)
    assert ac[lag] / ac[0] > 0.8


@pytest.mark.parametrize("envelope,most", [("vowel", 0.15), ("fricative", 0.02)])
def test_unvoiced_input_has_no_periodicity(envelope, most):
    """F0 0 throughout: noise through the envelope. A fricative's rising envelope: Praat finds
    nothing voiced; a vowel's (one narrow formant near 500 Hz) rings enough that Praat calls a
    few frames voiced (2-9% over seeds 0-2), against over 95% with an F0."""
    m = np.arange(80)[None]
    mel = _flat_frames(172) if envelope == "vowel" else np.repeat(-6.0 + 0.05 * m, 172, axis=0).astype(np.float32)
    wav = SourceFilter().synthesize(mel, np.zeros(len(mel)))
    assert np.abs(wav).max() > 0.01
    assert voiced_share(wav, SR) < most
    # no autocorrelation peak at a period of 5-16 ms (a voice's 60-200 Hz); shorter lags still
    # correlate through the envelope's formant (coloured noise), periodic or not
    x = wav[SR // 2 : SR // 2 + 8192].astype(np.float64)
    ac = np.correlate(x, x, "full")[len(x) - 1 :]
    assert ac[int(SR / 200) : int(SR / 60)].max() / ac[0] < 0.3


@pytest.mark.parametrize("min_phase", [True, False])
def test_the_output_mel_follows_the_input(min_phase):
    """Re-analysed, the output's log-mel is near the frames it was made from (the level is
    self-normalised: no gain to calibrate), voiced or not."""
    mel, f0 = _frames(160)
    wav = SourceFilter(min_phase=min_phase).synthesize(mel, f0)
    back = MelSpec(MelConfig(), kernel=False).features(wav).numpy()
    diff = back[5:-5, 10:] - mel[5:-5, 10:]  # above ~400 Hz (the envelope is held below the first bands)
    assert abs(float(np.mean(diff))) < 0.3
    assert float(np.mean(np.abs(diff))) < 0.5


def test_silence_gives_silence():
    mel = np.full((30, 80), math.log(1e-5), np.float32)
    wav = SourceFilter().synthesize(mel, np.full(30, 100.0))
    assert np.abs(wav).max() < 1e-3
    torch.testing.assert_close(torch.from_numpy(wav).isfinite().all(), torch.tensor(True))


@pytest.mark.parametrize("hz", [90.0, 130.0, 171.0, 250.0, 330.0])
def test_the_level_does_not_depend_on_the_pitch(hz):
    """Smooth frames (the model's kind: no harmonics of their own) come out as loud voiced at
    any F0 as unvoiced: within 2.5 dB. (The pulses used to be levelled by their own mel
    envelope, which at 171 Hz read the gaps between sparse harmonics in the narrow low bands
    and came out ~10 dB loud, past full scale.)"""
    mel, _ = _frames(160)
    noise = SourceFilter().synthesize(mel, np.zeros(len(mel)))
    voiced = SourceFilter().synthesize(mel, np.full(len(mel), hz))
    gain_db = 20 * math.log10(float(np.sqrt(np.mean(voiced**2)) / np.sqrt(np.mean(noise**2))))
    assert abs(gain_db) < 2.5
