"""Pure helpers on synthetic or rendered arrays: RTF arithmetic, silence runs, seam pauses,
pause statistics, sample-to-sample jumps (clicks), sentence windows for drift, scoring windows,
median F0, memory growth, summaries."""

from __future__ import annotations

import math

import numpy as np


def rtf(compute_s: float, audio_s: float) -> float:
    """Real-time factor: compute seconds per audio second (below 1 is faster than real time)."""
    return compute_s / audio_s if audio_s > 0 else math.inf


def ratio(a: float, b: float) -> float:
    """a / b, inf when b is 0."""
    return a / b if b else math.inf


def frame_db(wav: np.ndarray, sr: int, frame_ms: float = 10.0) -> np.ndarray:
    """RMS of consecutive non-overlapping frames in dB relative to the clip's peak |sample|."""
    x = np.asarray(wav, np.float32)  # float32 keeps a 60-minute clip's temporaries small
    n = int(round(sr * frame_ms / 1000))
    frames = len(x) // n
    if frames == 0:
        return np.zeros(0)
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    if peak <= 0:
        return np.full(frames, -np.inf)
    rms = np.sqrt(np.mean(np.square(x[: frames * n].reshape(frames, n)), axis=1, dtype=np.float64))
    with np.errstate(divide="ignore"):
        return 20 * np.log10(rms / peak)


def silence_runs(wav: np.ndarray, sr: int, frame_ms: float = 10.0, threshold_db: float = -40.0,
                 min_ms: float = 50.0) -> list[tuple[int, int]]:
    """(start, end) sample spans of runs of frames below ``threshold_db`` lasting >= ``min_ms``."""
    db = frame_db(wav, sr, frame_ms)
    n = int(round(sr * frame_ms / 1000))
    quiet = np.concatenate([[False], db < threshold_db, [False]])
    edges = np.flatnonzero(np.diff(quiet.astype(np.int8)))
    starts, ends = edges[0::2], edges[1::2]
    min_frames = math.ceil(min_ms / frame_ms - 1e-9)
    return [(int(s * n), int(e * n)) for s, e in zip(starts, ends) if e - s >= min_frames]


def seam_pauses(runs: list[tuple[int, int]], seams: list[int], sr: int,
                tolerance_ms: float = 20.0) -> tuple[list[float], list[float]]:
    """Pause seconds at each seam (0 when no silence run touches it) and the lengths of the
    silence runs touching no seam (pauses inside sentences). A run touches a seam when the seam
    lies within the run widened by ``tolerance_ms`` on each side."""
    tol = int(round(sr * tolerance_ms / 1000))
    seams_arr = np.asarray(sorted(seams), np.int64)
    at_seam = [0.0] * len(seams_arr)
    inner = []
    for s, e in runs:
        lo, hi = np.searchsorted(seams_arr, [s - tol, e + tol + 1])
        if hi > lo:
            for k in range(lo, hi):
                at_seam[k] = max(at_seam[k], (e - s) / sr)
        else:
            inner.append((e - s) / sr)
    return at_seam, inner


def pause_stats(wav: np.ndarray, sr: int, seams: list[int], min_pause_s: float = 0.3, long_s: float = 1.0) -> dict:
    """Pauses of a rendering: silence runs (as ``silence_runs``) of at least ``min_pause_s``
    between its first and last sound (leading and trailing silence is no pause). Their total
    and share of the audio, how many last over ``long_s``, the longest, and the pause at each
    sentence join (0 where none: as ``seam_pauses``, runs of 50 ms and more)."""
    frame = int(round(sr * 0.01))
    end = len(wav) // frame * frame if frame else 0
    inner = [(s, e) for s, e in silence_runs(wav, sr) if s > 0 and e < end]
    pauses = [(e - s) / sr for s, e in inner if (e - s) / sr >= min_pause_s]
    at_seam, _ = seam_pauses(inner, seams, sr)
    seconds = len(wav) / sr
    return {"audio_s": seconds, "silence_s": float(sum(pauses)),
            "silence_share": float(sum(pauses)) / seconds if seconds else math.nan,
            "n_pauses": len(pauses), "long_s": long_s, "n_long": sum(1 for p in pauses if p > long_s),
            "longest_s": max(pauses, default=0.0), "sentence_pause_s": summary(at_seam)}


