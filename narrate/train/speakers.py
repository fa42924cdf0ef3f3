"""The voices of the training corpus: piper's joe, pseudo-speakers made from it, and other
synthesizers, with the text timing of each.

Every sentence is read by piper's joe voice, whose per-phoneme timing is exact. Other voices
come two ways:

- **Pseudo-speakers** (``world``): WORLD (pyworld) analysis of a rendering and resynthesis with
  another speaker's pitch (F0 scaled), vocal-tract length (the spectral envelope warped along
  frequency), spectral tilt and breathiness (aperiodicity raised). The samples keep their
  timing, so joe's alignment stays exact, and the prosody stays a natural reader's: the model
  learns timbre, not robotic prosody.
- **Other synthesizers** (``real``): flite's awb and kal16 and Festival's ked read the same
  sentence; dynamic time warping of their mel-cepstra against joe's rendering maps joe's
  per-phoneme timing onto theirs (``align_durations``). Half of them are then widened by the
  same WORLD transforms.

Pseudo-speakers come in families, regions of the transform space. One family
(``HELDOUT_FAMILY``) never enters training, nor do the real voices slt (flite and Festival)
and rms: the benchmark clones them (``heldout_prompts``).
"""

from __future__ import annotations

import os
import random
import subprocess
import tempfile
from dataclasses import asdict, dataclass

import numpy as np

SAMPLE_RATE = 22050
FRAME_PERIOD_MS = 5.0

# family -> ranges of (F0 scale, envelope warp, tilt, breathiness). F0 and warp scale joe's
# (F0 ~110 Hz); warp > 1 moves the formants up (a shorter vocal tract); tilt is the exponent of
# (f / 1 kHz) applied to the envelope; breathiness b raises aperiodicity to ap ** (1 - b).
FAMILIES = {
    "m-low": ((0.74, 0.9), (0.86, 0.94), (-0.6, 0.2), (0.0, 0.2)),
    "m-mid": ((0.9, 1.1), (0.94, 1.02), (-0.4, 0.4), (0.0, 0.25)),
    "m-high": ((1.1, 1.3), (1.0, 1.08), (-0.3, 0.5), (0.0, 0.25)),
    "f-low": ((1.35, 1.55), (1.06, 1.12), (-0.4, 0.4), (0.05, 0.3)),
    "f-mid": ((1.55, 1.75), (1.1, 1.16), (-0.4, 0.5), (0.05, 0.3)),
    "f-high": ((1.75, 2.0), (1.14, 1.22), (-0.3, 0.6), (0.05, 0.3)),
    # held out: a female range with a dark, breathy timbre no training family has
    "f-breathy": ((1.45, 1.7), (1.08, 1.15), (-0.9, -0.6), (0.4, 0.5)),
}
HELDOUT_FAMILY = "f-breathy"
PER_FAMILY = 30            # pseudo-speakers of joe per family
PER_FAMILY_REAL = 10       # pseudo-speakers of the other synthesizers per family
REAL_VOICES = ("awb", "kal16", "ked")        # trained on
HELDOUT_REAL = ("slt", "slt-hts", "rms")     # never trained on


@dataclass(frozen=True)
class Speaker:
    name: str
    base: str                # joe | awb | kal16 | ked
    family: str = ""         # "" = the base voice itself
    f0: float = 1.0
    warp: float = 1.0
    tilt: float = 0.0
    breath: float = 0.0

    @property
    def transformed(self) -> bool:
        return bool(self.family)

    def to_dict(self) -> dict:
        return asdict(self)


def _draw(rng: random.Random, name: str, base: str, family: str) -> Speaker:
    f0, warp, tilt, breath = (rng.uniform(*r) for r in FAMILIES[family])
    return Speaker(name, base, family, round(f0, 3), round(warp, 3), round(tilt, 3), round(breath, 3))


