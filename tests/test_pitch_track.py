"""The per-frame voicing and F0 predictor: streaming equals whole, and its training targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from narrate.codec.frame_net import FrameNetConfig
from narrate.codec.pitch_track import PitchTrack, PitchTrackStream, load, to_hz

SR, HOP = 22050, 256


def _model(lookahead=6, seed=0):
    torch.manual_seed(seed)
    m = PitchTrack(FrameNetConfig(channels=16, dilations=(1, 2, 4, 8), lookahead=lookahead))
    m.mean.normal_()
    m.std.uniform_(0.5, 2.0)
    return m.eval()


@pytest.mark.parametrize("lookahead", [0, 1, 6])
def test_stream_in_any_chunks_equals_whole(lookahead):
    model = _model(lookahead)
    rng = np.random.default_rng(1)
    mel = rng.normal(-4, 2, (97, 80)).astype(np.float32)
    with torch.inference_mode():
        whole_v, whole_r = (t[0].numpy() for t in model(torch.from_numpy(mel)[None]))
    for sizes in ([97], [3] * 33, [1, 2, 5, 0, 13, 40, 7, 29], [1] * 97):
        stream = PitchTrackStream(model)
        vs, rs, i = [], [], 0
        for n in sizes:
            v, r = stream.push(mel[i:i + n])
            i += len(mel[i:i + n])
            assert len(v) == max(0, i - lookahead) - sum(len(x) for x in vs)   # as soon as the lookahead is in
            vs.append(v)
            rs.append(r)
        v, r = stream.flush()
        vs.append(v)
        rs.append(r)
        np.testing.assert_allclose(np.concatenate(vs), whole_v, atol=1e-5)
        np.testing.assert_allclose(np.concatenate(rs), whole_r, atol=1e-5)
        assert stream.state.frames_in == 0   # flush resets: a second utterance starts afresh


def test_causal_up_to_the_lookahead():
    """Frame t's outputs do not change with frames after t + lookahead."""
    model = _model(lookahead=4)
    mel = torch.randn(1, 60, 80)
    changed = mel.clone()
    changed[:, 35:] += 3.0
    with torch.inference_mode():
        a, b = model(mel)[1], model(changed)[1]
    assert torch.allclose(a[:, :31], b[:, :31])
    assert not torch.allclose(a[:, 31:], b[:, 31:])


def test_save_load_round_trip(tmp_path):
    from narrate.train.pitch_track import save_weights

    model = _model()
    save_weights(model, tmp_path / "p.safetensors")
    back = load(str(tmp_path / "p.safetensors"))
    assert back.cfg == model.cfg
    mel = torch.randn(1, 20, 80)
    with torch.inference_mode():
        assert torch.equal(model(mel)[1], back(mel)[1])
    assert sum(p.numel() for p in PitchTrack().parameters()) < 1_000_000


def test_to_hz():
    hz = to_hz(np.array([1.0, -1.0, 2.0]), np.array([0.0, 0.5, -1.0]), 110.0)
    np.testing.assert_allclose(hz, [110.0, 0.0, 55.0])


def test_targets_of_a_known_f0_sit_on_the_frames():
    """A harmonic tone at 150 Hz, silent in its first and last 0.3 s, gliding to 225 Hz in its
    middle: the targets read that F0 at each frame's centre (t * hop), unvoiced in the silence."""
    pytest.importorskip("parselmouth")
    from narrate.train.pitch_track import frame_f0, relative

    n_frames = 200
    t = np.arange(n_frames * HOP) / SR
    f = np.where(t < 1.0, 150.0, np.where(t < 1.5, 150.0 * 1.5 ** ((t - 1.0) / 0.5), 225.0))
    ph = 2 * np.pi * np.cumsum(f) / SR
    x = sum(np.sin(k * ph) / k for k in range(1, 8)) * 0.2
    x[(t < 0.3) | (t > t[-1] - 0.3)] = 0.0
    f0 = frame_f0(x.astype(np.float32), n_frames)
    centres = np.arange(n_frames) * HOP / SR
    inner = (centres > 0.4) & (centres < t[-1] - 0.4)
    truth = np.interp(centres, t, f)
    assert (f0[inner] > 0).all() and (f0[centres < 0.25] == 0).all() and (f0[centres > t[-1] - 0.25] == 0).all()
    cents = 1200 * np.abs(np.log2(f0[inner] / truth[inner]))
    assert np.median(cents) < 5 and cents.max() < 30
    rel, med = relative(f0)
    assert med == pytest.approx(np.median(f0[f0 > 0]))
    assert rel[f0 == 0].tolist() == [0.0] * int((f0 == 0).sum())
    np.testing.assert_allclose(med * np.exp2(rel[f0 > 0]), f0[f0 > 0], rtol=1e-5)
