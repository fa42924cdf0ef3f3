"""Per-frame voicing and F0 from the model's log-mel frames, for a source-filter vocoder.

The model's frames are averaged codec vectors with little harmonic structure: the F0 is not read
off them but predicted from what they do carry (energy, spectral tilt, phone identity) over about
1.5 s of context. F0 is relative to the speaker's median pitch, in octaves: at run time
``F0 = median_pitch(prompt) * 2 ** rel`` (``narrate.pitch.median_pitch``; ``to_hz``).

The network is a ``narrate.codec.frame_net.FrameNet`` with two outputs; ``PitchTrackStream``
runs it on frames pushed in any chunks: the same outputs as ``PitchTrack.forward`` on the whole
sequence. Trained by ``narrate.train.pitch_track``.
"""

from __future__ import annotations

import numpy as np
import torch

from narrate.codec import frame_net
from narrate.codec.frame_net import FrameNet, FrameNetConfig, FrameNetStream


class PitchTrack(FrameNet):
    """log-mel [B, T, n_mels] -> (voicing logit [B, T], F0 relative to the speaker's median in
    octaves [B, T])."""

    def __init__(self, cfg: FrameNetConfig = FrameNetConfig()):  # noqa: B008 (frozen dataclass)
        super().__init__(cfg, 2)

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.outputs(mel)
        return y[:, 0], y[:, 1]


class PitchTrackStream(FrameNetStream):
    """Frames in, in any chunks; per-frame (voicing logit, relative log2 F0) out as soon as the
    lookahead has arrived: ``push`` returns those outputs (maybe none), ``flush`` the rest at the
    end. Together the same as ``PitchTrack.forward`` on all the frames (to float rounding)."""

    def push(self, frames: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[override]
        y = super().push(frames)
        return y[0].copy(), y[1].copy()

    def flush(self) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[override]
        """The last frames' outputs (as if ``lookahead`` silent frames followed); resets."""
        y = super().flush()
        return y[0].copy(), y[1].copy()


def to_hz(voicing_logit: np.ndarray, rel: np.ndarray, median_hz: float | np.ndarray,
          threshold: float = 0.0) -> np.ndarray:
    """Per-frame F0 in Hz, 0 where unvoiced: ``median_hz * 2 ** rel`` where the logit > threshold."""
    return np.where(np.asarray(voicing_logit) > threshold, median_hz * np.exp2(np.asarray(rel, np.float64)), 0.0)


def load(path: str) -> PitchTrack:
    """A trained predictor from its safetensors file (config in the metadata). ValueError for an
    invalid config or non-finite weights."""
    return frame_net.load(path, PitchTrack)


def save(model: PitchTrack, path: str, dtype: torch.dtype = torch.float32) -> None:
    """The predictor and its config (in the file's metadata), as ``load`` reads them."""
    frame_net.save(model, path, dtype)
