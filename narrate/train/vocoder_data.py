"""Distillation data for narrate's vocoder: log-mel frames and the HiFi-GAN teacher's waveform
made from the same frames, cached in shards outside git.

Sources, taken in turn so that any prefix of the shards is varied:
  joe      piper's joe voice at varied speaking rates and noise
  shifted  joe pitch-shifted by sox (-450 to +700 cents)
  awb      flite's awb voice;  kal16: flite's kal16 voice (resampled to 22,050 Hz)
  model    the frames the shipped narrate model gives its vocoder (so the vocoder is robust to them)
  world    WORLD pseudo-speakers of the TTS corpus (``narrate.train.speakers.training_speakers``:
           male and female families, F0 up to ~300 Hz, of joe, awb, kal16 and ked)
  gta      a model's ground-truth-aligned frames (narrate.train.gta) of joe or a WORLD pseudo-speaker
           of joe, with the teacher's waveform of the TRUE frames: the vocoder learns to give back
           what the model's expected frames blur
flite's slt and rms, Festival's slt and the held-out pseudo-speaker family are held-out voices
of the cloning benchmark: never used here; nor are the held-out sentences (data/heldout.txt) or
the EVERYDAY list.

A shard ``<source>_<k>.npz`` holds ``mel`` [N, 80] float16, ``mel_len`` [n], ``wav`` [sum of
len * hop] float32 (the teacher's, aligned to the frames). Shards that exist are skipped, so a
rerun continues. The trainer holds out the first utterances of each source's shard 0.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

SOURCES = ("joe", "shifted", "awb", "kal16", "model", "world", "gta")
PER_SHARD = 8


def _log(msg: str) -> None:
    print(f"[vocoder-data] {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def training_texts(n: int, seed: int = 1) -> list[str]:
    """Sentences of the training pool, never a held-out or EVERYDAY one, shuffled."""
    from narrate.train.texts import EVERYDAY, corpus_texts, heldout_texts

    train, _ = corpus_texts(n, 0, seed=seed)
    banned = set(heldout_texts()) | set(EVERYDAY)
    texts = [t for t in train if t not in banned]
    random.Random(seed).shuffle(texts)
    return texts


def _flite(voice: str, text: str) -> np.ndarray:
    with tempfile.TemporaryDirectory() as d:
        raw, out = os.path.join(d, "a.wav"), os.path.join(d, "b.wav")
        subprocess.run(["flite", "-voice", voice, "-t", text, "-o", raw], check=True, capture_output=True)
        subprocess.run(["sox", raw, "-r", "22050", out], check=True, capture_output=True)
        y, _ = sf.read(out, dtype="float32")
    return y


def pitch_shift(audio: np.ndarray, cents: int, rate: int = 22050) -> np.ndarray:
    """int16/float audio -> float32 of exactly the same length, shifted by sox's ``pitch``."""
    x = audio.astype(np.float32) / (32768.0 if audio.dtype == np.int16 else 1.0)
    if cents == 0:
        return x
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "a.wav"), os.path.join(d, "b.wav")
        sf.write(src, x, rate, subtype="FLOAT")
        subprocess.run(["sox", src, dst, "pitch", str(cents)], check=True, capture_output=True)
        y, _ = sf.read(dst, dtype="float32")
    y = y[: len(x)]
    return np.pad(y, (0, len(x) - len(y))).astype(np.float32)


def world_speakers() -> list:
    """The pseudo-speakers of the 'world' source: the TTS corpus's transformed training speakers
    (never the held-out family, never a held-out voice)."""
    from narrate.train.speakers import training_speakers

    return [s for s in training_speakers() if s.transformed]


