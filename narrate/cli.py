"""The ``narrate`` command line: parse the options, call the pipeline, turn errors into one line.

``narrate INPUT ...`` is the default command (``narrate speak INPUT ...``); main() routes to it
because Typer (click) cannot have a group take a positional argument beside its subcommands.
Heavy modules (torch, the training code) are imported inside the commands so that --help and the
listing commands start at once.
"""

from __future__ import annotations

import signal
import sys
import warnings
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from narrate import __version__
from narrate.audio.stretch import SPEEDS
from narrate.errors import AlreadyFinished, NarrateError, one_line, warn, warnings_shown
from narrate.pauses import CHAPTER_PAUSE, PARAGRAPH_PAUSE, SENTENCE_PAUSE

LOUDNESS = -20.0  # LUFS, the --loudness default (narrate.audio.loudness.TARGET; not imported: scipy is slow to load)

app = typer.Typer(
    name="narrate",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # a bug should show a plain traceback, user errors never do
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _err() -> Console:
    # Made per use, so that the stream and terminal width in effect at that moment apply.
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _out() -> Console:
    return Console(highlight=False)



class Format(str, Enum):
    wav = "wav"
    flac = "flac"
    ogg = "ogg"
    mp3 = "mp3"
    m4b = "m4b"
    raw = "raw"


class VocoderChoice(str, Enum):
    auto = "auto"
    neural = "neural"
    griffin_lim = "griffin-lim"


class SubtitleFormat(str, Enum):
    srt = "srt"
    vtt = "vtt"


class Split(str, Enum):
    none = "none"
    chapters = "chapters"


# --- options shared by speak and batch --------------------------------------------------------

Voice = Annotated[Optional[str], typer.Option(
    "--voice", "-v", show_default=False,
    help="Voice to imitate: a voice name (see 'narrate voices'; keep your own with 'narrate voices "
         "add') or a recording (WAV, FLAC, OGG) of 2-60 s of clear speech, which is checked for "
         "noise, music, clipping, silence and several speakers. Default: the model's own voice.")]
Model = Annotated[Optional[str], typer.Option(
    "--model", "-m", show_default=False,
    help="Model: a bundled model name, a model folder, or a Hugging Face repo id (owner/name). "
         "Default: narrate-joe.")]
Revision = Annotated[Optional[str], typer.Option(
    "--revision", show_default=False,
    help="Branch, tag or commit of a Hugging Face model (ignored for local models).")]
Vocoder = Annotated[VocoderChoice, typer.Option(
    "--vocoder",
    help="Frames to audio: neural (the model's own vocoder, distilled from HiFi-GAN) or "
         "griffin-lim (no model, buzzier). auto: neural when the model has one.")]
Force = Annotated[bool, typer.Option(
    "--force", help="Overwrite existing output (and discard an interrupted run's progress).")]
Resume = Annotated[bool, typer.Option(
    "--resume", help="Continue an interrupted run where it stopped, at its last finished "
                     "sentence (any output file but raw, or a chapter folder; same input and "
                     "settings). Until finished, flac/ogg/mp3/m4b audio is kept playable in "
                     "'.NAME.partial.w64' beside the output.")]
Speed = Annotated[float, typer.Option(
    "--speed", min=SPEEDS[0], max=SPEEDS[1],
    help=f"Speaking rate from {SPEEDS[0]:g} to {SPEEDS[1]:g}: 1 is normal, 1.2 is 20% faster. The model "
         f"speaks the rates it was trained for (its config.json speed_range; narrate-joe: 0.83-1.18); "
         f"beyond them it speaks at the nearest one and the audio is time-scaled with the pitch kept "
         f"(WSOLA), which sounds less natural the further out.")]
Seed = Annotated[int, typer.Option(
    "--seed", help="Random seed: the same text, voice and seed give the same audio.")]
Temperature = Annotated[float, typer.Option(
    "--temperature", min=0.0, help="Sampling temperature: lower is steadier, higher more varied "
                                   "(0 always picks the likeliest sound).")]
Lexicon = Annotated[Optional[Path], typer.Option(
    "--lexicon", show_default=False,
    help="Pronunciation file: one 'word = respelling' or 'word<TAB>[[ phonemes ]]' per line.")]
Quiet = Annotated[bool, typer.Option(
    "--quiet", "-q", help="No progress display, no summary line and no warnings; only errors.")]
SentencePause = Annotated[float, typer.Option(
    "--sentence-pause", min=0.05, max=5.0,
    help="Longest pause between sentences, in seconds (the model's own pause, shortened; at "
         "least half this). Commas pause at most 0.25 s.")]
ParagraphPause = Annotated[float, typer.Option(
    "--paragraph-pause", min=0.0, max=10.0,
    help="Pause after a paragraph, in seconds. In the text, [pause 2s] (or [pause 300ms]) "
         "asks for a pause of its own; [pause] alone is a paragraph's.")]
ChapterPause = Annotated[float, typer.Option(
    "--chapter-pause", min=0.0, max=30.0, help="Pause after a chapter, in seconds (in one file).")]
Titles = Annotated[bool, typer.Option(
    "--titles/--no-titles", help="Speak each chapter's title at its start.")]
Loudness = Annotated[float, typer.Option(
    "--loudness", min=-40.0, max=-10.0, metavar="LUFS",
    help="Integrated loudness of the output (EBU R128 / BS.1770), true peak at most -3 dBTP; "
         "audiobook platforms (ACX) ask for about -20. Set while streaming: memory stays flat.")]
BookTitle = Annotated[Optional[str], typer.Option(
    "--title", show_default=False, help="The book's title in the tags (default: the document's).")]
Author = Annotated[Optional[str], typer.Option(
    "--author", show_default=False, help="The book's author in the tags (default: the document's).")]
Cover = Annotated[Optional[Path], typer.Option(
    "--cover", show_default=False,
    help="Cover image (JPEG or PNG) for the tags (default: the EPUB's, or front matter 'cover:').")]
Chapters = Annotated[Optional[str], typer.Option(
    "--chapters", show_default=False, metavar="LIST",
    help="Read only these chapters, numbered as 'narrate chapters' lists them: e.g. 3-5,8 or 7-.")]
Footnotes = Annotated[bool, typer.Option(
    "--footnotes", help="Read the footnotes of an EPUB or HTML file where they stand (default: left out).")]
DialogueVoice = Annotated[Optional[str], typer.Option(
    "--dialogue-voice", show_default=False, metavar="VOICE",
    help="Read quoted speech (\"...\", “...”) in this second voice (a name or a recording, as "
         "--voice); the narration stays in --voice.")]
FrontMatter = Annotated[bool, typer.Option(
    "--front-matter",
    help="Also read front and back matter: cover and title pages, copyright, contents, dedication, "
         "'Also by', acknowledgements, index, bibliography, notes (default: skipped; 'narrate "
         "chapters' shows which).")]
Subtitles = Annotated[Optional[SubtitleFormat], typer.Option(
    "--subtitles", show_default=False,
    help="Also write subtitles timed to the audio: srt or vtt, a file beside the output (beside "
         "each chapter file in a folder), one cue per sentence or two-line phrase.")]
Normalize = Annotated[bool, typer.Option(
    "--normalize/--no-normalize", help="Bring the output to --loudness (else: as the model makes it).")]


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Show the version and exit.")] = False,
) -> None:
    """Read long text aloud with a cloned voice, streaming: memory stays flat however long the book.

    narrate INPUT [OPTIONS] is short for narrate speak INPUT [OPTIONS], e.g. narrate book.epub --voice me.wav

    A file named like a command is read with narrate ./voices or narrate speak voices.
    """
    if version:
        typer.echo(f"narrate {__version__}")
        raise typer.Exit()


