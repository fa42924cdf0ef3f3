"""The offline default codec: log-mel frames quantized by residual vector quantization.

Codebooks are learned here by k-means on the training corpus (``fit``); decoding sums the
chosen code vectors back into a log-mel frame and makes it audio with the model's neural
vocoder (``narrate.codec.vocos``) when it has one, else with Griffin-Lim.
"""

from __future__ import annotations

import numpy as np
import torch

from narrate.codec.base import Codec, StreamDecoder
from narrate.codec.mel import MelConfig, MelSpec, StreamingVocoder
from narrate.codec.vocos import StreamingNeuralVocoder, Vocos


class MelRVQCodec(Codec):
    name = "mel_rvq"

    def __init__(self, mel_cfg: MelConfig, codebooks: torch.Tensor, vocoder: Vocos | None = None):
        self.mel_cfg = mel_cfg
        self.vocoder = vocoder  # the neural vocoder; None: Griffin-Lim
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
        return "griffin-lim" if self.vocoder is None else "neural"

    def vocode(self, logmel: torch.Tensor) -> np.ndarray:
        """[T, M] log-mel -> [T * hop] float32, in one pass."""
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
        self.vocoder: StreamingVocoder | StreamingNeuralVocoder = (
            StreamingVocoder(codec.spec, kernel) if codec.vocoder is None else StreamingNeuralVocoder(codec.vocoder))

    def push(self, codes: torch.Tensor) -> np.ndarray:
        return self.vocoder.push(self.codec.dequantize(codes))

    def push_features(self, feats: torch.Tensor) -> np.ndarray:
        """Continuous frames [T, M] (the model's expected value of the codes)."""
        return self.vocoder.push(feats)

    def flush(self) -> np.ndarray:
        return self.vocoder.flush()
