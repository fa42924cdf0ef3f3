"""Your voices and models: ``narrate voices`` (list, add, remove, samples) and ``narrate models``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from narrate.cli.core import Model, _err, _message, _out, _reported, app
from narrate.errors import NarrateError, warn

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
    from narrate.runtime.narrator import NarrateSettings, Narrator
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
