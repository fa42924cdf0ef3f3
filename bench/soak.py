"""Soak: narrate hostile text for hours and watch the process for leaks.

One ``narrate`` run after another (wav, m4b and a chapter folder in turn) reads a generated book
whose chapters mix ordinary prose with input that once hurt: long digit runs, unclosed
``[[``, runs of "!" and U+FEFF, a NUL-free jumble of scripts and a very long unpunctuated line.
Every ``--every`` seconds the run's resident memory, open files and child processes are recorded
(soak.csv); at the end soak.png draws them and soak.json sums them up, with the processes and
files left over after each run ended (there should be none).

    python -m bench.soak --hours 2 [--model DIR] [--out bench/results/soak]   (make soak HOURS=2)
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
FORMATS = ("book.wav", "book.m4b", "chapters/")  # each run's output, in turn

PROSE = ("The keeper climbed the stairs of the old lighthouse as the storm came in from the sea. "
         "He lit the lamp, wrote the hour in his book, and listened to the waves below. ")
HOSTILE = [
    "Her number was " + "7" * 3000 + ".",
    "The phonemes [[ h @ l oU " * 200 + "never closed.",
    "Stop" + "!" * 4000,
    "Marks\ufeff" * 2000 + " end here.",
    "Mixed scripts: Привет, 你好, مرحبا, שלום, and back to English. " * 40,
    # one long line without punctuation: 2,100 words (6,000 "word<i>" read as 40,000 words of
    # numbers, four hours of audio, and the book never reached its other formats in 2 hours)
    " ".join(PROSE.replace(",", "").replace(".", "").split() * 60),
]


def hostile_book(chapters: int) -> str:
    """A Markdown book: each chapter some prose, one hostile passage, more prose."""
    parts = []
    for i in range(chapters):
        parts.append(f"## Chapter {i + 1}\n\n{PROSE * 6}\n\n{HOSTILE[i % len(HOSTILE)]}\n\n{PROSE * 6}\n")
    return "\n".join(parts)


def sample(pid: int) -> dict | None:
    """RSS (MB: all, the run's own process, its children), open files and live child processes
    (count and pids) of ``pid`` and its children; None once it is gone."""
    try:
        top = psutil.Process(pid)
        procs = [top] + top.children(recursive=True)
    except psutil.NoSuchProcess:
        return None
    rss, files = [0, 0], 0
    for i, p in enumerate(procs):
        try:
            rss[i > 0] += p.memory_info().rss
            files += p.num_fds()
        except psutil.NoSuchProcess:
            pass
    return {"rss_mb": sum(rss) / 2**20, "rss_main_mb": rss[0] / 2**20, "rss_children_mb": rss[1] / 2**20,
            "open_files": files, "children": len(procs) - 1, "pids": [p.pid for p in procs[1:]]}


def leftovers(children: set[int], out: Path, interrupted: bool = False, target: str | None = None) -> dict:
    """After a run ended: the child processes it had that still live (an orphan is adopted by
    init, so they are looked up by pid), and the hidden files (temporaries, locks) it left. What
    --resume continues from is what an interrupted run must leave, so it counts only after a run
    that finished: a chapter folder's resume record, and the unfinished audio of the file output
    ``target`` (an encoded format's Wave64 intermediate)."""
    from narrate.audio.resume import FOLDER_RECORD
    from narrate.audio.sinks import format_for, unfinished_path

    kept = {FOLDER_RECORD}
    if target is not None and not target.endswith(os.sep):  # (a trailing separator: a chapter folder)
        kept.add(unfinished_path(Path(target), format_for(target, None)).name)
    alive = []
    for pid in sorted(children):
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    stray = [str(p.relative_to(out)) for p in out.rglob(".*")
             if p.is_file() and not (interrupted and p.name in kept)]
    return {"processes": alive, "files": stray}


def soak(hours: float, out: Path, model: str | None, every: float, chapters: int) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    book = out / "hostile.md"
    book.write_text(hostile_book(chapters), encoding="utf-8")
    from bench.run import git_state  # (the benchmark's: the commit, and whether the tree was dirty)

    meta = {"command": f"python -m bench.soak --hours {hours:g} --chapters {chapters}" + (f" --model {model}" if model else ""),
            "git": git_state(), "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "hours": hours, "chapters": chapters}
    deadline = time.monotonic() + hours * 3600
    start = time.monotonic()
    rows, runs = [], []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    k = 0
    while time.monotonic() < deadline:
        name = FORMATS[k % len(FORMATS)]
        target = str(out / "runs") + os.sep + name  # (a trailing "/" means a chapter folder)
        cmd = [sys.executable, "-m", "narrate", str(book), "-o", target, "--force", "-q"]
        cmd += ["--model", model] if model else []
        log = open(out / "runs.log", "a", encoding="utf-8")
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, cwd=ROOT, env=env)
        began = time.monotonic()
        children: set[int] = set()
        while proc.poll() is None:
            if time.monotonic() >= deadline:
                proc.terminate()  # ends like Ctrl-C: the output is kept, the run reports it
            seen = sample(proc.pid)
            if seen:
                children.update(seen.pop("pids"))
                rows.append({"minute": (time.monotonic() - start) / 60, "run": k, **seen})
            try:
                proc.wait(timeout=every)
            except subprocess.TimeoutExpired:
                pass
        log.close()
        time.sleep(1.0)  # children get a moment to notice their parent is gone
        runs.append({"run": k, "output": name, "exit": proc.returncode,
                     "seconds": round(time.monotonic() - began, 1),
                     "left": leftovers(children, out / "runs", interrupted=proc.returncode != 0, target=target)})
        k += 1
    with open(out / "soak.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["minute", "run", "rss_mb", "rss_main_mb", "rss_children_mb",
                                    "open_files", "children"])
        writer.writeheader()
        writer.writerows(rows)
    summary = {"meta": meta, **summarize(rows, runs)}
    (out / "soak.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if rows:
        draw(rows, out / "soak.png")
    return summary


EARLY = 10.0  # minutes: a run's memory once its model is loaded and its first passages read


def summarize(rows: list[dict], runs: list[dict]) -> dict:
    """Per run: first and peak RSS (all, and narrate's own process), their peaks over the run's
    early part (what it grows from: its first EARLY minutes, or its first third if it is shorter
    than 3 x EARLY, so that a short run's growth is measured too), peak files and children; over
    all: what was left behind."""
    span: dict = {}
    for r in rows:
        first, last = span.get(r["run"], (r["minute"], r["minute"]))
        span[r["run"]] = (min(first, r["minute"]), max(last, r["minute"]))
    per_run: dict = {}
    for r in rows:
        first, last = span[r["run"]]
        s = per_run.setdefault(r["run"], {"first_rss_mb": r["rss_mb"], "early_peak_rss_mb": 0.0,
                                          "peak_rss_mb": 0.0, "early_peak_main_mb": 0.0, "peak_main_mb": 0.0,
                                          "peak_open_files": 0, "peak_children": 0})
        main = r.get("rss_main_mb") or 0.0
        if r["minute"] - first <= min(EARLY, (last - first) / 3):
            s["early_peak_rss_mb"] = max(s["early_peak_rss_mb"], r["rss_mb"])
            s["early_peak_main_mb"] = max(s["early_peak_main_mb"], main)
        s["peak_rss_mb"] = max(s["peak_rss_mb"], r["rss_mb"])
        s["peak_main_mb"] = max(s["peak_main_mb"], main)
        s["peak_open_files"] = max(s["peak_open_files"], r["open_files"])
        s["peak_children"] = max(s["peak_children"], r["children"])
    return {"samples": len(rows), "runs": runs, "per_run": per_run,
            "leaked_processes": sum(len(r["left"]["processes"]) for r in runs),
            "leftover_files": sorted({f for r in runs for f in r["left"]["files"]})}


def resummarize(out: Path) -> dict:
    """soak.json and soak.png made again from a finished soak's soak.csv (its runs and meta kept):
    for a summary whose definition changed since the soak ran."""
    old = json.loads((out / "soak.json").read_text(encoding="utf-8"))
    with open(out / "soak.csv", newline="", encoding="utf-8") as f:
        rows = [{k: (int(v) if k in ("run", "open_files", "children") else float(v)) for k, v in r.items() if v != ""}
                for r in csv.DictReader(f)]
    summary = {"meta": old.get("meta", {}), **summarize(rows, old["runs"])}
    (out / "soak.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if rows:
        draw(rows, out / "soak.png")
    return summary


def draw(rows: list[dict], path: Path) -> None:
    from bench.plots import _save, plt

    minutes = [r["minute"] for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
    for key, label in (("rss_mb", "all"), ("rss_main_mb", "narrate"), ("rss_children_mb", "its children")):
        axes[0].plot(minutes, [r[key] for r in rows], ".-", markersize=3, label=label)
    axes[0].legend(loc="lower right")
    for ax, key in zip(axes[1:], ("open_files", "children")):
        ax.plot(minutes, [r[key] for r in rows], ".-", markersize=3)
    for ax, label in zip(axes, ("RSS (MB)", "open files", "child processes")):
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
    axes[-1].set_xlabel("minutes (a new narrate run after each one ends)")
    axes[0].set_title("narrate soak: hostile text, wav / m4b / chapter folder in turn")
    _save(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    parser.add_argument("--every", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--chapters", type=int, default=6,
                        help="chapters in the generated book (6: each hostile passage once)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "soak")
    parser.add_argument("--summarize-only", action="store_true",
                        help="no new soak: summarize the one in --out again from its soak.csv")
    args = parser.parse_args()
    if args.summarize_only:
        summary = resummarize(args.out)
    else:
        summary = soak(args.hours, args.out, args.model, args.every, args.chapters)
    if (args.out.parent / "results.json").exists():  # the benchmark's report shows the soak too
        from bench import report

        report.write(args.out.parent)
    peaks = [s["peak_rss_mb"] for s in summary["per_run"].values()]
    print(f"soak: {len(summary['runs'])} runs, {summary['samples']} samples, peak RSS "
          f"{max(peaks, default=0):.0f} MB, {summary['leaked_processes']} leaked processes, "
          f"{len(summary['leftover_files'])} leftover files -> {args.out}")


if __name__ == "__main__":
    main()