def training_speakers(seed: int = 0) -> list[Speaker]:
    """joe, the real voices, and their pseudo-speakers from every family but the held-out one."""
    rng = random.Random(seed)
    out = [Speaker("joe", "joe")] + [Speaker(v, v) for v in REAL_VOICES]
    for family in FAMILIES:
        if family == HELDOUT_FAMILY:
            continue
        out += [_draw(rng, f"joe-{family}-{k}", "joe", family) for k in range(PER_FAMILY)]
        out += [_draw(rng, f"{REAL_VOICES[k % 3]}-{family}-{k}", REAL_VOICES[k % 3], family) for k in range(PER_FAMILY_REAL)]
    return out


def heldout_speakers(n: int = 2, seed: int = 1000) -> list[Speaker]:
    """Pseudo-speakers of the held-out family (never in training)."""
    rng = random.Random(seed)
    return [_draw(rng, f"joe-{HELDOUT_FAMILY}-{k}", "joe", HELDOUT_FAMILY) for k in range(n)]


# --- WORLD ---------------------------------------------------------------------------------
@dataclass
class WorldAnalysis:
    f0: np.ndarray   # [T] Hz (0 unvoiced)
    sp: np.ndarray   # [T, n_fft/2 + 1] spectral envelope
    ap: np.ndarray   # [T, n_fft/2 + 1] aperiodicity
    n: int           # samples


def analyze(x: np.ndarray, sr: int = SAMPLE_RATE) -> WorldAnalysis:
    import pyworld as pw

    x = np.ascontiguousarray(x, np.float64)
    f0, t = pw.dio(x, sr, frame_period=FRAME_PERIOD_MS)
    f0 = pw.stonemask(x, f0, t, sr)
    return WorldAnalysis(f0, pw.cheaptrick(x, f0, t, sr), pw.d4c(x, f0, t, sr), len(x))


def warp_envelope(sp: np.ndarray, warp: float) -> np.ndarray:
    """sp'(f) = sp(f / warp), by linear interpolation between bins."""
    n = sp.shape[1]
    src = np.arange(n) / warp
    lo = np.clip(np.floor(src).astype(np.int64), 0, n - 1)
    hi = np.minimum(lo + 1, n - 1)
    w = np.clip(src - lo, 0.0, 1.0)
    return sp[:, lo] * (1 - w) + sp[:, hi] * w