@app.command()
def speak(
    input: Annotated[str, typer.Argument(
        show_default=False,
        help="Text to read: a .txt, .md, .html, .epub or .pdf file, or - for standard input (each "
             "sentence is spoken as soon as it is complete).")],
    voice: Voice = None,
    dialogue_voice: DialogueVoice = None,
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
) -> None:
    """Read INPUT aloud into an audio file (the default command: narrate INPUT is the same)."""
    from narrate.pipeline import Job, decoder_processes, make_plan, run
    from narrate.progress import Progress, summary_line

    progress = Progress.for_terminal(quiet)
    with _reported(progress):
        lex, lexicon_id = _lexicon(lexicon)
        pauses = (sentence_pause, paragraph_pause, chapter_pause)
        level = loudness if normalize else None
        subs = subtitles.value if subtitles else None
        book = {"titles": titles, "loudness": level, "chapters": chapters, "footnotes": footnotes,
                **_given_extras(subs, front_matter, dialogue_voice)}
        tags = {"title": title, "author": author, "cover": _cover(cover)}
        job = Job(input, output, fmt.value if fmt else None, split.value if split else None,
                  resume=resume, force=force, quiet_time=quiet_time, lexicon=lex,
                  paragraph_pause=paragraph_pause, chapter_pause=chapter_pause, titles=titles, loudness=level, **tags,
                  chapters=chapters, footnotes=footnotes, subtitles=subs, front_matter=front_matter,
                  dialogue=dialogue_voice is not None,
                  settings={**_run_settings(model, revision, voice, speed, seed, temperature, lexicon_id, pauses,
                                            vocoder.value), **book})
        plan = make_plan(job, stdout_is_tty=_isatty(sys.stdout))
        _check_voice(voice, quiet)
        _check_voice(dialogue_voice, quiet)
        narrator = _narrator(model, voice, revision, speed, seed, temperature, decoder_processes(plan),
                             sentence_pause, vocoder.value, dialogue_voice)
        where = run(narrator, plan, progress, stdin=sys.stdin)
        stats = progress.end()
        if not quiet:
            _err().print(summary_line(stats, where, warnings_shown()), markup=False)


