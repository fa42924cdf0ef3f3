"""narrate's neural vocoder: log-mel frames -> waveform, Vocos-style, whole or streaming.

A stack of ConvNeXt blocks runs at the frame rate; a linear head gives each frame's
log-magnitude and phase at n_fft 1024 / hop 256, and an inverse STFT makes the samples. It is
distilled from HiFi-GAN V1 universal (``narrate.train.vocoder``); Griffin-Lim
(``narrate.codec.mel``) is its fallback and reference.

Streaming: every convolution is non-causal with kernel k, so a spectrum frame depends on the
input frames within ``radius`` = (k // 2) * (layers + 1) on either side. Frames are computed
over windows that reach ``radius`` frames beyond them (or the sequence's edge, where a single
pass pads with zeros as well), so each is the frame one pass over the whole sequence gives, and
the overlap-add of the inverse STFT is carried from block to block: the streamed samples are one
pass's samples (up to float rounding), with no crossfade.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class VocoderConfig:
    """The architecture, saved as the ``vocoder`` section of a model's config.json."""

    arch: str = "vocos"
    n_mels: int = 80
    dim: int = 256            # channels of the ConvNeXt blocks
    intermediate: int = 768   # channels inside a block's pointwise MLP
    layers: int = 6           # ConvNeXt blocks
    kernel: int = 7           # depthwise convolution width (frames)
    n_fft: int = 1024
    hop: int = 256

    @classmethod
    def from_dict(cls, d: dict) -> "VocoderConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known - {"file", "teacher", "training"}  # the last three describe, not build
        if unknown:
            raise ValueError(f"unknown vocoder settings {sorted(unknown)}")
        cfg = cls(**{k: v for k, v in d.items() if k in known})
        if cfg.arch != "vocos":
            raise ValueError(f"unknown vocoder architecture '{cfg.arch}' (known: vocos)")
        return cfg

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def radius(self) -> int:
        """Input frames on either side that reach one output frame (the embedding conv + blocks)."""
        return (self.kernel // 2) * (self.layers + 1)


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, intermediate: int, kernel: int):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1 = nn.Linear(dim, intermediate)
        self.pw2 = nn.Linear(intermediate, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1.0 / 8))  # layer scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, T] -> [B, C, T]."""
        y = self.dwconv(x).transpose(1, 2)  # [B, T, C]
        y = self.pw2(F.gelu(self.pw1(self.norm(y)))) * self.gamma
        return x + y.transpose(1, 2)