def transform(a: WorldAnalysis, spk: Speaker, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Resynthesize an analysis as ``spk`` -> float32 of exactly the analysed length."""
    import pyworld as pw

    freqs = np.linspace(0, sr / 2, a.sp.shape[1])
    sp = warp_envelope(a.sp, spk.warp) * (np.maximum(freqs, 100.0) / 1000.0) ** spk.tilt
    ap = a.ap ** (1.0 - spk.breath) if spk.breath else a.ap
    y = pw.synthesize(a.f0 * spk.f0, np.ascontiguousarray(sp), np.ascontiguousarray(ap), sr, FRAME_PERIOD_MS)
    y = y[: a.n]
    return np.pad(y, (0, a.n - len(y))).astype(np.float32)


def match_level(y: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Scale y to the RMS of ref over their louder samples; never above -1 dBFS peak."""
    def level(x):
        x = np.abs(x)
        return float(np.sqrt(np.mean(x[x > 0.1 * x.max()] ** 2))) if x.max() > 0 else 0.0

    ly = level(y)
    if ly == 0:
        return y
    g = min(level(ref) / ly, 0.89 / max(float(np.abs(y).max()), 1e-6))
    return (y * g).astype(np.float32)


# --- other synthesizers ---------------------------------------------------------------------
def _resample(x: np.ndarray, sr: int) -> np.ndarray:
    if sr == SAMPLE_RATE:
        return x.astype(np.float32)
    import librosa

    return librosa.resample(x.astype(np.float32), orig_sr=sr, target_sr=SAMPLE_RATE)


def render_real(voice: str, text: str) -> np.ndarray:
    """flite (awb, kal16, slt, rms) or Festival (ked, slt-hts) reading ``text`` -> float32 at 22,050 Hz."""
    import soundfile as sf

    with tempfile.TemporaryDirectory() as d:
        wav = os.path.join(d, "a.wav")
        if voice in ("ked", "slt-hts"):
            src = os.path.join(d, "a.txt")
            with open(src, "w", encoding="utf-8") as f:
                f.write(text)
            name = {"ked": "voice_ked_diphone", "slt-hts": "voice_cmu_us_slt_arctic_hts"}[voice]
            subprocess.run(["text2wave", "-eval", f"({name})", src, "-o", wav], check=True, capture_output=True)
        else:
            subprocess.run(["flite", "-voice", voice, "-t", text, "-o", wav], check=True, capture_output=True)
        x, sr = sf.read(wav, dtype="float32", always_2d=True)
    return _resample(x.mean(axis=1), sr)


def _cepstra(logmel: np.ndarray) -> np.ndarray:
    """log-mel [T, M] -> mel-cepstra 1..20, normalized per utterance (speaker differences fall out)."""
    from scipy.fft import dct

    c = dct(logmel.astype(np.float64), type=2, norm="ortho", axis=1)[:, 1:21]
    return (c - c.mean(0)) / (c.std(0) + 1e-6)


def align_durations(ref_mel: np.ndarray, other_mel: np.ndarray, durations: np.ndarray) -> np.ndarray:
    """Per-token frame counts of the reference (sum = len(ref_mel)) -> those of another reading of
    the same text (sum = len(other_mel)), through the DTW path between the two readings."""
    import librosa
    from scipy.spatial.distance import cdist

    cost = cdist(_cepstra(ref_mel), _cepstra(other_mel))
    _, path = librosa.sequence.dtw(C=cost)
    first = np.full(len(ref_mel), len(other_mel), np.int64)
    np.minimum.at(first, path[:, 0], path[:, 1])      # first frame of the other reading per ref frame
    first = np.minimum.accumulate(first[::-1])[::-1]  # monotone
    starts = np.concatenate([[0], np.cumsum(durations)[:-1]])
    starts = np.append(first, len(other_mel))[starts]
    starts[0] = 0
    return np.diff(np.append(starts, len(other_mel))).astype(np.int64)


def speaker_named(name: str) -> Speaker:
    """A training or held-out pseudo-speaker, or a base voice, by name."""
    for s in [*training_speakers(), *heldout_speakers()]:
        if s.name == name:
            return s
    if name in HELDOUT_REAL:
        return Speaker(name, name)
    raise ValueError(f"unknown speaker {name!r}")


def render(spk: Speaker, text: str, joe_audio: np.ndarray, joe_world: WorldAnalysis | None = None) -> np.ndarray:
    """``spk`` reading ``text`` at 22,050 Hz (float32), made from joe's rendering of it where
    the speaker is joe's, else by its synthesizer; at joe's level. joe_world: the analysis of
    joe's rendering, when the caller has it (several pseudo-speakers of one sentence)."""
    joe = joe_audio.astype(np.float32) / 32768.0 if joe_audio.dtype == np.int16 else np.asarray(joe_audio, np.float32)
    if spk.base == "joe":
        return match_level(transform(joe_world or analyze(joe), spk), joe) if spk.transformed else joe
    wav = match_level(render_real(spk.base, text), joe)
    return match_level(transform(analyze(wav), spk), joe) if spk.transformed else wav


def heldout_prompts() -> dict[str, str]:
    """name -> description of the voices the benchmark clones (never in training)."""
    out = {"slt-hts": "Festival cmu_us_slt_arctic_hts (US female, real speaker)",
           "rms": "flite rms (US male, real speaker)"}
    for s in heldout_speakers():
        out[s.name] = f"joe resynthesized by WORLD as a '{HELDOUT_FAMILY}' pseudo-speaker (F0 x{s.f0}, warp x{s.warp})"
    return out


