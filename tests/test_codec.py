"""Codecs: the mel-RVQ codec (fit, encode/decode, streaming vocoder) and the EnCodec backend."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from narrate import kernels
from narrate.codec import codec_from_config
from narrate.codec.mel import MelConfig, MelSpec, StreamingVocoder, mel_centres, mel_filterbank
from narrate.codec.mel_rvq import MelRVQCodec

SR = 22050


def speechy(seconds=1.5, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 120 + 20 * np.sin(2 * np.pi * 1.3 * t)
    ph = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * ph) / k for k in range(1, 12)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return (0.2 * x + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.mark.parametrize("cfg", [MelConfig(), MelConfig(sample_rate=24000, n_fft=512, n_mels=64, fmin=50.0, fmax=None),
                                 MelConfig(sample_rate=16000, n_fft=400, n_mels=40, fmin=20.0, fmax=7600.0)])
def test_mel_filterbank_equals_librosa(cfg):
    """Our filterbank (made without importing librosa at start-up) is librosa's, to the last bit."""
    import librosa

    ref = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax)
    ours = mel_filterbank(cfg)
    assert ours.dtype == ref.dtype and ours.shape == ref.shape
    assert np.array_equal(ours, ref)
    fmax = cfg.sample_rate / 2 if cfg.fmax is None else cfg.fmax
    centres = librosa.mel_frequencies(cfg.n_mels + 2, fmin=cfg.fmin, fmax=fmax)[1:-1]
    assert np.allclose(mel_centres(cfg), centres, rtol=1e-12)


