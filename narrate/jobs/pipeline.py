"""The narration pipeline: an input document (or live standard input) -> the narrator -> sinks.

Two steps, so that every mistake the user can make is reported before the slow model load:
``make_plan`` reads the input, decides where the audio goes and whether to resume; ``run``
narrates.
A file narration is resumable: a ResumeRecord beside the output says how far it got (sentence
boundaries in the wav file or the lossless intermediate of an encoded one, finished chapter files
in a chapter folder).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import TextIO

import numpy as np

from narrate.audio.lock import OutputLock
from narrate.audio.loudness import TARGET, LoudnessSettings, Normalizer
from narrate.audio.resume import (ResumeRecord, check_compatible, clear_record, load_record,
                                  record_path, save_record, sha256_file)
from narrate.audio.sinks import ENCODED, ChapterFiles, Sink, format_for, open_sink, unfinished_path
from narrate.audio.tags import Tags, write_tags
from narrate.document.base import Document
from narrate.document import load_document
from narrate.text.dialogue import dialogue_pieces
from narrate.errors import AlreadyFinished, InputError, ModelError, OutputError, Terminated, warn
from narrate.document.matter import matter_by_title
from narrate.runtime.pauses import CHAPTER_PAUSE, PARAGRAPH_PAUSE, Sentence
from narrate.cli.progress import Progress
from narrate.audio.subtitles import SentenceTimes, SubtitleFile, subtitle_path
from narrate.text.language import not_english
from narrate.text.live import live_sentences
from narrate.text.live_markup import markup_reader
from narrate.text.segment import prepare_sentence, spoken

DEFAULT_NAME = "narrate-output"  # output stem when the text comes from standard input
OPENING = "Opening"  # the name of text before a document's first chapter heading
MAX_CHARS = 200  # longest piece of text handed to the engine at once
CHAPTERS_AT_ONCE = 8  # chapter files decoded together (batched steps; the next joins as one ends)
RECORD_EVERY = 1.0  # seconds between resume record saves (each one is an fsync)
SILENT_PEAK = 1e-4  # a narration whose loudest sample is below this (-80 dBFS) is silence


class Interrupted(Exception):
    """The run was stopped by Ctrl-C or SIGTERM after its output was made playable."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Target:
    kind: str  # "stdout", "file" or "folder" (one file per chapter)
    path: Path | None  # None for stdout
    fmt: str

    @property
    def where(self) -> str:
        return "stdout" if self.path is None else str(self.path)


@dataclass
class Job:
    """One narration as the user asked for it."""

    input: str  # a file path, or "-" for standard input
    output: str | None = None  # None: the default name (see plan_output)
    fmt: str | None = None  # None: from the output name
    split: str | None = None  # "none", "chapters", or None: decided by the output
    resume: bool = False
    force: bool = False
    quiet_time: float = 0.8  # live input: seconds of silence that end a pending sentence
    lexicon: object | None = None  # narrate.text.lexicon.Lexicon
    paragraph_pause: float = PARAGRAPH_PAUSE  # seconds after a paragraph
    chapter_pause: float = CHAPTER_PAUSE      # seconds after a chapter, in one file
    titles: bool = True  # each chapter starts with its title spoken (followed by a paragraph's pause)
    loudness: float | None = TARGET  # LUFS the output is brought to; None: as the model makes it
    title: str | None = None   # the book's title, author and cover (image bytes) in the tags;
    author: str | None = None  # None: as the document says
    cover: bytes | None = None
    footnotes: bool = False  # read EPUB/HTML footnotes (marked as such) where they stand
    chapters: str | None = None  # which chapters to read, e.g. "3-5,8" (numbers as narrate chapters lists them)
    front_matter: bool = False  # also read front and back matter (copyright, contents, index...: narrate.document.matter)
    dialogue: bool = False  # cut quoted speech out of the sentences for the dialogue voice (narrate.text.dialogue)
    subtitles: str | None = None  # "srt" or "vtt": cues in a file beside each audio file (narrate.audio.subtitles)
    voice_map: object | None = None  # narrate.jobs.voice_map.VoiceMap: voices by chapter
    input_format: str | None = None  # "txt", "md", "html", "epub", "pdf"; None: by the file's suffix (stdin: txt)
    settings: dict = field(default_factory=dict)  # what a resumed run must share with the first