@app.command()
def batch(
    inputs: Annotated[list[Path], typer.Argument(
        show_default=False, help="Documents to read (.txt, .md, .html, .epub, .pdf).")],
    out_dir: Annotated[Path, typer.Option(
        "--out-dir", "-d", show_default=False,
        help="Folder for the audio: each document becomes OUT_DIR/<name>.<format>.")],
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
    quiet: Quiet = False,
    ray_address: Annotated[Optional[str], typer.Option(
        "--ray", metavar="ADDRESS", show_default=False,
        help="Narrate on a Ray cluster: auto (the running one), host:port or ray://host:10001. "
             "Chapters are spread over its CPUs; OUT_DIR must be a folder every node sees.")] = None,
) -> None:
    """Read several documents with the model loaded once; a bad document does not stop the rest.

    Run it again after an interruption: documents whose output is finished are skipped, an
    unfinished one continues where it stopped (--force starts every document over). Ends with a
    table of what happened to each; the exit status is 1 if any document failed.
    """
    if ray_address is not None:
        extras = [name for name, given in [("--front-matter", front_matter), ("--subtitles", subtitles),
                                           ("--dialogue-voice", dialogue_voice)] if given]
        if extras:
            _fail(f"--ray does not take {', '.join(extras)} yet; narrate those documents without --ray")
        return _batch_on_cluster(ray_address, inputs, out_dir, fmt.value, voice, model, revision,
                                 resume, force, speed, seed, temperature, lexicon, quiet,
                                 (sentence_pause, paragraph_pause, chapter_pause), titles,
                                 loudness if normalize else None,
                                 {"title": title, "author": author, "cover": _cover(cover)}, vocoder.value)
    from narrate.pipeline import Interrupted, Job, make_plan, run
    from narrate.progress import Progress

    progress = Progress.for_terminal(quiet)
    rows: list[tuple[str, str, str, str]] = []
    with _reported(progress):
        lex, lexicon_id = _lexicon(lexicon)
        pauses = (sentence_pause, paragraph_pause, chapter_pause)
        level = loudness if normalize else None
        subs = subtitles.value if subtitles else None
        book = {"titles": titles, "loudness": level, **_given_extras(subs, front_matter, dialogue_voice)}
        tags = {"title": title, "author": author, "cover": _cover(cover)}
        settings = {**_run_settings(model, revision, voice, speed, seed, temperature, lexicon_id, pauses, vocoder.value),
                    **book}
        _check_voice(voice, quiet)
        _check_voice(dialogue_voice, quiet)
        narrator = _narrator(model, voice, revision, speed, seed, temperature, sentence_pause=sentence_pause,
                             vocoder=vocoder.value, dialogue_voice=dialogue_voice)
        used: dict[Path, Path] = {}
        try:
            for k, path in enumerate(inputs):
                target = out_dir / f"{path.stem}.{fmt.value}"
                if target in used:
                    rows.append((str(path), "failed", "", f"same output name as {used[target]}"))
                    continue
                used[target] = path
                # A batch always continues: an unfinished output is resumed, a finished one skipped.
                job = Job(str(path), str(target), fmt.value, "none", resume=not force, force=force,
                          lexicon=lex, paragraph_pause=paragraph_pause, chapter_pause=chapter_pause,
                          titles=titles, loudness=level, **tags, front_matter=front_matter, subtitles=subs,
                          dialogue=dialogue_voice is not None, settings=dict(settings))
                try:
                    plan = make_plan(job, stdout_is_tty=True)
                    status = "resumed" if plan.record is not None else "done"
                    where = run(narrator, plan, progress)
                    rows.append((str(path), status, f"{progress.end().audio_seconds:.1f}", where))
                except AlreadyFinished:
                    rows.append((str(path), "done", "", f"{target} (finished earlier: skipped; --force "
                                                        f"redoes it)"))
                except (NarrateError, OSError) as e:  # this document only; go on with the next
                    progress.end()
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
) -> None:
    """List a book's chapters as narrate reads them (number, title, words, estimated duration),
    front and back matter marked as skipped; renders nothing. Choose some with: narrate BOOK
    --chapters 3-5,8 (a skipped one is read when named)."""
    from narrate.document import load_document
    from narrate.pipeline import Job, book_chapters

    with _reported():
        job = Job(str(input), titles=titles)
        chapters = book_chapters(load_document(input, footnotes), job)
    table = Table("#", "chapter", title=f"{escape(input.name)}: {len(chapters)} chapters")
    table.add_column("words", justify="right")
    table.add_column("duration", justify="right")
    total = 0
    skipping = not front_matter and not all(matter for _, _, matter in chapters)  # (as read_chapters)
    for i, (name, sents, matter) in enumerate(chapters, 1):
        words = sum(len(s.text.split()) for s in sents)
        skipped = bool(matter) and skipping
        total += 0 if skipped else words
        shown = escape(name) + (f" [dim](skipped: {escape(matter)})[/]" if skipped else "")
        table.add_row(str(i), shown, str(words), _duration(words / (WORDS_PER_SECOND * speed)))
    table.add_row("", "all read", str(total), _duration(total / (WORDS_PER_SECOND * speed)))
    _out().print(table)


