"""The post-net: the model's log-mel frames made sharper before the source filter shapes its
excitation with them.

The model emits the expected value of its codebooks' vectors, an average that blurs the frames:
their spectral envelopes are about 2.5 times smoother across 1-8 kHz than the teacher's, and
they change about 15% less from frame to frame (measured on the benchmark's sentences). The
post-net is a ``narrate.codec.frame_net.FrameNet`` whose outputs are a correction added to each
frame, trained (``narrate.train.post_net``) to map the model's ground-truth-aligned frames
(``narrate.train.gta``) to the true ones. It sees ``lookahead`` frames ahead, as the pitch track
does, so running it beside the track adds no delay (``narrate.codec.pitched``). A model folder
uses one when it holds ``post_net.safetensors``; the bundled narrate-joe holds none: the one
trained on 2026-12-08 helped joe and hurt voices outside joe's family (README, "The vocoder").
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch

from narrate.codec import frame_net
from narrate.codec.frame_net import FrameNet, FrameNetConfig, FrameNetStream, take_rows


class PostNet(FrameNet):
    """log-mel [B, T, n_mels] -> the same frames corrected [B, T, n_mels]. The last layer starts at
    zero: an untrained post-net gives its input back."""

    def __init__(self, cfg: FrameNetConfig = FrameNetConfig()):  # noqa: B008 (frozen dataclass)
        super().__init__(cfg, cfg.n_mels)
        with torch.no_grad():
            self.out.weight.zero_()
            self.out.bias.zero_()  # type: ignore[union-attr]

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return mel.float() + self.outputs(mel).transpose(1, 2)


class PostNetStream:
    """Frames in, in any chunks; corrected frames [n, n_mels] out as soon as their lookahead has
    arrived (``push``), the rest at the end (``flush``): together the same as ``PostNet.forward``
    on all the frames (to float rounding)."""

    def __init__(self, model: PostNet):
        self.net = FrameNetStream(model)
        self.waiting: deque = deque()  # (frames,) pushed whose correction has not come out

    def push(self, frames: torch.Tensor | np.ndarray) -> np.ndarray:
        mel = np.asarray(frames.detach().float().numpy() if isinstance(frames, torch.Tensor) else frames, np.float32)
        if len(mel):
            self.waiting.append((mel,))
        return self._corrected(self.net.push(mel))

    def flush(self) -> np.ndarray:
        out = self._corrected(self.net.flush())
        assert not self.waiting  # (every frame pushed has had its correction)
        return out

    def _corrected(self, delta: np.ndarray) -> np.ndarray:
        """The oldest waiting frames plus their corrections ``delta`` [n_mels, n]."""
        if delta.shape[1] == 0:
            return np.zeros((0, delta.shape[0]), np.float32)
        (mel,) = take_rows(self.waiting, delta.shape[1])
        return mel + delta.T

def load(path: str) -> PostNet:
    """A trained post-net from its safetensors file (config in the metadata). ValueError for an
    invalid config or non-finite weights."""
    return frame_net.load(path, PostNet)


def save(model: PostNet, path: str, dtype: torch.dtype = torch.float32) -> None:
    """The post-net and its config (in the file's metadata), as ``load`` reads them."""
    frame_net.save(model, path, dtype)
