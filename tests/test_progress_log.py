"""Progress where there is no terminal (a log, nohup): a line every --progress-every seconds; a
batch's "document k of n" and overall ETA; chapter titles as wide as the terminal allows."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from narrate.cli import progress as progress_module
from narrate.cli.progress import BatchClock, Progress


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", c)
    return c


def _log() -> tuple[io.StringIO, Console]:
    out = io.StringIO()
    return out, Console(file=out, width=300, force_terminal=False)


def test_a_log_gets_a_line_every_so_often_with_percent_audio_speed_and_eta(clock):
    out, console = _log()
    p = Progress(live=False, console=console, every=30)
    p.begin("book.epub", 4, 100)
    p.chapter("1/2 The Storm")
    clock.now += 10
    p.audio(1000)  # 10 s of audio after 10 s: too early for a line
    p.sentence()
    assert out.getvalue() == ""
    clock.now += 20
    p.audio(1000)  # 30 s in: a line
    lines = out.getvalue().splitlines()
    assert lines == ["narrate: book.epub, 1/2 The Storm: 25% (1 of 4 sentences), 0:20 of audio, "
                     "0.7x real time, ETA 1:30"]
    clock.now += 5
    p.audio(100)
    assert len(out.getvalue().splitlines()) == 1  # the next one 30 s after the last
    clock.now += 25
    p.sentence()
    p.audio(100)
    assert len(out.getvalue().splitlines()) == 2
    assert "50% (2 of 4 sentences)" in out.getvalue().splitlines()[1]


def test_no_lines_on_a_terminal_when_quiet_or_when_turned_off(clock):
    for p in (Progress(live=True, console=_log()[1], every=30), Progress(live=False, console=_log()[1], every=0)):
        out = p.console.file
        p.begin("book", 2, 100)
        clock.now += 100
        p.audio(100)
        p.end()
        assert "%" not in out.getvalue()
    assert Progress.for_terminal(quiet=True, every=30).every is None


def test_live_input_lines_have_no_percent_or_eta(clock):
    out, console = _log()
    p = Progress(live=False, console=console, every=1)
    p.begin("reading standard input", None, 100)
    clock.now += 2
    p.sentence()
    p.audio(300)
    assert out.getvalue().strip() == "narrate: reading standard input: 1 sentences, 0:03 of audio, 1.5x real time"


def test_the_batch_eta_weighs_documents_by_their_text(clock):
    batch = BatchClock([100.0, 50.0, 300.0])
    assert batch.eta(0.0) is None  # nothing done yet: no estimate
    clock.now += 10
    assert batch.eta(0.5) == pytest.approx(10 * (450 - 50) / 50)
    clock.now += 10
    batch.document(1)
    batch.skip(1)  # finished earlier: it takes no time
    batch.document(2)
    assert batch.eta(0.0) == pytest.approx(20 * 300 / 100)
    assert batch.eta(1.0) == pytest.approx(0.0)


def test_batch_lines_say_which_document_and_the_batch_eta(clock):
    out, console = _log()
    p = Progress(live=False, console=console, every=1)
    p.batch = BatchClock([100.0, 100.0])
    p.batch.document(1)
    p.begin("b.md", 2, 100)
    clock.now += 10  # (the batch started 10 s ago, its first document done)
    p.sentence()
    p.audio(100)
    line = out.getvalue().strip()
    assert line.startswith("narrate: document 2 of 2: b.md: 50% (1 of 2 sentences)")
    assert line.endswith("ETA 0:10, batch ETA 0:03")  # 150 of 200 done in 10 s: 3.3 s to go


@pytest.mark.parametrize("width, whole", [(200, True), (80, False)])
def test_chapter_titles_use_the_width_of_the_terminal(width, whole):
    title = "12/40 The Extraordinarily Long Title of a Chapter in a Victorian Novel"
    screen = io.StringIO()
    console = Console(file=screen, width=width, force_terminal=True)
    p = Progress(live=True, console=console)
    p.begin("book.epub", 10, 100)
    p.chapter(title)
    p._bar.refresh()
    p.end()
    assert (title in screen.getvalue()) == whole
    assert "12/40 The Extraordi" in screen.getvalue()


def test_a_batch_in_a_log_prints_document_k_of_n_and_its_eta(narrate_cmd, tmp_path):
    docs = []
    for name in ("a", "b"):
        doc = tmp_path / f"{name}.txt"
        doc.write_text(" ".join(f"Sentence number {i} of {name} is here." for i in range(6)), encoding="utf-8")
        docs.append(doc)
    proc = narrate_cmd("batch", *docs, "--out-dir", tmp_path / "out", "--progress-every", "0.01")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if re.match(r"narrate: document \d of 2: ", line)]
    assert any(line.startswith("narrate: document 1 of 2: a.txt") for line in lines), proc.stderr
    assert any(line.startswith("narrate: document 2 of 2: b.txt") and "batch ETA" in line for line in lines)
    assert all(re.search(r"\d+% \(\d+ of \d+ sentences\), \d+:\d\d of audio", line) for line in lines)
