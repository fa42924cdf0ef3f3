"""The Typer app: its options, error reporting (one line, an exit status), routing to
``speak``, and ``main``, the entry point of the narrate command."""

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

from narrate import __version__
from narrate.audio.stretch import SPEEDS
from narrate.errors import NarrateError, Terminated, one_line
from narrate.runtime.pauses import SENTENCE_PAUSE

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
    source_filter = "source-filter"


class SubtitleFormat(str, Enum):
    srt = "srt"
    vtt = "vtt"
    vtt_words = "vtt-words"


class InputFormat(str, Enum):
    txt = "txt"
    md = "md"
    html = "html"
    epub = "epub"
    pdf = "pdf"


InputFormatOption = Annotated[Optional[InputFormat], typer.Option(
    "--input-format", show_default=False,
    help="Read the input as this format, whatever its name says (default: by its suffix; standard "
         "input: txt). Standard input takes txt, md or html, read as it arrives: markup, code and "
         "link targets are not spoken.")]


class Split(str, Enum):
    none = "none"
    chapters = "chapters"


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
    help="Frames to audio: source-filter (a predicted pitch at the voice prompt's median drives "
         "a pulse and noise source shaped by the frames), neural (the model's own vocoder, "
         "distilled from HiFi-GAN) or griffin-lim (no model, buzzier). auto: the model's choice "
         "(config.json default_vocoder), else neural when it has one.")]


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


ProgressEvery = Annotated[float, typer.Option(
    "--progress-every", min=0.0, metavar="SECONDS",
    help="When stderr is not a terminal (a log, nohup, a service): a progress line this often "
         "(percent, audio, speed, ETA); 0: none. On a terminal the live display shows it.")]


Quiet = Annotated[bool, typer.Option(
    "--quiet", "-q", help="No progress display, no summary line and no warnings; only errors.")]


SentencePause = Annotated[float, typer.Option(
    "--sentence-pause", min=0.05, max=5.0,
    help="Longest pause between sentences, in seconds (the model's own pause, scaled to its "
         "teacher's length; at least half this). Commas pause at most 0.25 s.")]


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


VoiceMapFile = Annotated[Optional[Path], typer.Option(
    "--voice-map", show_default=False, metavar="FILE",
    help="Voices by chapter: one 'CHAPTERS = VOICE' per line, chapters numbered as 'narrate "
         "chapters' lists them (1-3, 4,9-) or a chapter's title; '12 = joe; dialogue = anna' also "
         "reads that chapter's quoted speech in anna. Other chapters keep --voice.")]


BatchVoiceMapFile = Annotated[Optional[Path], typer.Option(
    "--voice-map", show_default=False, metavar="FILE",
    help="Voices by chapter, as narrate --voice-map takes them, applied to every document: a rule "
         "reads the chapters it names in the documents that have them ('4-9': those of 4 to 9 a "
         "document has); a rule that matches no document is an error. Other chapters keep --voice.")]


FrontMatter = Annotated[bool, typer.Option(
    "--front-matter",
    help="Also read front and back matter: cover and title pages, copyright, contents, dedication, "
         "'Also by', acknowledgements, index, bibliography, notes (default: skipped; 'narrate "
         "chapters' shows which).")]


Subtitles = Annotated[Optional[SubtitleFormat], typer.Option(
    "--subtitles", show_default=False,
    help="Also write subtitles timed to the audio: srt or vtt, a file beside the output (beside "
         "each chapter file in a folder), one cue per sentence or two-line phrase; vtt-words: a "
         ".vtt whose cues also time each word (WebVTT timestamp tags, for karaoke-style display).")]


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


def _narrator(model, voice, revision, speed, seed, temperature, decoder_processes=1,
              sentence_pause=SENTENCE_PAUSE, vocoder="auto", dialogue_voice=None, voice_map=None):
    from narrate.runtime.narrator import NarrateSettings, Narrator

    settings = NarrateSettings(speed=speed, seed=seed, temperature=temperature, decoder_processes=decoder_processes,
                               sentence_pause=sentence_pause, vocoder=vocoder)
    return Narrator.load(model, voice, settings, revision=revision, dialogue_voice=dialogue_voice,
                         voices=voice_map.voices() if voice_map else ())


def _given_extras(subtitles: str | None, front_matter: bool, dialogue_voice: str | None,
                  voice_map=None, input_format: str | None = None) -> dict:
    """The resume settings of --subtitles, --front-matter, --dialogue-voice, --voice-map and
    --input-format, each only when given, so that the records of runs made before these options
    existed still match."""
    return {**({"subtitles": subtitles} if subtitles else {}), **({"front_matter": True} if front_matter else {}),
            **({"dialogue_voice": _identity(dialogue_voice)} if dialogue_voice else {}),
            **({"voice_map": voice_map.settings()} if voice_map else {}),
            **({"input_format": input_format} if input_format else {})}


def _identity(name: str) -> str:
    # A path given two ways (relative, absolute) is the same model or voice.
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def _given(**values) -> dict:
    """The options the user gave; the others keep the config's defaults."""
    return {k: v for k, v in values.items() if v is not None}


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
    from narrate.jobs.pipeline import Interrupted

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


def _stop(progress) -> None:
    if progress is not None:
        progress.end()  # the live display must be gone before the message


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


_terminated: list[bool] = []  # a SIGTERM arrived


def _terminate(signum, frame) -> None:
    _terminated.append(True)
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
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM outside a command's own handling
        _err().print("narrate: interrupted", markup=False)
        sys.exit(143 if isinstance(e, Terminated) else 130)
    except Exception as e:  # noqa: BLE001 - click's errors, matched by shape (typer ships its own click)
        if type(e).__name__ == "Abort":  # click's word for the same (e.g. during start-up)
            _err().print("narrate: interrupted", markup=False)
            sys.exit(143 if isinstance(e.__cause__ or e.__context__, Terminated) else 130)
        if not (hasattr(e, "format_message") and isinstance(getattr(e, "exit_code", None), int)):
            raise
        # A usage error in the one-line style of every other error (not click's boxed panel).
        command = getattr(getattr(e, "ctx", None), "command_path", "narrate")
        message = " ".join(e.format_message().split())
        _err().print(f"narrate: error: {message} (see '{command} --help')", markup=False)
        sys.exit(e.exit_code)
    if code == 130 and _terminated:
        # typer turns an interrupt outside the command's own handling (during start-up) into a
        # silent 130; the commands answer SIGTERM themselves with 143 and a line
        _err().print("narrate: interrupted", markup=False)
        code = 143
    sys.exit(code or 0)