WORDS_PER_SECOND = 2.6  # narrate-joe at --speed 1 with its pauses: 1,455 words in 562 s


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


def _batch_on_cluster(address, inputs, out_dir, fmt, voice, model, revision, resume, force, speed,
                      seed, temperature, lexicon, quiet, pauses, titles, level, tags, vocoder) -> None:
    """narrate batch --ray: the same documents, rules and table, narrated by a Ray cluster."""
    from narrate.cluster import ClusterBatch, ClusterProgress, run_batch
    from narrate.narrator import NarrateSettings

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


voices_app = typer.Typer(no_args_is_help=False, add_completion=False)
app.add_typer(voices_app, name="voices")


@voices_app.callback(invoke_without_command=True)
def voices(
    ctx: typer.Context,
    sample: Annotated[Optional[Path], typer.Option(
        "--sample", show_default=False,
        help="Write a short sample of each voice into this folder, as NAME.wav (made with --model).")] = None,
    model: Model = None,
    force: Annotated[bool, typer.Option("--force", help="With --sample: overwrite existing samples.")] = False,
) -> None:
    """List the voices, bundled and yours, with a description and where each lives.

    Give a name to --voice (any recording works too). Keep a recording under a name with
    narrate voices add NAME prompt.wav; narrate voices remove NAME deletes it.
    """
    if ctx.invoked_subcommand is not None:
        return
    from narrate.voice_store import user_voices_dir
    from narrate.voices import VOICES_DIR

    rows = _voice_rows()
    if sample is not None:
        with _reported():
            _write_samples(sample, [name for name, kind, _ in rows if "replaced" not in kind], model, force)
        return
    if not rows:
        _out().print(f"No bundled voices in {VOICES_DIR} and none of yours in {user_voices_dir()}; "
                     "--voice also takes any WAV recording, and 'narrate voices add NAME prompt.wav' "
                     "keeps one.", markup=False)
        return
    from narrate.voices import voice_description

    table = Table("name", "description", "kind", title="Voices")
    table.add_column("path", overflow="fold")  # a path is only useful whole
    for name, kind, path in rows:
        table.add_row(escape(name), escape(voice_description(path)), kind, escape(str(path)))
    _out().print(table)


