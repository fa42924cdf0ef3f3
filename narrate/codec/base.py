"""The codec interface every backend implements, and the registry that picks one by config."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch


class StreamDecoder(ABC):
    """Turns codes into audio incrementally; holds only a bounded amount of context."""

    @abstractmethod
    def push(self, codes: torch.Tensor) -> np.ndarray:
        """codes [K, T] -> the samples that are final so far (may be empty)."""

    def push_features(self, feats: torch.Tensor) -> np.ndarray:
        """Continuous frames [T, F] in the codebooks' vector space (a model's expected value of
        the codes). Only codecs whose codes are vectors in a feature space support this."""
        raise NotImplementedError(f"{type(self).__name__} decodes codes only")

    @abstractmethod
    def flush(self) -> np.ndarray:
        """The remaining samples (end of stream)."""

    def speak_at(self, pitch: float) -> None:
        """The frames pushed from now on are a voice of this median pitch (Hz). Only a vocoder
        that follows a pitch (narrate.codec.pitched) uses it; the others read pitch off the frames."""
        return None


class Codec(ABC):
    """encode: waveform [S] float32 at ``sample_rate`` -> codes [K, T]; decode: codes -> waveform."""

    name: str
    sample_rate: int
    frame_rate: float
    codebook_sizes: list[int]

    @property
    def n_codebooks(self) -> int:
        return len(self.codebook_sizes)

    @abstractmethod
    def encode(self, wav: np.ndarray) -> torch.Tensor:
        """[S] float32 -> [K, T] int64."""

    @abstractmethod
    def decode(self, codes: torch.Tensor) -> np.ndarray:
        """[K, T] -> [S] float32."""

    @abstractmethod
    def stream_decoder(self, kernel: bool | None = None) -> StreamDecoder:
        """A fresh incremental decoder; kernel: the backend (``narrate.kernels.choose``; None:
        the codec's own choice), where the codec has operations of ours."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Learned tensors (saved beside the model's weights under the prefix ``codec.``)."""
        return {}


def codec_from_config(config: dict, tensors: dict[str, torch.Tensor] | None = None) -> Codec:
    """Build the backend named by ``config["name"]`` (tensors: learned codec weights, if any)."""
    name = config["name"]
    if name == "mel_rvq":
        from narrate.codec.mel_rvq import MelRVQCodec

        return MelRVQCodec.from_config(config, tensors or {})
    if name == "encodec":
        from narrate.codec.encodec_backend import EncodecCodec

        return EncodecCodec.from_config(config)
    raise ValueError(f"unknown codec '{name}' (known: mel_rvq, encodec)")