def test_features_frame_count_and_inversion_keeps_the_spectrum():
    spec = MelSpec(MelConfig(gl_iters=16))
    wav = speechy()
    mel = spec.features(wav)
    assert mel.shape == (len(wav) // 256, 80)
    back = spec.vocode(mel)
    assert len(back) == mel.shape[0] * 256
    err = (spec.features(back) - mel)[4:-4].abs().mean()
    assert err < 0.6, err  # Griffin-Lim keeps the log-mel close (phase is re-estimated)


def test_rvq_fit_more_codebooks_reconstruct_better():
    spec = MelSpec(MelConfig())
    feats = torch.cat([spec.features(speechy(2.0, s)) for s in range(3)])
    books = MelRVQCodec.fit(feats, 4, 32, iters=6)
    codec = MelRVQCodec(MelConfig(), books)
    codes = codec.quantize(feats)
    assert codes.shape == (4, len(feats)) and int(codes.max()) < 32
    errs = [(feats - sum(books[k][codes[k]] for k in range(n))).abs().mean() for n in range(1, 5)]
    assert all(a > b for a, b in zip(errs, errs[1:]))
    assert torch.allclose(codec.dequantize(codes), sum(books[k][codes[k]] for k in range(4)))


def test_codec_round_trip_and_registry():
    spec = MelSpec(MelConfig())
    books = MelRVQCodec.fit(spec.features(speechy(3.0)), 4, 32, iters=4)
    codec = codec_from_config({"name": "mel_rvq", "mel": {"gl_iters": 8}}, {"codebooks": books})
    wav = speechy(1.0, 5)
    codes = codec.encode(wav)
    assert codes.shape == (4, len(wav) // 256)
    out = codec.decode(codes)
    assert len(out) == codes.shape[1] * 256 and np.isfinite(out).all() and np.abs(out).max() > 0.01
    with pytest.raises(ValueError):
        codec_from_config({"name": "nope"})


def test_streaming_vocoder_matches_length_and_stays_close_to_whole():
    spec = MelSpec(MelConfig(gl_iters=16))
    mel = spec.features(speechy(2.0))
    voc = StreamingVocoder(spec)
    parts = [voc.push(mel[i : i + 5]) for i in range(0, len(mel), 5)]
    parts.append(voc.flush())
    out = np.concatenate(parts)
    assert len(out) == len(mel) * 256  # every frame's samples, once
    err = (spec.features(out) - mel)[4:-4].abs().mean()
    assert err < 0.8, err
    # no click at block joins: the largest sample jump stays within the signal's own
    jumps = np.abs(np.diff(out))
    assert jumps.max() < 6 * np.percentile(jumps, 99.9) + 1e-3


def test_streaming_vocoder_starts_with_a_short_block_then_longer_ones():
    spec = MelSpec(MelConfig(gl_iters=2))
    mel = spec.features(speechy(2.0))
    voc = StreamingVocoder(spec, block=48, context=8, hold=3, first_block=24)
    out = [(i, len(voc.push(mel[i : i + 1])) // 256) for i in range(120)]
    assert [x for x in out if x[1]][:2] == [(26, 24), (74, 48)]  # 24 out after 27 frames (3 held), then 48 a time
    voc.flush()
    again = [len(voc.push(mel[i : i + 1])) for i in range(27)]  # after a flush: a short block first again
    assert again[-1] == 24 * 256 and not any(again[:-1])


@pytest.mark.parametrize("T", [1, 24, 59])
def test_sparse_magnitudes_match_the_dense_reference(T):
    """Both fast ways (our kernel where built, torch's sparse products) against the dense reference."""
    spec = MelSpec(MelConfig())
    logmel = spec.features(speechy(1.0))[10 : 10 + T]
    ref = spec.reference_magnitudes(logmel)
    for kernel in {spec.kernel, False}:
        spec.kernel = kernel
        fast = spec.magnitudes(logmel)
        assert fast.shape == ref.shape == (513, T)
        assert torch.allclose(fast, ref, rtol=1e-4, atol=1e-6)
        assert (fast >= 0).all()  # (bins above fmax are in no band: 0)


@pytest.mark.parametrize("T,fixed,with_phase", [(4, 0, False), (4, 2, True), (5, 0, True), (35, 0, False),
                                                  (35, 8, True), (59, 8, True), (59, 0, False)])
def test_fast_griffin_lim_matches_the_reference(T, fixed, with_phase):
    spec = MelSpec(MelConfig(gl_iters=8))
    mag = spec.magnitudes(spec.features(speechy(1.0))[20 : 20 + T])
    phase = torch.rand(mag.shape, generator=torch.Generator().manual_seed(T)) * 6.28 - 3.14 if with_phase else None
    # float64: the same algorithm agrees to rounding (float32 Griffin-Lim from zero phase is
    # ill-conditioned: the reference itself moves ~1e-3 between float32 and float64)
    spec.window = spec.window.double()
    mag64, phase64 = mag.double(), None if phase is None else phase.double()
    fast, ref = spec.griffin_lim(mag64, phase64, fixed=fixed), spec.reference_griffin_lim(mag64, phase64, fixed=fixed)
    assert fast.shape == ref.shape == (513, T)
    assert torch.allclose(fast, ref, atol=1e-8)
    assert torch.allclose(spec.istft(fast), spec._istft(ref), atol=1e-10)
    if with_phase:  # float32, as streaming runs it: our kernel where built, else torch's operations
        spec.window = spec.window.float()
        ref = spec.reference_griffin_lim(mag, phase, fixed=fixed)
        for kernel in {spec.kernel, False}:
            spec.kernel = kernel
            fast = spec.griffin_lim(mag, phase, fixed=fixed)
            assert (spec.istft(fast) - spec._istft(ref)).abs().max() < 1e-4
            if fixed:
                assert torch.allclose(fast[:, :fixed], torch.polar(mag[:, :fixed], phase[:, :fixed]), atol=1e-6)


@pytest.mark.skipif(not kernels.cpu_supported(), reason="no AVX2 here")
@pytest.mark.parametrize("T,fixed", [(59, 8), (35, 0), (5, 2)])
def test_our_griffin_lim_kernel_matches_torch_operations(T, fixed):
    """Our Griffin-Lim iterations against the same algorithm in torch's operations, in float32:
    from a given phase the same audio up to rounding; from zero phase (ill-conditioned: float32
    rounding moves the result ~1e-3, see above) as consistent a spectrum."""
    assert kernels.available(), "our kernels are not built: run `make setup`"
    spec = MelSpec(MelConfig(gl_iters=8))
    assert spec.kernel
    mag = spec.magnitudes(spec.features(speechy(1.0))[20 : 20 + T])
    phase = torch.rand(mag.shape, generator=torch.Generator().manual_seed(T)) * 6.28 - 3.14
    results = {}
    for kernel in (True, False):
        spec.kernel = kernel
        results[kernel] = [spec.griffin_lim(mag, phase, fixed=fixed), spec.griffin_lim(mag, None)]
    (ours, ours_zero), (ops, ops_zero) = results[True], results[False]
    assert (spec.istft(ours) - spec.istft(ops)).abs().max() < 1e-4 * spec.istft(ops).abs().max()

    def inconsistency(s):  # how far the spectrum of the audio is from the target magnitudes
        wav = spec.istft(s)
        return (spec._stft(wav)[:, : wav.shape[0] // spec.cfg.hop + 1].abs()[:, :T] - mag).norm() / mag.norm()

    assert abs(inconsistency(ours_zero) - inconsistency(ops_zero)) < 0.02 * inconsistency(ops_zero)


def test_fast_istft_matches_torch_istft():
    spec = MelSpec(MelConfig())
    for T in (2, 4, 37):
        x = torch.randn(513, T, dtype=torch.complex64, generator=torch.Generator().manual_seed(T))
        assert torch.allclose(spec.istft(x), spec._istft(x), atol=1e-6)


def test_encodec_backend_codes_and_streaming():
    from narrate.codec.encodec_backend import EncodecCodec

    codec = EncodecCodec(bandwidth=3.0, pretrained=False)  # random weights: shapes and plumbing
    assert codec.sample_rate == 24000 and codec.frame_rate == 75 and codec.codebook_sizes == [1024] * 4
    wav = np.sin(np.arange(24000) / 24000 * 2 * np.pi * 220).astype(np.float32) * 0.3
    codes = codec.encode(wav)
    assert codes.shape == (4, 75)
    assert len(codec.decode(codes)) == 24000
    dec = codec.stream_decoder()
    streamed = np.concatenate([dec.push(codes[:, i : i + 10]) for i in range(0, 75, 10)] + [dec.flush()])
    assert len(streamed) == 24000
    with pytest.raises(ValueError, match="checkpoint"):
        EncodecCodec(pretrained=True, checkpoint=None)