@dataclass
class Plan:
    """A job checked and ready to run once the narrator is loaded."""

    job: Job
    target: Target
    document: Document | None  # None: live standard input
    # (name, engine-ready sentences; the spoken title first), chapters without words dropped; the
    # name (see chapter_names) is the same in chapter marks, file names and tags
    chapters: list[tuple[str, list[Sentence]]]
    input_sha256: str = ""
    record: ResumeRecord | None = None  # the interrupted run to continue
    notes: list[str] = field(default_factory=list)  # what is not read, for the summary
    lock: OutputLock | None = None  # held on the output from make_plan to the end of run


def plan_output(input: str, output: str | None, fmt: str | None, split: str | None,
                stdout_is_tty: bool) -> Target:
    """Where the audio of ``input`` goes.

    No -o: "<input stem>.<fmt>" beside the input (a "<stem>" folder with --split chapters); for
    standard input, stdout unless it is a terminal, else "narrate-output.wav". An output ending
    in "/" or naming an existing folder means one file per chapter, unless --split none.
    """
    live = input == "-"
    if live and split == "chapters":
        raise InputError("--split chapters needs an input file: standard input has no chapters")
    if output is None:
        if live:
            output = "-" if not stdout_is_tty else f"{DEFAULT_NAME}.{fmt or 'wav'}"
        else:
            source = Path(input)
            output = (str(source.with_suffix("")) + os.sep if split == "chapters"
                      else str(source.with_name(f"{source.stem}.{fmt or 'wav'}")))
    if output == "-":
        if split == "chapters":
            raise OutputError("chapter files cannot go to stdout; give a folder with -o")
        if stdout_is_tty:  # the stdout sink refuses too, but only after the model load
            raise OutputError("refusing to write binary audio to a terminal; pipe it to a player "
                              "(| ffplay -nodisp -) or give an output file")
        return Target("stdout", None, format_for("-", fmt))
    path = Path(output).expanduser()
    names_folder = output.endswith(("/", os.sep)) or path.is_dir()
    if split == "chapters" or (split is None and names_folder):
        if live:
            raise OutputError(f"{path} is a folder: one file per chapter needs an input file, "
                              f"not standard input; give an output file name")
        fmt = format_for(f"chapter.{fmt or 'wav'}", fmt)
        return Target("folder", path, fmt)
    if path.is_dir():  # --split none into a folder: the file goes inside it
        stem = DEFAULT_NAME if live else Path(input).stem
        path = path / f"{stem}.{fmt or 'wav'}"
    if not live and path.resolve() == Path(input).resolve():
        raise OutputError(f"the output {path} is the input file; give another output name")
    _refuse_special(path)
    return Target("file", path, format_for(str(path), fmt))


def make_plan(job: Job, stdout_is_tty: bool) -> Plan:
    """Read and cut the input, choose the output, decide about resuming. Raises NarrateError.

    The output is locked from here to the end of run(): a second run on it fails at once.
    """
    target = plan_output(job.input, job.output, job.fmt, job.split, stdout_is_tty)
    if target.path is not None:
        _check_parents(target.path)  # before the lock file beside it is made: a file in the way is named
    lock = OutputLock(target.path).acquire() if target.path is not None else None
    try:
        plan = _make_plan(job, target)
    except BaseException:
        if lock:
            lock.release()
        raise
    plan.lock = lock
    return plan


def _make_plan(job: Job, target: Target) -> Plan:
    job.settings = {**job.settings, "format": target.fmt, "split": target.kind}
    if job.subtitles and target.kind == "stdout":
        raise OutputError("--subtitles needs an output file or folder, not stdout")
    if job.input == "-":
        if job.dialogue:
            raise InputError("--dialogue-voice needs an input file, not standard input")
        if job.voice_map:
            raise InputError("--voice-map needs an input file, not standard input: it names chapters")
        if job.input_format in ("epub", "pdf"):
            raise InputError(f"--input-format {job.input_format} needs an input file; standard input "
                             f"is read as it comes: txt, md or html")
        if job.subtitles:
            raise OutputError("--subtitles needs an input file, not standard input")
        if job.resume:
            raise OutputError("--resume needs an input file: standard input cannot be read again")
        if target.path is not None:
            _check_parents(target.path)
        _refuse_existing(target, job.force)
        return Plan(job, target, None, [])
    document, chapters, sha, notes = _read_chapters(job, one_file=target.kind != "folder")
    result = Plan(job, target, document, chapters, sha, notes=notes)
    result.record = _resume_point(result)
    if job.subtitles and target.kind == "file" and result.record is None and not job.force:
        path = subtitle_path(target.path, job.subtitles)
        if path.exists():
            raise OutputError(f"{path} exists; use --force to overwrite")
    return result


