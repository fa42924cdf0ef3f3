"""Loudness for audiobook platforms, decided while streaming: a gain that brings the integrated
loudness (ITU-R BS.1770: K-weighted, gated) to a target, and a peak guard that keeps the true
peak under a ceiling. Memory is flat: the measurement is a histogram of 400 ms block loudness.

The gain is the target minus the input's integrated loudness so far, which starts from a prior
(the level narrate's voices come out at) and follows the measurement as it grows, so the gain
settles within the first minute and then barely moves; it changes smoothly, 100 ms at a time.
The peak guard looks one 10 ms block ahead: the gain at each block boundary is at most what
either neighbouring block allows, and it ramps linearly between boundaries, so no sample (and,
with a small margin, no point between samples: the peak is measured 4x oversampled) goes over.
``flush`` gives out what the look-ahead holds (at a sentence end, which lies in a pause).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

TARGET = -20.0        # LUFS, the default (ACX asks for -23 to -18 dB RMS)
CEILING = -3.0        # dBTP, the highest true peak allowed (ACX: -3 dB)
MARGIN = 0.3          # dB kept under the ceiling: our 4x estimate of the peak against a meter's
PRIOR = -24.0         # LUFS: narrate's voices before any gain, the estimate until measured
PRIOR_BLOCKS = 50     # the prior weighs as much as this many measured blocks (5 s of speech)
MAX_GAIN = 24.0       # dB either way
_LOW, _STEP, _BINS = -70.0, 0.1, 1000  # histogram of block loudness: -70 to +30 LUFS
_CONTEXT = 16         # samples either side when oversampling a block
_LIMIT = 1e4          # |sample| taken as at most this (+80 dBFS): a damaged model's output is
                      # still measured (and turned down), never overflows the meter


def _interpolators(taps: int = 8) -> np.ndarray:
    """[3, taps] Hann-windowed sinc filters for the points 1/4, 2/4 and 3/4 between samples."""
    m = np.arange(taps) - (taps // 2 - 1)  # the samples around: -3..4
    rows = []
    for p in (0.25, 0.5, 0.75):
        t = p - m
        rows.append(np.sinc(t) * (0.5 + 0.5 * np.cos(np.pi * t / (taps / 2))))
    return np.asarray(rows, np.float32)


_PHASES = _interpolators()


def true_peaks(x: np.ndarray) -> np.ndarray:
    """|x| at each sample, or more where the signal between it and the next (4x oversampled)
    swings higher: the true-peak envelope."""
    env = np.abs(x).astype(np.float32)
    lead = _PHASES.shape[1] // 2 - 1
    for h in _PHASES:
        y = np.abs(np.correlate(x, h, mode="valid"))
        np.maximum(env[lead:lead + len(y)], y, out=env[lead:lead + len(y)])
    return env


def k_weighting(rate: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """BS.1770's two K-weighting biquads (high shelf, high pass) as (b, a) at ``rate`` (the
    analogue prototypes of libebur128, so any sample rate gets the same curve)."""
    f0, gain, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / rate)
    vh = 10 ** (gain / 20)
    vb = vh ** 0.4996667741545416
    a0 = 1 + k / q + k * k
    shelf = (np.array([(vh + vb * k / q + k * k) / a0, 2 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0]),
             np.array([1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0]))
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / rate)
    a0 = 1 + k / q + k * k
    high_pass = (np.array([1.0, -2.0, 1.0]), np.array([1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0]))
    return [shelf, high_pass]


class LoudnessMeter:
    """Integrated loudness of a mono stream fed in pieces (gated, 400 ms blocks every 100 ms)."""

    def __init__(self, rate: int):
        self.filters = k_weighting(rate)
        self.states = [np.zeros(2) for _ in self.filters]
        self.sub = rate // 10          # samples per 100 ms
        self.partial = 0.0             # sum of squares of the 100 ms piece under way
        self.partial_n = 0
        self.recent: list[float] = []  # mean squares of the last three 100 ms pieces
        self.counts = np.zeros(_BINS, np.int64)   # blocks per loudness bin
        self.energy = np.zeros(_BINS)             # their summed mean squares

    def feed(self, x: np.ndarray) -> int:
        """Measure ``x``; returns how many 100 ms pieces it completed."""
        return self.add(self.weight(x))

    def weight(self, x: np.ndarray) -> np.ndarray:
        """``x`` K-weighted (the filters' state carried on)."""
        if len(x) == 0:  # (scipy's lfilter would return an uninitialized state)
            return np.zeros(0)
        y = np.clip(np.nan_to_num(x.astype(np.float64), nan=0.0, posinf=_LIMIT, neginf=-_LIMIT), -_LIMIT, _LIMIT)
        for i, (b, a) in enumerate(self.filters):
            y, self.states[i] = lfilter(b, a, y, zi=self.states[i])
        return y

    def add(self, y: np.ndarray) -> int:
        """Measure K-weighted samples; returns how many 100 ms pieces they completed."""
        done = 0
        while len(y):
            take = min(self.sub - self.partial_n, len(y))
            self.partial += float(np.dot(y[:take], y[:take]))
            self.partial_n += take
            y = y[take:]
            if self.partial_n == self.sub:
                self._piece(self.partial / self.sub)
                self.partial, self.partial_n = 0.0, 0
                done += 1
        return done

    def _piece(self, mean_square: float) -> None:
        if len(self.recent) == 3:
            block = (sum(self.recent) + mean_square) / 4
            loud = -0.691 + 10 * math.log10(block) if block > 0 else -math.inf
            if loud > _LOW:  # the absolute gate
                i = min(_BINS - 1, int((loud - _LOW) / _STEP))
                self.counts[i] += 1
                self.energy[i] += block
            self.recent.pop(0)
        self.recent.append(mean_square)

    @property
    def blocks(self) -> int:
        return int(self.counts.sum())

    def integrated(self) -> float:
        """LUFS of what was fed (-inf before any block over the absolute gate)."""
        n = self.counts.sum()
        if n == 0:
            return -math.inf
        relative = -0.691 + 10 * math.log10(self.energy.sum() / n) - 10
        # blocks louder than the histogram's top sit in its last bin: the gate goes no higher
        relative = min(relative, _LOW + _STEP * (_BINS - 1))
        first = max(0, int(math.ceil((relative - _LOW) / _STEP - 1e-9)))
        # bins wholly above the relative gate; the bin it falls in counts when its mean is above
        keep = np.zeros(_BINS, bool)
        keep[first:] = True
        if first > 0 and self.counts[first - 1]:
            mean = self.energy[first - 1] / self.counts[first - 1]
            keep[first - 1] = -0.691 + 10 * math.log10(mean) > relative
        n = self.counts[keep].sum()
        return -0.691 + 10 * math.log10(self.energy[keep].sum() / n) if n else -math.inf

    def state(self) -> dict:
        """What a resumed run needs to measure on as this one would (plain JSON values)."""
        used = np.flatnonzero(self.counts)
        return {"bins": used.tolist(), "counts": self.counts[used].tolist(), "energy": self.energy[used].tolist(),
                "filters": [z.tolist() for z in self.states], "partial": [self.partial, self.partial_n],
                "recent": list(self.recent)}

    def restore(self, state: dict) -> None:
        bins = np.asarray(state["bins"], np.int64)
        if len(bins) and (bins.min() < 0 or bins.max() >= _BINS):
            raise ValueError("loudness histogram out of range")
        self.counts[:] = 0
        self.energy[:] = 0.0
        self.counts[bins] = np.asarray(state["counts"], np.int64)
        self.energy[bins] = np.asarray(state["energy"], np.float64)
        self.states = [np.asarray(z, np.float64).reshape(2) for z in state["filters"]]
        self.partial, self.partial_n = float(state["partial"][0]), int(state["partial"][1])
        self.recent = [float(v) for v in state["recent"]][-3:]


@dataclass
class LoudnessSettings:
    target: float = TARGET       # LUFS
    ceiling: float = CEILING     # dBTP


class Normalizer:
    """One stream's gain and peak guard: samples in, the same number of samples out (up to one
    10 ms block later; ``flush`` gives them out)."""

    def __init__(self, rate: int, settings: LoudnessSettings | None = None):
        self.settings = settings or LoudnessSettings()
        self.rate = rate
        self.meter = LoudnessMeter(rate)
        self.gain_from = self.gain = self._gain_db()  # dB: the gain ramps from one to the other over a 100 ms piece
        self.block = max(1, rate // 100)  # the peak guard's block: 10 ms
        self.ceiling = 10 ** ((self.settings.ceiling - MARGIN) / 20)
        self.held = np.zeros(0, np.float32)     # gained samples not yet given out
        self.left = np.zeros(_CONTEXT, np.float32)  # the gained samples before them
        self.edge = 1.0                   # the peak guard's gain at the start of ``held``

    def _gain_db(self) -> float:
        n = self.meter.blocks
        measured = self.meter.integrated() if n else PRIOR
        estimate = (n * measured + PRIOR_BLOCKS * PRIOR) / (n + PRIOR_BLOCKS)
        return float(np.clip(self.settings.target - estimate, -MAX_GAIN, MAX_GAIN))

    def process(self, x: np.ndarray) -> np.ndarray:
        """Samples (float32) in; the samples now final out."""
        return self._guard(self._apply_gain(np.asarray(x, np.float32)), final=False)

    def flush(self) -> np.ndarray:
        """All held samples out (the stream pauses or ends)."""
        return self._guard(np.zeros(0, np.float32), final=True)

    def level(self, x: np.ndarray, sentence_end: bool) -> np.ndarray:
        """A narrated chunk's samples in, the samples now final out: all of them at a sentence's
        end. The output depends on where the chunks end, so a narration levelled later (the
        assembly of ``narrate batch --ray``) replays the same chunks."""
        out = self.process(x)
        return np.concatenate([out, self.flush()]) if sentence_end else out

    def _apply_gain(self, x: np.ndarray) -> np.ndarray:
        """x times the gain, which moves to the value the measurement so far asks for over the
        100 ms piece after each one measured."""
        out = np.empty_like(x)
        weighted = self.meter.weight(x)
        done, sub = 0, self.meter.sub
        while done < len(x):
            start = self.meter.partial_n
            take = min(sub - start, len(x) - done)
            at = (np.arange(start, start + take) + 1) / sub
            ramp = self.gain_from + (self.gain - self.gain_from) * at
            out[done:done + take] = x[done:done + take] * np.exp(ramp * (math.log(10) / 20)).astype(np.float32)
            if self.meter.add(weighted[done:done + take]):
                self.gain_from, self.gain = self.gain, self._gain_db()
            done += take
        return out

    def _guard(self, x: np.ndarray, final: bool) -> np.ndarray:
        held = np.concatenate([self.held, x])
        b = self.block
        n_blocks = len(held) // b + (1 if final and len(held) % b else 0)
        out_blocks = n_blocks if final else n_blocks - 1  # the last complete one is the look-ahead
        if out_blocks <= 0:
            self.held = held
            return np.zeros(0, np.float32)
        right = np.zeros(_CONTEXT, np.float32) if final else np.zeros(0, np.float32)
        env = true_peaks(np.concatenate([self.left, held, right]))[_CONTEXT:_CONTEXT + len(held)]
        peak = np.zeros(n_blocks * b, np.float32)
        peak[:min(len(held), n_blocks * b)] = env[:n_blocks * b]
        peak = peak.reshape(n_blocks, b).max(axis=1)
        allowed = np.minimum(1.0, self.ceiling / np.maximum(peak, 1e-9))
        # the gain at each block boundary: what both blocks beside it allow
        edges = np.minimum(allowed[:-1], allowed[1:])
        starts = np.concatenate([[min(self.edge, allowed[0])], edges])[:out_blocks]
        ends = np.concatenate([edges, [allowed[-1]]])[:out_blocks]
        size = min(len(held), out_blocks * b)
        frac = np.arange(b) / b
        gains = (starts[:, None] + (ends - starts)[:, None] * frac[None, :]).ravel()[:size]
        out = held[:size] * gains.astype(np.float32)
        self.edge = float(ends[-1])
        self.left = np.concatenate([self.left, held[:size]])[-_CONTEXT:]
        self.held = held[size:]
        return out

    def state(self) -> dict:
        """Everything but the held samples (none after a flush), as plain JSON values."""
        return {"meter": self.meter.state(), "gain": [self.gain_from, self.gain], "left": self.left.tolist(),
                "edge": self.edge}

    def restore(self, state: dict) -> None:
        """Continue from a state() of an interrupted run (taken after a flush)."""
        self.meter.restore(state["meter"])
        self.gain_from, self.gain = (float(g) for g in state["gain"])
        self.left = np.asarray(state["left"], np.float32).reshape(_CONTEXT)
        self.edge = float(state["edge"])
        self.held = np.zeros(0, np.float32)
