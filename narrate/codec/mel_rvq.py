"""The offline default codec: log-mel frames quantized by residual vector quantization.

Codebooks are learned here by k-means on the training corpus (``fit``); decoding sums the
chosen code vectors back into a log-mel frame and makes it audio with the source filter when a
pitch track is given (``narrate.codec.pitched``), else with the model's neural vocoder
(``narrate.codec.vocos``) when it has one, else with Griffin-Lim.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from narrate.codec.base import Codec, StreamDecoder
from narrate.codec.mel import MelConfig, MelSpec, StreamingVocoder
from narrate.codec.pitch_track import PitchTrack
from narrate.codec.post_net import PostNet
from narrate.codec.pitched import PitchedVocoder
from narrate.codec.vocos import StreamingNeuralVocoder, Vocos


class MelRVQCodec(Codec):
    name = "mel_rvq"

    def __init__(self, mel_cfg: MelConfig, codebooks: torch.Tensor, vocoder: Vocos | None = None):
        self.mel_cfg = mel_cfg
        self.vocoder = vocoder  # the neural vocoder; None: Griffin-Lim
        self.pitch_track: PitchTrack | None = None  # set: the source filter instead of either
        self.post_net: PostNet | None = None  # with the source filter: its frames sharpened first
        self.spec = MelSpec(mel_cfg)
        self.codebooks = codebooks.float()  # [K, C, M]
        self.sample_rate = mel_cfg.sample_rate
        self.frame_rate = mel_cfg.sample_rate / mel_cfg.hop
        self.codebook_sizes = [codebooks.shape[1]] * codebooks.shape[0]

    @classmethod
    def from_config(cls, config: dict, tensors: dict[str, torch.Tensor]) -> "MelRVQCodec":
        mel_cfg = MelConfig(**config.get("mel", {}))
        if "codebooks" not in tensors:
            raise ValueError("mel_rvq codec needs its learned 'codebooks' tensor")
        return cls(mel_cfg, tensors["codebooks"])

    def config(self) -> dict:
        return {"name": self.name, "mel": self.mel_cfg.__dict__, "n_codebooks": self.n_codebooks,
                "codebook_size": self.codebook_sizes[0]}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"codebooks": self.codebooks}

    # --- features <-> codes -------------------------------------------------------------
    def quantize(self, feats: torch.Tensor) -> torch.Tensor:
        """[T, M] -> [K, T] nearest code per stage on the running residual."""
        residual = feats.float()
        codes = []
        for cb in self.codebooks:
            idx = torch.cdist(residual, cb).argmin(-1)
            codes.append(idx)
            residual = residual - cb[idx]
        return torch.stack(codes)

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """[K, T] -> [T, M]."""
        return sum(cb[c] for cb, c in zip(self.codebooks, codes))

    def encode(self, wav: np.ndarray) -> torch.Tensor:
        return self.quantize(self.spec.features(wav))

    @property
    def vocoder_name(self) -> str:
        if self.pitch_track is not None:
            return "source-filter"
        return "griffin-lim" if self.vocoder is None else "neural"

    def vocode(self, logmel: torch.Tensor, pitch: float = math.nan) -> np.ndarray:
        """[T, M] log-mel -> [T * hop] float32, in one pass. pitch: the voice's median pitch (Hz),
        for the source filter."""
        if self.pitch_track is not None:
            pitched = PitchedVocoder(self.pitch_track, self.mel_cfg, post_net=self.post_net)
            pitched.speak_at(pitch)
            return pitched.vocode(logmel)
        return self.spec.vocode(logmel) if self.vocoder is None else self.vocoder.vocode(logmel)

    def decode(self, codes: torch.Tensor) -> np.ndarray:
        return self.vocode(self.dequantize(codes))

    def stream_decoder(self, kernel: bool | None = None) -> StreamDecoder:
        return _MelStreamDecoder(self, self.spec.kernel if kernel is None else kernel)

    @staticmethod
    def fit(feats: torch.Tensor, n_codebooks: int, size: int, iters: int = 12, seed: int = 0) -> torch.Tensor:
        """k-means per residual stage on [N, M] frames -> codebooks [K, C, M]."""
        g = torch.Generator().manual_seed(seed)
        residual = feats.float().clone()
        books = []
        for _ in range(n_codebooks):
            cb = residual[torch.randperm(len(residual), generator=g)[:size]].clone()
            for _ in range(iters):
                idx = _nearest(residual, cb)
                sums = torch.zeros_like(cb).index_add_(0, idx, residual)
                counts = torch.bincount(idx, minlength=size).float()
                empty = counts == 0
                cb = torch.where(empty[:, None], residual[torch.randint(len(residual), (size,), generator=g)],
                                 sums / counts.clamp_min(1)[:, None])
            idx = _nearest(residual, cb)
            residual = residual - cb[idx]
            books.append(cb)
        return torch.stack(books)


def _nearest(x: torch.Tensor, cb: torch.Tensor, block: int = 65536) -> torch.Tensor:
    return torch.cat([torch.cdist(x[i : i + block], cb).argmin(-1) for i in range(0, len(x), block)])


class _MelStreamDecoder(StreamDecoder):
    def __init__(self, codec: MelRVQCodec, kernel: bool):
        self.codec = codec
        self.vocoder: StreamingVocoder | StreamingNeuralVocoder | PitchedVocoder
        if codec.pitch_track is not None:
            self.vocoder = PitchedVocoder(codec.pitch_track, codec.mel_cfg, post_net=codec.post_net)
        elif codec.vocoder is not None:
            self.vocoder = StreamingNeuralVocoder(codec.vocoder)
        else:
            self.vocoder = StreamingVocoder(codec.spec, kernel)

    def push(self, codes: torch.Tensor) -> np.ndarray:
        return self.vocoder.push(self.codec.dequantize(codes))

    def push_features(self, feats: torch.Tensor) -> np.ndarray:
        """Continuous frames [T, M] (the model's expected value of the codes)."""
        return self.vocoder.push(feats)

    def flush(self) -> np.ndarray:
        return self.vocoder.flush()

    def speak_at(self, pitch: float) -> None:
        if isinstance(self.vocoder, PitchedVocoder):
            self.vocoder.speak_at(pitch)