def read_chapters(job: Job, one_file: bool = True) -> tuple[Document, list[tuple[str, list[Sentence]]], str]:
    """The input's chapters as (name, engine-ready sentences: the spoken title first, the chapter
    pause after the last when the chapters share one file), chapters without words dropped, with
    the document and the SHA-256 of its bytes (narrate.jobs.cluster cuts documents with this too)."""
    return _read_chapters(job, one_file)[:3]


def _read_chapters(job: Job, one_file: bool) -> tuple[Document, list[tuple[str, list[Sentence]]], str, list[str]]:
    # read_chapters, and in words what of the document is not read (for the run's summary)
    document = load_document(job.input, job.footnotes, job.input_format)
    why = not_english("\n".join(c.text for c in islice(document.chapters, 20)))
    if why:
        warn(f"'{job.input}' does not look like English ({why}); the model reads every text as English")
    listed = book_chapters(document, job)
    notes = []
    empty = len(document.chapters) - len(listed)
    if empty:
        notes.append(f"{_chapters(empty)} without words left out")
    if job.chapters:  # (front or back matter too, when named)
        chosen = [listed[i - 1] for i in chapter_selection(job.chapters, len(listed))]
        notes.append(f"{len(chosen)} of {len(listed)} chapters read (--chapters {job.chapters})")
    else:  # (a book of nothing but matter is read whole)
        chosen = [c for c in listed if job.front_matter or not c[2]] or listed
        if len(chosen) < len(listed):
            notes.append(f"{_chapters(len(listed) - len(chosen))} of front or back matter skipped "
                         f"(--front-matter reads them)")
    chapters = [(name, sents) for name, sents, _ in chosen]
    _chapter_ends(chapters, job.chapter_pause if one_file else None)
    try:
        sha = sha256_file(job.input)
    except OSError as e:
        raise InputError(f"cannot read '{job.input}': {e.strerror or e}") from None
    return document, chapters, sha, notes


def _chapters(n: int) -> str:
    return f"{n} chapter{'s' if n != 1 else ''}"


def book_chapters(document: Document, job: Job) -> list[tuple[str, list[Sentence], str]]:
    """The document's chapters as they are read: (name, sentences; the spoken title first, what
    it is if front or back matter, else ""), chapters without words left out; numbered from 1
    in this order by ``narrate chapters``. With a voice map, each sentence carries the voice
    that reads it (``Sentence.voice``)."""
    chapters = [(c.title, list(spoken(c.text, MAX_CHARS, job.lexicon, job.paragraph_pause)),
                 c.matter or matter_by_title(c.title)) for c in document.chapters]
    chapters = [c for c in chapters if c[1]]
    if not chapters:
        raise InputError(f"'{job.input}' has nothing to read aloud (no words in it)")
    names = chapter_names([title for title, _, _ in chapters], document.title)
    voices = job.voice_map.assign(names) if job.voice_map else [(None, None)] * len(names)
    listed = []
    for name, (title, sents, matter), (voice, dialogue) in zip(names, chapters, voices):
        if job.dialogue or dialogue:
            sents = list(dialogue_pieces(sents))
        if voice or dialogue:
            # quoted speech: the chapter's dialogue voice, else --dialogue-voice (voice None), else the chapter's
            sents = [replace(s, voice=(dialogue or (None if job.dialogue else voice)) if s.dialogue else voice)
                     for s in sents]
        heading = _spoken_title(title, job) if job.titles else []
        listed.append((name, [replace(s, voice=voice) for s in heading] + sents, matter))
    return listed


