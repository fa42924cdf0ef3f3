"""A voice's pitch: the median fundamental frequency of its voiced speech.

Measured with Praat's autocorrelation method (parselmouth): WORLD's dio read piper's joe an
octave-ish high (154 Hz against Praat's 85 and pYIN's 90) and found nothing voiced in some clean
periodic signals. The model hears pitch as ``pitch_feature``: its log against a reference, so a
voice an octave up is one step of log(2) whatever its register. The benchmark measures a
prompt's and an output's pitch with the same function."""

from __future__ import annotations

import math

import numpy as np

PITCH_REF = 120.0   # Hz: pitch_feature 0
FLOOR, CEIL = 60.0, 500.0


def _praat_pitch(wav: np.ndarray, sr: int, floor: float, ceil: float, time_step: float | None = None):
    """(Praat Sound, its autocorrelation Pitch) of ``wav``; None if it is shorter than Praat's
    analysis window (nothing to measure)."""
    import parselmouth

    x = np.ascontiguousarray(wav, np.float64)
    if len(x) < int(3 * sr / floor):
        return None
    sound = parselmouth.Sound(x, sr)
    return sound, sound.to_pitch_ac(time_step=time_step, pitch_floor=floor, pitch_ceiling=ceil)


def median_pitch(wav: np.ndarray, sr: int, floor: float = FLOOR, ceil: float = CEIL) -> float:
    """Median F0 (Hz) over the voiced frames of ``wav``; NaN if none is voiced."""
    analysed = _praat_pitch(wav, sr, floor, ceil)
    if analysed is None:
        return math.nan
    f0 = analysed[1].selected_array["frequency"]
    voiced = f0[f0 > 0]
    return float(np.median(voiced)) if len(voiced) else math.nan


def voiced_share(wav: np.ndarray, sr: int, floor: float = FLOOR, ceil: float = CEIL,
                 within_db: float = 35.0) -> float:
    """Of the 10 ms frames louder than ``within_db`` below the loudest, the share Praat finds
    voiced (periodic); NaN if ``wav`` is too short. Natural read speech is mostly voiced (piper's
    joe: about two thirds); a vocoder unsure of the phase makes breathy, aperiodic audio whose
    spectrum can still look right, and this is where it shows."""
    analysed = _praat_pitch(wav, sr, floor, ceil, time_step=0.01)
    if analysed is None:
        return math.nan
    sound, pitch = analysed
    f0 = pitch.selected_array["frequency"]
    intensity = sound.to_intensity(time_step=0.01)
    db = np.nan_to_num(np.array([intensity.get_value(t) for t in pitch.xs()], np.float64), nan=-math.inf)
    loud = db > db.max() - within_db
    return float(((f0 > 0) & loud).sum() / max(1, loud.sum()))


def pitch_feature(hz: float) -> float:
    """Median pitch (Hz) -> the model's pitch input, log(hz / PITCH_REF); 0 (the reference) when
    unknown (NaN: no voiced speech)."""
    return 0.0 if not math.isfinite(hz) or hz <= 0 else math.log(hz / PITCH_REF)
