"""Subtitle timing against an ASR: narrate a short text with subtitles, transcribe the audio
with Whisper tiny.en's word timestamps, and compare each cue's start with the start of its first
word as the ASR heard it (issue 18's bar: within 0.15 s, median).

    python -m bench.subtitle_timing [--model ID|PATH] [--voice NAME] [--n 10] [--out DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path


def first_word_offsets(cues, heard) -> list[float]:
    """cue start - ASR start of the cue's first word, for each cue whose first word the ASR
    heard within 3 s of the cue (the nearest such word; words matched in order)."""
    from bench.measures import normalize_words

    words = [(normalize_words(w), start) for w, start, _ in heard]
    offsets, at = [], 0
    for _, start, _, text in cues:
        first = (normalize_words(text).split() or [""])[0]
        near = [j for j in range(at, len(words)) if words[j][0] == first and abs(words[j][1] - start) < 3.0]
        if near:
            j = min(near, key=lambda j: abs(words[j][1] - start))
            offsets.append(start - words[j][1])
            at = j + 1
    return offsets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--voice", default=None)
    ap.add_argument("--n", type=int, default=10, help="sentences of the everyday set (it has 10)")
    ap.add_argument("--out", default=None, help="folder for the audio and subtitles (default: a temporary one)")
    args = ap.parse_args()

    import soundfile as sf

    from narrate.runtime.narrator import NarrateSettings, Narrator
    from narrate.jobs.pipeline import Job, make_plan, run
    from narrate.cli.progress import Progress
    from bench.measures import transcribe_words
    from narrate.audio.subtitles import read_cues
    from narrate.train.texts import EVERYDAY

    out = Path(args.out or tempfile.mkdtemp(prefix="subtitle-timing-"))
    out.mkdir(parents=True, exist_ok=True)
    half = args.n // 2
    text = out / "text.md"
    text.write_text("# A Short Test\n\n" + " ".join(EVERYDAY[:half]) + "\n\n" + " ".join(EVERYDAY[half:args.n]) + "\n",
                    encoding="utf-8")
    narrator = Narrator.load(args.model, args.voice, NarrateSettings())
    try:
        plan = make_plan(Job(str(text), str(out / "text.wav"), force=True, subtitles="srt"), stdout_is_tty=True)
        run(narrator, plan, Progress(live=False))
    finally:
        narrator.close()
    audio, rate = sf.read(str(out / "text.wav"), dtype="float32")
    cues = read_cues((out / "text.srt").read_text(encoding="utf-8"))
    offsets = first_word_offsets(cues, transcribe_words(audio, rate))
    if not offsets:
        raise SystemExit("no cue's first word was heard by the ASR")
    errors = sorted(abs(o) for o in offsets)
    print(f"cues {len(cues)}, matched {len(offsets)}; |cue start - ASR word start|: median "
          f"{statistics.median(errors):.3f} s, 90th percentile {errors[int(0.9 * (len(errors) - 1))]:.3f} s, "
          f"max {errors[-1]:.3f} s; mean signed {statistics.mean(offsets):+.3f} s; audio "
          f"{len(audio) / rate:.1f} s in {out}")


if __name__ == "__main__":
    main()