def chapter_selection(text: str, count: int, what: str | None = None) -> list[int]:
    """The chapter numbers (from 1, in order, each once) that ``text`` such as "3-5,8" names;
    InputError if it is malformed or names a chapter the book does not have. ``what`` starts the
    messages (default: "--chapters TEXT:")."""
    what = what or f"--chapters {text!r}:"
    chosen: set[int] = set()
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d*)\s*)?", part)
        if not m:
            raise InputError(f"{what} give chapter numbers and ranges such as 3-5,8")
        first = int(m.group(1))
        last = first if m.group(2) is None else int(m.group(2) or count)  # "7-": to the end
        if not 1 <= first <= last:
            raise InputError(f"{what} {part.strip()!r} is not a range of chapters")
        if last > count:
            raise InputError(f"{what} the book has {count} chapter{'s' if count != 1 else ''} "
                             f"(see 'narrate chapters')")
        chosen.update(range(first, last + 1))
    return sorted(chosen)


def chapter_names(titles: list[str], book_title: str) -> list[str]:
    """The name of each chapter, in every output alike: its title; untitled, the book's title when
    it is the only chapter, OPENING for text before the first heading, else "Chapter N"."""
    if len(titles) == 1:
        return [titles[0] or book_title or "Chapter 1"]
    return [title or (OPENING if i == 0 else f"Chapter {i + 1}") for i, title in enumerate(titles)]


def _spoken_title(title: str, job: Job) -> list[Sentence]:
    """A chapter's title as sentences to speak (none for an untitled chapter), the last
    followed by a paragraph's pause."""
    if not title:
        return []
    pieces = prepare_sentence(title if title[-1] in ".!?" else title + ".", MAX_CHARS, job.lexicon)
    return [Sentence(p, job.paragraph_pause if i == len(pieces) - 1 else None) for i, p in enumerate(pieces)]


def _chapter_ends(chapters: list[tuple[str, list[Sentence]]], pause: float | None) -> None:
    """A chapter's last sentence is followed by the chapter pause when another chapter follows
    in the same file; a file ends after a sentence's pause."""
    for n, (_, sents) in enumerate(chapters):
        last = pause if pause is not None and n + 1 < len(chapters) else None
        sents[-1] = replace(sents[-1], pause=last)


def decoder_processes(plan: Plan) -> int:
    """Processes to decode the plan with: chapter files, several to narrate, use every core
    (their share of the chapters a batch in each; see narrate.runtime.decoders); anything else, one."""
    if plan.document is None or plan.target.kind != "folder":
        return 1
    done = len(plan.record.chapters_done) if plan.record else 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, len(plan.chapters) - done, CHAPTERS_AT_ONCE))


def run(narrator, plan: Plan, progress: Progress, stdin: TextIO | None = None) -> str:
    """Narrate the plan; returns where the audio went. Interrupted on Ctrl-C / SIGTERM."""
    try:
        if plan.document is None:
            return _run_live(narrator, plan, progress, stdin)
        if plan.target.kind == "folder":
            where = _run_folder(narrator, plan, progress)
        else:
            where = _run_file(narrator, plan, progress)
        for note in plan.notes:
            progress.note(note)
        return where
    finally:
        if plan.lock:
            plan.lock.release()


# --- resuming ---------------------------------------------------------------------------------


def _refuse_existing(target: Target, force: bool) -> None:
    # The sinks refuse too, but only once the model is loaded; this says it at once.
    if target.kind == "file" and target.path.exists() and not force:
        raise OutputError(f"{target.path} exists; use --force to overwrite")


def _refuse_special(path: Path) -> None:
    # A device, pipe or socket is never replaced by a file, whatever --force says.
    if path.exists() and not path.is_file():
        raise OutputError(f"{path} is not a regular file (a device, pipe or socket); give "
                          f"the name of a file to write")


def _check_parents(path: Path) -> None:
    """Fail now, not after the model load, when the output's folder cannot exist."""
    for folder in path.parents:  # nearest first
        if folder.exists():
            if not folder.is_dir():
                raise OutputError(f"cannot write {path}: {folder} is a file, not a folder")
            return


