"""Log-mel features and their inversion to a waveform (Griffin-Lim), whole or streaming."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from narrate import kernels


@dataclass(frozen=True)
class MelConfig:
    sample_rate: int = 22050
    n_fft: int = 1024
    hop: int = 256
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0
    gl_iters: int = 16  # fast Griffin-Lim converges early: more iterations did not lower the WER


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, np.float64)
    lin = f / (200.0 / 3)
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), lin)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), (200.0 / 3) * m)


def mel_edges(cfg: MelConfig) -> np.ndarray:
    """[n_mels + 2] Hz: fmin, the band centres, fmax (fmax None: Nyquist), evenly spaced on
    Slaney's mel scale; band m's triangle rises from edge m to m + 1 and falls to m + 2."""
    fmax = cfg.sample_rate / 2 if cfg.fmax is None else cfg.fmax
    return _mel_to_hz(np.linspace(_hz_to_mel(cfg.fmin), _hz_to_mel(fmax), cfg.n_mels + 2))


def mel_centres(cfg: MelConfig) -> np.ndarray:
    """[n_mels] Hz: the centre (peak) of each band of ``mel_filterbank(cfg)``."""
    return mel_edges(cfg)[1:-1]


def mel_filterbank(cfg: MelConfig) -> np.ndarray:
    """[n_mels, n_fft // 2 + 1] float32: triangles evenly spaced on Slaney's mel scale, each
    normalized to unit area (Slaney), what ``librosa.filters.mel`` gives with its defaults (the
    tests hold it to that). Made here because importing librosa (and scipy.signal with it) costs
    seconds at every start, for one matrix (docs/performance.md)."""
    freqs = np.linspace(0.0, cfg.sample_rate / 2, 1 + cfg.n_fft // 2)
    edges = mel_edges(cfg)
    widths = np.diff(edges)
    ramps = edges[:, None] - freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)
    return (weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]).astype(np.float32)


class MelSpec:
    """wav -> log-mel [T, n_mels] (T = len(wav) // hop) and log-mel -> wav."""

    def __init__(self, cfg: MelConfig, kernel: bool | None = None):
        self.cfg = cfg
        self.fb = torch.from_numpy(mel_filterbank(cfg))  # [M, F]
        self.fb_pinv = torch.linalg.pinv(self.fb)  # [F, M]
        with warnings.catch_warnings():  # "sparse CSR support is in beta": its products are what we use
            warnings.simplefilter("ignore", UserWarning)
            # a bin is in at most two triangles: products with the filterbank's non-zeros only
            self.fb_sparse = self.fb.to_sparse_csr()          # [M, F]
            self.fb_t_sparse = self.fb.T.contiguous().to_sparse_csr()  # [F, M]
        self.window = torch.hann_window(cfg.n_fft)
        # our magnitudes and Griffin-Lim iterations (in float32) by default: the backend
        # (narrate.kernels.choose); the streaming vocoder is given the narrator's
        self.kernel = kernels.choose(kernel)
        self._envelopes: dict[tuple[int, torch.dtype], torch.Tensor] = {}

    def features(self, wav: np.ndarray) -> torch.Tensor:
        """[S] -> [S // hop, n_mels] natural-log mel magnitudes."""
        x = torch.as_tensor(np.asarray(wav, dtype=np.float32))
        spec = torch.stft(x, self.cfg.n_fft, self.cfg.hop, window=self.window, center=True, return_complex=True).abs()
        mel = self.fb @ spec  # [M, T+1]
        n = len(x) // self.cfg.hop
        return torch.log(mel[:, :n].clamp_min(1e-5)).T.contiguous()

    def magnitudes(self, logmel: torch.Tensor, kernel: bool | None = None) -> torch.Tensor:
        """[T, M] log-mel -> [F, T] linear magnitudes (pseudo-inverse, then NNLS-style updates).
        ``reference_magnitudes`` with sparse filterbank products, faster on a streaming block;
        with our kernels (``kernel``; None: ``self.kernel``), one operation of ours (``mel_magnitudes.cpp``)."""
        if (self.kernel if kernel is None else kernel) and self.fb.dtype == torch.float32:
            return torch.ops.narrate.mel_magnitudes(logmel.float(), self.fb, self.fb_pinv, 4)
        mel = logmel.float().exp().T.contiguous()  # [M, T]
        mag = (self.fb_pinv @ mel).clamp_min_(1e-8)
        target = self.fb_t_sparse @ mel  # fb.T @ mel
        for _ in range(4):  # multiplicative NNLS updates keep it non-negative and fit the mel
            mag = mag * target / (self.fb_t_sparse @ (self.fb_sparse @ mag)).clamp_min_(1e-8)
        return mag

    def reference_magnitudes(self, logmel: torch.Tensor) -> torch.Tensor:
        """The dense version of ``magnitudes``, its reference."""
        mel = logmel.float().exp().T  # [M, T]
        mag = (self.fb_pinv @ mel).clamp_min(1e-8)
        for _ in range(4):
            mag = mag * (self.fb.T @ mel) / (self.fb.T @ (self.fb @ mag)).clamp_min(1e-8)
        return mag

    def _istft(self, spec: torch.Tensor) -> torch.Tensor:
        return torch.istft(spec, self.cfg.n_fft, self.cfg.hop, window=self.window, center=True)

    def _stft(self, wav: torch.Tensor) -> torch.Tensor:
        return torch.stft(wav, self.cfg.n_fft, self.cfg.hop, window=self.window, center=True, return_complex=True)

    def reference_griffin_lim(self, mag: torch.Tensor, phase: torch.Tensor | None = None, iters: int | None = None,
                              fixed: int = 0) -> torch.Tensor:
        """The plain torch.stft/istft version of ``griffin_lim``, kept as its reference."""
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

    def griffin_lim(self, mag: torch.Tensor, phase: torch.Tensor | None = None, iters: int | None = None,
                    fixed: int = 0, fixed_spec: torch.Tensor | None = None, kernel: bool | None = None) -> torch.Tensor:
        """Fast Griffin-Lim (momentum 0.99). mag [F, T]; phase: initial angles [F, T] or None.
        The first ``fixed`` frames keep their initial phase (continuity with audio already out);
        ``fixed_spec`` [F, fixed], complex, gives them as a spectrum instead (streaming's context,
        as the last block's result left it: no angle, cosine and sine per block; the other frames
        start at phase 0). With ``fixed_spec``, mag's first ``fixed`` columns are its magnitudes.
        Returns the complex spectrum [F, T]. Same as ``reference_griffin_lim`` up to float rounding,
        faster on streaming's small blocks: frame-major [T, F] so the FFTs run over contiguous
        rows, an own STFT pair (strided overlap-add, no torch.istft window checks per call), and the
        fixed frames' inverse FFT done once, their forward FFT not at all (its phase is dropped).
        In float32, with our kernels (``kernel``; None: ``self.kernel``), the iterations run as one
        operation of ours (``griffin_lim.cpp``; this function's torch operations are its fallback)."""
        n_fft, hop, T = self.cfg.n_fft, self.cfg.hop, mag.shape[1]
        half = n_fft // 2
        if half % hop or (T - 1) * hop <= half:  # not whole hops / too short to reflect-pad: as before
            if fixed_spec is not None:
                phase = torch.zeros_like(mag)
                phase[:, :fixed] = fixed_spec.angle()
            return self.reference_griffin_lim(mag, phase, iters, fixed)
        iters = self.cfg.gl_iters if iters is None else iters
        fixed = min(fixed, T)
        mag = mag.T.contiguous()
        if phase is None:
            spec = torch.complex(mag, torch.zeros_like(mag))
            if fixed_spec is not None:
                spec[:fixed] = fixed_spec.T
        else:
            phase = phase.T.contiguous()
            spec = torch.complex(mag * phase.cos(), mag * phase.sin())
        mag = mag[fixed:]
        buf, frames = self._frame_buffer(T, mag.dtype)
        envelope = self._envelope(T, mag.dtype)
        if fixed:
            torch.fft.irfft(spec[:fixed], n=n_fft, out=frames[:fixed]).mul_(self.window)
        if (self.kernel if kernel is None else kernel) and fixed < T and mag.dtype == self.window.dtype == torch.float32:
            return torch.ops.narrate.griffin_lim(spec, mag, frames, self.window, envelope, hop, fixed, iters,
                                                 0.99 / 1.99).T
        padded = mag.new_empty((T - 1) * hop + n_fft)  # the signal, reflect-padded by n_fft // 2 each side
        wav = padded[half:-half]
        prev = None
        for _ in range(iters if fixed < T else 0):
            torch.fft.irfft(spec[fixed:], n=n_fft, out=frames[fixed:]).mul_(self.window)
            torch.div(self._overlap_add(buf), envelope, out=wav)
            padded[:half] = wav[1 : half + 1].flip(0)
            padded[-half:] = wav[-half - 1 : -1].flip(0)
            rebuilt = torch.fft.rfft(padded.unfold(0, n_fft, hop)[fixed:] * self.window)
            new = rebuilt if prev is None else torch.sub(rebuilt, prev, alpha=0.99 / 1.99)
            prev = rebuilt
            # mag * new / max(|new|, 1e-8) via the squared modulus: complex abs (hypot) is slow
            torch.mul(new, mag * (new * new.conj()).real.clamp_min(1e-16).rsqrt(), out=spec[fixed:])
        return spec.T

    def istft(self, spec: torch.Tensor) -> torch.Tensor:
        """[F, T] -> [(T - 1) * hop]: torch.istft(center=True), faster (see ``_overlap_add``)."""
        n_fft, T = self.cfg.n_fft, spec.shape[1]
        if (n_fft // 2) % self.cfg.hop:
            return self._istft(spec)
        buf, frames = self._frame_buffer(T, spec.real.dtype)
        torch.fft.irfft(spec.T, n=n_fft, out=frames).mul_(self.window)
        return self._overlap_add(buf).div_(self._envelope(T, frames.dtype))

    def _frame_buffer(self, T: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """A zeroed [T + R - 2, n_fft] buffer (R = n_fft // hop) and its middle T rows, the frames:
        ``_overlap_add`` reads the R / 2 - 1 zero rows either side as missing frames."""
        lead = self.cfg.n_fft // self.cfg.hop // 2 - 1
        buf = torch.zeros(T + 2 * lead, self.cfg.n_fft, dtype=dtype)
        return buf, buf[lead : lead + T]

    def _overlap_add(self, buf: torch.Tensor) -> torch.Tensor:
        """Windowed frames in a ``_frame_buffer`` -> [(T - 1) * hop]: their sum at hop steps, only
        the samples a centred STFT keeps (n_fft // 2 cut each side). Each output hop is the sum of
        slices of R consecutive rows, one strided view for all: no scatter-add (torch.istft's
        unfold_backward), no padded output to trim."""
        n_fft, hop = self.cfg.n_fft, self.cfg.hop
        n = buf.shape[0] - n_fft // hop + 1
        rows = buf.as_strided((n, n_fft // hop, hop), (n_fft, n_fft - hop, 1), buf.storage_offset() + n_fft - hop)
        return rows.sum(1).view(-1)

    def _envelope(self, T: int, dtype: torch.dtype) -> torch.Tensor:
        """The overlap-added squared window, which the inverse STFT divides by (kept for the last
        few block lengths: streaming asks for the same two or three over and over)."""
        key = (T, dtype)
        if key not in self._envelopes:
            if len(self._envelopes) >= 8:
                self._envelopes.clear()
            buf, frames = self._frame_buffer(T, dtype)
            frames.copy_(self.window.to(dtype).square().expand_as(frames))
            self._envelopes[key] = self._overlap_add(buf)
        return self._envelopes[key]

    def vocode(self, logmel: torch.Tensor) -> np.ndarray:
        """[T, M] -> [T * hop] float32: the slow, whole-utterance reference."""
        spec = self.griffin_lim(_extend(self.magnitudes(logmel)))
        wav = self.istft(spec)[: logmel.shape[0] * self.cfg.hop]
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
    The first block after the start or a flush is ``first_block`` frames, so audio starts soon;
    later ones are ``block`` frames, where the frames inverted twice (context, hold) are a
    smaller share (less vocoding per second of audio: docs/performance.md).
    """

    def __init__(self, mel: MelSpec, kernel: bool | None = None, block: int = 48, context: int = 8, hold: int = 3,
                 first_block: int = 24):
        self.mel, self.block, self.context, self.hold, self.first_block = mel, block, context, hold, first_block
        self.kernel = mel.kernel if kernel is None else kernel  # the backend (narrate.kernels.choose)
        self.fresh = True  # nothing emitted since the start or the last flush
        self.pending: list[torch.Tensor] = []  # frames not yet emitted (including held ones)
        self.n_pending = 0  # their number
        # [F, C] the spectrum of the last C emitted frames, as their block's Griffin-Lim left it: the
        # next block's context (its magnitudes and phases are those; nothing recomputes them)
        self.ctx_spec: torch.Tensor | None = None
        self.tail: np.ndarray | None = None  # audio beyond the last emitted sample, for the crossfade
        self._fades: dict[int, np.ndarray] = {}  # crossfade ramps by length

    def push(self, frames: torch.Tensor) -> np.ndarray:
        """frames [T, M] log-mel -> samples now final."""
        self.pending.append(frames.float())
        self.n_pending += frames.shape[0]
        if self.n_pending < (self.first_block if self.fresh else self.block) + self.hold:
            return np.zeros(0, np.float32)
        self.fresh = False
        return self._run(final=False)

    def flush(self) -> np.ndarray:
        """Emit everything pending, held frames included (end of stream)."""
        self.fresh = True
        if self.n_pending == 0:
            self.tail = None
            return np.zeros(0, np.float32)
        return self._run(final=True)

    def _fade(self, k: int) -> np.ndarray:
        if k not in self._fades:
            self._fades[k] = np.linspace(0.0, 1.0, k, dtype=np.float32)
        return self._fades[k]

    def _run(self, final: bool) -> np.ndarray:
        hop = self.mel.cfg.hop
        new = torch.cat(self.pending)
        c = 0 if self.ctx_spec is None else self.ctx_spec.shape[1]
        mag = self.mel.magnitudes(new, self.kernel)
        if self.ctx_spec is not None and c:
            mag = torch.cat([self.ctx_spec.abs(), mag], dim=1)
        if final:
            mag = _extend(mag)
        spec = self.mel.griffin_lim(mag, fixed=c, fixed_spec=self.ctx_spec, kernel=self.kernel)
        wav = self.mel.istft(spec).numpy().astype(np.float32)  # covers frames*hop samples
        emit_frames = new.shape[0] if final else new.shape[0] - self.hold
        start, end = c * hop, (c + emit_frames) * hop
        out = wav[start:end].copy()
        if self.tail is not None and len(out):
            k = min(len(self.tail), len(out))
            fade = self._fade(k)
            out[:k] = self.tail[:k] * (1 - fade) + out[:k] * fade
        self.tail = wav[end : end + hop].copy() if not final else None
        kept = min(self.context, c + emit_frames)
        self.ctx_spec = spec[:, c + emit_frames - kept : c + emit_frames]
        self.pending = [] if final else [new[emit_frames:]]
        self.n_pending = 0 if final else self.pending[0].shape[0]
        return out