class Vocos(nn.Module):
    window: torch.Tensor  # (a buffer)

    """log-mel [B, T, n_mels] -> complex spectrum [B, n_fft // 2 + 1, T]."""

    def __init__(self, cfg: VocoderConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Conv1d(cfg.n_mels, cfg.dim, cfg.kernel, padding=cfg.kernel // 2)
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.blocks = nn.ModuleList(ConvNeXtBlock(cfg.dim, cfg.intermediate, cfg.kernel) for _ in range(cfg.layers))
        self.final_norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.head = nn.Linear(cfg.dim, cfg.n_fft + 2)  # log-magnitude and phase of n_fft // 2 + 1 bins
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.embed(mel.transpose(1, 2))  # [B, C, T]
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        logmag, phase = self.head(self.final_norm(x.transpose(1, 2))).transpose(1, 2).chunk(2, dim=1)  # [B, F, T] each
        mag = logmag.exp().clamp(max=100.0)
        return torch.complex(mag * phase.cos(), mag * phase.sin())

    def frames(self, spec: torch.Tensor) -> torch.Tensor:
        """[F, T] complex -> [T, n_fft] windowed time-domain frames (the inverse STFT's pieces)."""
        return torch.fft.irfft(spec.T, n=self.cfg.n_fft) * self.window

    @torch.inference_mode()
    def vocode(self, logmel: torch.Tensor) -> np.ndarray:
        """[T, n_mels] -> [T * hop] float32 in one pass: the reference the streaming vocoder is
        held to."""
        stream = StreamingNeuralVocoder(self, block=1 << 30, first_block=1 << 30)
        return np.concatenate([stream.push(logmel), stream.flush()])


def overlap_add(frames: torch.Tensor, hop: int) -> torch.Tensor:
    """[T, N] frames whose centres are ``hop`` apart -> [(T - 1) * hop + N] their sum."""
    T, N = frames.shape
    return F.fold(frames.T[None], output_size=(1, (T - 1) * hop + N), kernel_size=(1, N), stride=(1, hop)).view(-1)


class StreamingNeuralVocoder:
    """``Vocos`` over blocks of frames: each block's spectrum frames computed over a window
    ``radius`` frames wider on either side, their inverse STFT overlap-added onto what earlier
    blocks left. Samples are final once no later frame reaches them (two frames back).

    Per push, frames are computed once ``block`` of them can be (``first_block`` at the start,
    so audio starts soon); the lookahead is ``radius`` frames. Each block's window also reads
    ``radius`` frames either side, so longer blocks waste less (96: 1.4x the frames computed).
    A flush (the stream pauses or ends) computes all frames with the sequence's end padded as one
    pass pads it and emits every sample; frames pushed after a flush continue the sequence (left
    context kept).
    """

    def __init__(self, net: Vocos, block: int = 96, first_block: int = 24):
        self.net, self.block, self.first_block = net, block, first_block
        cfg = net.cfg
        self.hop, self.n_fft, self.radius = cfg.hop, cfg.n_fft, cfg.radius
        self.inputs = torch.zeros(0, cfg.n_mels)  # input frames from index in_start on
        self.in_start = 0       # absolute index of inputs[0]
        self.n_in = 0           # input frames received
        self.fresh = True       # nothing computed since the start or the last flush
        self.n_spec = 0         # spectrum frames computed
        self.emitted = 0        # samples emitted
        self.acc = torch.zeros(0)  # overlap-added samples from ``emitted`` on (unnormalized)
        self.env = torch.zeros(0)  # their summed squared windows
        self.wsq = net.window.square()

    def push(self, frames: torch.Tensor) -> np.ndarray:
        """frames [T, n_mels] log-mel -> samples now final."""
        self.inputs = torch.cat([self.inputs, frames.float()])
        self.n_in += frames.shape[0]
        ready = self.n_in - self.radius - self.n_spec  # frames whose whole context has arrived
        if ready < (self.first_block if self.fresh else self.block):
            return np.zeros(0, np.float32)
        self.fresh = False
        self._compute(self.n_in - self.radius, final=False)
        return self._emit((self.n_spec - 2) * self.hop)

    def flush(self) -> np.ndarray:
        """Everything pending, the sequence's end padded (end of stream or a pause)."""
        self.fresh = True
        if self.n_in == self.n_spec:
            return self._emit(self.n_in * self.hop)
        self._compute(self.n_in, final=True)
        return self._emit(self.n_in * self.hop)

    @torch.inference_mode()
    def _compute(self, end: int, final: bool) -> None:
        """Spectrum frames n_spec .. end - 1, overlap-added."""
        a, r = self.n_spec, self.radius
        lo = max(a - r, 0)  # a window reaching before the first frame is padded there, as one pass pads it
        hi = self.n_in if final else end + r
        window = self.inputs[lo - self.in_start : hi - self.in_start]
        spec = self.net(window[None])[0, :, a - lo : end - lo]  # [F, end - a]
        pieces = self.net.frames(spec)  # [n, n_fft]
        # samples covered: centres at t * hop, so from a * hop - n_fft // 2
        first = a * self.hop - self.n_fft // 2
        added = overlap_add(pieces, self.hop)
        weights = overlap_add(self.wsq.expand_as(pieces), self.hop)
        skip = max(0, self.emitted - first)  # before the stream's first sample, or emitted by a flush
        need = first + len(added) - self.emitted
        if need > len(self.acc):
            self.acc = torch.cat([self.acc, self.acc.new_zeros(need - len(self.acc))])
            self.env = torch.cat([self.env, self.env.new_zeros(need - len(self.env))])
        at = first + skip - self.emitted
        self.acc[at : at + len(added) - skip] += added[skip:]
        self.env[at : at + len(added) - skip] += weights[skip:]
        self.n_spec = end
        drop = max(0, self.n_spec - r - self.in_start)  # the next window reads from n_spec - r on
        self.inputs = self.inputs[drop:]
        self.in_start += drop

    def _emit(self, upto: int) -> np.ndarray:
        n = max(0, upto - self.emitted)
        out = (self.acc[:n] / self.env[:n].clamp_min(1e-8)).numpy().astype(np.float32)
        self.acc, self.env = self.acc[n:], self.env[n:]
        self.emitted += n
        return out
