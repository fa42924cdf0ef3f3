"""A model folder's config.json, typed and checked once, when the folder is loaded.

config.json has five sections: ``model`` (the decoder's architecture, ``ModelConfig``),
``codec`` (how frames become codes and audio), ``text`` (how text becomes the model's token
ids), ``default_voice`` and ``speed_range``; a folder with a neural vocoder adds ``vocoder``
(``VocoderConfig``). ``ModelFolderConfig.from_dict`` refuses, with a ValueError naming the
field, anything missing, of the wrong type, outside its sane range, or at odds with another
section, so nothing after loading meets a malformed config.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, fields
from typing import Literal

from narrate.codec.mel import MelConfig
from narrate.codec.vocos import VocoderConfig
from narrate.engine.config import ModelConfig
from narrate.text.phonemes import PAD, SPACE

# Sane bounds of the numbers: a model or codec outside them would allocate without limit (a
# d_model or n_fft of 10**9) or divide by zero (a hop of 0).
_MODEL_LIMITS = {
    "vocab_size": (1, 1 << 16), "d_model": (1, 4096), "n_layers": (1, 64), "d_state": (1, 256),
    "d_conv": (1, 16), "expand": (1, 8), "cross_every": (1, 64), "n_heads": (1, 64),
    "enc_convs": (0, 16), "enc_layers": (0, 32), "reduction": (1, 16), "n_codebooks": (1, 64),
    "codebook_size": (2, 1 << 16), "feature_dim": (1, 1024), "speaker_dim": (1, 4096),
    "speaker_tokens": (1, 64), "prompt_tokens": (0, 256), "band_back": (0, 256), "band_ahead": (0, 256),
    "semantic_classes": (2, 64), "rope_base": (1.0, 1e9), "prenet_dropout": (0.0, 1.0),
}
_MEL_LIMITS = {
    "sample_rate": (8000, 192000), "n_fft": (16, 16384), "hop": (1, 16384), "n_mels": (1, 512),
    "fmin": (0.0, 96000.0), "fmax": (1.0, 96000.0), "gl_iters": (0, 1000),
}
_VOCODER_LIMITS = {"n_mels": (1, 512), "dim": (1, 4096), "intermediate": (1, 16384), "layers": (1, 64),
                   "kernel": (1, 63), "n_fft": (16, 16384), "hop": (1, 16384)}
_ESPEAK_VOICE = re.compile(r"[A-Za-z0-9_+-]{1,40}")
CODECS = ("mel_rvq", "encodec")


@dataclass(frozen=True)
class TextConfig:
    """How text becomes the model's token ids."""

    id_map: dict[str, tuple[int, ...]]  # phoneme -> its token ids (piper's phoneme id map)
    espeak_voice: str = "en-us"         # the espeak-ng voice that phonemizes
    phonemizer: Literal["espeak"] = "espeak"


@dataclass(frozen=True)
class CodecConfig:
    """How frames become codes and audio: the backend's name and its settings."""

    name: Literal["mel_rvq", "encodec"]
    n_codebooks: int | None = None
    codebook_size: int | None = None
    mel: MelConfig | None = None        # mel_rvq: the log-mel frames' configuration
    bandwidth: float = 6.0              # encodec: kbit/s (sets its number of codebooks)
    checkpoint: str | None = None       # encodec: a local weights file
    pretrained: bool = True             # encodec: load that file


VOCODERS = ("auto", "neural", "griffin-lim", "source-filter")  # frames to audio (narrate.hub.from_pretrained)


