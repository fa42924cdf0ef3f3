"""The report's figures (matplotlib, Agg): memory vs length, drift per window, seams, speed."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def memory(result: dict, path: Path) -> str:
    """Peak RSS per rendered length (fresh process each), and RSS along the longest render."""
    runs = sorted(result["runs"], key=lambda r: r["minutes_target"])
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    mins = [r["audio_s"] / 60 for r in runs]
    a.plot(mins, [r["maxrss_loaded_mb"] for r in runs], "s--", color="tab:orange", label="peak RSS after loading")
    a.plot(mins, [r["maxrss_mb"] for r in runs], "o-", color="tab:blue", label="peak RSS after rendering")
    a.set_xlabel("audio rendered (min)")
    a.set_ylabel("MB")
    a.set_ylim(0, 1.25 * max(r["maxrss_mb"] for r in runs))
    a.set_title("narrate: peak memory vs audio length")
    a.legend(fontsize=8)
    trace = runs[-1]["rss_trace"]
    b.plot([t / 60 for t, _ in trace], [m for _, m in trace], "-")
    b.set_xlabel("audio rendered (min)")
    b.set_ylabel("current RSS (MB)")
    b.set_ylim(0, 1.25 * max(m for _, m in trace))
    b.set_title(f"RSS during the {runs[-1]['minutes_target']:g}-min render")
    return _save(fig, path)


def drift(windows: list[dict], path: Path) -> str:
    """WER and speaker similarity per window of the long rendering."""
    fig, a = plt.subplots(figsize=(7, 3.6))
    x = [(w["start_min"] + w["end_min"]) / 2 for w in windows]
    a.plot(x, [w["wer"] for w in windows], "o-", color="tab:red", label="WER")
    a.set_xlabel("minutes into the rendering (window centre)")
    a.set_ylabel("WER", color="tab:red")
    a.set_ylim(bottom=0)
    b = a.twinx()
    b.plot(x, [w["similarity"] for w in windows], "s-", color="tab:blue", label="similarity to joe")
    b.set_ylabel("speaker similarity", color="tab:blue")
    b.set_ylim(0, 1)
    a.set_title("narrate: drift over a long rendering")
    return _save(fig, path)


def seams(stats: dict[str, dict], path: Path) -> str:
    """Pause lengths at joins vs inside sentences; largest jumps near seams vs elsewhere."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    data, labels = [], []
    for name, s in stats.items():
        data += [s["raw"]["pause_at_seam_s"], s["raw"]["pause_inside_s"]]
        labels += [f"{name}\nat joins", f"{name}\ninside"]
    a.boxplot([d if d else [float("nan")] for d in data], tick_labels=labels)
    a.set_ylabel("pause (s)")
    a.set_title("pauses (silence runs >= 50 ms; 0 = no pause at a join)")
    a.tick_params(axis="x", labelsize=8)
    data, labels = [], []
    for name, s in stats.items():
        data += [s["raw"]["jump_at_seam"], s["raw"]["jump_elsewhere_sample"]]
        labels += [f"{name}\n±5 ms of joins", f"{name}\nelsewhere"]
    b.boxplot([d if d else [float("nan")] for d in data], tick_labels=labels)
    b.set_yscale("log")
    b.set_ylabel("largest |x[i+1] - x[i]| in a 10 ms window")
    b.set_title("sample-to-sample jumps (clicks)")
    b.tick_params(axis="x", labelsize=8)
    return _save(fig, path)


def speed(rtfs: dict[str, float], split: dict[str, float], path: Path) -> str:
    """RTF of each system; narrate's main process split into model steps and the rest, and its
    vocoder process (running at the same time) beside it."""
    fig, a = plt.subplots(figsize=(6, 3.4))
    names = list(rtfs)
    a.barh(names, [rtfs[n] for n in names], color="tab:gray")
    if split:
        left = 0.0
        for part, color in (("model", "tab:orange"), ("other", "tab:purple")):
            a.barh(["narrate main process"], [split[part]], left=left, color=color, label=part)
            left += split[part]
        a.barh(["narrate vocoder process"], [split["vocoder"]], color="tab:green", label="vocoder (overlapping)")
        a.legend(fontsize=8)
    a.axvline(1.0, color="k", lw=0.8, ls=":")
    a.set_xlabel("real-time factor (compute s / audio s; lower is faster)")
    return _save(fig, path)
