"""make soak's watcher (bench/soak.py) on this test process and a child it starts: what it
samples, the processes and files it finds left over, and its summary."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.soak import HOSTILE, hostile_book, leftovers, resummarize, sample, summarize  # noqa: E402


def test_sample_sees_memory_files_and_children():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        seen = sample(os.getpid())
        assert seen["rss_mb"] > 10 and seen["open_files"] > 2
        assert seen["rss_main_mb"] > 10 and seen["rss_children_mb"] > 0  # the test process, then its child
        assert abs(seen["rss_main_mb"] + seen["rss_children_mb"] - seen["rss_mb"]) < 1e-6
        assert child.pid in seen["pids"] and seen["children"] >= 1
    finally:
        child.kill()
        child.wait()
    assert sample(child.pid) is None  # gone


def test_leftovers_names_living_children_and_hidden_files(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    (tmp_path / "book.wav").write_bytes(b"")
    assert leftovers({child.pid}, tmp_path) == {"processes": [child.pid], "files": []}
    child.kill()
    child.wait()
    (tmp_path / ".book.m4b.partial.w64").write_bytes(b"")
    assert leftovers({child.pid}, tmp_path) == {"processes": [], "files": [".book.m4b.partial.w64"]}
    (tmp_path / "chapters").mkdir()
    (tmp_path / "chapters" / ".narrate.json").write_text("{}")  # a chapter folder's resume record
    assert leftovers(set(), tmp_path / "chapters", interrupted=True)["files"] == []  # kept for --resume
    assert leftovers(set(), tmp_path / "chapters")["files"] == [".narrate.json"]  # after a finished run: left over
    (tmp_path / "chapters" / ".narrate.json").unlink()
    book = str(tmp_path / "book.m4b")  # an interrupted m4b keeps its audio for --resume; a finished one does not
    assert leftovers(set(), tmp_path, interrupted=True, target=book)["files"] == []
    assert leftovers(set(), tmp_path, target=book)["files"] == [".book.m4b.partial.w64"]
    assert leftovers(set(), tmp_path, interrupted=True, target=str(tmp_path / "book.wav"))["files"] == [
        ".book.m4b.partial.w64"]  # not what that run would continue from


def test_summary_keeps_each_runs_peaks_and_the_leftovers():
    rows = [{"minute": 0, "run": 0, "rss_mb": 100.0, "rss_main_mb": 60.0, "open_files": 9, "children": 1},
            {"minute": 1, "run": 0, "rss_mb": 300.0, "rss_main_mb": 200.0, "open_files": 12, "children": 2},
            {"minute": 2, "run": 1, "rss_mb": 90.0, "rss_main_mb": 50.0, "open_files": 8, "children": 1},
            {"minute": 20, "run": 1, "rss_mb": 95.0, "rss_main_mb": 70.0, "open_files": 8, "children": 1}]
    runs = [{"run": 0, "left": {"processes": [], "files": []}},
            {"run": 1, "left": {"processes": [4242], "files": [".x.lock"]}}]
    s = summarize(rows, runs)
    assert s["per_run"][0] == {"first_rss_mb": 100.0, "early_peak_rss_mb": 100.0, "peak_rss_mb": 300.0,
                               "early_peak_main_mb": 60.0, "peak_main_mb": 200.0,
                               "peak_open_files": 12, "peak_children": 2}  # 1 min of 1: past its first third
    assert (s["per_run"][1]["early_peak_rss_mb"], s["per_run"][1]["peak_rss_mb"]) == (90.0, 95.0)  # 18 min in: late
    assert (s["per_run"][1]["early_peak_main_mb"], s["per_run"][1]["peak_main_mb"]) == (50.0, 70.0)
    assert (s["leaked_processes"], s["leftover_files"], s["samples"]) == (1, [".x.lock"], 4)


def test_a_short_runs_growth_is_measured_from_its_first_third():
    rows = [{"minute": m, "run": 0, "rss_mb": 100.0 + 10 * m, "open_files": 9, "children": 1} for m in range(7)]
    p = summarize(rows, [{"run": 0, "left": {"processes": [], "files": []}}])["per_run"][0]
    assert (p["early_peak_rss_mb"], p["peak_rss_mb"]) == (120.0, 160.0)  # minutes 0-2 of 6, not all 6 (< 10)


def test_a_finished_soak_is_summarized_again_from_its_csv(tmp_path):
    rows = [{"minute": m, "run": 0, "rss_mb": 500.0 + m, "rss_main_mb": 300.0, "rss_children_mb": 200.0 + m,
             "open_files": 9, "children": 1} for m in range(40)]
    runs = [{"run": 0, "output": "book.wav", "exit": 0, "seconds": 2400.0, "left": {"processes": [], "files": []}}]
    with open(tmp_path / "soak.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (tmp_path / "soak.json").write_text(json.dumps({"meta": {"hours": 2}, "runs": runs, "per_run": {}}), encoding="utf-8")
    summary = resummarize(tmp_path)
    assert summary["meta"] == {"hours": 2} and summary["runs"] == runs
    assert (summary["per_run"][0]["early_peak_rss_mb"], summary["per_run"][0]["peak_rss_mb"]) == (510.0, 539.0)
    assert json.loads((tmp_path / "soak.json").read_text())["per_run"]["0"]["peak_main_mb"] == 300.0
    assert (tmp_path / "soak.png").exists()


def test_every_hostile_passage_is_in_the_book():
    book = hostile_book(len(HOSTILE))
    assert book.count("## Chapter") == len(HOSTILE)
    assert all(passage in book for passage in HOSTILE)


def test_the_benchmark_report_shows_each_soak_run_s_growth(tmp_path):
    from bench import report

    rows = [{"minute": 1, "run": 0, "rss_mb": 800.0, "open_files": 19, "children": 1},
            {"minute": 30, "run": 0, "rss_mb": 880.0, "open_files": 19, "children": 1}]
    runs = [{"run": 0, "output": "book.m4b", "exit": 0, "seconds": 1800.0, "left": {"processes": [], "files": []}}]
    soak = {"meta": {"command": "python -m bench.soak --hours 2", "git": "abc123" * 7, "started": "2026-12-07T12:00"},
            **summarize(rows, runs)}
    (tmp_path / "soak").mkdir()
    (tmp_path / "soak" / "soak.json").write_text(json.dumps(soak), encoding="utf-8")  # (keys become strings)
    lines = "\n".join(report._section_soak(report.load_soak(tmp_path))).splitlines()
    row = next(line for line in lines if line.startswith("| book.m4b"))
    assert row.split(" | ")[1:9] == ["0", "30.0", "800", "880", "+10.0%", "-", "-", "-"]  # (no main-process column)
    assert "python -m bench.soak --hours 2` at commit abc123abc123" in lines[2]
