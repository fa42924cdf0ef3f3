"""The post-net (narrate.codec.post_net): untrained it changes nothing; streamed in any pushes it
equals the one-pass network; the source-filter vocoder runs it beside the pitch track with no
extra delay; a model folder loads it, and a damaged one is refused in one line; its training
(narrate.train.post_net) brings blurred frames nearer the sharp ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from narrate import hub
from narrate.codec.frame_net import FrameNetConfig
from narrate.codec.mel import MelConfig
from narrate.codec.pitch_track import PitchTrack
from narrate.codec.pitched import PitchedVocoder
from narrate.codec.post_net import PostNet, PostNetStream, save
from narrate.errors import ModelError

from chunks import push_in_chunks
from make_tiny_model import make_tiny_model

HOP = 256


def _frames(T: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    m = torch.arange(80.0)[None]
    t = torch.arange(float(T))[:, None]
    return -2.0 - 0.05 * m + 2.0 * torch.exp(-((m - 14 - 3 * torch.sin(t / 9)) / 5) ** 2) + 0.1 * torch.randn(T, 80, generator=g)


def _post(lookahead: int = 3) -> PostNet:
    """A post-net with random, non-zero output weights."""
    torch.manual_seed(1)
    net = PostNet(FrameNetConfig(channels=8, dilations=(1, 2, 4), lookahead=lookahead)).eval()
    with torch.no_grad():
        net.out.weight.normal_(0.0, 0.1)
        net.out.bias.normal_(0.0, 0.1)
    return net


def _track(lookahead: int = 3) -> PitchTrack:
    torch.manual_seed(0)
    track = PitchTrack(FrameNetConfig(channels=8, dilations=(1, 2, 4), lookahead=lookahead)).eval()
    with torch.no_grad():
        track.out.weight.mul_(0.01)
        track.out.bias.copy_(torch.tensor([8.0, 0.0]))
    return track


def test_an_untrained_post_net_gives_its_frames_back():
    frames = _frames(40)
    net = PostNet(FrameNetConfig(channels=8, dilations=(1, 2), lookahead=2))
    with torch.no_grad():
        assert torch.equal(net(frames[None])[0], frames)


@pytest.mark.parametrize("sizes", [[3], [1, 7, 2], [200]])
def test_streamed_in_any_pushes_is_the_one_pass_network(sizes):
    frames = _frames(120)
    net = _post()
    with torch.no_grad():
        reference = net(frames[None])[0].numpy()
    stream = PostNetStream(net)
    streamed = push_in_chunks(stream, frames, sizes)
    assert streamed.shape == reference.shape
    assert np.abs(streamed - reference).max() < 1e-4
    assert np.abs(reference - frames.numpy()).mean() > 0.01  # (it does change the frames)
    # it starts afresh after a flush: the same frames again give the same output
    again = np.concatenate([stream.push(frames), stream.flush()])
    assert np.abs(again - reference).max() < 1e-4


@pytest.mark.parametrize("sizes", [[3], [2, 9]])
def test_the_vocoder_streams_the_post_nets_frames_as_its_one_pass_reference(sizes):
    frames = _frames(150)
    reference = PitchedVocoder(_track(), MelConfig(), pitch=120.0, post_net=_post()).vocode(frames)
    without = PitchedVocoder(_track(), MelConfig(), pitch=120.0).vocode(frames)
    streamed = push_in_chunks(PitchedVocoder(_track(), MelConfig(), pitch=120.0, post_net=_post()), frames, sizes)
    assert len(streamed) == len(reference) == len(frames) * HOP
    error = np.sqrt(np.mean((streamed - reference) ** 2) / np.mean(reference ** 2))
    assert error < 3e-3  # (the pulses' phase integrates the track's F0 as each implementation rounds it)
    assert np.sqrt(np.mean((without - reference) ** 2) / np.mean(reference ** 2)) > 0.05  # (the post-net is used)


def test_the_post_net_adds_no_delay_to_the_vocoder():
    """Audio comes out after the same pushes with and without a post-net of the track's lookahead."""
    frames = _frames(60)
    counts = []
    for post in (None, _post(3)):
        v = PitchedVocoder(_track(3), MelConfig(), pitch=120.0, block=1, post_net=post)
        counts.append([len(v.push(frames[i:i + 3])) for i in range(0, 60, 3)])
    assert counts[0] == counts[1] and sum(counts[0]) > 0


