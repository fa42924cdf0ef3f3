"""The dialogue voice, measured: a short story with quoted speech narrated with a dialogue voice
(as ``--dialogue-voice`` reads it), its audio split where the narrator says each piece ends (a
piece: narration, or a quote cut out of its sentence), and the speaker similarity (resemblyzer,
embedded as bench.quality does) of the quotes and of the narration to each voice's prompt.

The quotes should lie nearer the dialogue voice's prompt than the narrator's, the narration the
other way round. Each side is scored joined (all its pieces end to end: enough speech for a
steady embedding) and piece by piece (a short quote gives a noisy embedding; too short ones are
left out).

    python -m bench.dialogue [--model ID|PATH] [--voice joe] [--dialogue-voice joe-high] [--seed 0] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np

# Long quotes on purpose: a speaker embedding of under a second of speech says little.
STORY = """The rain had not stopped for three days when the stranger came to the lighthouse.

"I have walked all the way from the harbour town, and nobody there would give me a bed for the night," he said, shaking the water from his coat.

The keeper looked at him for a long moment before he stepped aside. "Then you had better come in and sit by the fire, because the storm will only grow worse after dark."

They ate in silence, bread and a little cheese, while the wind pulled at the shutters.

"Do you keep the lamp burning every night of the year, even when no ship has passed for weeks?" the stranger asked at last.

"Every night," said the keeper. "A light that is only lit when you expect a ship is no light at all, and the sea has never told me when to expect one."

The stranger smiled at that, and for the first time he seemed at ease.
"""

MIN_SECONDS = 0.8  # a piece shorter than this is left out of the piece-by-piece scores


def story_sentences(text: str = STORY) -> list:
    """The story as the narrator is given it with a dialogue voice: sentences, quotes cut out
    and marked (narrate.text.dialogue), paragraphs' pauses as a book's."""
    from narrate.runtime.pauses import PARAGRAPH_PAUSE
    from narrate.text.dialogue import dialogue_pieces
    from narrate.text.segment import spoken

    return list(dialogue_pieces(spoken(text, 200, None, PARAGRAPH_PAUSE)))


def render(narrator, sentences) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The audio of ``sentences`` and each one's [start, end) in samples, as the narrator
    reports them (each chunk names its sentence; a sentence's audio includes its pause)."""
    parts: list[np.ndarray] = []
    spans: dict[int, list[int]] = {}
    at = 0
    for chunk in narrator.narrate(sentences):
        spans.setdefault(chunk.sentence, [at, at])[1] = at + len(chunk.samples)
        parts.append(chunk.samples)
        at += len(chunk.samples)
    return np.concatenate(parts), [tuple(spans[i]) for i in range(len(sentences))]


def score(audio: np.ndarray, rate: int, spans, sentences, narrator_ref: np.ndarray,
          dialogue_ref: np.ndarray) -> dict:
    """Similarity to each voice's prompt embedding of the quotes and of the narration: joined,
    and per piece (mean, and how many pieces lie nearer the voice that should read them)."""
    from bench.quality import embed, sim

    result: dict = {}
    for side, quoted in [("quotes", True), ("narration", False)]:
        pieces = [audio[a:b] for (a, b), s in zip(spans, sentences) if s.dialogue == quoted]
        joined = embed(np.concatenate(pieces), rate)
        rows = []
        for piece in pieces:
            e = embed(piece, rate) if len(piece) >= MIN_SECONDS * rate else None
            if e is not None:
                rows.append((sim(e, dialogue_ref), sim(e, narrator_ref)))
        nearer_own = sum((d > n) == quoted for d, n in rows)
        result[side] = {
            "pieces": len(pieces), "seconds": round(sum(len(p) for p in pieces) / rate, 1),
            "joined_to_dialogue_voice": round(sim(joined, dialogue_ref), 3),
            "joined_to_narrator": round(sim(joined, narrator_ref), 3),
            "scored_pieces": len(rows),
            "piece_mean_to_dialogue_voice": round(statistics.mean(d for d, _ in rows), 3) if rows else None,
            "piece_mean_to_narrator": round(statistics.mean(n for _, n in rows), 3) if rows else None,
            "pieces_nearer_their_own_voice": nearer_own}
    return result


def voice_reference(name: str | None, default: str) -> np.ndarray:
    """The embedding of a voice's prompt recording, as the output is embedded (bench.quality)."""
    from bench.quality import file_embedding
    from narrate.voices import load_voice

    voice = load_voice(name, default)
    if voice.path is None:
        return np.asarray(voice.embedding, np.float32)
    return file_embedding(voice.path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model id or folder (default: the bundled one)")
    ap.add_argument("--voice", default=None, help="the narrator's voice (default: the model's)")
    ap.add_argument("--dialogue-voice", default="joe-high", help="the voice of quoted speech")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="folder for the audio and scores (default: a temporary one)")
    args = ap.parse_args()

    import soundfile as sf

    from bench.quality import sim
    from narrate.runtime.narrator import NarrateSettings, Narrator

    out = Path(args.out or tempfile.mkdtemp(prefix="dialogue-"))
    out.mkdir(parents=True, exist_ok=True)
    sentences = story_sentences()
    # (the vocoder inline: one core, the same samples as in a process of its own)
    settings = NarrateSettings(seed=args.seed, vocoder_process=False)
    narrator = Narrator.load(args.model, args.voice, settings, dialogue_voice=args.dialogue_voice)
    try:
        audio, spans = render(narrator, sentences)
        default = narrator.loaded.config.default_voice
    finally:
        narrator.close()
    rate = narrator.sample_rate
    sf.write(str(out / "story.wav"), audio, rate)
    refs = voice_reference(args.voice, default), voice_reference(args.dialogue_voice, default)
    scores = score(audio, rate, spans, sentences, *refs)
    scores["voices"] = {"narrator": args.voice or default, "dialogue": args.dialogue_voice,
                        "prompts_to_each_other": round(sim(*refs), 3)}
    (out / "scores.json").write_text(json.dumps(scores, indent=2), encoding="utf-8")
    for side in ("quotes", "narration"):
        s = scores[side]
        print(f"{side}: {s['pieces']} pieces, {s['seconds']} s; joined: {s['joined_to_dialogue_voice']:.3f} to the "
              f"dialogue voice, {s['joined_to_narrator']:.3f} to the narrator; per piece ({s['scored_pieces']} of at "
              f"least {MIN_SECONDS} s): {s['piece_mean_to_dialogue_voice']} / {s['piece_mean_to_narrator']}, "
              f"{s['pieces_nearer_their_own_voice']} nearer their own voice")
    print(f"the two prompts' similarity: {scores['voices']['prompts_to_each_other']:.3f}; audio and scores in {out}")


if __name__ == "__main__":
    main()
