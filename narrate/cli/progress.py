"""Progress of a narration on stderr: a live rich display while it runs, one summary line after.

stdout carries audio only, so everything here goes to stderr. The live display appears only on
a terminal (a log file would fill with redraws); elsewhere (a log, nohup, a service) a progress
line is printed every ``every`` seconds instead. The summary line is printed either way.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, Progress as RichProgress, TaskID, TextColumn, TimeRemainingColumn


@dataclass
class Stats:
    audio_seconds: float  # audio in the output (a resumed run's included)
    wall_seconds: float  # time spent narrating (model loading excluded)
    kept_seconds: float = 0.0  # of it, what an interrupted run had made (resumed runs)
    resumed: bool = False
    notes: list[str] = field(default_factory=list)  # what was not read, in words

    @property
    def new_seconds(self) -> float:
        """Audio made by this run."""
        return self.audio_seconds - self.kept_seconds

    @property
    def speed(self) -> float:
        """How many seconds of new audio per second of work (x real time)."""
        return self.new_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


class BatchClock:
    """A batch's overall ETA: each document weighs its text's length; the time the batch has
    taken so far, over the weight done, gives the time the rest will take."""

    def __init__(self, weights: list[float]):
        self.weights = list(weights)  # of each document, in order (0: nothing to narrate)
        self.index = 0  # the document being narrated
        self.done = 0.0  # weight of the documents before it
        self.started = time.monotonic()

    def document(self, index: int) -> None:
        """Now at document ``index``; those before it are finished (or failed or skipped)."""
        self.done += sum(self.weights[self.index:index])
        self.index = index

    def skip(self, index: int) -> None:
        """Document ``index`` needs no narrating (finished earlier, or failed): it weighs nothing."""
        self.weights[index] = 0.0

    def eta(self, fraction: float) -> float | None:
        """Seconds until the batch ends, ``fraction`` of the current document being done."""
        done = self.done + fraction * self.weights[self.index]
        left = sum(self.weights) - done
        elapsed = time.monotonic() - self.started
        if done <= 0 or elapsed <= 0:
            return None
        return max(0.0, elapsed * left / done)


class Progress:
    """Counts sentences and audio of one narration at a time and shows them live.

    ``live`` False keeps the counting (for the summary) without drawing anything, except a
    progress line every ``every`` seconds when that is given (a log has no live display).
    """

    def __init__(self, live: bool, console: Console | None = None, every: float | None = None):
        self.console = console or Console(stderr=True)
        self.live = live
        self.every = every if not live and every else None
        self.batch: BatchClock | None = None  # set by a batch: "document k of n", its ETA
        self._name = ""  # the narration's (its input's name)
        self._chapter = ""  # the chapter being narrated
        self._done = 0  # sentences written
        self._logged = 0.0
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None
        self._rate = 1
        self._samples = 0
        self._started = 0.0
        self._total: int | None = None
        self._kept: int | None = None  # samples an interrupted run had made (None: not resumed)
        self._written: int | None = None  # samples the finished output holds
        self._notes: list[str] = []

    @classmethod
    def for_terminal(cls, quiet: bool, every: float | None = None) -> "Progress":
        """The live display only when stderr is a terminal and --quiet is not given; elsewhere a
        line every ``every`` seconds (None or 0: none)."""
        live = not quiet and sys.stderr.isatty()
        return cls(live=live, every=None if quiet else every)

    def begin(self, label: str, total_sentences: int | None, sample_rate: int) -> None:
        """Start counting a narration of ``total_sentences`` (None: unknown, live input)."""
        self.end()
        self._rate = int(sample_rate)
        self._samples = 0
        self._total = total_sentences
        self._kept = self._written = None
        self._notes = []
        self._started = self._logged = time.monotonic()
        self._name, self._chapter = label, ""
        self._done = 0
        if not self.live:
            return
        count = "{task.completed}/{task.total}" if total_sentences is not None else "{task.completed}"
        # Compact columns: the whole line fits an 80-column terminal.
        self._bar = RichProgress(
            TextColumn("{task.description}", style="bold", markup=False),  # titles are not markup
            BarColumn(bar_width=12),
            TextColumn(count + " sentences"),
            TextColumn("{task.fields[audio]} audio"),
            TextColumn("{task.fields[speed]}"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[batch]}"),
            console=self.console,
            transient=True,  # the summary line replaces it
        )
        self._bar.start()
        self._task = self._bar.add_task(self._fit(label), total=total_sentences, audio="0:00", speed="",
                                        batch=self._batch_text(None))

    def _fit(self, label: str) -> str:
        # The other columns take ~62 characters (~85 with a batch's); the title gets the rest.
        return _short(label, max(20, self.console.width - (86 if self.batch else 63)))

    def chapter(self, label: str) -> None:
        """Now narrating ``label`` (e.g. "3/12 The Storm")."""
        self._chapter = label
        if self._bar is not None:
            self._bar.update(self._task, description=self._fit(label))

    def audio(self, n_samples: int) -> None:
        """``n_samples`` more samples were written."""
        self._samples += n_samples
        if self._bar is not None:
            stats = self.stats()
            speed = f"{stats.speed:.1f}x" if stats.wall_seconds > 1 else ""
            self._bar.update(self._task, audio=_clock(stats.audio_seconds), speed=speed,
                             batch=self._batch_text(self._fraction()))
        elif self.every and time.monotonic() - self._logged >= self.every:
            self._logged = time.monotonic()
            self.console.print(self.line(), markup=False, highlight=False, soft_wrap=True)

    def _fraction(self) -> float:
        return min(1.0, self._done / self._total) if self._total else 0.0

    def _batch_text(self, fraction: float | None) -> str:
        if self.batch is None:
            return ""
        eta = self.batch.eta(fraction) if fraction is not None else None
        where = f"doc {self.batch.index + 1}/{len(self.batch.weights)}"
        return f"{where}, all: {_clock(eta)}" if eta is not None else where

    def line(self) -> str:
        """The progress line printed in a log: "narrate: book.epub, 3/12 The Storm: 45% (540 of
        1200 sentences), 12:30 of audio, 2.1x real time, ETA 8:20" (a batch: "document 2 of 5:"
        first, "batch ETA 1:03:20" last)."""
        stats = self.stats()
        parts = []
        if self._total:
            parts.append(f"{100 * self._fraction():.0f}% ({self._done} of {self._total} sentences)")
        else:
            parts.append(f"{self._done} sentences")
        parts.append(f"{_clock(stats.audio_seconds)} of audio")
        if stats.wall_seconds > 0:
            parts.append(f"{stats.speed:.1f}x real time")
        if self._total and self._done and stats.wall_seconds > 0:
            parts.append(f"ETA {_clock(stats.wall_seconds * (self._total - self._done) / self._done)}")
        if self.batch is not None:
            eta = self.batch.eta(self._fraction())
            if eta is not None:
                parts.append(f"batch ETA {_clock(eta)}")
        where = ", ".join(p for p in (self._name, self._chapter) if p)
        head = f"document {self.batch.index + 1} of {len(self.batch.weights)}: " if self.batch else ""
        return f"narrate: {head}{where}: " + ", ".join(parts)

    def resumed(self, kept_samples: int) -> None:
        """This narration continues an interrupted one, whose output held ``kept_samples``."""
        self._kept = int(kept_samples)

    def finished(self, total_samples: int) -> None:
        """The output is complete and holds ``total_samples`` (what the summary reports)."""
        self._written = int(total_samples)

    def note(self, text: str) -> None:
        """Something the summary must mention, e.g. "2 chapters without words left out"."""
        self._notes.append(text)

    def sentence(self) -> None:
        """One more sentence is fully written."""
        self._done += 1
        if self._bar is not None:
            self._bar.advance(self._task)

    def stats(self) -> Stats:
        elapsed = time.monotonic() - self._started if self._started else 0.0
        kept = self._kept or 0
        total = self._written if self._written is not None else kept + self._samples
        return Stats(total / self._rate, elapsed, kept / self._rate, self._kept is not None,
                     list(self._notes))

    def end(self) -> Stats:
        """Stop the live display (idempotent); the counts of the narration that ended."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        return self.stats()


def summary_line(stats: Stats, where: str, warnings: int = 0) -> str:
    """"narrate: 1 min 3 s of audio in 20 s (3.2x real time) -> book.wav", followed by what the
    user should know: "; resumed: 40.0 s kept from the interrupted run, 23.0 s new",
    "; 1 chapter without words left out", "; 2 warnings above"."""
    line = (f"narrate: {_duration(stats.audio_seconds)} of audio in {_duration(stats.wall_seconds)} "
            f"({stats.speed:.1f}x real time) -> {where}")
    extra = list(stats.notes)
    if stats.resumed:
        extra.insert(0, f"resumed: {_duration(stats.kept_seconds)} kept from the interrupted run, "
                        f"{_duration(stats.new_seconds)} new")
    if warnings:
        extra.append(f"{warnings} warning{'s' if warnings != 1 else ''} above")
    return line + "".join(f"; {e}" for e in extra)


def _short(label: str, width: int = 20) -> str:
    return label if len(label) <= width else label[: width - 1] + "\u2026"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
