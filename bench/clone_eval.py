"""A few-minute cloning check of a model (the full picture is `make bench`): each voice prompt
reads the same everyday sentences (never trained on), and per prompt we report the speaker
similarity of the output to the prompt (resemblyzer), the same for the default voice's output
(what the prompt adds), median F0 of output and prompt (WORLD), and WER (Whisper tiny.en).

Prompts: the held-out voices (never trained on: Festival's slt, flite's rms, pseudo-speakers of
the held-out family; `narrate.train.speakers.heldout_prompts`), then voices seen in training.

    python -m bench.clone_eval [--model ID|PATH] [--n 4] [--voices a,b] [--save DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from narrate.pitch import median_pitch

SEEN = ("awb", "joe-f-mid-0", "kal16-f-high-1")  # training speakers (narrate.train.speakers.training_speakers)


def prompt_audio(name: str, texts: list[str]) -> np.ndarray:
    """A voice reading ``texts`` with short gaps, at 22,050 Hz: a held-out voice or a training speaker."""
    from narrate.train import speakers as S
    from narrate.train.bundled_voices import render_voice

    spk = S.speaker_named(name)
    parts = [render_voice(spk, text) for text in texts]
    gap = np.zeros(S.SAMPLE_RATE // 4, np.float32)
    return np.concatenate([p for part in parts for p in (part, gap)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--n", type=int, default=4, help="everyday sentences each voice reads")
    ap.add_argument("--voices", default=None, help="comma-separated prompt names (default: held-out, then seen)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mean-temperature", type=float, default=None, help="decode setting (default: the model's)")
    ap.add_argument("--save", default=None, help="folder for prompts and renderings")
    args = ap.parse_args()

    import soundfile as sf

    from narrate.runtime.narrator import NarrateSettings, Narrator
    from bench.measures import transcribe, wer
    from narrate.train.speakers import SAMPLE_RATE, heldout_prompts
    from narrate.train.texts import EVERYDAY
    from narrate.voices import SpeakerEncoder, load_voice

    names = args.voices.split(",") if args.voices else [*heldout_prompts(), *SEEN]
    prompt_texts, texts = [EVERYDAY[0], EVERYDAY[2], EVERYDAY[3]], EVERYDAY[4 : 4 + args.n]
    save = Path(args.save) if args.save else None
    if save:
        save.mkdir(parents=True, exist_ok=True)
    enc = SpeakerEncoder()
    t0 = time.time()
    settings = NarrateSettings(seed=args.seed)
    if args.mean_temperature is not None:
        settings.mean_temperature = args.mean_temperature
    default = Narrator.load(args.model, None, settings)

    def render(narrator) -> np.ndarray:
        return np.concatenate([c.samples for text in texts for c in narrator.narrate([text])])

    base = render(default)
    base_emb = enc.embed(base, default.sample_rate)
    rows = [("default voice", "-", "-", "-", median_pitch(base, default.sample_rate), "-",
             wer([" ".join(texts)], [transcribe(base, default.sample_rate)]))]
    for name in names:
        prompt = prompt_audio(name, prompt_texts)
        path = (save or Path("/tmp")) / f"prompt_{name}.wav"
        sf.write(path, prompt, SAMPLE_RATE, subtype="PCM_16")
        voice = load_voice(str(path), "joe")
        n = Narrator(default.loaded, voice, default.settings)
        out = render(n)
        n.close()
        if save:
            sf.write(save / f"out_{name}.wav", out, n.sample_rate)
        sim = float(enc.embed(out, n.sample_rate) @ voice.embedding)
        rows.append((name, "held-out" if name in heldout_prompts() else "seen", sim, float(base_emb @ voice.embedding),
                     median_pitch(out, n.sample_rate), median_pitch(prompt, SAMPLE_RATE),
                     wer([" ".join(texts)], [transcribe(out, n.sample_rate)])))
        print(f"{name}: done", flush=True)
    default.close()
    print(f"\n{'prompt':18} {'kind':8} {'sim':>5} {'dflt':>5} {'F0 out':>6} {'F0 prm':>6} {'WER':>5}")
    def cell(v, fmt):
        return v if isinstance(v, str) else format(v, fmt)

    for name, kind, sim, dflt, f0o, f0p, w in rows:
        print(f"{name:18} {kind:8} {cell(sim, '.2f'):>5} {cell(dflt, '.2f'):>5} {f0o:6.0f} {cell(f0p, '.0f'):>6} {w:5.3f}")
    print(f"({len(texts)} sentences per voice, {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