@voices_app.command("add")
def voices_add(
    name: Annotated[str, typer.Argument(show_default=False, help="Name to give the voice (for --voice NAME).")],
    prompt: Annotated[Path, typer.Argument(
        show_default=False, help="Recording of 2-60 s of one person speaking (WAV, FLAC, OGG).")],
    description: Annotated[Optional[str], typer.Option(
        "--description", "-d", show_default=False,
        help="One line shown by 'narrate voices'. Default: the recording's name, length and today's date.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace a voice of yours with that name, or use the name of a bundled voice "
                        "(yours is then the one --voice NAME takes).")] = False,
) -> None:
    """Keep a recording as voice NAME: afterwards --voice NAME takes it from any folder."""
    with _reported():
        from narrate.prompt_check import check_prompt, warning_line
        from narrate.voice_store import add_voice, check_name

        check_name(name, force)
        measures, embedding, wav, rate = check_prompt(prompt)
        problems = measures.problems()
        if problems:
            warn(warning_line(str(prompt), problems))
        path = add_voice(name, wav, rate, embedding, prompt, description)
        _err().print(f"narrate: voice '{name}' kept in {path.parent}; use it with --voice {name}",
                     markup=False)


@voices_app.command("remove")
def voices_remove(
    name: Annotated[str, typer.Argument(show_default=False, help="A voice added with 'narrate voices add'.")],
) -> None:
    """Delete voice NAME, one of yours (bundled voices stay)."""
    with _reported():
        from narrate.voice_store import remove_voice

        path = remove_voice(name)
        _err().print(f"narrate: voice '{name}' removed from {path.parent}", markup=False)


@app.command()
def models() -> None:
    """List the models available without a download: bundled ones and the Hugging Face cache."""
    from narrate.hub import DEFAULT_MODEL, MODELS_DIR, bundled_models, cached_models

    rows = [(name, f"bundled: {path}", path) for name, path in bundled_models().items()]
    rows += [(name, f"Hugging Face cache: {path}", path) for name, path in cached_models().items()]
    if not rows:
        _out().print(f"No models found (bundled: {MODELS_DIR}; or the Hugging Face cache). "
                     f"--model also takes a Hub repo id or a model folder; default {DEFAULT_MODEL}.",
                     markup=False)
        return
    table = Table("name", title="Models")
    table.add_column("where", overflow="fold")
    table.add_column("size", justify="right")
    for name, where, path in rows:
        weights = Path(path) / "model.safetensors"
        size = f"{weights.stat().st_size / 1e6:.1f} MB" if weights.exists() else "?"
        label = escape(name) + (" (default)" if name == DEFAULT_MODEL else "")
        table.add_row(label, escape(where), size)
    _out().print(table)


RECIPE = " (default: the recipe's, see narrate/train/)"