@dataclass(frozen=True)
class ModelFolderConfig:
    """config.json of a model folder, checked (``from_dict``)."""

    model: ModelConfig
    codec: CodecConfig
    text: TextConfig
    default_voice: str = "joe"                      # the voice used without --voice
    # what --vocoder auto picks: "auto" (the neural vocoder when the folder has one, else
    # Griffin-Lim) or one of the others the folder holds (measured better for this model)
    default_vocoder: str = "auto"
    speed_range: tuple[float, float] = (0.25, 4.0)  # the speeds the model was trained for
    vocoder: VocoderConfig | None = None            # the neural vocoder's architecture, if any
    source: dict | None = None                      # config.json as read (``to_dict``)
    # the expected frames' softmax temperature it is narrated with (narrate.engine.stepping), as
    # measured best for it; NarrateSettings.mean_temperature overrides it
    mean_temperature: float = 1.0

    def to_dict(self) -> dict:
        """config.json as read (a copy): what is written back beside re-exported weights."""
        return copy.deepcopy(self.source) if self.source is not None else {}

    @classmethod
    def from_dict(cls, config) -> "ModelFolderConfig":
        """ValueError naming the first field that is missing, of the wrong type, out of range
        or inconsistent with another section."""
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
        for key in ("model", "codec", "text"):
            if not isinstance(config.get(key), dict):
                raise ValueError(f"'{key}' is missing or not an object")
        model = _model(config["model"])
        codec = _codec(config["codec"])
        text = _text(config["text"])
        if codec.n_codebooks is not None and codec.n_codebooks != model.n_codebooks:
            raise ValueError(f"codec.n_codebooks ({codec.n_codebooks}) is not model.n_codebooks ({model.n_codebooks})")
        if codec.codebook_size is not None and codec.codebook_size != model.codebook_size:
            raise ValueError(f"codec.codebook_size ({codec.codebook_size}) is not model.codebook_size "
                             f"({model.codebook_size})")
        if codec.mel is not None and codec.mel.n_mels != model.feature_dim:
            raise ValueError(f"codec.mel.n_mels ({codec.mel.n_mels}) is not model.feature_dim ({model.feature_dim})")
        top = max(i for ids in text.id_map.values() for i in ids)
        if top >= model.vocab_size:
            raise ValueError(f"text.id_map has id {top}, beyond model.vocab_size ({model.vocab_size})")
        speeds = config.get("speed_range", [0.25, 4.0])
        if not (isinstance(speeds, list) and len(speeds) == 2 and all(_is_number(x) for x in speeds)
                and 0 < speeds[0] <= 1 <= speeds[1] <= 10):
            raise ValueError("speed_range is not [low, high] around 1")
        voice = config.get("default_voice", "joe")
        if not (isinstance(voice, str) and voice.strip()):
            raise ValueError("default_voice is not a voice name")
        default_vocoder = config.get("default_vocoder", "auto")
        if default_vocoder not in VOCODERS:
            raise ValueError(f"default_vocoder is not one of {', '.join(VOCODERS)}")
        mean_temperature = config.get("mean_temperature", 1.0)
        if not (_is_number(mean_temperature) and 0.05 <= mean_temperature <= 2.0):
            raise ValueError("mean_temperature is not a number from 0.05 to 2")
        vocoder = None
        if config.get("vocoder") is not None:
            vocoder = _vocoder(config["vocoder"])
            if codec.mel is not None and vocoder.n_mels != codec.mel.n_mels:
                raise ValueError(f"vocoder.n_mels ({vocoder.n_mels}) is not codec.mel.n_mels ({codec.mel.n_mels})")
        return cls(model, codec, text, voice, default_vocoder, (float(speeds[0]), float(speeds[1])), vocoder,
                   copy.deepcopy(config), float(mean_temperature))


def _model(section: dict) -> ModelConfig:
    names = {f.name for f in fields(ModelConfig)}
    unknown = sorted(set(section) - names)
    if unknown:
        raise ValueError(f"model has unknown keys {unknown[:5]}")
    _check_numbers("model", section, _MODEL_LIMITS)
    if not isinstance(section.get("voice_stats", False), bool):
        raise ValueError("model.voice_stats is not true or false")
    groups = section.get("codebook_groups", [])
    if not (isinstance(groups, list) and all(_is_int(g) and 0 < g <= 64 for g in groups)):
        raise ValueError("model.codebook_groups is not a list of small positive integers")
    try:
        return ModelConfig.from_dict(section)
    except ValueError as e:  # ModelConfig's own checks (groups add up, heads divide d_model)
        raise ValueError(f"model: {e}") from None