def score_windows(n: int, window: int) -> list[tuple[int, int]]:
    """(start, end) of consecutive ``window``-sample pieces of ``n`` samples; a remainder of
    half a window or more is scored as the last ``window`` samples; shorter audio is one piece."""
    if n <= window:
        return [(0, n)] if n else []
    spans = [(k * window, (k + 1) * window) for k in range(n // window)]
    if n % window >= window / 2:
        spans.append((n - window, n))
    return spans


def max_jump(wav: np.ndarray, center: int, sr: int, half_ms: float = 5.0) -> float:
    """Largest |x[i+1] - x[i]| with both samples within ±half_ms of ``center``."""
    h = int(round(sr * half_ms / 1000))
    seg = np.asarray(wav[max(0, center - h): center + h + 1], np.float64)
    return float(np.max(np.abs(np.diff(seg)))) if len(seg) > 1 else 0.0


def jump_stats(wav: np.ndarray, seams: list[int], sr: int, half_ms: float = 5.0) -> tuple[list[float], list[float]]:
    """Largest jump within ±half_ms of each seam, and the same statistic over every
    non-overlapping window of that width elsewhere (windows overlapping a seam's ±2·half_ms
    neighbourhood are left out)."""
    x = np.asarray(wav, np.float32)
    at = [max_jump(x, s, sr, half_ms) for s in seams if 0 < s < len(x)]
    width = 2 * int(round(sr * half_ms / 1000)) + 1
    d = np.abs(np.diff(x))
    n = len(d) // width
    if n == 0:
        return at, []
    per = d[: n * width].reshape(n, width).max(axis=1)
    keep = np.ones(n, bool)
    for s in seams:
        lo = max(0, (s - 2 * width) // width)
        hi = min(n, (s + 2 * width) // width + 1)
        keep[lo:hi] = False
    return at, per[keep].astype(np.float64).tolist()


def sentence_windows(spans: list[tuple[int, int, int]], window_s: float, sr: int) -> list[dict]:
    """Group (sentence, start, end) sample spans into consecutive windows of ~window_s by the
    sample where each sentence ends; a last window shorter than half a window joins the one
    before. Each window: {"start", "end" (samples), "sentences" (span indices)}."""
    w = int(round(window_s * sr))
    groups: dict[int, list[int]] = {}
    for i, (_, _, end) in enumerate(spans):
        groups.setdefault(max(0, end - 1) // w, []).append(i)
    windows = [{"start": spans[idx[0]][1], "end": spans[idx[-1]][2], "sentences": idx}
               for _, idx in sorted(groups.items())]
    if len(windows) > 1 and windows[-1]["end"] - windows[-1]["start"] < w / 2:
        last = windows.pop()
        windows[-1]["end"] = last["end"]
        windows[-1]["sentences"] += last["sentences"]
    return windows


def same_text_pairs(texts: list[str], late: list[int]) -> list[tuple[int, int]]:
    """(first, late) span-index pairs: each sentence of ``late`` with the first time the same
    text was spoken before ``late`` began (sentences never spoken before are left out)."""
    first: dict[str, int] = {}
    for i, t in enumerate(texts[: late[0]] if late else []):
        first.setdefault(t, i)
    return [(first[texts[i]], i) for i in late if texts[i] in first]


def relative_growth(peaks: dict[float, float]) -> float:
    """(peak at the longest length - peak at the shortest) / peak at the shortest."""
    if not peaks:
        return math.nan
    lo, hi = min(peaks), max(peaks)
    return (peaks[hi] - peaks[lo]) / peaks[lo]


def summary(values: list[float]) -> dict:
    """n, mean, median, p95, max of a list (NaN for an empty list)."""
    v = np.asarray(values, np.float64)
    if v.size == 0:
        return {"n": 0, "mean": math.nan, "median": math.nan, "p95": math.nan, "max": math.nan}
    return {"n": int(v.size), "mean": float(v.mean()), "median": float(np.median(v)),
            "p95": float(np.percentile(v, 95)), "max": float(v.max())}
