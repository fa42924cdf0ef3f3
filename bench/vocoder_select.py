"""Judging a vocoder by several measures at once: the long-term average spectrum (LTAS) of its
output against another's, and the rule that picks a checkpoint only when it is better by the
measures together (DNSMOS P.808 and OVRL, WER, speaker similarity, voiced share), never one up
and another down.
"""

from __future__ import annotations

import numpy as np

# measure -> (direction: +1 higher is better, tolerance: a change this small is noise, scale: a
# change of this size counts 1 in the combined score). Tolerances from reruns on 40 sentences.
MEASURES = {
    "p808": (+1, 0.03, 0.1),
    "ovrl": (+1, 0.03, 0.1),
    "wer": (-1, 0.01, 0.02),
    "sim": (+1, 0.005, 0.02),
    "voiced": (+1, 0.02, 0.05),  # narrate.pitch.voiced_share: breathy, aperiodic output scores low
}
BANDS = ((0, 500), (500, 2000), (2000, 4000), (4000, 8000))  # Hz
DB = 20 / np.log(10)  # natural log of a magnitude -> dB


def ltas(logmels: list[np.ndarray], floor_db: float = 50.0) -> np.ndarray:
    """Long-term average spectrum [M] (natural-log mel magnitude) over the frames of several
    utterances [T, M], silent frames left out: those more than ``floor_db`` under the loudest."""
    frames = np.concatenate([np.asarray(m, np.float64) for m in logmels])
    energy = np.log(np.exp(2 * frames).sum(1)) / 2  # log of each frame's magnitude (rms over bins)
    keep = energy > energy.max() - floor_db / DB
    return frames[keep].mean(0)


def band_difference(a: np.ndarray, b: np.ndarray, centres_hz: np.ndarray) -> dict[str, float]:
    """LTAS a minus b, in dB, averaged over the mel bins of each band of BANDS."""
    out = {}
    for lo, hi in BANDS:
        sel = (centres_hz >= lo) & (centres_hz < hi)
        out[f"{lo}-{hi}"] = float(DB * (a[sel] - b[sel]).mean()) if sel.any() else float("nan")
    return out


def compare(candidate: dict[str, float], baseline: dict[str, float]) -> tuple[bool, float, list[str]]:
    """(better by the measures together, combined score, the measures that got worse beyond noise).

    Better: no measure worse than the baseline by more than its tolerance, at least one better
    by more than its tolerance (gains all within noise are not a gain), and the combined score
    (each measure's gain over its scale, summed) above zero. A measure one of them lacks (an
    older run's figures) is left out."""
    score, worse, gained = 0.0, [], False
    for name, (sign, tol, scale) in MEASURES.items():
        if name not in candidate or name not in baseline:
            continue
        gain = sign * (candidate[name] - baseline[name])
        if gain < -tol:
            worse.append(name)
        gained = gained or gain > tol
        score += gain / scale
    return not worse and gained and score > 0, score, worse


def select(candidates: dict[str, dict[str, float]], baseline: dict[str, float]) -> str | None:
    """The name of the candidate better than the baseline by the measures together with the
    highest combined score, or None when none is."""
    ranked = []
    for name, measures in candidates.items():
        better, score, _ = compare(measures, baseline)
        if better:
            ranked.append((score, name))
    return max(ranked)[1] if ranked else None
