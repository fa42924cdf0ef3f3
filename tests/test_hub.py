"""Model loading: local folder, bundled name, Hugging Face repo id through the local cache
(offline, pinned revision), a folder laid out like a Hub repo, and the errors."""

from __future__ import annotations

import shutil

import pytest
import torch

from narrate import hub
from narrate.errors import ModelError


def test_local_folder_loads_model_and_codec(tiny_model):
    m = hub.from_pretrained(str(tiny_model))
    assert m.codec.vocoder_name == "neural" and m.codec.vocoder.cfg.dim == 16
    assert m.model.cfg.d_model == 32 and m.codec.sample_rate == 22050
    assert m.codec.codebook_sizes == [16] * 4
    # the model's codebooks and the codec's are the same vectors
    assert torch.allclose(m.model.codebooks, m.codec.codebooks)


def test_hub_repo_folder_and_cache_layout_offline(tiny_model, tmp_path, monkeypatch):
    """A repo id resolves through huggingface_hub's cache (models--owner--name/snapshots/REV)
    with HF_HUB_OFFLINE=1; refs/main names the default revision; a pinned revision works."""
    cache = tmp_path / "hub"
    repo = cache / "models--someone--narrate-tiny"
    for rev in ("a" * 40, "b" * 40):
        snap = repo / "snapshots" / rev
        shutil.copytree(tiny_model, snap)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("b" * 40)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    assert hub.resolve("someone/narrate-tiny") == repo / "snapshots" / ("b" * 40)
    assert hub.resolve("someone/narrate-tiny", revision="a" * 40) == repo / "snapshots" / ("a" * 40)
    m = hub.from_pretrained("someone/narrate-tiny")
    assert m.model.cfg.n_layers == 2
    assert m.codec.vocoder_name == "neural"  # vocoder.safetensors found in the snapshot too
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE"):
        hub.resolve("someone/not-there")
    assert "someone/narrate-tiny" in hub.cached_models()


def test_bundled_name_resolves(tiny_model, tmp_path, monkeypatch):
    models = tmp_path / "models"
    shutil.copytree(tiny_model, models / "narrate-tiny")
    monkeypatch.setattr(hub, "MODELS_DIR", models)
    assert hub.resolve("narrate-tiny") == models / "narrate-tiny"
    assert "narrate-tiny" in hub.bundled_models()
    loaded = hub.from_pretrained("narrate-tiny")
    assert loaded.name == "narrate-tiny" and loaded.codec.vocoder_name == "neural"


def test_errors_are_model_errors(tiny_model, tmp_path):
    with pytest.raises(ModelError, match="unknown model"):
        hub.resolve("no-such-model")
    bad = tmp_path / "bad"
    shutil.copytree(tiny_model, bad)
    (bad / "model.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(ModelError, match="corrupt"):
        hub.from_pretrained(str(bad))
    (bad / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="no model.safetensors"):
        hub.from_pretrained(str(bad))
    half = tmp_path / "half"
    shutil.copytree(tiny_model, half)
    (half / "config.json").write_text('{"model": {"d_model": 64}}')
    with pytest.raises(ModelError):
        hub.from_pretrained(str(half))


def test_save_pretrained_round_trip(tiny_model, tmp_path):
    m = hub.from_pretrained(str(tiny_model))
    out = tmp_path / "copy"
    hub.save_pretrained(out, m.config.to_dict(), m.model, m.codec, dtype=torch.float16)
    m2 = hub.from_pretrained(str(out))
    for (k, a), (_, b) in zip(m.model.state_dict().items(), m2.model.state_dict().items()):
        assert torch.allclose(a, b, atol=2e-3 * (1 + a.abs().max())), k