def _codec(section: dict) -> CodecConfig:
    name = section.get("name")
    if name not in CODECS:
        raise ValueError(f"codec.name {str(name)[:40]!r} is not one of {', '.join(CODECS)}")
    _check_numbers("codec", section, {"n_codebooks": (1, 64), "codebook_size": (2, 1 << 16)})
    known = {"name", "n_codebooks", "codebook_size", "mel"} | ({"bandwidth", "checkpoint", "pretrained"}
                                                               if name == "encodec" else set())
    unknown = sorted(set(section) - known)
    if unknown:
        raise ValueError(f"codec has unknown keys {unknown[:5]} for the {name} codec")
    mel = None
    if name == "mel_rvq":
        mel = _mel(section.get("mel", {}))
    if name == "encodec":
        if not _is_number(section.get("bandwidth", 6.0)):
            raise ValueError("codec.bandwidth is not a number")
        if not isinstance(section.get("checkpoint", ""), (str, type(None))):
            raise ValueError("codec.checkpoint is not a file name")
        if not isinstance(section.get("pretrained", True), bool):
            raise ValueError("codec.pretrained is not true or false")
    return CodecConfig(name, section.get("n_codebooks"), section.get("codebook_size"), mel,
                       float(section.get("bandwidth", 6.0)), section.get("checkpoint"), section.get("pretrained", True))


def _mel(section) -> MelConfig:
    if not isinstance(section, dict):
        raise ValueError("codec.mel is not an object")
    unknown = sorted(set(section) - {f.name for f in fields(MelConfig)})
    if unknown:
        raise ValueError(f"codec.mel has unknown keys {unknown[:5]}")
    _check_numbers("codec.mel", {k: v for k, v in section.items() if not (k == "fmax" and v is None)}, _MEL_LIMITS)
    mel = MelConfig(**section)
    if mel.hop > mel.n_fft:
        raise ValueError("codec.mel.hop is larger than its n_fft")
    return mel


def _text(section: dict) -> TextConfig:
    id_map = section.get("id_map")
    if not (isinstance(id_map, dict) and id_map and len(id_map) <= 1 << 16 and all(
            isinstance(k, str) and isinstance(v, list) and v and all(_is_int(i) and 0 <= i < 1 << 16 for i in v)
            for k, v in id_map.items())):
        raise ValueError("text.id_map is not a map of phonemes to lists of ids")
    for symbol, what in ((PAD, "padding"), (SPACE, "word space")):
        if symbol not in id_map:
            raise ValueError(f"text.id_map has no {what} symbol {symbol!r}")
    voice = section.get("espeak_voice", "en-us")
    if not (isinstance(voice, str) and _ESPEAK_VOICE.fullmatch(voice)):
        raise ValueError(f"text.espeak_voice {str(voice)[:40]!r} is not an espeak-ng voice name")
    if section.get("phonemizer", "espeak") != "espeak":
        raise ValueError(f"text.phonemizer {str(section['phonemizer'])[:40]!r} is not 'espeak'")
    return TextConfig({k: tuple(v) for k, v in id_map.items()}, voice)


def _vocoder(section) -> VocoderConfig:
    if not isinstance(section, dict):
        raise ValueError("vocoder is not an object")
    _check_numbers("vocoder", section, _VOCODER_LIMITS)
    try:
        return VocoderConfig.from_dict(section)
    except (ValueError, TypeError) as e:
        raise ValueError(f"vocoder: {e}") from None


def _check_numbers(where: str, values: dict, limits: dict) -> None:
    for key, (low, high) in limits.items():
        if key not in values:
            continue
        value = values[key]
        whole = isinstance(low, int)
        if not (_is_int(value) if whole else _is_number(value)) or not low <= value <= high:
            kind = "an integer" if whole else "a number"
            raise ValueError(f"{where}.{key} = {str(value)[:20]} is not {kind} from {low:g} to {high:g}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)