@app.command()
def prepare(
    out: Annotated[Path, typer.Option(
        "--out", show_default=False,
        help="Corpus folder to build; a rerun continues from the last finished stage.")],
    sentences: Annotated[Optional[int], typer.Option(
        "--sentences", min=1, show_default=False,
        help="Training sentences to synthesize" + RECIPE)] = None,
    heldout: Annotated[Optional[int], typer.Option(
        "--heldout", min=1, show_default=False,
        help="Held-out sentences for evaluation" + RECIPE)] = None,
    workers: Annotated[Optional[int], typer.Option(
        "--workers", min=1, show_default=False,
        help="Parallel synthesis processes" + RECIPE)] = None,
    extends: Annotated[Optional[list[Path]], typer.Option(
        "--extends", show_default=False,
        help="A corpus this one adds to (repeatable): only new sentences, the same codec; "
             "train on both with 'narrate train --corpus A --corpus B'.")] = None,
    voiced: Annotated[Optional[int], typer.Option(
        "--voiced", min=1, show_default=False,
        help="Training sentences also read by the other voices (pseudo-speakers, flite, Festival); "
             "the rest by joe only (default: all).")] = None,
    codec_from: Annotated[Optional[str], typer.Option(
        "--codec-from", show_default=False,
        help="Take this model's codec (to fine-tune it with --init) instead of fitting one.")] = None,
) -> None:
    """Build a training corpus: teacher speech, voice variants, codec codes, speaker embeddings."""
    for other in extends or []:
        if not (other / "texts.json").is_file():
            _fail(f"corpus folder '{other}' not found or not made by 'narrate prepare'")
    with _reported(), _training_extras():
        from narrate.train.prepare import PrepareConfig, prepare as build

        build(PrepareConfig(out, extends=tuple(extends or ()),
                            **_given(n_train=sentences, n_heldout=heldout, workers=workers, voiced=voiced,
                                     codec_from=codec_from)))
        _err().print(f"narrate: corpus ready in {out}", markup=False)


@app.command()
def train(
    corpus: Annotated[list[Path], typer.Option(
        "--corpus", show_default=False,
        help="Corpus folder made by 'narrate prepare' (repeat for corpora made with --extends).")],
    run: Annotated[Path, typer.Option(
        "--run", show_default=False,
        help="Run folder for checkpoints and logs; an existing run continues.")],
    steps: Annotated[Optional[int], typer.Option(
        "--steps", min=1, show_default=False,
        help="Length of the learning-rate schedule in steps" + RECIPE)] = None,
    minutes: Annotated[Optional[float], typer.Option(
        "--minutes", min=0.0, show_default=False,
        help="Stop after this many minutes (default: run all the steps).")] = None,
    batch_steps: Annotated[Optional[int], typer.Option(
        "--batch-steps", min=1, show_default=False,
        help="Padded decoder steps per batch" + RECIPE)] = None,
    lr: Annotated[Optional[float], typer.Option(
        "--lr", min=0.0, show_default=False, help="Peak learning rate" + RECIPE)] = None,
    init: Annotated[Optional[str], typer.Option(
        "--init", show_default=False,
        help="Start a new run from these weights: a run's checkpoint.pt, a model folder or id.")] = None,
    prompt_tokens: Annotated[Optional[int], typer.Option(
        "--prompt-tokens", min=0, show_default=False,
        help="Tokens of the voice prompt encoder of a new run (0: none; with --init, a model "
             "without one gains it)" + RECIPE)] = None,
    threads: Annotated[Optional[int], typer.Option(
        "--threads", min=1, show_default=False,
        help="Torch threads (default: 2, 1 while other processes take a core).")] = None,
) -> None:
    """Train a model on a prepared corpus, on CPU; under torchrun each process takes a share."""
    for folder in corpus:
        if not (folder / "texts.json").is_file():
            _fail(f"corpus folder '{folder}' not found (make one with 'narrate prepare --out DIR')")
    if init and init.endswith(".pt") and not Path(init).is_file():
        _fail(f"checkpoint '{init}' not found")
    with _reported(), _training_extras():
        from narrate.train.loop import TrainConfig, train as fit

        checkpoint = fit(TrainConfig([str(c) for c in corpus], str(run), **_given(
            steps=steps, max_minutes=minutes, max_steps_per_batch=batch_steps, lr=lr, init=init, threads=threads),
            model={} if prompt_tokens is None else {"prompt_tokens": prompt_tokens}))
        _err().print(f"narrate: checkpoint {checkpoint}; export it with "
                     f"'narrate export --run {run} --out DIR'", markup=False)


@app.command()
def export(
    run: Annotated[Path, typer.Option(
        "--run", show_default=False, help="Training run folder (from 'narrate train').")],
    out: Annotated[Path, typer.Option(
        "--out", show_default=False, help="Model folder to write (use it with --model).")],
) -> None:
    """Export a training run to a model folder: config.json, model.safetensors, model card."""
    missing = [f for f in ("config.json", "checkpoint.pt") if not (run / f).is_file()]
    if missing:
        _fail(f"'{run}' is not a training run folder (no {' or '.join(missing)})")
    with _reported(), _training_extras():
        from narrate.train.export import export as write_model

        folder = write_model(run, out)
        _err().print(f"narrate: model written to {folder}; use it with --model {folder}", markup=False)


