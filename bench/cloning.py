"""Cloning: the same held-out text read with voice prompts narrate never heard (made here by
other synthesizers) and with voices it was trained on, against the default voice (issue 16).

A prompt is a named function that writes a wav reading the given sentences (the everyday
ones, which the benchmark's cloning text never contains). To add a prompt, add a row to
``PROMPTS``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from narrate.pitch import median_pitch
from narrate.voices import bundled_voices
from bench.quality import dnsmos, embed, file_embedding, intelligibility, sim

PROMPT_SENTENCES = 4          # everyday sentences a made prompt reads (~10 s)
GAP_S = 0.25                  # silence between them


@dataclass(frozen=True)
class Prompt:
    kind: str  # "held out" (never in training), "seen" (in training) or "not trained on" (a bundled voice)
    write: Callable[[Path, list[str]], None]    # (wav path, sentences) -> the prompt on disk
    description: str


def _joined(parts: list[Path], out: Path) -> None:
    """The sentence wavs one after another with a short gap, as one wav (first part's rate)."""
    import soundfile as sf

    audio, sr = [], None
    for p in parts:
        wav, rate = sf.read(str(p), dtype="float32", always_2d=True)
        sr = sr or rate
        if rate != sr:
            raise RuntimeError(f"{p}: {rate} Hz, expected {sr} Hz")
        audio += [wav.mean(axis=1), np.zeros(int(GAP_S * sr), np.float32)]
    sf.write(str(out), np.concatenate(audio), sr)


def _per_sentence(render_one: Callable[[str, Path], list[str]]) -> Callable[[Path, list[str]], None]:
    """A prompt writer from a command line that renders one sentence (``render_one(text, wav)``)."""

    def write(out: Path, sentences: list[str]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            parts = []
            for k, text in enumerate(sentences):
                wav, txt = Path(tmp) / f"{k}.wav", Path(tmp) / f"{k}.txt"
                txt.write_text(text + "\n", encoding="utf-8")
                subprocess.run(render_one(str(txt), wav), check=True, capture_output=True, timeout=120)
                parts.append(wav)
            _joined(parts, out)

    return write


def _bundled_kind(path: Path) -> str:
    """A bundled voice's kind, from its description (NAME.txt beside NAME.wav)."""
    from narrate.train.bundled_voices import SEEN

    description = path.with_suffix(".txt")
    seen = description.exists() and SEEN in description.read_text(encoding="utf-8")
    return "seen" if seen else "not trained on"


def _bundled(name: str) -> Callable[[Path, list[str]], None]:
    def write(out: Path, sentences: list[str]) -> None:  # the bundled prompt as it is (its own text)
        shutil.copyfile(bundled_voices()[name], out)

    return write


def _pseudo(name: str) -> Callable[[Path, list[str]], None]:
    """A WORLD pseudo-speaker (narrate.train.speakers) reading the sentences from joe's renderings."""

    def write(out: Path, sentences: list[str]) -> None:
        import soundfile as sf

        from narrate.train.prepare import _synth
        from narrate.train.speakers import SAMPLE_RATE, render, speaker_named

        spk = speaker_named(name)
        gap = np.zeros(int(GAP_S * SAMPLE_RATE), np.float32)
        parts = [render(spk, t, _synth((k, t, 1.0, 0.667))[1]) for k, t in enumerate(sentences)]
        sf.write(str(out), np.concatenate([p for part in parts for p in (part, gap)]), SAMPLE_RATE)

    return write


def _festival_slt(txt: str, wav: Path) -> list[str]:
    return ["text2wave", "-eval", "(voice_cmu_us_slt_arctic_hts)", txt, "-o", str(wav)]


def _flite_rms(txt: str, wav: Path) -> list[str]:
    return ["flite", "-voice", "rms", "-f", txt, "-o", str(wav)]


PROMPTS: dict[str, Prompt] = {
    "slt-hts": Prompt("held out", _per_sentence(_festival_slt),
                      "Festival cmu_us_slt_arctic_hts (US female, HTS; Debian festvox-us-slt-hts)"),
    "rms": Prompt("held out", _per_sentence(_flite_rms), "flite rms (US male, CMU ARCTIC; Debian flite)"),
    "joe-f-breathy-0": Prompt("held out", _pseudo("joe-f-breathy-0"),
                              "joe resynthesized by WORLD as a pseudo-speaker of the held-out family f-breathy"),
    # the bundled voices (narrate.train.bundled_voices): seen where their description says so,
    # else voices the bundled model was not trained on, held to the held-out bars
    **{name: Prompt(_bundled_kind(path), _bundled(name), f"bundled voices/{name}.wav")
       for name, path in bundled_voices().items()},
}

# The bars (issue 16): held-out voices against the default voice's output, seen voices absolute.
HELD_OUT_MARGIN, HELD_OUT_MIN, SEEN_MIN, F0_TOLERANCE, WER_FACTOR = 0.10, 0.75, 0.85, 0.15, 1.2


def verdicts(row: dict, default_wer: float) -> dict:
    """Each bar of a prompt's row: True (met) / False (not met)."""
    if row["kind"] == "seen":
        return {"similarity": row["similarity"] >= SEEN_MIN}
    return {"similarity": (row["similarity"] >= row["default_similarity"] + HELD_OUT_MARGIN
                           and row["similarity"] >= HELD_OUT_MIN),
            "f0": abs(row["f0_output"] / row["f0_prompt"] - 1) <= F0_TOLERANCE,
            "wer": row["wer"] <= WER_FACTOR * default_wer}


def measure(render_with: Callable[[str | None], object], prompt_dir: Path, names: list[str] | None = None) -> dict:
    """Render the text with each prompt (``render_with(wav path)``) and the default voice
    (``render_with(None)``), and score each output against its prompt."""
    import soundfile as sf

    from narrate.train.texts import EVERYDAY

    default = render_with(None)
    default_intel = intelligibility(default)
    default_emb = embed(default.audio, default.sr)
    rows = {}
    for name in names or list(PROMPTS):
        p = PROMPTS[name]
        path = prompt_dir / f"{name}.wav"
        p.write(path, EVERYDAY[:PROMPT_SENTENCES])
        prompt_wav, prompt_sr = sf.read(str(path), dtype="float32", always_2d=True)
        ref = file_embedding(path)
        out = render_with(str(path))
        row = {"kind": p.kind, "description": p.description, "prompt_s": len(prompt_wav) / prompt_sr,
               "similarity": sim(embed(out.audio, out.sr), ref), "default_similarity": sim(default_emb, ref),
               "f0_output": median_pitch(out.audio, out.sr), "f0_prompt": median_pitch(prompt_wav.mean(axis=1), prompt_sr),
               "wer": intelligibility(out)["wer"], "dnsmos": dnsmos(out.audio, out.sr), "audio_s": out.seconds}
        row["bars"] = verdicts(row, default_intel["wer"])
        rows[name] = row
    return {"default": {"wer": default_intel["wer"], "f0": median_pitch(default.audio, default.sr),
                        "dnsmos": dnsmos(default.audio, default.sr), "audio_s": default.seconds},
            "prompts": rows,
            "bars": {"held_out_margin": HELD_OUT_MARGIN, "held_out_min": HELD_OUT_MIN, "seen_min": SEEN_MIN,
                     "f0_tolerance": F0_TOLERANCE, "wer_factor": WER_FACTOR}}
