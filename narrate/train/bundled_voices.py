"""The voices narrate ships (narrate/assets/voices): each a training speaker reading one passage,
with its embedding and a one-line description beside it; and how alike they are.

    python -m narrate.train.bundled_voices --out DIR NAME=SPEAKER ... [--text TEXT]

SPEAKER is a speaker of the training corpus (narrate.train.speakers.training_speakers: ``joe``, a
real voice such as ``awb``, or a pseudo-speaker such as ``joe-f-low-3``), never a held-out voice;
NAME is what users type after --voice. Prints the pairwise similarity (resemblyzer cosine) of
every voice in DIR, which the cloning issue wants below 0.75 for every pair. A description says
"seen in training" only when the bundled model was trained on that voice (``--seen``): narrate-joe
was trained on joe and pitch-shifted joe only.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

# About 9 s of plain narration, none of it a held-out sentence of the benchmark.
PASSAGE = ("The library stayed open late on Thursdays, and she liked to walk there after supper. "
           "Along the way she counted the lamps on the bridge and listened to the river below.")
REGISTERS = ((165.0, "male"), (400.0, "female"))  # median pitch below which a voice is called so
SEEN = "seen in training"  # how a description says the bundled model was trained on the voice (bench.cloning reads it)
# The bundled voices made from pseudo-speakers (``--out narrate/assets/voices owen=joe-m-low-1
# joan=joe-f-low-1``): narrate.train.post_net keeps their sources out of its data, so that no
# trained part has heard them.
MADE_FROM = {"owen": "joe-m-low-1", "joan": "joe-f-low-1"}
ACCENTS = {"joe": "US English", "awb": "Scottish English", "kal16": "US English", "ked": "US English"}


def describe(speaker, pitch_hz: float, seen: bool = False) -> str:
    """One line for `narrate voices`: register, where the voice comes from, its pitch, and
    whether the bundled model was trained on it."""
    register = next(name for top, name in REGISTERS if pitch_hz < top) if np.isfinite(pitch_hz) else "unknown"
    if speaker.base == "joe" and not speaker.transformed:
        source = "piper's joe voice, the teacher"
    elif speaker.transformed:
        source = (f"{'piper joe' if speaker.base == 'joe' else speaker.base}'s reading resynthesized by WORLD "
                  f"(vocal tract x{speaker.warp:g}, tilt {speaker.tilt:+g}, breath {speaker.breath:g})")
    else:
        source = f"the {speaker.base} synthesizer voice"
    heard = SEEN if seen else "not in the bundled model's training"
    return f"{ACCENTS[speaker.base]} {register} narrator, median pitch {pitch_hz:.0f} Hz: {source}; {heard}"


def render_voice(speaker, text: str) -> np.ndarray:
    """``speaker`` reading ``text`` (float32 at 22,050 Hz) as the corpus renders it."""
    from narrate.train.prepare import _synth
    from narrate.train.speakers import render

    _, joe, _, _, _ = _synth((0, text, 1.0, 0.667))
    return render(speaker, text, joe)


def write_voices(out: Path, chosen: dict[str, str], text: str = PASSAGE, seen: bool = False) -> dict[str, np.ndarray]:
    """Write NAME.wav / .npy / .txt for each NAME=SPEAKER; returns the embeddings."""
    import soundfile as sf

    from narrate.pitch import median_pitch
    from narrate.train.speakers import SAMPLE_RATE, training_speakers
    from narrate.voices import SpeakerEncoder

    speakers = {s.name: s for s in training_speakers()}
    unknown = [s for s in chosen.values() if s not in speakers]
    if unknown:
        raise SystemExit(f"not training speakers: {', '.join(unknown)}")
    out.mkdir(parents=True, exist_ok=True)
    embeddings = {}
    for name, speaker_name in chosen.items():
        speaker = speakers[speaker_name]
        wav = render_voice(speaker, text)
        sf.write(out / f"{name}.wav", wav, SAMPLE_RATE, subtype="PCM_16")
        wav = sf.read(out / f"{name}.wav", dtype="float32")[0]  # what users will load
        embeddings[name] = SpeakerEncoder().embed(wav, SAMPLE_RATE)
        np.save(out / f"{name}.npy", embeddings[name])
        (out / f"{name}.txt").write_text(describe(speaker, median_pitch(wav, SAMPLE_RATE), seen) + "\n")
    return embeddings


def pairwise(embeddings: dict[str, np.ndarray]) -> list[tuple[str, str, float]]:
    return [(a, b, float(embeddings[a] @ embeddings[b])) for a, b in itertools.combinations(embeddings, 2)]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--text", default=PASSAGE)
    p.add_argument("--seen", action="store_true", help="the bundled model was trained on these speakers")
    p.add_argument("voices", nargs="+", help="NAME=SPEAKER")
    a = p.parse_args(argv)
    chosen = dict(v.split("=", 1) for v in a.voices)
    write_voices(a.out, chosen, a.text, a.seen)
    embeddings = {p.stem: np.load(p) for p in sorted(a.out.glob("*.npy"))}  # the new voices and those already there
    for name in embeddings:
        print(f"{name:10} {(a.out / f'{name}.txt').read_text().strip()}")
    for x, y, sim in pairwise(embeddings):
        print(f"{x:>10} ~ {y:<10} {sim:.3f}")


if __name__ == "__main__":
    main()
