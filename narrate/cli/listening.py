"""Listening commands: ``narrate speak`` (the default), ``narrate batch``, ``narrate chapters``."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from narrate.cli.core import (
    LOUDNESS,
    Author,
    BatchVoiceMapFile,
    BookTitle,
    ChapterPause,
    Chapters,
    Cover,
    DialogueVoice,
    Footnotes,
    Force,
    Format,
    FrontMatter,
    Lexicon,
    Loudness,
    Model,
    Normalize,
    ParagraphPause,
    ProgressEvery,
    Quiet,
    Resume,
    Revision,
    Seed,
    SentencePause,
    Speed,
    Split,
    Subtitles,
    Temperature,
    Titles,
    Vocoder,
    VocoderChoice,
    InputFormatOption,
    Voice,
    VoiceMapFile,
    _err,
    _fail,
    _given_extras,
    _identity,
    _isatty,
    _message,
    _narrator,
    _out,
    _reported,
    app,
)
from narrate.errors import AlreadyFinished, NarrateError, warn, warnings_shown
from narrate.runtime.pauses import CHAPTER_PAUSE, PARAGRAPH_PAUSE, SENTENCE_PAUSE


@app.command()
def speak(
    input: Annotated[str, typer.Argument(
        show_default=False,
        help="Text to read: a .txt, .md, .html, .epub or .pdf file, or - for standard input (each "
             "sentence is spoken as soon as it is complete).")],
    voice: Voice = None,
    dialogue_voice: DialogueVoice = None,
    voice_map: VoiceMapFile = None,
    input_format: InputFormatOption = None,
    output: Annotated[Optional[str], typer.Option(
        "--output", "-o", show_default=False,
        help="Audio file to write; a folder (ending in / or existing) for one file per chapter; "
             "- for stdout. Default: the input's name with .wav, beside it (standard input: "
             "stdout, or narrate-output.wav on a terminal).")] = None,
    model: Model = None,
    revision: Revision = None,
    vocoder: Vocoder = VocoderChoice.auto,
    split: Annotated[Optional[Split], typer.Option(
        "--split", show_default=False,
        help="chapters: one file per chapter plus a chapter-marked .m4b, in the folder given "
             "with -o (default: a folder named after the input). none: one file. Default: "
             "chapters when -o is a folder.")] = None,
    fmt: Annotated[Optional[Format], typer.Option(
        "--format", "-f", show_default=False,
        help="Audio format. Default: from the output name; wav for stdout (raw is bare 16-bit "
             "little-endian PCM). m4b keeps the chapters.")] = None,
    resume: Resume = False,
    force: Force = False,
    speed: Speed = 1.0,
    seed: Seed = 0,
    temperature: Temperature = 0.6,
    lexicon: Lexicon = None,
    sentence_pause: SentencePause = SENTENCE_PAUSE,
    paragraph_pause: ParagraphPause = PARAGRAPH_PAUSE,
    chapter_pause: ChapterPause = CHAPTER_PAUSE,
    titles: Titles = True,
    loudness: Loudness = LOUDNESS,
    normalize: Normalize = True,
    title: BookTitle = None,
    author: Author = None,
    cover: Cover = None,
    chapters: Chapters = None,
    footnotes: Footnotes = False,
    front_matter: FrontMatter = False,
    subtitles: Subtitles = None,
    quiet_time: Annotated[float, typer.Option(
        "--quiet-time", min=0.05,
        help="Standard input: seconds without new text after which a sentence without final "
             "punctuation is spoken anyway.")] = 0.8,
    quiet: Quiet = False,
    progress_every: ProgressEvery = 30.0,
) -> None:
    """Read INPUT aloud into an audio file (the default command: narrate INPUT is the same)."""
    from narrate.jobs.pipeline import Job, decoder_processes, make_plan, run
    from narrate.cli.progress import Progress, summary_line

    progress = Progress.for_terminal(quiet, progress_every)
    with _reported(progress):
        lex, lexicon_id = _lexicon(lexicon)
        vmap = _voice_map(voice_map)
        pauses = (sentence_pause, paragraph_pause, chapter_pause)
        level = loudness if normalize else None
        subs = subtitles.value if subtitles else None
        book = {"titles": titles, "loudness": level, "chapters": chapters, "footnotes": footnotes,
                **_given_extras(subs, front_matter, dialogue_voice, vmap, _value(input_format))}
        tags = {"title": title, "author": author, "cover": _cover(cover)}
        job = Job(input, output, fmt.value if fmt else None, split.value if split else None,
                  resume=resume, force=force, quiet_time=quiet_time, lexicon=lex,
                  paragraph_pause=paragraph_pause, chapter_pause=chapter_pause, titles=titles, loudness=level, **tags,
                  chapters=chapters, footnotes=footnotes, subtitles=subs, front_matter=front_matter,
                  dialogue=dialogue_voice is not None, voice_map=vmap, input_format=_value(input_format),
                  settings={**_run_settings(model, revision, voice, speed, seed, temperature, lexicon_id, pauses,
                                            vocoder.value), **book})
        plan = make_plan(job, stdout_is_tty=_isatty(sys.stdout))
        for name in [voice, dialogue_voice, *(vmap.voices() if vmap else [])]:
            _check_voice(name, quiet)
        narrator = _narrator(model, voice, revision, speed, seed, temperature, decoder_processes(plan),
                             sentence_pause, vocoder.value, dialogue_voice, vmap)
        where = run(narrator, plan, progress, stdin=sys.stdin)
        stats = progress.end()
        if not quiet:
            _err().print(summary_line(stats, where, warnings_shown()), markup=False)


@app.command()
def batch(
    inputs: Annotated[list[Path], typer.Argument(
        show_default=False, help="Documents to read (.txt, .md, .html, .epub, .pdf).")],
    out_dir: Annotated[str, typer.Option(
        "--out-dir", "-d", show_default=False,
        help="Folder for the audio: each document becomes OUT_DIR/<name>.<format>. With --ray also "
             "an fsspec URL every node can write to (s3://bucket/audio).")],
    voice: Voice = None,
    model: Model = None,
    revision: Revision = None,
    vocoder: Vocoder = VocoderChoice.auto,
    fmt: Annotated[Format, typer.Option(
        "--format", "-f", help="Audio format of every output.")] = Format.wav,
    resume: Resume = False,
    force: Force = False,
    speed: Speed = 1.0,
    seed: Seed = 0,
    temperature: Temperature = 0.6,
    lexicon: Lexicon = None,
    sentence_pause: SentencePause = SENTENCE_PAUSE,
    paragraph_pause: ParagraphPause = PARAGRAPH_PAUSE,
    chapter_pause: ChapterPause = CHAPTER_PAUSE,
    titles: Titles = True,
    loudness: Loudness = LOUDNESS,
    normalize: Normalize = True,
    title: BookTitle = None,
    author: Author = None,
    cover: Cover = None,
    front_matter: FrontMatter = False,
    subtitles: Subtitles = None,
    dialogue_voice: DialogueVoice = None,
    voice_map: BatchVoiceMapFile = None,
    input_format: InputFormatOption = None,
    quiet: Quiet = False,
    progress_every: ProgressEvery = 30.0,
    ray_address: Annotated[Optional[str], typer.Option(
        "--ray", metavar="ADDRESS", show_default=False,
        help="Narrate on a Ray cluster: auto (the running one) or host:port (ray:// is refused). "
             "Chapters are spread over its CPUs; OUT_DIR must be a folder every node sees.")] = None,
) -> None:
    """Read several documents with the model loaded once; a bad document does not stop the rest.

    Run it again after an interruption: documents whose output is finished are skipped, an
    unfinished one continues where it stopped (--force starts every document over). Ends with a
    table of what happened to each; the exit status is 1 if any document failed.
    """
    if ray_address is not None:
        extras = [name for name, given in [("--front-matter", front_matter), ("--subtitles", subtitles),
                                           ("--dialogue-voice", dialogue_voice), ("--voice-map", voice_map),
                                           ("--input-format", input_format)] if given]
        if extras:
            _fail(f"--ray does not take {', '.join(extras)} yet; narrate those documents without --ray")
        return _batch_on_cluster(ray_address, inputs, out_dir if "://" in out_dir else Path(out_dir),
                                 fmt.value, voice, model, revision,
                                 resume, force, speed, seed, temperature, lexicon, quiet,
                                 (sentence_pause, paragraph_pause, chapter_pause), titles,
                                 loudness if normalize else None,
                                 {"title": title, "author": author, "cover": _cover(cover)}, vocoder.value)
    if "://" in out_dir:
        _fail(f"--out-dir {out_dir}: a URL needs --ray (without it, narrate writes to a folder)")
    folder = Path(out_dir)
    from narrate.jobs.pipeline import Interrupted, Job, make_plan, run
    from narrate.cli.progress import BatchClock, Progress

    progress = Progress.for_terminal(quiet, progress_every)
    rows: list[tuple[str, str, str, str]] = []
    with _reported(progress):
        lex, lexicon_id = _lexicon(lexicon)
        vmap = _voice_map(voice_map)
        if vmap is not None:
            vmap = replace(vmap, batch=True)
            _check_map_matches(vmap, inputs, Job(str(inputs[0]), titles=titles, lexicon=lex,
                                                 paragraph_pause=paragraph_pause), _value(input_format))
        pauses = (sentence_pause, paragraph_pause, chapter_pause)
        level = loudness if normalize else None
        subs = subtitles.value if subtitles else None
        book = {"titles": titles, "loudness": level,
                **_given_extras(subs, front_matter, dialogue_voice, vmap, _value(input_format))}
        tags = {"title": title, "author": author, "cover": _cover(cover)}
        settings = {**_run_settings(model, revision, voice, speed, seed, temperature, lexicon_id, pauses, vocoder.value),
                    **book}
        for name in [voice, dialogue_voice, *(vmap.voices() if vmap else [])]:
            _check_voice(name, quiet)
        narrator = _narrator(model, voice, revision, speed, seed, temperature, sentence_pause=sentence_pause,
                             vocoder=vocoder.value, dialogue_voice=dialogue_voice, voice_map=vmap)
        if not quiet:
            progress.batch = BatchClock(_text_lengths(inputs, _value(input_format)))
        used: dict[Path, Path] = {}
        try:
            for k, path in enumerate(inputs):
                target = folder / f"{path.stem}.{fmt.value}"
                if progress.batch:
                    progress.batch.document(k)
                if target in used:
                    rows.append((str(path), "failed", "", f"same output name as {used[target]}"))
                    continue
                used[target] = path
                # A batch always continues: an unfinished output is resumed, a finished one skipped.
                job = Job(str(path), str(target), fmt.value, "none", resume=not force, force=force,
                          lexicon=lex, paragraph_pause=paragraph_pause, chapter_pause=chapter_pause,
                          titles=titles, loudness=level, **tags, front_matter=front_matter, subtitles=subs,
                          dialogue=dialogue_voice is not None, voice_map=vmap, input_format=_value(input_format),
                          settings=dict(settings))
                try:
                    plan = make_plan(job, stdout_is_tty=True)
                    status = "resumed" if plan.record is not None else "done"
                    where = run(narrator, plan, progress)
                    rows.append((str(path), status, f"{progress.end().audio_seconds:.1f}", where))
                except AlreadyFinished:
                    if progress.batch:
                        progress.batch.skip(k)
                    rows.append((str(path), "done", "", f"{target} (finished earlier: skipped; --force "
                                                        f"redoes it)"))
                except (NarrateError, OSError) as e:  # this document only; go on with the next
                    progress.end()
                    if progress.batch:
                        progress.batch.skip(k)  # (it took next to no time: not a measure of speed)
                    rows.append((str(path), "failed", "", _message(e)))
                except Interrupted:
                    seconds = f"{progress.end().audio_seconds:.1f}"
                    rows.append((str(path), "interrupted", seconds, str(target)))
                    rows.extend((str(p), "not started", "", "") for p in inputs[k + 1:])
                    raise
        finally:
            progress.end()
            _batch_report(rows, quiet)
    if any(status == "failed" for _, status, _, _ in rows):
        raise typer.Exit(1)


@app.command("chapters")
def list_chapters(
    input: Annotated[Path, typer.Argument(show_default=False, help="The book: .txt, .md, .html, .epub or .pdf.")],
    titles: Titles = True,
    footnotes: Footnotes = False,
    front_matter: FrontMatter = False,
    speed: Speed = 1.0,
    voice_map: VoiceMapFile = None,
    input_format: InputFormatOption = None,
) -> None:
    """List a book's chapters as narrate reads them (number, title, words, estimated duration),
    front and back matter marked as skipped; renders nothing. Choose some with: narrate BOOK
    --chapters 3-5,8 (a skipped one is read when named). With --voice-map: which voice reads each."""
    from narrate.document import load_document
    from narrate.jobs.pipeline import Job, book_chapters

    with _reported():
        vmap = _voice_map(voice_map)
        job = Job(str(input), titles=titles, voice_map=vmap)
        document = load_document(input, footnotes, _value(input_format))
        chapters = book_chapters(document, job)
        voices = vmap.assign([name for name, _, _ in chapters]) if vmap else None
    table = Table("#", "chapter", title=f"{escape(input.name)}: {len(chapters)} chapters")
    table.add_column("words", justify="right")
    table.add_column("duration", justify="right")
    if voices:
        table.add_column("voice")
    total = 0
    skipping = not front_matter and not all(matter for _, _, matter in chapters)  # (as read_chapters)
    for i, (name, sents, matter) in enumerate(chapters, 1):
        words = sum(len(s.text.split()) for s in sents)
        skipped = bool(matter) and skipping
        total += 0 if skipped else words
        shown = escape(name) + (f" [dim](skipped: {escape(matter)})[/]" if skipped else "")
        row = [str(i), shown, str(words), _duration(words / (WORDS_PER_SECOND * speed))]
        if voices:
            mapped, dialogue = voices[i - 1]
            row.append(escape(_voice_name(mapped) if mapped else "--voice")
                       + (f" (dialogue: {escape(_voice_name(dialogue))})" if dialogue else ""))
        table.add_row(*row)
    table.add_row("", "all read", str(total), _duration(total / (WORDS_PER_SECOND * speed)))
    _out().print(table)


WORDS_PER_SECOND = 2.6  # narrate-joe at --speed 1 with its pauses: 1,455 words in 562 s


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


def _batch_on_cluster(address, inputs, out_dir, fmt, voice, model, revision, resume, force, speed,
                      seed, temperature, lexicon, quiet, pauses, titles, level, tags, vocoder) -> None:
    """narrate batch --ray: the same documents, rules and table, narrated by a Ray cluster."""
    from narrate.jobs.cluster import ClusterBatch, ClusterProgress, run_batch
    from narrate.runtime.narrator import NarrateSettings

    progress = ClusterProgress(live=not quiet and _isatty(sys.stderr), quiet=quiet)
    rows: list[list[str]] = []
    with _reported(progress):
        lex, lexicon_id = _lexicon(lexicon)
        settings = {**_run_settings(model, revision, voice, speed, seed, temperature, lexicon_id, pauses, vocoder),
                    "titles": titles, "loudness": level}  # as the local batch's
        batch = ClusterBatch(address, inputs, out_dir, fmt, settings,
                             NarrateSettings(speed=speed, seed=seed, temperature=temperature,
                                             sentence_pause=pauses[0], vocoder=vocoder),
                             # as the local batch: an unfinished document continues, a finished one is skipped
                             model, voice, revision, lex, resume=not force, force=force,
                             job={"paragraph_pause": pauses[1], "chapter_pause": pauses[2],
                                  "titles": titles, "loudness": level, **tags})
        try:
            run_batch(batch, progress, rows)
        finally:
            progress.end()
            # Rows still pending: the run stopped before them (the error line says why).
            _batch_report([tuple(r) for r in rows if r[1] != "pending"], quiet)
    if any(r[1] == "failed" for r in rows):
        raise typer.Exit(1)


def _batch_report(rows, quiet: bool) -> None:
    """The batch's table (with --quiet only its failures), shown even when interrupted, before
    the interruption line."""
    if quiet:
        for document, status, _, detail in rows:
            if status == "failed":
                _err().print(f"narrate: error: {document}: {detail}", markup=False)
    elif rows:
        _out().print(_batch_table(rows))


def _cover(path: Path | None) -> bytes | None:
    """The --cover image's bytes (InputError if unreadable or not JPEG/PNG)."""
    if path is None:
        return None
    from narrate.document.base import read_cover

    return read_cover(path, f"cover image '{path}'")