def _resume_point(plan: Plan) -> ResumeRecord | None:
    """The record to continue from (--resume), after checking it fits; None to start afresh."""
    job, target = plan.job, plan.target
    resumable = _resumable(target)
    if job.resume and not resumable:
        raise OutputError(f"--resume needs an output file (wav, flac, ogg, mp3 or m4b) or a "
                          f"chapter folder, not {target.fmt} to {target.where}")
    if target.path is not None:
        _check_parents(target.path)
    if not resumable:
        _refuse_existing(target, job.force)
        return None
    path = target.path
    record = load_record(path)
    if job.force:
        clear_record(path)
        return None
    if target.kind == "folder":
        present = path.is_dir() and any(path.iterdir())
    elif target.fmt in ENCODED:  # only the intermediate is unfinished; a file under the name is done
        present = unfinished_path(path, target.fmt).exists()
    else:  # an interrupt moves the wav under its name, a kill leaves it under the temporary one
        present = path.exists() or unfinished_path(path, target.fmt).exists()
    if record is not None and not present:
        clear_record(path)  # the output it described is gone or was finished: no resuming
        record = None
    if record is None:
        if job.resume and (present or (target.kind == "file" and path.exists())):
            raise AlreadyFinished(f"nothing to resume: {path} has no resume record (the run that made "
                              f"it finished); use --force to start over")
        _refuse_existing(target, job.force)
        return None
    if not job.resume:
        raise OutputError(f"{path} is an unfinished narration (its run was interrupted); use "
                          f"--resume to continue it or --force to start over")
    check_compatible(record, plan.input_sha256, job.settings)
    n = len(plan.chapters)
    fits = (all(i < n for i in record.chapters_done) and record.chapter <= n
            and (record.chapter == n or record.sentences_done <= len(plan.chapters[record.chapter][1]))
            and all(i.isdigit() and int(i) < n and int(i) not in record.chapters_done
                    and b[0] < len(plan.chapters[int(i)][1]) for i, b in record.begun.items()))
    if not fits:
        raise OutputError(f"resume record {record_path(path)} does not match the input; use "
                          f"--force to start over")
    return record


def _resumable(target: Target) -> bool:
    return target.kind == "folder" or (target.kind == "file" and target.fmt != "raw")


class _Checkpoint:
    """The resume record of a single-file run, kept at the last sentence boundary.

    ``at`` is one tuple replaced in a single assignment, so a Ctrl-C arriving at any moment
    finds a consistent boundary to save.
    """

    def __init__(self, path: Path, plan: Plan, sink: Sink, normalizer: Normalizer | None,
                 chapter: int, sentences_done: int, subtitles: SubtitleFile | None = None):
        self.path = path
        self.plan = plan
        self.sink = sink
        self.normalizer = normalizer
        self.subtitles = subtitles  # its cues reach the disk before the record that counts on them
        self.at = ()
        self._saved = time.monotonic()  # the caller saves the first boundary at once
        self.reached(chapter, sentences_done)

    def save(self) -> None:
        chapter, done, samples, loudness, marks = self.at
        if self.subtitles:
            self.subtitles.sync()
        save_record(self.path, ResumeRecord(
            self.plan.input_sha256, self.plan.job.settings, chapters_done=list(range(chapter)),
            chapter=chapter, sentences_done=done, samples_written=samples, loudness=loudness,
            marks=marks))
        self._saved = time.monotonic()

    def reached(self, chapter: int, sentences_done: int) -> None:
        """The output holds whole sentences up to here: the boundary a resumed run starts from."""
        self.at = (chapter, sentences_done, self.sink.samples_written,
                   self.normalizer.state() if self.normalizer else None,
                   [list(m) for m in self.sink.chapters])
        if time.monotonic() - self._saved >= RECORD_EVERY:
            self.save()


def _interrupted(exc: KeyboardInterrupt, seconds: float, where: str, resumable: bool) -> Interrupted:
    code = 143 if isinstance(exc, Terminated) else 130
    if where == "stdout":
        return Interrupted(f"interrupted: {seconds:.1f} s of audio written to stdout", code)
    tail = "; run again with --resume to continue" if resumable else ""
    return Interrupted(f"interrupted: {seconds:.1f} s of audio kept in {where}{tail}", code)


# --- the three kinds of run -------------------------------------------------------------------


