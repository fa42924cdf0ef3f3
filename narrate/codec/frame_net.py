"""A small network over the model's log-mel frames that the vocoder runs beside it: a stack of
causal dilated 1-D convolutions with residual connections, whose output for frame t is read
``lookahead`` frames later (the input is padded with that many silent frames at the end), so it
sees frames up to t + lookahead and about ``history`` frames back.

Two networks share it: the pitch track (``narrate.codec.pitch_track``: voicing and F0 per frame)
and the post-net (``narrate.codec.post_net``: the frames made sharper). ``FrameNetStream`` runs one
on frames pushed in any chunks, keeping each convolution's input history as its state: the same
outputs as ``FrameNet.outputs`` on the whole sequence (to float rounding), on numpy matrices (a
push of the decoder's 3 frames is a few dozen small products, where torch's per-operation
overhead would cost more than the arithmetic). A file holds the weights and, in its metadata, the
config.
"""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SILENCE = math.log(1e-5)   # the log-mel floor (narrate.codec.mel.MelSpec.features): a silent frame


@dataclass(frozen=True)
class FrameNetConfig:
    n_mels: int = 80
    channels: int = 96
    kernel: int = 3
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    lookahead: int = 6   # frames after t that frame t's output sees (the decoder gives 3 a step)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["dilations"] = list(self.dilations)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FrameNetConfig:
        """ValueError for unknown fields, or sizes outside sane bounds (a file names them)."""
        if not isinstance(d, dict) or set(d) - set(cls.__dataclass_fields__):
            raise ValueError(f"unknown frame network config fields: {sorted(set(d) - set(cls.__dataclass_fields__)) if isinstance(d, dict) else d!r}")
        cfg = cls(**{**d, "dilations": tuple(d.get("dilations", cls.dilations))})
        sizes = [("n_mels", cfg.n_mels, 1, 512), ("channels", cfg.channels, 1, 1024), ("kernel", cfg.kernel, 1, 15),
                 ("lookahead", cfg.lookahead, 0, 64), ("dilations", len(cfg.dilations), 1, 16)]
        sizes += [("dilation", x, 1, 512) for x in cfg.dilations]
        for name, value, low, high in sizes:
            if not (isinstance(value, int) and not isinstance(value, bool) and low <= value <= high):
                raise ValueError(f"{name} {value!r} is not a whole number in [{low}, {high}]")
        return cfg

    @property
    def history(self) -> int:
        """Past frames an output sees (its receptive field before the frame itself)."""
        return sum((self.kernel - 1) * d for d in self.dilations)


class FrameNet(nn.Module):
    """log-mel [B, T, n_mels] -> ``outputs`` [B, n_out, T]. ``mean``/``std`` [n_mels] normalise the
    input (set from training data)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, cfg: FrameNetConfig, n_out: int):
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        self.register_buffer("mean", torch.zeros(cfg.n_mels))
        self.register_buffer("std", torch.ones(cfg.n_mels))
        self.inp = nn.Conv1d(cfg.n_mels, c, 1)
        self.convs = nn.ModuleList(nn.Conv1d(c, c, cfg.kernel, dilation=d) for d in cfg.dilations)
        self.mixes = nn.ModuleList(nn.Conv1d(c, c, 1) for _ in cfg.dilations)
        self.out = nn.Conv1d(c, n_out, 1)

    def pads(self) -> list[int]:
        return [(self.cfg.kernel - 1) * d for d in self.cfg.dilations]

    def _run(self, mel: torch.Tensor, states: list[torch.Tensor] | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Causal pass over mel [B, T, M]; ``states``: each conv's last ``pad`` input frames
        [B, C, pad] (None: zeros, the start). Returns ([B, n_out, T], the new states)."""
        x = (mel.float() - self.mean) / self.std
        h = F.leaky_relu(self.inp(x.transpose(1, 2)), 0.1)
        new: list[torch.Tensor] = []
        for i, (conv, mix, pad) in enumerate(zip(self.convs, self.mixes, self.pads())):
            past = h.new_zeros(h.shape[0], h.shape[1], pad) if states is None else states[i]
            full = torch.cat([past, h], dim=2)
            new.append(full[:, :, full.shape[2] - pad:])
            h = h + mix(F.leaky_relu(conv(full), 0.1))
        return self.out(F.leaky_relu(h, 0.1)), new

    def outputs(self, mel: torch.Tensor) -> torch.Tensor:
        """mel [B, T, M] -> [B, n_out, T], each frame's output seeing ``lookahead`` frames on (silence
        after the last)."""
        la = self.cfg.lookahead
        if la:
            mel = torch.cat([mel.float(), mel.new_full((mel.shape[0], la, mel.shape[2]), SILENCE).float()], dim=1)
        y, _ = self._run(mel, None)
        return y[:, :, la:]


@dataclass
class StreamState:
    """What a stream keeps between pushes: each conv's last ``pad`` input frames [C, pad] (None
    before the first push: zeros) and how many frames have gone in and come out (the outputs lag
    the inputs by the lookahead)."""
    convs: list[np.ndarray] | None = None
    frames_in: int = 0
    frames_out: int = 0