def _check_voice(voice: str | None, quiet: bool) -> None:
    """A recording given to --voice is checked before the model loads: its problems make one
    warning line (unless quiet), a prompt that cannot be used an error (VoiceError)."""
    if voice is None:
        return  # the model's default voice
    from narrate.prompt_check import check_prompt, warning_line
    from narrate.voice_store import user_voices
    from narrate.voices import bundled_voices

    if not voice.strip() or voice in user_voices() or voice in bundled_voices():
        return  # load_voice refuses an empty name; named voices were checked when they were made
    path = Path(voice)
    if path.suffix == "" and not path.exists():
        return  # load_voice says it is an unknown name
    problems = check_prompt(path)[0].problems()
    if problems and not quiet:
        warn(warning_line(voice, problems))


def _voice_map(path: Path | None):
    """The --voice-map file, read and checked (InputError naming the file and line)."""
    if path is None:
        return None
    from narrate.errors import VoiceError
    from narrate.jobs.voice_map import VoiceMap
    from narrate.voice_store import user_voices
    from narrate.voices import bundled_voices

    vmap = VoiceMap.load(path)
    known = set(user_voices()) | set(bundled_voices())
    for rule in vmap.rules:  # an unknown voice is said now, not after the model load
        for name in filter(None, (rule.voice, rule.dialogue)):
            if name not in known and not Path(name).is_file():
                raise VoiceError(f"voice map '{vmap.path}' line {rule.line}: no voice is named '{name}' and "
                                 f"no such recording (see 'narrate voices')")
    return vmap