def book_tags(plan: Plan, title: str | None = None, track: tuple[int, int] | None = None) -> Tags:
    """The tags of an output file: the book's (a chapter file's: its chapter name and number)."""
    job, doc = plan.job, plan.document
    info = doc.info
    book = job.title or doc.title
    return Tags(title=title or book, album=book, author=job.author or info.author, year=info.year,
                publisher=info.publisher, description=info.description, language=info.language,
                track=track, cover=job.cover or info.cover)


def _normalizer(plan: Plan, rate: int, state: dict | None = None) -> Normalizer | None:
    """The loudness normalizer of one output (None: --no-normalize), continuing ``state``."""
    if plan.job.loudness is None:
        return None
    normalizer = Normalizer(rate, LoudnessSettings(target=plan.job.loudness))
    if state:
        try:
            normalizer.restore(state)
        except (KeyError, TypeError, ValueError) as e:
            raise OutputError(f"resume record {record_path(plan.target.path)} is corrupt ({e}); "
                              f"use --force to start over") from None
    return normalizer


def _leveled(normalizer: Normalizer | None, chunk) -> np.ndarray:
    """A chunk's samples through the normalizer, all given out at a sentence's end."""
    return chunk.samples if normalizer is None else normalizer.level(chunk.samples, chunk.final)


def _run_file(narrator, plan: Plan, progress: Progress) -> str:
    """All chapters into one output (chapter marks for m4b), resumable at sentence boundaries."""
    target, record, rate = plan.target, plan.record, narrator.sample_rate
    first_chapter = record.chapter if record else 0
    skip = record.sentences_done if record else 0
    normalizer = _normalizer(plan, rate, record.loudness if record else None)
    sink = open_sink(target.path or "-", target.fmt, rate, force=plan.job.force,
                     resume=record is not None)
    checkpoint = None
    if _resumable(target) and record is not None:
        sink.truncate_to(record.samples_written)
        sink.chapters = [(title, start) for title, start in record.marks]
    subtitles = None
    if plan.job.subtitles:
        subtitles = SubtitleFile(subtitle_path(target.path, plan.job.subtitles), plan.job.subtitles,
                                 sink.samples_written / rate if record else None, force=plan.job.force)
    if _resumable(target):
        checkpoint = _Checkpoint(target.path, plan, sink, normalizer, first_chapter, skip, subtitles)
        checkpoint.save()  # from now on an unfinished output always has its record
    total = sum(len(s) for _, s in plan.chapters[first_chapter:]) - skip
    health = _Health()
    progress.begin(_label(plan), total, rate)
    if record is not None:
        progress.resumed(record.samples_written)
    try:
        with sink:
            for c in range(first_chapter, len(plan.chapters)):
                title, sents = plan.chapters[c]
                offset = skip if c == first_chapter else 0
                if offset == 0:
                    sink.mark_chapter(title)
                progress.chapter(_chapter_label(c, len(plan.chapters), title))
                times = subtitles and SentenceTimes(subtitles, rate, lambda s, sents=sents, offset=offset:
                                                    sents[offset + s].text, sink.samples_written)
                for chunk in health.watch(narrator.narrate(islice(sents, offset, None))):
                    sink.write(_leveled(normalizer, chunk))
                    if times:
                        times.chunk(chunk, sink.samples_written)
                    progress.audio(len(chunk.samples))
                    if chunk.final:
                        progress.sentence()
                        if checkpoint:
                            checkpoint.reached(c, offset + chunk.sentence + 1)
                if normalizer:
                    sink.write(normalizer.flush())
                if checkpoint:
                    checkpoint.reached(c + 1, 0)
                    checkpoint.save()
    except KeyboardInterrupt as e:
        if checkpoint:
            checkpoint.save()
        raise _interrupted(e, sink.samples_written / rate, sink.kept_in, checkpoint is not None) from e
    except Exception:
        if checkpoint and record is None and sink.samples_written == 0:
            # A fresh run that failed before its first audio leaves nothing to resume: no record
            # (it would make the next plain run refuse) and no empty file under the name (an
            # encoded sink keeps its empty intermediate nowhere, and no file was put there).
            clear_record(target.path)
            if target.fmt not in ENCODED:
                target.path.unlink(missing_ok=True)
            if subtitles:
                subtitles.path.unlink(missing_ok=True)
        raise
    finally:
        if subtitles:
            subtitles.close()
    if checkpoint:
        clear_record(target.path)
    progress.finished(sink.samples_written)
    if target.path is not None:
        write_tags(target.path, target.fmt, book_tags(plan))
    health.check(target.where)
    return target.where


