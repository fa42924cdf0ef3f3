"""Finding and loading model weights: a local folder, a model bundled with narrate
(``narrate.assets.MODELS``), or a Hugging Face Hub repo id (through huggingface_hub: its cache,
HF_HUB_OFFLINE, revisions).

A model folder holds config.json (``narrate.model_folder.ModelFolderConfig``: model, codec,
text, default voice, speed range; checked once, here) and model.safetensors (the model's
tensors; the codec's under the prefix "codec."). A folder may also hold vocoder.safetensors, the neural vocoder's weights, described by the config's
"vocoder" section (``narrate.codec.vocos.VocoderConfig``); without it, Griffin-Lim vocodes.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from narrate import assets
from narrate.errors import ModelError
from narrate.model_folder import VOCODERS, ModelFolderConfig

MODELS_DIR = assets.MODELS
DEFAULT_MODEL = "narrate-joe"
FILES = ("config.json", "model.safetensors")
VOCODER_FILE = "vocoder.safetensors"  # optional
PITCH_TRACK_FILE = "pitch_track.safetensors"  # optional: what the source-filter vocoder needs
POST_NET_FILE = "post_net.safetensors"  # optional: the source-filter vocoder's frame sharpener


@dataclass
class LoadedModel:
    name: str
    path: Path
    config: ModelFolderConfig  # its config.json, checked
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
    if os.path.lexists(local):  # a file, a broken link or a link loop: a local path was meant
        raise ModelError(f"model '{name}' is not a model folder ({_not_a_folder(local)})")
    bundled = bundled_models()
    if name in bundled:
        return bundled[name]
    if local.suffix or name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise ModelError(f"unknown model '{name}': not a folder, not bundled ({', '.join(bundled) or 'none'}), not a Hub repo id")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=name, revision=revision, allow_patterns=[*FILES, VOCODER_FILE, PITCH_TRACK_FILE, "*.md"]))
    except Exception as e:
        offline = os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True")
        why = "not in the local Hugging Face cache and HF_HUB_OFFLINE is set" if offline else type(e).__name__
        raise ModelError(f"unknown model '{name}' (Hub repo id): {why}") from None


_CONFIG_BYTES = 16 << 20


def _not_a_folder(path: Path) -> str:
    try:
        path.stat()
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a symbolic link loop"
        if e.errno == errno.ENOENT:
            return "a symbolic link to nothing"
        return e.strerror or type(e).__name__
    return "a file"


def from_pretrained(id_or_path: str | None = None, revision: str | None = None, vocoder: str = "auto") -> LoadedModel:
    """Load a model and its codec (float32, eval mode). ModelError for anything missing or corrupt.
    vocoder: "neural" (the model's own, an error if it has none), "griffin-lim", "source-filter"
    (the model's pitch track, an error if it has none), or "auto" (the folder's default_vocoder;
    without one, neural when the model has one)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from narrate.codec import codec_from_config
    from narrate.engine.model import NarrateModel

    path = resolve(id_or_path, revision)
    for f in FILES:
        if not (path / f).exists():
            raise ModelError(f"model folder '{path}' has no {f}")
    try:
        if (path / "config.json").stat().st_size > _CONFIG_BYTES:
            raise ValueError(f"larger than {_CONFIG_BYTES >> 20} MB")
        config = ModelFolderConfig.from_dict(json.loads((path / "config.json").read_text(encoding="utf-8")))
    except (ValueError, TypeError, RecursionError, OSError) as e:  # from_dict says ValueError; the rest: unreadable
        why = " ".join(str(e).split())[:160]
        raise ModelError(f"model config '{path / 'config.json'}' is invalid ({why})") from None
    mcfg = config.model
    try:
        tensors = load_file(str(path / "model.safetensors"))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ModelError(f"model weights '{path / 'model.safetensors'}' are corrupt ({str(e)[:80]})") from None
    for key, value in tensors.items():  # NaN or inf (a damaged file) would narrate silence
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ModelError(f"model weights '{path / 'model.safetensors'}' are corrupt: '{key}' "
                             f"holds NaN or infinite values")
    # Each Mamba layer holds at least 3 * expand * d_model**2 weights (its in and out
    # projections), all of which must be in the file: a config claiming more is refused before
    # the model is allocated for it.
    least = mcfg.n_layers * 3 * mcfg.expand * mcfg.d_model ** 2
    if least > sum(v.numel() for k, v in tensors.items() if not k.startswith("codec.")):
        raise ModelError(f"model config '{path / 'config.json'}' is invalid (its model needs at "
                         f"least {least:,} weights, more than model.safetensors holds)")
    codec_tensors = {k[len("codec."):]: v.float() for k, v in tensors.items() if k.startswith("codec.")}
    weights = {k: v.float() for k, v in tensors.items() if not k.startswith("codec.")}
    try:
        codec = codec_from_config(config.to_dict()["codec"], codec_tensors)
        model = NarrateModel(mcfg)
        model.load_state_dict(weights, strict=True)
    except (RuntimeError, ValueError, KeyError) as e:
        raise ModelError(f"model weights '{path}' do not match its config ({str(e).splitlines()[0][:100]})") from None
    if vocoder not in VOCODERS:
        raise ModelError(f"unknown vocoder '{vocoder}' (known: {', '.join(VOCODERS)})")
    if vocoder == "auto":
        vocoder = config.default_vocoder  # (the folder's own choice; "auto" again if it makes none)
    if vocoder == "source-filter":
        from narrate.codec.mel_rvq import MelRVQCodec

        if not isinstance(codec, MelRVQCodec):
            raise ModelError(f"model '{path}': its codec '{config.codec.name}' takes no source-filter vocoder")
        codec.pitch_track = load_pitch_track(path, codec.mel_cfg.n_mels)
        codec.post_net = load_post_net(path, codec.pitch_track)
    elif vocoder != "griffin-lim":
        net = load_vocoder(path, config)
        if net is None and vocoder == "neural":
            raise ModelError(f"model '{path}' has no neural vocoder ({VOCODER_FILE} and a 'vocoder' section "
                             "in config.json); use --vocoder griffin-lim")
        if net is not None:
            if not hasattr(codec, "vocoder"):
                raise ModelError(f"model '{path}': its codec '{config.codec.name}' takes no neural vocoder")
            codec.vocoder = net
    return LoadedModel(path.name if path.parent == MODELS_DIR else str(id_or_path or path.name), path, config, model.eval(), codec)


def save_pretrained(folder: Path, config: dict, model: torch.nn.Module, codec, dtype=torch.float16) -> None:
    """Write config.json + model.safetensors (weights in ``dtype``; the codec's in float32). A
    neural vocoder already in the folder is kept (``carry_vocoder``)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    previous = folder / "config.json"
    config = carry_vocoder(json.loads(previous.read_text(encoding="utf-8")) if previous.exists() else None, folder, config)
    tensors = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"codec.{k}": v.detach().float().contiguous() for k, v in codec.state_dict().items()})
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config, indent=1, ensure_ascii=False), encoding="utf-8")


def load_vocoder(path: Path, config: ModelFolderConfig):
    """The folder's neural vocoder (float32, eval mode), or None if it has none."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from narrate.codec.vocos import Vocos

    if config.vocoder is None or not (path / VOCODER_FILE).exists():
        return None
    try:
        net = Vocos(config.vocoder)
    except (ValueError, TypeError, RuntimeError) as e:
        raise ModelError(f"model config '{path / 'config.json'}': its 'vocoder' section is invalid ({e})") from None
    try:
        tensors = load_file(str(path / VOCODER_FILE))
        net.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=True)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ModelError(f"vocoder weights '{path / VOCODER_FILE}' are corrupt or do not match the config "
                         f"({str(e).splitlines()[0][:80]})") from None
    return net.eval()


