"""The voice's pitch and its prompt's average spectrum as model inputs (ModelConfig.voice_stats):
how they are measured, how they enter, and that a model gaining them starts as it was."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from narrate.engine.config import ModelConfig
from narrate.engine.model import NarrateModel, PromptEncoder, prompt_spectrum
from narrate.pitch import PITCH_REF, median_pitch, pitch_feature, voiced_share

CFG = dict(d_model=32, n_layers=2, n_heads=2, enc_convs=1, enc_layers=1, n_codebooks=4, codebook_size=16,
           codebook_groups=[1, 3], speaker_tokens=2, prompt_tokens=2, prenet_dropout=0.0)


def test_prompt_spectrum_averages_the_speech_and_leaves_out_pauses_and_padding():
    speech = torch.linspace(-6.0, -1.0, 80)
    frames = torch.full((2, 10, 80), PromptEncoder.SILENCE)
    frames[0, 2:5] = speech          # speech, then a pause
    frames[1, :3] = speech + 1.0
    frames[1, 6:] = 50.0             # padding: past the mask
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 6:] = False
    got = prompt_spectrum(frames, mask, torch.zeros(2, 1), 80)
    assert torch.allclose(got[0], (speech + 5.0) / 3.0, atol=1e-5)
    assert torch.allclose(got[1], (speech + 6.0) / 3.0, atol=1e-5)
    none = prompt_spectrum(None, None, torch.zeros(3, 1), 80)  # no prompt: silence
    assert none.shape == (3, 80) and torch.allclose(none, torch.full((3, 80), (PromptEncoder.SILENCE + 5.0) / 3.0))


def test_pitch_is_measured_on_voiced_speech_and_heard_as_its_log():
    sr = 22050
    t = np.arange(sr) / sr
    tone = sum(np.sin(2 * np.pi * 180.0 * k * t) / k for k in range(1, 6)) * 0.2
    x = np.concatenate([np.zeros(sr // 2), tone, np.zeros(sr // 2)]).astype(np.float32)
    assert median_pitch(x, sr) == pytest.approx(180.0, rel=0.02)
    assert math.isnan(median_pitch(np.zeros(sr, np.float32), sr))
    assert math.isnan(median_pitch(np.zeros(100, np.float32), sr))  # too short to measure: not an error
    assert pitch_feature(2 * PITCH_REF) == pytest.approx(math.log(2))
    assert pitch_feature(math.nan) == 0.0 and pitch_feature(0.0) == 0.0


def test_a_voices_pitch_is_measured_once(monkeypatch):
    from narrate import pitch
    from narrate.voices import Voice

    sr = 22050
    t = np.arange(sr) / sr
    tone = (sum(np.sin(2 * np.pi * 150.0 * k * t) / k for k in range(1, 6)) * 0.2).astype(np.float32)
    voice = Voice("v", None, np.zeros(256, np.float32), tone, sr)
    calls = []
    measure = pitch.median_pitch
    monkeypatch.setattr(pitch, "median_pitch", lambda *a: calls.append(a) or measure(*a))
    assert voice.pitch() == pytest.approx(150.0, rel=0.02)
    assert voice.pitch() == voice.pitch() and len(calls) == 1
    assert math.isnan(Voice("e", None, np.zeros(256, np.float32)).pitch())


def test_the_voiced_share_is_high_for_a_periodic_sound_and_low_for_noise_and_leaves_silence_out():
    sr = 22050
    t = np.arange(sr) / sr
    tone = sum(np.sin(2 * np.pi * 110.0 * k * t) / k for k in range(1, 8)) * 0.2
    noise = np.random.default_rng(0).standard_normal(sr) * 0.2
    silence = np.zeros(sr)
    assert voiced_share(np.concatenate([silence, tone, silence]).astype(np.float32), sr) > 0.9
    assert voiced_share(np.concatenate([silence, noise, silence]).astype(np.float32), sr) < 0.1
    half = voiced_share(np.concatenate([tone, noise]).astype(np.float32), sr)
    assert 0.35 < half < 0.65
    assert math.isnan(voiced_share(np.zeros(100, np.float32), sr))


def test_the_speaker_vector_carries_the_pitch_only_where_the_model_takes_it():
    torch.manual_seed(0)
    plain, stats = NarrateModel(ModelConfig(**CFG)), NarrateModel(ModelConfig(**CFG, voice_stats=True))
    emb, pitch = torch.randn(2, 256), torch.tensor([0.1, -0.3])
    assert torch.equal(plain.speaker_vector(emb, pitch), emb)
    v = stats.speaker_vector(emb, pitch)
    assert v.shape == (2, 257) and torch.equal(v[:, -1], pitch)
    with pytest.raises(ValueError, match="speaker vector of 256 values, the model takes 257"):
        stats.voice_terms(emb, torch.zeros(2))


def test_a_model_gaining_voice_stats_starts_as_it_was_then_hears_pitch_and_spectrum():
    torch.manual_seed(0)
    before = NarrateModel(ModelConfig(**CFG)).eval()
    after = NarrateModel(ModelConfig(**CFG, voice_stats=True)).eval()
    missing, unexpected = after.load_state_dict(before.state_dict(), strict=False)
    assert not unexpected and sorted({k.split(".")[0] for k in missing}) == ["stats_in", "stats_tokens"]
    emb, rate = torch.randn(2, 256), torch.zeros(2)
    prompt = torch.randn(2, 40, 80) - 5.0
    with torch.no_grad():
        b0, t0 = before.voice_terms(emb, rate, prompt)
        low, high = (after.voice_terms(after.speaker_vector(emb, torch.full((2,), p)), rate, prompt) for p in (-0.5, 0.7))
    # zero-initialised: the same terms (to float rounding) whatever the pitch
    assert torch.allclose(b0, low[0], atol=1e-5) and torch.allclose(t0, low[1], atol=1e-5)
    assert torch.allclose(low[0], high[0], atol=1e-5) and torch.allclose(low[1], high[1], atol=1e-5)
    with torch.no_grad():  # once trained (here: any weights), pitch and spectrum each move both terms
        for layer in (after.stats_in, after.stats_tokens):
            layer.weight.normal_()
        low = after.voice_terms(after.speaker_vector(emb, torch.full((2,), -0.5)), rate, prompt)
        high = after.voice_terms(after.speaker_vector(emb, torch.full((2,), 0.7)), rate, prompt)
        brighter = after.voice_terms(after.speaker_vector(emb, torch.full((2,), -0.5)), rate, prompt + 1.0)
    for a, b in ((low, high), (low, brighter)):
        assert not torch.allclose(a[0], b[0]) and not torch.allclose(a[1], b[1])
