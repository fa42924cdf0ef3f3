"""Finding and loading model weights: a local folder, a model bundled under models/, or a
Hugging Face Hub repo id (through huggingface_hub: its cache, HF_HUB_OFFLINE, revisions).

A model folder holds config.json ({"model", "codec", "text", "default_voice"}) and
model.safetensors (the model's tensors; the codec's under the prefix "codec.").
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from narrate.errors import ModelError

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULT_MODEL = "narrate-joe"
FILES = ("config.json", "model.safetensors")


@dataclass
class LoadedModel:
    name: str
    path: Path
    config: dict
    model: "torch.nn.Module"
    codec: "object"


def bundled_models() -> dict[str, Path]:
    if not MODELS_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(MODELS_DIR.iterdir()) if (p / "config.json").exists()}


def cached_models() -> dict[str, Path]:
    """Models in the local Hugging Face cache that look like narrate models."""
    try:
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir()
    except Exception:  # no cache folder yet
        return {}
    out = {}
    for repo in info.repos:
        for rev in repo.revisions:
            names = {f.file_name for f in rev.files}
            if set(FILES) <= names:
                out[repo.repo_id] = rev.snapshot_path
    return out


def resolve(id_or_path: str | None, revision: str | None = None) -> Path:
    """-> a local folder with config.json + model.safetensors."""
    name = id_or_path or DEFAULT_MODEL
    local = Path(name).expanduser()
    if local.is_dir():
        return local
    bundled = bundled_models()
    if name in bundled:
        return bundled[name]
    if local.suffix or name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise ModelError(f"unknown model '{name}': not a folder, not bundled ({', '.join(bundled) or 'none'}), not a Hub repo id")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=name, revision=revision, allow_patterns=list(FILES) + ["*.md"]))
    except Exception as e:
        offline = os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True")
        why = "not in the local Hugging Face cache and HF_HUB_OFFLINE is set" if offline else type(e).__name__
        raise ModelError(f"unknown model '{name}' (Hub repo id): {why}") from None


def from_pretrained(id_or_path: str | None = None, revision: str | None = None) -> LoadedModel:
    """Load a model and its codec (float32, eval mode). ModelError for anything missing or corrupt."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from narrate.codec import codec_from_config
    from narrate.engine.config import ModelConfig
    from narrate.engine.model import NarrateModel

    path = resolve(id_or_path, revision)
    for f in FILES:
        if not (path / f).exists():
            raise ModelError(f"model folder '{path}' has no {f}")
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        mcfg = ModelConfig.from_dict(config["model"])
    except (ValueError, KeyError, TypeError) as e:
        raise ModelError(f"model config '{path / 'config.json'}' is invalid ({e})") from None
    try:
        tensors = load_file(str(path / "model.safetensors"))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ModelError(f"model weights '{path / 'model.safetensors'}' are corrupt ({str(e)[:80]})") from None
    codec_tensors = {k[len("codec."):]: v.float() for k, v in tensors.items() if k.startswith("codec.")}
    weights = {k: v.float() for k, v in tensors.items() if not k.startswith("codec.")}
    try:
        codec = codec_from_config(config["codec"], codec_tensors)
        model = NarrateModel(mcfg)
        model.load_state_dict(weights, strict=True)
    except (RuntimeError, ValueError, KeyError) as e:
        raise ModelError(f"model weights '{path}' do not match its config ({str(e).splitlines()[0][:100]})") from None
    return LoadedModel(path.name if path.parent == MODELS_DIR else str(id_or_path or path.name), path, config, model.eval(), codec)


def save_pretrained(folder: Path, config: dict, model: torch.nn.Module, codec, dtype=torch.float16) -> None:
    """Write config.json + model.safetensors (weights in ``dtype``; the codec's in float32)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"codec.{k}": v.detach().float().contiguous() for k, v in codec.state_dict().items()})
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config, indent=1, ensure_ascii=False), encoding="utf-8")
