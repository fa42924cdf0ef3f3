"""Log-mel features and their inversion to a waveform (Griffin-Lim), whole or streaming."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class MelConfig:
    sample_rate: int = 22050
    n_fft: int = 1024
    hop: int = 256
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0
    gl_iters: int = 16  # fast Griffin-Lim converges early: 16 and 32 gave the same WER (bench notes)


class MelSpec:
    """wav -> log-mel [T, n_mels] (T = len(wav) // hop) and log-mel -> wav."""

    def __init__(self, cfg: MelConfig):
        import librosa

        self.cfg = cfg
        fb = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax)
        self.fb = torch.from_numpy(fb).float()  # [M, F]
        self.fb_pinv = torch.linalg.pinv(self.fb)  # [F, M]
        self.window = torch.hann_window(cfg.n_fft)

    def features(self, wav: np.ndarray) -> torch.Tensor:
        """[S] -> [S // hop, n_mels] natural-log mel magnitudes."""
        x = torch.as_tensor(np.asarray(wav, dtype=np.float32))
        spec = torch.stft(x, self.cfg.n_fft, self.cfg.hop, window=self.window, center=True, return_complex=True).abs()
        mel = self.fb @ spec  # [M, T+1]
        n = len(x) // self.cfg.hop
        return torch.log(mel[:, :n].clamp_min(1e-5)).T.contiguous()

    def magnitudes(self, logmel: torch.Tensor) -> torch.Tensor:
        """[T, M] log-mel -> [F, T] linear magnitudes (pseudo-inverse, then NNLS-style updates)."""
        mel = logmel.float().exp().T  # [M, T]
        mag = (self.fb_pinv @ mel).clamp_min(1e-8)
        for _ in range(4):  # multiplicative NNLS updates keep it non-negative and fit the mel
            mag = mag * (self.fb.T @ mel) / (self.fb.T @ (self.fb @ mag)).clamp_min(1e-8)
        return mag

    def _istft(self, spec: torch.Tensor) -> torch.Tensor:
        return torch.istft(spec, self.cfg.n_fft, self.cfg.hop, window=self.window, center=True)

    def _stft(self, wav: torch.Tensor) -> torch.Tensor:
        return torch.stft(wav, self.cfg.n_fft, self.cfg.hop, window=self.window, center=True, return_complex=True)

    def griffin_lim(self, mag: torch.Tensor, phase: torch.Tensor | None = None, iters: int | None = None,
                    fixed: int = 0) -> torch.Tensor:
        """Fast Griffin-Lim (momentum 0.99). mag [F, T]; phase: initial angles [F, T] or None.
        The first ``fixed`` frames keep their initial phase (continuity with audio already out).
        Returns the complex spectrum [F, T]."""
        iters = self.cfg.gl_iters if iters is None else iters
        if phase is None:
            phase = torch.zeros_like(mag)
        angles = torch.polar(torch.ones_like(mag), phase)
        prev = torch.zeros_like(angles)
        n = (mag.shape[1] - 1) * self.cfg.hop
        for _ in range(iters):
            rebuilt = self._stft(self._istft(mag * angles)[:n])[:, : mag.shape[1]]
            if rebuilt.shape[1] < mag.shape[1]:
                rebuilt = torch.nn.functional.pad(rebuilt, (0, mag.shape[1] - rebuilt.shape[1]))
            new = rebuilt - 0.99 / 1.99 * prev
            prev = rebuilt
            new_angles = new / new.abs().clamp_min(1e-8)
            if fixed:
                new_angles[:, :fixed] = angles[:, :fixed]
            angles = new_angles
        return mag * angles

    def vocode(self, logmel: torch.Tensor) -> np.ndarray:
        """[T, M] -> [T * hop] float32: the slow, whole-utterance reference."""
        spec = self.griffin_lim(_extend(self.magnitudes(logmel)))
        wav = self._istft(spec)[: logmel.shape[0] * self.cfg.hop]
        return wav.numpy().astype(np.float32)


def _extend(mag: torch.Tensor) -> torch.Tensor:
    """Repeat the last frame: a centred inverse STFT of T frames yields (T - 1) * hop samples,
    one more frame makes the last real frame's samples complete (T * hop in all)."""
    return torch.cat([mag, mag[:, -1:]], dim=1)


class StreamingVocoder:
    """Griffin-Lim over blocks of frames with carried phase: bounded memory, near-seamless joins.

    Each block is inverted together with ``context`` already-emitted frames whose phases are
    kept fixed, so the new audio continues the old; the last ``hold`` frames of a block are
    not emitted yet (their overlap-add is incomplete) and are re-estimated with the next block.
    """

    def __init__(self, mel: MelSpec, block: int = 24, context: int = 8, hold: int = 3):
        self.mel, self.block, self.context, self.hold = mel, block, context, hold
        self.pending: list[torch.Tensor] = []  # frames not yet emitted (including held ones)
        self.ctx_frames: torch.Tensor | None = None  # [C, M] emitted frames kept as context
        self.ctx_phase: torch.Tensor | None = None  # [F, C] their phases
        self.tail: np.ndarray | None = None  # audio beyond the last emitted sample, for the crossfade

    def push(self, frames: torch.Tensor) -> np.ndarray:
        """frames [T, M] log-mel -> samples now final."""
        self.pending.append(frames.float())
        n = sum(f.shape[0] for f in self.pending)
        if n < self.block + self.hold:
            return np.zeros(0, np.float32)
        return self._run(final=False)

    def flush(self) -> np.ndarray:
        """Emit everything pending, held frames included (end of stream)."""
        if sum(f.shape[0] for f in self.pending) == 0:
            self.tail = None
            return np.zeros(0, np.float32)
        return self._run(final=True)

    def _run(self, final: bool) -> np.ndarray:
        hop = self.mel.cfg.hop
        new = torch.cat(self.pending)
        c = 0 if self.ctx_frames is None else self.ctx_frames.shape[0]
        frames = new if c == 0 else torch.cat([self.ctx_frames, new])
        mag = self.mel.magnitudes(frames)
        if final:
            mag = _extend(mag)
        phase = torch.zeros_like(mag)
        if c:
            phase[:, :c] = self.ctx_phase
        spec = self.mel.griffin_lim(mag, phase, fixed=c)
        wav = self.mel._istft(spec).numpy().astype(np.float32)  # covers frames*hop samples
        emit_frames = new.shape[0] if final else new.shape[0] - self.hold
        start, end = c * hop, (c + emit_frames) * hop
        out = wav[start:end].copy()
        if self.tail is not None and len(out):
            k = min(len(self.tail), len(out))
            fade = np.linspace(0.0, 1.0, k, dtype=np.float32)
            out[:k] = self.tail[:k] * (1 - fade) + out[:k] * fade
        self.tail = wav[end : end + hop].copy() if not final else None
        keep = frames[: c + emit_frames]
        self.ctx_frames = keep[-self.context :]
        self.ctx_phase = spec.angle()[:, c + emit_frames - self.ctx_frames.shape[0] : c + emit_frames]
        self.pending = [] if final else [new[emit_frames:]]
        return out
