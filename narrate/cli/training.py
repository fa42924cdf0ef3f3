"""Training commands: ``narrate prepare``, ``narrate train``, ``narrate export``."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer

from narrate.cli.core import _err, _fail, _given, _reported, app

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
        from narrate.train.prepare import PrepareConfig
        from narrate.train.prepare import prepare as build

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
    voice_stats: Annotated[Optional[bool], typer.Option(
        "--voice-stats/--no-voice-stats", show_default=False,
        help="A new run's model also hears the voice's pitch and its prompt's average spectrum "
             "(with --init, a model without them gains them)" + RECIPE)] = None,
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
        from narrate.train.loop import TrainConfig
        from narrate.train.loop import train as fit

        checkpoint = fit(TrainConfig([str(c) for c in corpus], str(run), **_given(
            steps=steps, max_minutes=minutes, max_steps_per_batch=batch_steps, lr=lr, init=init, threads=threads),
            model=_given(prompt_tokens=prompt_tokens, voice_stats=voice_stats)))
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


@contextmanager
def _training_extras() -> Iterator[None]:
    """A missing optional training dependency is a setup problem, not a crash."""
    try:
        yield
    except ModuleNotFoundError as e:
        _fail(f"the training commands need the module '{e.name}': pip install 'narrate[train]'")