# --- helpers ----------------------------------------------------------------------------------


def _narrator(model, voice, revision, speed, seed, temperature, decoder_processes=1,
              sentence_pause=SENTENCE_PAUSE, vocoder="auto", dialogue_voice=None):
    from narrate.narrator import NarrateSettings, Narrator

    settings = NarrateSettings(speed=speed, seed=seed, temperature=temperature, decoder_processes=decoder_processes,
                               sentence_pause=sentence_pause, vocoder=vocoder)
    return Narrator.load(model, voice, settings, revision=revision, dialogue_voice=dialogue_voice)


def _cover(path: Path | None) -> bytes | None:
    """The --cover image's bytes (InputError if unreadable or not JPEG/PNG)."""
    if path is None:
        return None
    from narrate.document import read_cover

    return read_cover(path, f"cover image '{path}'")


def _voice_rows() -> list[tuple[str, str, Path]]:
    """(name, kind, wav path) of every voice: yours first, then the bundled ones."""
    from narrate.voice_store import user_voices
    from narrate.voices import bundled_voices

    mine = user_voices()
    rows = [(name, "yours", path) for name, path in mine.items()]
    rows += [(name, "bundled, replaced by yours" if name in mine else "bundled", path)
             for name, path in bundled_voices().items()]
    return rows


def _write_samples(folder: Path, voices: list[str], model: str | None, force: bool) -> None:
    """FOLDER/NAME.wav for each voice: the same everyday sentence, the same seed, one model."""
    import numpy as np
    import soundfile as sf

    from narrate.errors import OutputError
    from narrate.hub import from_pretrained
    from narrate.narrator import NarrateSettings, Narrator
    from narrate.text.normalize import normalize
    from narrate.train.texts import EVERYDAY
    from narrate.voices import load_voice

    if not voices:
        raise OutputError("no voices to sample (see 'narrate voices')")
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"'{folder}' is not a folder")
    existing = [folder / f"{name}.wav" for name in voices if (folder / f"{name}.wav").exists()]
    if existing and not force:
        raise OutputError(f"{existing[0]} exists (add --force to overwrite the samples)")
    folder.mkdir(parents=True, exist_ok=True)
    loaded = from_pretrained(model)
    settings = NarrateSettings(vocoder_process=False)  # one short sentence per voice: no child
    failed = 0
    for name in voices:
        target, partial = folder / f"{name}.wav", folder / f".{name}.wav.partial"
        try:
            narrator = Narrator(loaded, load_voice(name, name), settings)
            try:
                audio = np.concatenate([c.samples for c in narrator.narrate([normalize(EVERYDAY[0])])])
            finally:
                narrator.close()
            sf.write(str(partial), np.clip(audio, -1.0, 1.0), narrator.sample_rate, subtype="PCM_16",
                     format="WAV")
            partial.replace(target)
        except (NarrateError, OSError) as e:  # this voice only; the others still get theirs
            partial.unlink(missing_ok=True)
            failed += 1
            _err().print(f"narrate: error: voice '{name}': {_message(e)}", markup=False)
            continue
        _err().print(f"narrate: {target} ({len(audio) / narrator.sample_rate:.1f} s, voice {name})",
                     markup=False)
    if failed:
        raise typer.Exit(1)


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


def _given_extras(subtitles: str | None, front_matter: bool, dialogue_voice: str | None) -> dict:
    """The resume settings of --subtitles, --front-matter and --dialogue-voice, each only when
    given, so that the records of runs made before these options existed still match."""
    return {**({"subtitles": subtitles} if subtitles else {}), **({"front_matter": True} if front_matter else {}),
            **({"dialogue_voice": _identity(dialogue_voice)} if dialogue_voice else {})}


def _identity(name: str) -> str:
    # A path given two ways (relative, absolute) is the same model or voice.
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def _given(**values) -> dict:
    """The options the user gave; the others keep the config's defaults."""
    return {k: v for k, v in values.items() if v is not None}