def _run_folder(narrator, plan: Plan, progress: Progress) -> str:
    """One file per chapter (plus a chapter-marked m4b when ffmpeg is there), several chapters
    decoded together; resumable: finished chapter files are kept, and a chapter under way
    continues from its last finished sentence (the record's ``begun``)."""
    target, rate = plan.target, narrator.sample_rate
    done = set(plan.record.chapters_done) if plan.record else set()
    begun: dict[int, list] = {int(i): list(b) for i, b in (plan.record.begun if plan.record else {}).items()}
    n = len(plan.chapters)
    files = ChapterFiles(target.path, target.fmt, rate, force=plan.job.force,
                         with_m4b=bool(shutil.which("ffmpeg") and shutil.which("ffprobe")),
                         resume=plan.record is not None, n_chapters=n,
                         book_title=plan.job.title or plan.document.title)
    for i in sorted(done):
        files.add_existing(i + 1, plan.chapters[i][0])

    finished = plan.record.samples_written if plan.record else 0  # in the finished chapter files
    kept = finished + sum(b[1] for b in begun.values())  # and in those under way
    saved = [time.monotonic()]

    def save() -> None:
        for file in subtitles.values():  # its cues reach the disk before the record that counts on them
            if not file.file.closed:
                file.sync()
        save_record(target.path, ResumeRecord(plan.input_sha256, plan.job.settings,
                                              chapters_done=sorted(done), chapter=len(done),
                                              samples_written=finished,
                                              begun={str(i): b for i, b in begun.items()}))
        saved[0] = time.monotonic()

    subtitles: dict[int, SubtitleFile] = {}  # each chapter file's subtitles (--subtitles), by place in pending
    save()
    pending = [i for i in range(n) if i not in done]
    offsets = [begun[i][0] if i in begun else 0 for i in pending]  # sentences a chapter's file holds
    health = _Health()
    progress.begin(_label(plan), sum(len(plan.chapters[i][1]) - k for i, k in zip(pending, offsets)), rate)
    if plan.record is not None:
        progress.resumed(kept)
    written = 0
    try:
        with files:
            sinks: dict[int, Sink] = {}  # by place in pending, opened at a chapter's first audio
            normalizers: dict[int, Normalizer | None] = {}  # each chapter file's own
            times: dict[int, SentenceTimes] = {}
            try:
                streams = (islice(plan.chapters[i][1], k, None) for i, k in zip(pending, offsets))
                for s, chunk in health.watch(narrator.narrate_many(streams, width=CHAPTERS_AT_ONCE)):
                    i, k = pending[s], offsets[s]
                    if s not in sinks:
                        progress.chapter(f"chapter {i + 1}/{n}")
                        again = i in begun
                        sinks[s] = files.start_chapter(i + 1, plan.chapters[i][0], resume=again)
                        if again:
                            sinks[s].truncate_to(begun[i][1])
                        normalizers[s] = _normalizer(plan, rate, begun[i][2] if again else None)
                        if plan.job.subtitles:
                            path = subtitle_path(files.chapter_path(i + 1, plan.chapters[i][0]), plan.job.subtitles)
                            subtitles[s] = SubtitleFile(path, plan.job.subtitles,
                                                        begun[i][1] / rate if again else None, force=True)
                            times[s] = SentenceTimes(subtitles[s], rate, lambda j, i=i, k=k: plan.chapters[i][1][k + j].text,
                                                     sinks[s].samples_written)
                    sinks[s].write(_leveled(normalizers[s], chunk))
                    if s in times:
                        times[s].chunk(chunk, sinks[s].samples_written)
                    written += len(chunk.samples)
                    progress.audio(len(chunk.samples))
                    if chunk.final:
                        progress.sentence()
                        if k + chunk.sentence + 1 == len(plan.chapters[i][1]):
                            if normalizers[s]:
                                sinks[s].write(normalizers[s].flush())
                            sinks[s].close()
                            finished += sinks[s].samples_written
                            name = plan.chapters[i][0]
                            write_tags(files.chapter_path(i + 1, name), target.fmt,
                                       book_tags(plan, name, (i + 1, n)))
                            done.add(i)
                            begun.pop(i, None)
                            save()
                        else:  # a sentence boundary: where this chapter continues after an interrupt
                            normalizer = normalizers[s]
                            begun[i] = [k + chunk.sentence + 1, sinks[s].samples_written,
                                        normalizer.state() if normalizer else None]
                            if time.monotonic() - saved[0] >= RECORD_EVERY:
                                save()
                for sink in sinks.values():  # normally all closed above already
                    sink.close()
            except BaseException:
                for sink in sinks.values():  # keep what each chapter file got, playable
                    sink.abort()
                raise
            finally:
                for file in subtitles.values():
                    file.close()
    except KeyboardInterrupt as e:
        save()
        raise _interrupted(e, written / rate, target.where, True) from e
    clear_record(target.path)
    progress.finished(finished)
    if files.m4b_path.is_file():
        write_tags(files.m4b_path, "m4b", book_tags(plan))
    health.check(target.where)
    return target.where