def test_a_post_net_that_looks_further_ahead_than_the_track_is_refused():
    with pytest.raises(ValueError, match="post-net looks 5 frames ahead"):
        PitchedVocoder(_track(3), MelConfig(), post_net=_post(5))


def test_a_model_folder_loads_its_post_net_and_refuses_a_damaged_one(tmp_path):
    folder = make_tiny_model(tmp_path / "m")
    assert hub.from_pretrained(str(folder), vocoder="source-filter").codec.post_net is None  # (none: frames as they are)
    save(_post(2), str(folder / hub.POST_NET_FILE))
    loaded = hub.from_pretrained(str(folder), vocoder="source-filter")
    assert isinstance(loaded.codec.post_net, PostNet)
    assert loaded.codec.stream_decoder().vocoder.post is not None  # (the streaming vocoder runs it)
    assert hub.from_pretrained(str(folder), vocoder="griffin-lim").codec.post_net is None
    save(_post(5), str(folder / hub.POST_NET_FILE))
    with pytest.raises(ModelError, match="looks 5 frames ahead, more than the pitch track's 2"):
        hub.from_pretrained(str(folder), vocoder="source-filter")
    (folder / hub.POST_NET_FILE).write_bytes(b"not safetensors")
    with pytest.raises(ModelError, match="post-net .* is corrupt or invalid") as e:
        hub.from_pretrained(str(folder), vocoder="source-filter")
    assert "\n" not in str(e.value)


def test_training_brings_blurred_frames_nearer_the_sharp_ones(tmp_path):
    """Pairs whose model side is the true side blurred along time: a short run lowers the held-out
    error below the blurred frames' own."""
    from narrate.train import post_net as training

    rng = np.random.default_rng(0)
    kernel = np.array([1, 2, 3, 2, 1], np.float32) / 9
    bins = np.arange(80.0)
    models, trues = [], []
    for _ in range(training.HELD + 20):
        # segments of 4-8 frames, each a spectrum of its own (two bumps at random places and levels)
        rows = []
        while len(rows) < 80:
            shape = -6.0 + sum(rng.uniform(1, 3) * np.exp(-((bins - rng.uniform(5, 75)) / 6) ** 2) for _ in range(2))
            rows += [shape] * int(rng.integers(4, 9))
        t = np.array(rows[:80], np.float32)
        blurred = np.stack([np.convolve(np.pad(t[:, j], 2, mode="edge"), kernel, mode="valid") for j in range(80)], 1)
        models.append(blurred.astype(np.float16))
        trues.append(t.astype(np.float16))
    np.savez(tmp_path / "pairs_0.npz", model=np.concatenate(models), true=np.concatenate(trues),
             lengths=np.array([80] * len(models)))
    cfg = FrameNetConfig(channels=16, dilations=(1, 2), lookahead=2)
    weights = training.train(tmp_path, 0.15, cfg, lr=3e-3, seg=60, batch=8)
    from narrate.codec.post_net import load

    _, held = training.load_pairs(tmp_path)
    ours, as_is = training.held_out_error(load(str(weights)), held)
    assert ours < 0.9 * as_is


def test_the_pairs_never_read_a_held_out_or_bundled_voice():
    from narrate.train.bundled_voices import MADE_FROM
    from narrate.train.post_net import pair_speakers
    from narrate.train.speakers import HELDOUT_FAMILY, HELDOUT_REAL

    speakers = pair_speakers()
    names = {s.name for s in speakers}
    assert len(speakers) > 100 and {s.base for s in speakers} == {"joe"}
    assert not names & set(MADE_FROM.values()) and not names & set(HELDOUT_REAL)
    assert all(HELDOUT_FAMILY not in s.name for s in speakers)
    assert {"joe-m-low-0", "joe-f-low-0"} <= names  # (the same families are there, other members)