def load_pitch_track(path: Path, n_mels: int):
    """The folder's pitch track (narrate.codec.pitch_track), for the source-filter vocoder."""
    from narrate.codec.pitch_track import load

    file = path / PITCH_TRACK_FILE
    if not file.exists():
        raise ModelError(f"model '{path}' has no pitch track ({PITCH_TRACK_FILE}) for the source-filter "
                         "vocoder; use --vocoder neural or griffin-lim")
    try:
        track = load(str(file))
    except Exception as e:  # safetensors, json or torch on a damaged file: each its own error type
        raise ModelError(f"pitch track '{file}' is corrupt or invalid ({' '.join(str(e).split())[:100]})") from None
    if track.cfg.n_mels != n_mels:
        raise ModelError(f"pitch track '{file}' reads {track.cfg.n_mels} mel bands; the model's codec has {n_mels}")
    return track


def load_post_net(path: Path, track):
    """The folder's post-net (narrate.codec.post_net), or None if it has none."""
    from narrate.codec.post_net import load

    file = path / POST_NET_FILE
    if not file.exists():
        return None
    try:
        net = load(str(file))
    except Exception as e:  # safetensors, json or torch on a damaged file: each its own error type
        raise ModelError(f"post-net '{file}' is corrupt or invalid ({' '.join(str(e).split())[:100]})") from None
    if net.cfg.n_mels != track.cfg.n_mels:
        raise ModelError(f"post-net '{file}' reads {net.cfg.n_mels} mel bands; the model's codec has {track.cfg.n_mels}")
    if net.cfg.lookahead > track.cfg.lookahead:
        raise ModelError(f"post-net '{file}' looks {net.cfg.lookahead} frames ahead, more than the pitch track's "
                         f"{track.cfg.lookahead}")
    return net


def save_vocoder(folder: Path, net, extra: dict | None = None, dtype=torch.float16) -> None:
    """Write vocoder.safetensors (weights in ``dtype``) and the "vocoder" section of the folder's
    config.json (the architecture, the file, ``extra`` such as where its teacher came from); the
    rest of config.json is kept."""
    from safetensors.torch import save_file

    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.exists():
        raise ModelError(f"'{folder}' is not a model folder (no config.json)")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    save_file({k: v.detach().to(dtype).contiguous() for k, v in net.state_dict().items()}, str(folder / VOCODER_FILE))
    config["vocoder"] = {**net.cfg.to_dict(), "file": VOCODER_FILE, **(extra or {})}
    config_path.write_text(json.dumps(config, indent=1, ensure_ascii=False), encoding="utf-8")


def carry_vocoder(old_config: dict | None, folder: Path, config: dict) -> dict:
    """``config`` with the "vocoder" section of the folder's previous config, when the folder
    holds its vocoder.safetensors and ``config`` has no vocoder of its own (a re-exported model
    keeps its vocoder: the vocoder depends on the mel frames only, not on the model)."""
    if old_config and "vocoder" in old_config and "vocoder" not in config and (Path(folder) / VOCODER_FILE).exists():
        return {**config, "vocoder": old_config["vocoder"]}
    return config