class Sources:
    """Audio or frames of one sentence from each source."""

    def __init__(self, model: str | None):
        from narrate.codec.mel import MelConfig, MelSpec

        self.spec = MelSpec(MelConfig())
        self.model = model
        self._narrator = None
        self._frames: list[torch.Tensor] = []
        self._gta = None

    def pair(self, source: str, text: str, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
        """(the vocoder's input frames [T, 80], the frames whose teacher waveform it learns to
        give): the same frames for every source but ``gta``."""
        if source != "gta":
            mel = self.frames(source, text, rng)
            return mel, mel
        if self._gta is None:
            from narrate.train.gta import GTAReader

            self._gta = GTAReader(self.model)
        joe_world = [s for s in world_speakers() if s.base == "joe"]
        model_frames, true = self._gta.pair(text, rng, None if rng.random() < 0.5 else rng.choice(joe_world))
        return torch.from_numpy(model_frames), torch.from_numpy(true)

    def frames(self, source: str, text: str, rng: random.Random) -> torch.Tensor:
        """[T, 80] log-mel frames of ``text`` from ``source``."""
        from narrate.train.prepare import _synth

        if source in ("joe", "shifted"):
            _, audio, _, _, _ = _synth((0, text, rng.uniform(0.8, 1.25), rng.uniform(0.4, 0.8)))
            cents = 0 if source == "joe" else rng.choice([-450, -300, -150, 200, 350, 500, 700])
            return self.spec.features(pitch_shift(audio, cents))
        if source in ("awb", "kal16"):
            return self.spec.features(_flite(source, text))
        if source == "model":
            return self._model_frames(text)
        if source == "world":
            from narrate.train.speakers import render

            _, audio, _, _, _ = _synth((0, text, rng.uniform(0.8, 1.25), rng.uniform(0.4, 0.8)))
            return self.spec.features(render(rng.choice(world_speakers()), text, audio))
        raise ValueError(source)

    def _model_frames(self, text: str) -> torch.Tensor:
        """The frames the narrate model hands its vocoder for one sentence (features, emit=mean)."""
        if self._narrator is None:
            from narrate.runtime.narrator import NarrateSettings, Narrator

            recorded = self._frames

            class _Recorder:
                def __init__(self, kernel: bool | None = None):  # (as Codec.stream_decoder is called)
                    pass

                def push_features(self, feats):
                    recorded.append(feats.clone())
                    return np.zeros(0, np.float32)

                push = push_features

                def flush(self):
                    return np.zeros(0, np.float32)

            self._narrator = Narrator.load(self.model, settings=NarrateSettings(vocoder_process=False))
            self._narrator.codec.stream_decoder = _Recorder  # the instance's codec: record, don't vocode
        self._frames.clear()
        for _ in self._narrator.narrate([text]):
            pass
        return torch.cat(self._frames).float()


def make_shards(out: Path, shards_per_source: int, model: str | None, seed: int = 1,
                sources: tuple[str, ...] = SOURCES) -> None:
    """Shards 0 .. shards_per_source - 1 of each of ``sources`` (texts are laid out over all of
    SOURCES, so a subset makes the same shards a full run would)."""
    from narrate.codec.hifigan import HiFiGAN

    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    texts = training_texts(len(SOURCES) * shards_per_source * PER_SHARD + 50, seed)
    teacher = HiFiGAN("universal")
    frames = Sources(model)
    for k in range(shards_per_source):
        for s, source in enumerate(SOURCES):
            if source not in sources:
                continue
            path = out / f"{source}_{k:04d}.npz"
            if path.exists():
                continue
            t0 = time.perf_counter()
            first = (k * len(SOURCES) + s) * PER_SHARD
            rng = random.Random(f"{seed}-{source}-{k}")
            mels, wavs = [], []
            for text in texts[first : first + PER_SHARD]:
                mel, target = frames.pair(source, text, rng)
                if len(mel) < 16:
                    continue
                mels.append(mel.numpy().astype(np.float16))
                wavs.append(teacher.vocode(target.numpy().astype(np.float16).astype(np.float32)))
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, mel=np.concatenate(mels), mel_len=np.array([len(m) for m in mels]),
                     wav=np.concatenate(wavs))
            tmp.rename(path)
            seconds = sum(len(w) for w in wavs) / 22050
            _log(f"{path.name}: {seconds:.1f} s of audio in {time.perf_counter() - t0:.1f} s")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="cache folder (outside git)")
    p.add_argument("--shards", type=int, default=40, help="shards per source")
    p.add_argument("--model", default=None, help="narrate model whose frames are the 'model' and 'gta' sources")
    p.add_argument("--sources", default=",".join(SOURCES), help=f"comma-separated, of {', '.join(SOURCES)}")
    a = p.parse_args(argv)
    chosen = tuple(x for x in a.sources.split(",") if x)
    unknown = sorted(set(chosen) - set(SOURCES))
    if unknown:
        p.error(f"unknown sources {unknown} (known: {', '.join(SOURCES)})")
    make_shards(a.out, a.shards, a.model, sources=chosen)


if __name__ == "__main__":
    main()