def _run_live(narrator, plan: Plan, progress: Progress, stdin: TextIO) -> str:
    """Standard input, each sentence spoken as soon as it is complete and written at once."""
    target, rate = plan.target, narrator.sample_rate
    feed = live_sentences(stdin, quiet=plan.job.quiet_time, max_chars=MAX_CHARS,
                          lexicon=plan.job.lexicon, markup=markup_reader(plan.job.input_format, plan.job.footnotes))
    progress.begin("reading standard input", None, rate)
    sink: Sink | None = None
    normalizer = _normalizer(plan, rate)
    health = _Health()
    try:
        for chunk in health.watch(narrator.narrate(feed, live=True)):
            if sink is None:
                # Opened on the first audio, so that input without any text leaves no empty file.
                sink = open_sink(target.path or "-", target.fmt, rate, force=plan.job.force,
                                 keep_unfinished=False)  # live input cannot be resumed
            sink.write(_leveled(normalizer, chunk))
            progress.audio(len(chunk.samples))
            if chunk.final:
                progress.sentence()
    except BaseException as e:
        if sink is not None:
            sink.abort()
        if isinstance(e, KeyboardInterrupt):
            seconds = sink.samples_written / rate if sink else 0.0
            raise _interrupted(e, seconds, target.where, False) from e
        raise
    if sink is None:
        raise InputError("standard input had no text to read")
    if normalizer:
        sink.write(normalizer.flush())
    sink.close()
    progress.finished(sink.samples_written)
    health.check(target.where)
    return target.where


class _Health:
    """What the narrator made, to catch a damaged model: samples that are NaN or infinite (the
    sinks write them as silence) and the loudest sample (a narration of silence is no use)."""

    def __init__(self):
        self.samples = 0
        self.bad = 0
        self.peak = 0.0

    def watch(self, chunks):
        """``chunks`` (AudioChunk, or (stream, AudioChunk)) passed on unchanged, each looked at."""
        for item in chunks:
            x = np.asarray((item[1] if isinstance(item, tuple) else item).samples, np.float32)
            if x.size:
                finite = np.isfinite(x)
                bad = x.size - int(np.count_nonzero(finite))
                if bad:
                    self.bad += bad
                    x = x[finite]
                if x.size:
                    self.peak = max(self.peak, float(np.abs(x).max()))
                self.samples += finite.size
            yield item

    def check(self, where: str) -> None:
        """A warning for non-finite samples; ModelError when the whole narration is silence."""
        if self.bad:
            warn(f"{self.bad} of {self.samples} samples in {where} were NaN or infinite (written "
                 f"as silence); the model's weights may be damaged")
        if self.samples and self.peak < SILENT_PEAK:
            raise ModelError(f"the narration in {where} is silent (no sample above -80 dBFS); "
                             f"the model's weights may be damaged")


def _label(plan: Plan) -> str:
    return Path(plan.job.input).name


def _chapter_label(index: int, count: int, title: str) -> str:
    return f"{index + 1}/{count} {title}" if title else f"chapter {index + 1}/{count}"
