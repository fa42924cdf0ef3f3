"""A two-minute intelligibility check of a model: narrate a few sentences and transcribe them
with Whisper tiny.en (the full picture is `make bench`). The sets: `everyday` (never trained
on), `heldout` (the corpus's held-out docstrings) and `train` (sentences it trained on; a large
gap to `heldout` means the model memorizes instead of generalizing; give its --corpus).

    python -m bench.quick_eval [--model ID|PATH] [--set everyday|heldout|train] [--corpus DIR]
                               [--n 10] [--voice joe] [--save DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--voice", default=None)
    ap.add_argument("--set", dest="which", choices=["everyday", "heldout", "train"], default="everyday")
    ap.add_argument("--corpus", default=None, help="corpus folder the model trained on (for --set train)")
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mean-temperature", type=float, default=None, help="decode setting (default: the model's)")
    ap.add_argument("--emit", choices=["mean", "codes"], default=None,
                    help="frames handed to the vocoder: expected code vectors or the sampled codes (default: the model's)")
    ap.add_argument("--save", default=None, help="folder for the rendered wavs")
    args = ap.parse_args()
    if args.which == "train" and not args.corpus:
        ap.error("--set train needs --corpus")

    import soundfile as sf

    from narrate.runtime.narrator import Narrator, NarrateSettings
    from bench.measures import transcribe, wer
    from narrate.text.segment import sentences
    from narrate.train.texts import EVERYDAY, heldout_texts

    if args.which == "train":
        # the training set's end is docstring prose like the held-out set (its start is our prose)
        texts = json.loads((Path(args.corpus) / "texts.json").read_text())["train"][::-1]
    else:
        texts = EVERYDAY if args.which == "everyday" else heldout_texts()
    settings = NarrateSettings(seed=args.seed)
    if args.mean_temperature is not None:
        settings.mean_temperature = args.mean_temperature
    if args.emit is not None:
        settings.emit = args.emit
    n = Narrator.load(args.model, args.voice, settings)
    refs, hyps, audio_s, t0 = [], [], 0.0, time.time()
    for i, text in enumerate(texts[: args.n]):
        audio = np.concatenate([c.samples for c in n.narrate(list(sentences(text)))])
        audio_s += len(audio) / n.sample_rate
        if args.save:
            Path(args.save).mkdir(parents=True, exist_ok=True)
            sf.write(Path(args.save) / f"{args.which}_{i}.wav", audio, n.sample_rate)
        hyp = transcribe(audio, n.sample_rate)
        refs.append(text)
        hyps.append(hyp)
        print(f"{len(audio) / n.sample_rate:5.1f} s | {text}\n        | {hyp}", flush=True)
    print(f"WER {wer(refs, hyps):.3f} on {len(refs)} {args.which} sentences; {audio_s:.1f} s of audio "
          f"in {time.time() - t0:.1f} s (including ASR)")


if __name__ == "__main__":
    main()