class FrameNetStream:
    """Frames in, in any chunks; each frame's outputs [n_out, n] out as soon as the lookahead has
    arrived: ``push`` returns those (maybe none), ``flush`` the rest at the end (as if ``lookahead``
    silent frames followed) and starts afresh."""

    def __init__(self, model: FrameNet):
        cfg = self.cfg = model.cfg
        f32 = np.float32

        def w(t: Any) -> np.ndarray:  # a weight or bias (typed Tensor | Module by nn.Module)
            return t.detach().float().numpy().astype(f32, copy=True)

        self.mean, self.inv_std = w(model.mean), (1.0 / w(model.std)).astype(f32)
        self.w_in, self.b_in = w(model.inp.weight)[:, :, 0], w(model.inp.bias)[:, None]
        # a dilated conv as one product: its taps' weights side by side [C, k * C]
        self.w_conv = [np.concatenate([w(c.weight)[:, :, j] for j in range(cfg.kernel)], axis=1) for c in model.convs]
        self.b_conv = [w(c.bias)[:, None] for c in model.convs]
        self.w_mix = [w(m.weight)[:, :, 0] for m in model.mixes]
        self.b_mix = [w(m.bias)[:, None] for m in model.mixes]
        self.w_out, self.b_out = w(model.out.weight)[:, :, 0], w(model.out.bias)[:, None]
        self.n_out = self.w_out.shape[0]
        self.pads = model.pads()
        self.state = StreamState()

    def _run(self, mel: np.ndarray) -> np.ndarray:
        """[n, n_mels] -> [n_out, n], advancing the conv histories."""
        n, k = mel.shape[0], self.cfg.kernel
        x = ((mel - self.mean) * self.inv_std).T
        h = self.w_in @ x + self.b_in
        h = np.maximum(h, 0.1 * h)
        if self.state.convs is None:
            self.state.convs = [np.zeros((h.shape[0], p), np.float32) for p in self.pads]
        for i, (d, p) in enumerate(zip(self.cfg.dilations, self.pads)):
            full = np.concatenate([self.state.convs[i], h], axis=1)
            self.state.convs[i] = full[:, full.shape[1] - p:]
            taps = np.concatenate([full[:, j * d:j * d + n] for j in range(k)], axis=0)
            y = self.w_conv[i] @ taps + self.b_conv[i]
            h = h + self.w_mix[i] @ np.maximum(y, 0.1 * y) + self.b_mix[i]
        return self.w_out @ np.maximum(h, 0.1 * h) + self.b_out

    def push(self, frames: torch.Tensor | np.ndarray) -> np.ndarray:
        mel = np.asarray(frames.detach().numpy() if isinstance(frames, torch.Tensor) else frames, np.float32)
        if mel.shape[0] == 0:
            return np.zeros((self.n_out, 0), np.float32)
        y = self._run(mel)
        self.state.frames_in += mel.shape[0]
        skip = max(0, self.cfg.lookahead - (self.state.frames_in - mel.shape[0]))  # outputs still in the lead-in
        y = y[:, skip:]
        self.state.frames_out += y.shape[1]
        return y

    def flush(self) -> np.ndarray:
        if self.state.frames_in == 0:
            return np.zeros((self.n_out, 0), np.float32)
        y = self.push(np.full((self.cfg.lookahead, self.cfg.n_mels), SILENCE, np.float32))
        self.state = StreamState()
        return y


def take_rows(queue: deque, n: int) -> tuple[np.ndarray, ...]:
    """The first ``n`` rows of a queue of tuples of row-aligned arrays, taken off it, joined: the
    frames (and what goes with them) that waited for a stream's ``n`` newest outputs."""
    parts = []
    while n:
        head = queue[0]
        take = min(n, len(head[0]))
        parts.append(tuple(x[:take] for x in head))
        if take == len(head[0]):
            queue.popleft()
        else:
            queue[0] = tuple(x[take:] for x in head)
        n -= take
    return tuple(np.concatenate(xs) for xs in zip(*parts))


Net = TypeVar("Net", bound=FrameNet)


def load(path: str, make: type[Net]) -> Net:
    """A trained network (``make(config)``) from its safetensors file (config in the metadata).
    ValueError for an invalid config or non-finite weights."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(path, "pt") as f:
        meta = f.metadata() or {}
    model = make(FrameNetConfig.from_dict(json.loads(meta.get("config", "{}"))))  # type: ignore[call-arg]
    tensors = load_file(path)
    for key, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ValueError(f"'{key}' holds NaN or infinite values")
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
    return model.eval()


def save(model: FrameNet, path: str, dtype: torch.dtype = torch.float32) -> None:
    """The network and its config (in the file's metadata), as ``load`` reads them."""
    from safetensors.torch import save_file

    save_file({k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}, path,
              metadata={"config": json.dumps(model.cfg.to_dict())})