def _batch_table(rows) -> Table:
    table = Table("document", "status", title="narrate batch")
    table.add_column("audio s", justify="right")
    table.add_column("output or error", overflow="fold")
    for document, status, seconds, detail in rows:
        style = {"done": "green", "resumed": "green", "failed": "red"}.get(status, "yellow")
        table.add_row(escape(document), f"[{style}]{status}[/]", seconds, escape(detail))
    return table


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _message(error: BaseException) -> str:
    """One line for the user."""
    return one_line(error)


def _fail(message: str, code: int = 1) -> None:
    _err().print(f"narrate: error: {message}", markup=False)
    raise typer.Exit(code)


@contextmanager
def _reported(progress=None) -> Iterator[None]:
    """Turn the ways a run can end badly into one line on stderr and the exit status."""
    from narrate.pipeline import Interrupted, Terminated

    try:
        yield
    except Interrupted as e:
        _stop(progress)
        _err().print(f"narrate: {e}", markup=False)
        raise typer.Exit(e.exit_code) from None
    except KeyboardInterrupt as e:  # before any audio was written
        _stop(progress)
        _err().print("narrate: interrupted", markup=False)
        raise typer.Exit(143 if isinstance(e, Terminated) else 130) from None
    except (NarrateError, OSError) as e:
        _stop(progress)
        _fail(_message(e))


@contextmanager
def _training_extras() -> Iterator[None]:
    """A missing optional training dependency is a setup problem, not a crash."""
    try:
        yield
    except ModuleNotFoundError as e:
        _fail(f"the training commands need the module '{e.name}': pip install 'narrate[train]'")


def _stop(progress) -> None:
    if progress is not None:
        progress.end()  # the live display must be gone before the message


# --- the default command ----------------------------------------------------------------------

_SUBCOMMANDS = {"speak", "batch", "chapters", "voices", "models", "prepare", "train", "export"}


def _value_options() -> set[str]:
    """The speak options that take a value (to skip it when looking for INPUT)."""
    command = typer.main.get_command(app).commands["speak"]
    # Typer ships its own copy of click: compare the kind of parameter, not its class.
    return {name for p in command.params if p.param_type_name == "option" and not p.is_flag
            for name in p.opts}


def route(argv: list[str]) -> list[str]:
    """argv with "speak" put in front unless its first positional word names a subcommand."""
    if not argv:
        return argv  # the overview (no_args_is_help)
    takes_value = _value_options()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            first = argv[i + 1] if i + 1 < len(argv) else None
            break
        if arg.startswith("-") and arg != "-":
            i += 2 if arg in takes_value else 1
            continue
        first = arg
        break
    else:
        first = None
    if first is None:
        # Options only: the overview for -h/--version, else speak says INPUT is missing.
        return argv if any(a in ("-h", "--help", "--version") for a in argv) else ["speak", *argv]
    return argv if first in _SUBCOMMANDS else ["speak", *argv]


def _terminate(signum, frame) -> None:
    from narrate.pipeline import Terminated

    raise Terminated()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the narrate command (and python -m narrate)."""
    # A deprecation notice from a dependency (webrtcvad via resemblyzer) the user cannot act on.
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    # SIGTERM (kill, a service manager) finishes the output like Ctrl-C does.
    signal.signal(signal.SIGTERM, _terminate)
    args = route(list(sys.argv[1:] if argv is None else argv))
    try:
        code = app(args=args, prog_name="narrate", standalone_mode=False)
    except Exception as e:  # noqa: BLE001 - click's errors, matched by shape (typer ships its own click)
        if type(e).__name__ == "Abort":  # Ctrl-C outside a command's own handling
            _err().print("narrate: interrupted", markup=False)
            sys.exit(130)
        if not (hasattr(e, "format_message") and isinstance(getattr(e, "exit_code", None), int)):
            raise
        # A usage error in the one-line style of every other error (not click's boxed panel).
        command = getattr(getattr(e, "ctx", None), "command_path", "narrate")
        message = " ".join(e.format_message().split())
        _err().print(f"narrate: error: {message} (see '{command} --help')", markup=False)
        sys.exit(e.exit_code)
    sys.exit(code or 0)