def _check_map_matches(vmap, inputs: list[Path], job, fmt: str | None) -> None:
    """Before a batch starts: InputError for a voice map rule that names no chapter of any of
    its documents (one that cannot be read is left to fail in its turn)."""
    from narrate.document import load_document
    from narrate.jobs.pipeline import book_chapters

    books = []
    for path in inputs:
        try:
            chapters = book_chapters(load_document(path, False, fmt), replace(job, input=str(path)))
        except (NarrateError, OSError):
            continue
        books.append([name for name, _, _ in chapters])
    vmap.check_batch(books)


def _text_lengths(inputs: list[Path], fmt: str | None) -> list[float]:
    """Each document's characters of text, the weights of a batch's ETA (0: unreadable; its
    error is reported when its turn comes)."""
    from narrate.document import load_document

    lengths = []
    for path in inputs:
        try:
            lengths.append(float(sum(len(c.text) for c in load_document(path, False, fmt).chapters)))
        except (NarrateError, OSError):
            lengths.append(0.0)
    return lengths


def _value(choice) -> str | None:
    return None if choice is None else choice.value


def _voice_name(voice: str) -> str:
    # a recording by its file name, a named voice by its name
    return Path(voice).name if "/" in voice else voice


def _lexicon(path: Path | None):
    """(Lexicon or None, its content hash for the resume record)."""
    if path is None:
        return None, None
    from narrate.audio.resume import sha256_file
    from narrate.text.lexicon import Lexicon as Lex

    lexicon = Lex.load(path)  # InputError naming the file and line if unusable
    return lexicon, sha256_file(path)


def _run_settings(model, revision, voice, speed, seed, temperature, lexicon_id, pauses, vocoder="auto") -> dict:
    """What a resumed run must share with the interrupted one (see narrate.audio.resume)."""
    from narrate.hub import DEFAULT_MODEL

    return {"model": _identity(model or DEFAULT_MODEL), "revision": revision,
            "voice": _identity(voice) if voice else "(model default)", "speed": speed,
            "seed": seed, "temperature": temperature, "lexicon": lexicon_id,
            "pauses": list(pauses), "vocoder": vocoder}


def _batch_table(rows) -> Table:
    table = Table("document", "status", title="narrate batch")
    table.add_column("audio s", justify="right")
    table.add_column("output or error", overflow="fold")
    for document, status, seconds, detail in rows:
        style = {"done": "green", "resumed": "green", "failed": "red"}.get(status, "yellow")
        table.add_row(escape(document), f"[{style}]{status}[/]", seconds, escape(detail))
    return table
