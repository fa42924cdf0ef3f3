"""A streaming source-filter synthesizer: log-mel frames give a smooth spectral envelope, an
explicit per-frame F0 gives the excitation (narrate.codec.pitched supplies the F0: together,
narrate-joe's default vocoder; bench/source_filter_eval.py measures it on cached frames).

Per frame t (centre at sample t * hop, as a centred STFT):

- envelope: the mel bands' mean magnitudes (mel / the band's filter sum) interpolated in log
  across the bins between band centres (held below the first centre, falling ``tilt`` nats a kHz
  above the last: the mel sees nothing over fmax), then cepstrally liftered to ``lifter``
  coefficients so harmonic ripple in real mels does not double up with the excitation's
  harmonics; minimum phase (folded real cepstrum) or zero phase; at the mel's n_fft (1024).
- excitation: a band-limited pulse train (a Dirichlet sum of harmonics of F0 with the phase
  ``phase`` at the frame's centre, the phase carried by an accumulator across frames and pushes)
  and white noise (one continuous stream, drawn hop by hop), each at unit variance, so a frame is
  as loud voiced (at any F0) as unvoiced. (The model's frames have no harmonics of their own:
  their envelope is the bands' mean magnitude of a dense spectrum. Levelling the pulses by their
  own mel envelope instead, as before 2026-12-07, made sparse harmonics up to 16 dB louder, past
  full scale.) They are mixed power-complementarily: voiced weight sqrt(v) below ``cutoff`` Hz,
  falling to ``floor`` above it; unvoiced frames are noise only.
- filtering: the excitation under a Hann ``window`` (512, two hops: such windows sum to one),
  zero-padded to n_fft, times the envelope, inverse FFT: a linear convolution with room for the
  filter's ring, so the frames overlap-add to the continuous excitation filtered, periods whole.
  (A second, synthesis window over the filtered frame, as before 2026-12-07, cut the ring where
  the pulses fell, differently each frame: at a window of 512 the periods came out ~3% unlike
  each other and Praat heard a steady 180 Hz as 90.)

Its output's STFT magnitudes, run through the mel filterbank, come back near the input frames (at a
male speaking pitch; sparser harmonics, at a higher F0, read a little lower: the same power, less
mean magnitude). Streaming: pushed frames are computed once ``block`` of them are pending (per-call
costs dominate small pushes: 3 frames a push cost an RTF of ~0.05 on one thread, blocks of 24
~0.01); frame t's samples are final once frame t + 1 has been computed (its window reaches half a
window back; a zero-phase filter rings (n_fft - window) / 2 further); ``flush`` computes and emits
the rest (the stream's T * hop samples in all: the last hop fades with its window). Any chunking of
the pushes, any block, gives the same samples as one push, up to float rounding.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from narrate.codec.mel import MelConfig, mel_centres, mel_filterbank

# The excitation's window (samples): half the mel's, so a frame's sound is smeared over half the
# time. Measured on the benchmark's 110 sentences, voice joe, the same model frames, through
# narrate.codec.pitched (Whisper WER; DNSMOS P.808 / OVRL; resemblyzer similarity to joe.wav):
# - voicing threshold -1.5, with a synthesis window as long as the excitation's (the design before
#   2026-12-07): 1024: 0.143, 3.45 / 3.09, 0.895; 512: 0.130, 3.51 / 3.11, 0.897; 384 in two steps
#   a frame (frames interpolated at half hops): 0.126, 3.49 / 3.19, 0.864; 256 in two steps: 0.132,
#   3.29 / 2.93, 0.805 (those steps were dropped: not better together);
# - 512, threshold -2.0 (narrate.codec.pitched.VOICED): 0.122, 3.49 / 3.12, 0.894 (-1.0: 0.128,
#   3.47 / 3.05); with no synthesis window (this design): 0.122, 3.50 / 3.11, 0.911;
# - the neural vocoder: 0.117, 3.09 / 2.70, 0.893.
WINDOW = 512


class SourceFilter:
    """log-mel [T, n_mels] + F0 [T] Hz (0: unvoiced) -> waveform, streaming. The envelope
    (interpolation, cepstrum, lifter, fold) is linear in the log-mel: one precomputed complex
    matrix [M, F] per phase choice, no FFT per frame. Frames are computed in float32 (torch)."""

    def __init__(self, cfg: MelConfig | None = None, lifter: int = 100, min_phase: bool = True,
                 cutoff: float = 4000.0, floor: float = 0.25, tilt: float = 0.3, seed: int = 0,
                 noise_gain: float = 1.0, block: int = 24, window: int = WINDOW):
        self.cfg = cfg = cfg or MelConfig()
        # the excitation's window: a multiple of the hop, at least two of them, at most half the
        # filter's FFT (the mel's n_fft), so the filtered frame has room for the filter's ring
        self.n_fft, self.hop, self.sr = cfg.n_fft, cfg.hop, cfg.sample_rate
        if window % self.hop or not 2 * self.hop <= window <= self.n_fft // 2:
            raise ValueError(f"synthesis window {window}: not a multiple of the hop {self.hop} from two of them "
                             f"to {self.n_fft // 2}")
        self.min_phase = min_phase
        n_bins = self.n_fft // 2 + 1
        freqs = np.linspace(0.0, self.sr / 2, n_bins)
        fb = mel_filterbank(cfg).astype(np.float64)  # [M, F]
        centres = mel_centres(cfg)
        # [M, F]: linear interpolation between band centres, held below the first and above the last
        eye = np.eye(cfg.n_mels)
        interp = np.stack([np.interp(freqs, centres, eye[m]) for m in range(cfg.n_mels)])
        # a flat magnitude A gives mel A * fb.sum: the bands' mean magnitudes, then the tilt over fmax
        offset = -np.log(fb.sum(1)) @ interp - tilt * np.maximum(0.0, freqs - centres[-1]) / 1000.0  # [F]
        # cepstral lifter: keep quefrencies below ``lifter`` (half-Hann taper over the last quarter),
        # doubled (causal fold) for minimum phase
        q = np.arange(n_bins)
        keep = np.clip((lifter - q) / max(1, lifter // 4), 0.0, 1.0)
        keep = 0.5 - 0.5 * np.cos(np.pi * keep)
        zero = np.concatenate([keep, keep[1:-1][::-1]])  # symmetric: zero phase
        fold = keep * 2.0
        fold[0], fold[-1] = keep[0], keep[-1]
        fold = np.concatenate([fold, np.zeros(self.n_fft // 2 - 1)])

        def lifted(x: np.ndarray, lift: np.ndarray) -> np.ndarray:
            return np.fft.rfft(np.fft.irfft(x, n=self.n_fft) * lift, n=self.n_fft)

        def tensor(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(x)).to(torch.complex64 if np.iscomplexobj(x) else torch.float32)

        # log envelope = logmel @ matrix + offset: its log magnitude (zero phase) and the minimum
        # phase (the imaginary part of the folded cepstrum's spectrum), real matrices each
        self.env_mag = (tensor(lifted(interp, zero).real), tensor(lifted(offset, zero).real))
        self.env_phase = (tensor(lifted(interp, fold).imag), tensor(lifted(offset, fold).imag))
        # voiced share per bin (before the frame's voicing): 1 below cutoff, down to floor above
        self.voiced_shape = tensor(floor + (1.0 - floor) / np.sqrt(1.0 + (freqs / cutoff) ** 8))
        self.window = torch.hann_window(window, dtype=torch.float32)  # periodic: at 2 hops, they sum to 1
        self.offsets = torch.arange(window, dtype=torch.float32) - window // 2  # samples from the centre
        # where the windowed excitation sits in the filter's buffer: at its start for a causal
        # (minimum phase) filter, in the middle for a zero-phase one (its ring goes both ways)
        self.place = 0 if min_phase else (self.n_fft - window) // 2
        self.overlap = window / (2 * self.hop)  # what the windows, a hop apart, sum to
        # the envelope is a mean magnitude as the mel's own window sees it: white noise of unit
        # variance reads sqrt(pi sum(w^2)) / 2 there (complex Gaussian bins of variance sum(w^2)), so
        # noise over that level, shaped by the envelope, re-analyses as the envelope
        analysis = float(torch.hann_window(cfg.n_fft, dtype=torch.float64).square().sum())
        self.noise_level = math.sqrt(analysis * math.pi) / 2.0 / noise_gain
        self.seed = seed
        self.block = block  # frames computed together (a push's own cost is mostly per call)
        self.reset()

    def reset(self) -> None:
        """Back to the start of a stream."""
        self.rng = np.random.default_rng(self.seed)
        half = len(self.window) // 2
        self.noise = np.zeros(half)  # the noise stream from ``noise_start`` on
        self.noise_start = -half  # (the first frame's window starts half a window before 0)
        self.phase = 0.0  # pulse phase at the centre of the last frame (radians)
        self.last_f0 = 0.0  # the last voiced frame's F0
        self.n_frames = 0  # frames pushed
        self.emitted = 0  # samples emitted
        self.acc = torch.zeros(0)  # overlap-added samples from ``emitted`` on
        self.pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # pushed, not computed yet
        self.n_pending = 0

    def log_envelope(self, logmel: torch.Tensor) -> torch.Tensor:
        """[T, M] log-mel -> [T, F] liftered log magnitude envelope (nats)."""
        matrix, offset = self.env_mag
        return torch.addmm(offset, logmel, matrix)

    def response(self, logmel: torch.Tensor) -> torch.Tensor:
        """[T, M] log-mel -> [T, F] complex filter: the liftered envelope, minimum or zero phase."""
        mag = torch.exp(self.log_envelope(logmel))
        if not self.min_phase:
            return torch.complex(mag, torch.zeros_like(mag))
        matrix, offset = self.env_phase
        return torch.polar(mag, torch.addmm(offset, logmel, matrix))

    def _pulses(self, f0: np.ndarray, phase: np.ndarray) -> torch.Tensor:
        """[T, window]: sum_{k=1..K} cos(k theta) around each frame's centre, theta advancing at
        f0 from ``phase``; K the harmonics below Nyquist; at unit variance (K unit harmonics have a
        mean square of K / 2). Zero where f0 is 0."""
        f = np.where(f0 > 0, f0, 100.0)
        harmonics = np.floor((self.sr / 2 - 1.0) / f)
        k = torch.from_numpy(harmonics + 0.5).float()[:, None]
        rate = torch.from_numpy(2 * np.pi * f / self.sr).float()[:, None]
        theta = torch.from_numpy(phase).float()[:, None] + rate * self.offsets[None]
        half = torch.sin(theta * 0.5)
        small = half.abs() < 1e-4
        out = torch.sin(k * theta) / torch.where(small, torch.ones_like(half), 2 * half) - 0.5
        out = torch.where(small, k - 0.5, out)
        return out * torch.from_numpy(f0 > 0).float()[:, None] * torch.from_numpy(np.sqrt(2.0 / harmonics)).float()[:, None]

    def push(self, logmel, f0, voicing=None) -> np.ndarray:
        """Frames [T, M] log-mel, F0 [T] Hz (0 unvoiced), voicing probability [T] (None: F0 > 0)
        -> the samples now final. Frames are computed once ``block`` of them are pending."""
        logmel = np.asarray(logmel, np.float32).reshape(-1, self.cfg.n_mels)
        f0 = np.asarray(f0, np.float64).reshape(-1)
        if len(f0) != len(logmel):
            raise ValueError(f"{len(logmel)} frames but {len(f0)} F0 values")
        v = (f0 > 0).astype(np.float64) if voicing is None else np.clip(np.asarray(voicing, np.float64), 0, 1)
        self.pending.append((logmel, f0, np.where(f0 > 0, v, 0.0)))
        self.n_pending += len(f0)
        if self.n_pending < self.block:
            return np.zeros(0, np.float32)
        return self._compute()

    @torch.inference_mode()
    def _compute(self) -> np.ndarray:
        """The pending frames, overlap-added -> the samples now final."""
        mel_np, f0, v = (np.concatenate(x) for x in zip(*self.pending))
        self.pending, self.n_pending = [], 0
        logmel = torch.from_numpy(mel_np)
        T = logmel.shape[0]
        if T == 0:
            return np.zeros(0, np.float32)
        hop, size, half = self.hop, len(self.window), len(self.window) // 2
        t0 = self.n_frames
        # the pulse phase at each frame centre: trapezoidal steps of the F0 (the last voiced F0
        # carried through unvoiced frames, so voicing resumes in phase)
        held = np.empty(T)
        last = self.last_f0
        for i in range(T):
            if f0[i] > 0:
                last = f0[i]
            held[i] = last
        prev = np.concatenate([[self.last_f0 if t0 else held[0]], held[:-1]])
        phase = np.mod(self.phase + np.cumsum(np.pi * hop * (prev + held) / self.sr), 2 * np.pi)
        self.phase, self.last_f0 = float(phase[-1]), float(held[-1])
        # noise: the stream up to the last frame's window end, hop by hop
        need = (t0 + T - 1) * hop + half - (self.noise_start + len(self.noise))
        self.noise = np.concatenate([self.noise, self.rng.standard_normal(need)])
        noise_frames = torch.from_numpy(self.noise).float().unfold(0, size, hop)[:T]
        drop = (t0 + T) * hop - half - self.noise_start  # the next frame's window starts there
        self.noise, self.noise_start = self.noise[drop:], self.noise_start + drop
        # excitation, each at unit variance, windowed and placed in the filter's buffer: the windows
        # sum to a constant, so the frames add up to the one continuous excitation, and each is
        # filtered whole (a linear convolution: no period is cut by a second window, none wraps around)
        pad = (self.place, self.n_fft - size - self.place)
        pulse = torch.fft.rfft(F.pad(self._pulses(f0, phase) * self.window, pad))
        noise = torch.fft.rfft(F.pad(noise_frames * self.window, pad))
        voiced = torch.from_numpy(np.sqrt(v)).float()[:, None] * self.voiced_shape[None]
        excitation = voiced * pulse + torch.sqrt((1.0 - voiced.square()).clamp_min(0.0)) * noise
        spec = self.response(logmel) * excitation * (1.0 / self.noise_level)
        frames = torch.fft.irfft(spec, n=self.n_fft)
        # overlap-add from the first frame's buffer start: R interleaved groups of frames, each
        # group's frames R hops = n_fft apart, so they abut (a plain reshape)
        first = t0 * hop - half - self.place
        n = (T - 1) * hop + self.n_fft
        added = torch.zeros(n)
        for j in range(min(T, self.n_fft // hop)):
            rows = frames[j :: self.n_fft // hop]
            a, b = j * hop, j * hop + len(rows) * self.n_fft
            added[a:b] += rows.reshape(-1)
        self.n_frames += T
        size = first + n - self.emitted
        if size > len(self.acc):
            self.acc = torch.cat([self.acc, torch.zeros(size - len(self.acc))])
        skip = max(0, self.emitted - first)  # before the stream's first sample
        at = first + skip - self.emitted
        self.acc[at : at + n - skip] += added[skip:]
        # final: the samples no later frame reaches (frame n_frames starts at n_frames * hop - half - place)
        return self._emit(self.n_frames * hop - half - self.place)

    def flush(self) -> np.ndarray:
        """The rest of the stream's n_frames * hop samples; then a new stream starts."""
        head = self._compute() if self.pending else np.zeros(0, np.float32)
        out = np.concatenate([head, self._emit(self.n_frames * self.hop)])
        self.reset()
        return out

    def _emit(self, upto: int) -> np.ndarray:
        n = max(0, upto - self.emitted)
        out = (self.acc[:n] / self.overlap).numpy()
        self.acc = self.acc[n:]
        self.emitted += n
        return out.astype(np.float32)

    def synthesize(self, logmel, f0, voicing=None) -> np.ndarray:
        """One whole utterance: [T * hop] float32."""
        self.reset()
        return np.concatenate([self.push(logmel, f0, voicing), self.flush()])
