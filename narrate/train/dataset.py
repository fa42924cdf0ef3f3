"""The prepared corpus as training examples: per decoder step the tracked text position, the
semantic target (progress), the codec codes and the frames, from the teacher's alignments."""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from narrate.engine.model import PromptEncoder
from narrate.errors import NarrateError
from narrate.pitch import pitch_feature
from narrate.train.prepare import TRACKS, split

PROMPT_SECONDS = (2.0, 8.0)  # a training prompt's length: what users give (see voices.MAX_PROMPT_SECONDS)
FRAME_RATE = 22050 / 256
NO_PROMPT = 0.1              # share of examples without a prompt (the embedding alone must also work)
PITCH_FILE = "pitch.json"    # per speaker, the median pitch of its readings (made once, beside the corpus)
PITCH_READINGS = 3           # readings per speaker it is measured on


@dataclass
class Utterance:
    ids: np.ndarray        # [N] token ids
    rate: float            # log length scale the teacher used


@dataclass(frozen=True)
class Rendering:
    """One reading of one sentence: utterance index, track, speaker index."""
    utt: int
    track: str
    speaker: int


@dataclass
class Example:
    chunks: list[np.ndarray]  # token ids per text chunk (1 or 2 sentences)
    positions: np.ndarray     # [S] tracked position per step
    semantic: np.ndarray      # [S] progress class per step (moves 0..3, STOP)
    codes: np.ndarray         # [S, r, K]
    feats: np.ndarray         # [S, r, F] true log-mel
    speaker: np.ndarray       # [D] speaker embedding (of another rendering by the same speaker)
    rate: float
    prompt: np.ndarray | None = None  # [T, F] log-mel of another rendering by the same speaker
    pitch: float = 0.0        # the speaker's pitch_feature (narrate.pitch)


class Corpus:
    """One or more prepared corpus folders as one: every folder's training sentences train, the
    first folder's held-out sentences evaluate. The folders must share one codec and one list
    of speakers (both made by the same recipe)."""

    def __init__(self, roots: Path | list[Path], tracks: tuple[str, ...] = TRACKS):
        self.roots = [Path(r) for r in ([roots] if isinstance(roots, (str, Path)) else roots)]
        self.tracks = tracks
        self.utts: list[Utterance] = []
        self.codes: dict[str, list[np.ndarray]] = {t: [] for t in tracks}
        self.feats: dict[str, list[np.ndarray]] = {t: [] for t in tracks}
        self.durations: dict[str, list[np.ndarray]] = {t: [] for t in tracks}
        self.reader: dict[str, list[int]] = {t: [] for t in tracks}  # speaker per utterance (-1: none)
        self._train: list[int] = []
        self._heldout: list[int] = []
        embeddings: dict[int, list[np.ndarray]] = {}
        for n, root in enumerate(self.roots):
            if n and (root / "codec.safetensors").read_bytes() != (self.roots[0] / "codec.safetensors").read_bytes():
                raise NarrateError(f"corpus {root} has another codec than {self.roots[0]} (build it with --extends)")
            if n and (root / "speakers.json").read_text() != (self.roots[0] / "speakers.json").read_text():
                raise NarrateError(f"corpus {root} has other speakers than {self.roots[0]}")
            texts = json.loads((root / "texts.json").read_text())
            n_train, n_heldout, base = len(texts["train"]), len(texts["heldout"]), len(self.utts)
            self._train += range(base, base + n_train)
            if n == 0:
                self._heldout = list(range(base + n_train, base + n_train + n_heldout))
            t = np.load(root / "teacher.npz")
            self.utts += [Utterance(i.astype(np.int64), float(np.log(ls)))
                          for i, ls in zip(split(t["ids"], t["ids_len"]), t["length_scale"])]
            for tr in tracks:
                c = np.load(root / f"codes_{tr}.npz")
                data = np.load(root / f"track_{tr}.npz")
                self.codes[tr] += split(c["codes"].T, c["codes_len"])  # list of [T, K]
                self.feats[tr] += split(data["mel"], data["mel_len"])
                self.durations[tr] += [d.astype(np.int64) for d in split(data["durations"], t["ids_len"])]
                self.reader[tr] += data["speaker"].tolist()
            spk = np.load(root / "speakers.npz")
            for e, o in zip(spk["embeddings"], spk["owner"]):
                embeddings.setdefault(int(o), []).append(e)
        self.speakers = json.loads((self.roots[0] / "speakers.json").read_text())
        self.embeddings = {s: np.stack(e) for s, e in embeddings.items()}
        self.renderings_of: dict[int, list[Rendering]] = {}
        for u in self._train:
            for tr in tracks:
                s = self.reader[tr][u]
                if s >= 0:
                    self.renderings_of.setdefault(s, []).append(Rendering(u, tr, s))

    @functools.cached_property
    def pitch(self) -> dict[int, float]:
        """Speaker index -> median pitch (Hz) of its voiced speech (NaN: none found), measured as a
        voice prompt's is at run time (narrate.pitch) on up to PITCH_READINGS of its readings made
        audible again from their frames (Griffin-Lim keeps the harmonics). Made once and kept in
        the first folder as pitch.json."""
        path = self.roots[0] / PITCH_FILE
        if path.exists():
            return {int(k): float(v) for k, v in json.loads(path.read_text()).items()}
        from narrate.codec.mel import MelConfig, MelSpec
        from narrate.pitch import median_pitch

        spec = MelSpec(MelConfig())
        out = {}
        for speaker, rends in sorted(self.renderings_of.items()):
            values = [median_pitch(spec.vocode(torch.from_numpy(self.feats[r.track][r.utt].astype(np.float32))),
                                   spec.cfg.sample_rate) for r in rends[:PITCH_READINGS]]
            values = [v for v in values if np.isfinite(v)]
            out[speaker] = float(np.median(values)) if values else float("nan")
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=0))
        tmp.replace(path)
        return out

    def train_ids(self) -> list[int]:
        return list(self._train)

    def heldout_ids(self) -> list[int]:
        return list(self._heldout)

    def rendering(self, u: int, track: str) -> Rendering:
        return Rendering(u, track, self.reader[track][u])

    def prompt(self, rend: Rendering, rng: random.Random, avoid: set[int]) -> np.ndarray | None:
        """Log-mel frames [T, F] of another sentence by the same speaker, 2-8 s of it (None: the
        speaker has no other sentence)."""
        others = [r for r in self.renderings_of.get(rend.speaker, []) if r.utt not in avoid]
        if not others:
            return None
        o = rng.choice(others)
        mel = self.feats[o.track][o.utt]
        n = min(len(mel), int(rng.uniform(*PROMPT_SECONDS) * FRAME_RATE))
        start = rng.randrange(len(mel) - n + 1)
        return mel[start : start + n].astype(np.float32)

    def example(self, rends: list[Rendering], r: int, rng: random.Random, max_move: int = 3) -> Example:
        """One training example: the renderings (one speaker) spoken back to back."""
        chunks, pos, codes, feats, offset = [], [], [], [], 0
        for rend in rends:
            u, tr = rend.utt, rend.track
            ids = self.utts[u].ids
            chunks.append(ids)
            pos.append(np.repeat(np.arange(len(ids)), self.durations[tr][u]) + offset)
            codes.append(self.codes[tr][u])
            feats.append(self.feats[tr][u])
            offset += len(ids)
        pos, codes, feats = np.concatenate(pos), np.concatenate(codes), np.concatenate(feats).astype(np.float32)
        T = len(pos)
        assert T == len(codes) == len(feats), (T, len(codes), len(feats))
        pad = (-T) % r
        if pad:  # repeat the (silent) last frame to fill the last step
            pos = np.concatenate([pos, np.repeat(pos[-1:], pad)])
            codes = np.concatenate([codes, np.repeat(codes[-1:], pad, 0)])
            feats = np.concatenate([feats, np.repeat(feats[-1:], pad, 0)])
        S = len(pos) // r
        steps = pos[::r]
        move = np.minimum(np.diff(steps), max_move)
        semantic = np.concatenate([move, [max_move + 1]])  # the last step says STOP
        spk = self.embeddings[rends[0].speaker]
        prompt = None if rng.random() < NO_PROMPT else self.prompt(rends[0], rng, {x.utt for x in rends})
        return Example(chunks, steps, semantic, codes.reshape(S, r, -1).astype(np.int64), feats.reshape(S, r, -1),
                       spk[rng.randrange(len(spk))], float(np.mean([self.utts[x.utt].rate for x in rends])), prompt,
                       pitch_feature(self.pitch.get(rends[0].speaker, float("nan"))))


@dataclass
class Batch:
    chunk_ids: torch.Tensor   # [Nc, Lc] every chunk of the batch, padded
    chunk_mask: torch.Tensor  # [Nc, Lc]
    chunk_owner: list[tuple[int, int]]  # (example index, offset in its memory) per chunk
    mem_len: torch.Tensor     # [B]
    positions: torch.Tensor   # [B, S]
    semantic: torch.Tensor    # [B, S] (-100 = padding)
    codes: torch.Tensor       # [B, S, r, K]
    feats: torch.Tensor       # [B, S, r, F]
    step_mask: torch.Tensor   # [B, S]
    speaker: torch.Tensor     # [B, D]
    rate: torch.Tensor        # [B]
    prompt: torch.Tensor | None = None       # [B, T, F] voice prompts' log-mel
    prompt_mask: torch.Tensor | None = None  # [B, T]
    pitch: torch.Tensor | None = None        # [B] the speakers' pitch_feature

    @property
    def frames(self) -> int:
        return int(self.step_mask.sum()) * self.codes.shape[2]


def collate(examples: list[Example]) -> Batch:
    B = len(examples)
    S = max(len(e.positions) for e in examples)
    r, K = examples[0].codes.shape[1:]
    Fd = examples[0].feats.shape[-1]
    chunks = [(b, c) for b, e in enumerate(examples) for c in e.chunks]
    Lc = max(len(c) for _, c in chunks)
    chunk_ids = torch.zeros(len(chunks), Lc, dtype=torch.long)
    chunk_mask = torch.zeros(len(chunks), Lc, dtype=torch.bool)
    owner, offsets = [], [0] * B
    for i, (b, c) in enumerate(chunks):
        chunk_ids[i, : len(c)] = torch.from_numpy(c)
        chunk_mask[i, : len(c)] = True
        owner.append((b, offsets[b]))
        offsets[b] += len(c)
    positions = torch.zeros(B, S, dtype=torch.long)
    semantic = torch.full((B, S), -100, dtype=torch.long)
    codes = torch.zeros(B, S, r, K, dtype=torch.long)
    feats = torch.zeros(B, S, r, Fd)
    mask = torch.zeros(B, S, dtype=torch.bool)
    for b, e in enumerate(examples):
        n = len(e.positions)
        positions[b, :n] = torch.from_numpy(e.positions)
        positions[b, n:] = int(e.positions[-1])
        semantic[b, :n] = torch.from_numpy(e.semantic)
        codes[b, :n] = torch.from_numpy(e.codes)
        feats[b, :n] = torch.from_numpy(e.feats)
        mask[b, :n] = True
    # an example without a prompt gets one silent frame: what the model sees for "no prompt"
    Tp = max(1 if e.prompt is None else len(e.prompt) for e in examples)
    prompt = torch.full((B, Tp, Fd), PromptEncoder.SILENCE)
    prompt_mask = torch.zeros(B, Tp, dtype=torch.bool)
    for b, e in enumerate(examples):
        n = 1 if e.prompt is None else len(e.prompt)
        if e.prompt is not None:
            prompt[b, :n] = torch.from_numpy(e.prompt)
        prompt_mask[b, :n] = True
    return Batch(chunk_ids, chunk_mask, owner, torch.tensor(offsets), positions, semantic, codes, feats, mask,
                 torch.from_numpy(np.stack([e.speaker for e in examples])).float(), torch.tensor([e.rate for e in examples]),
                 prompt, prompt_mask, torch.tensor([e.pitch for e in examples], dtype=torch.float32))


# how often each track is read: joe (the natural reader) most, as the issue asks
TRACK_WEIGHTS = {"joe": 0.3, "world1": 0.25, "world2": 0.25, "real": 0.2}


def batches(corpus: Corpus, ids: list[int], r: int, max_steps: int, rng: random.Random, pair_prob: float = 0.4):
    """Endless stream of batches of at most ``max_steps`` padded decoder steps: each sentence
    once per round in one of its readings, now and then followed by another by the same speaker."""
    weights = [TRACK_WEIGHTS.get(t, 0.0) for t in corpus.tracks]
    while True:
        order = []
        for u in ids:
            have = [(t, w) for t, w in zip(corpus.tracks, weights) if corpus.reader[t][u] >= 0]
            order.append(corpus.rendering(u, rng.choices([t for t, _ in have], [w for _, w in have] if sum(w for _, w in have) else None)[0]))
        rng.shuffle(order)
        for g in range(0, len(order), 64):
            group = []
            for rend in order[g : g + 64]:
                rends = [rend]
                same = corpus.renderings_of.get(rend.speaker, [])
                if same and rng.random() < pair_prob:
                    rends.append(rng.choice(same))
                group.append(corpus.example(rends, r, rng))
            group.sort(key=lambda e: len(e.positions))
            cur: list[Example] = []
            for e in group:
                if cur and (len(cur) + 1) * len(e.positions) > max_steps:
                    yield collate(cur)
                    cur = []
                cur.append(e)
            if cur:
                yield collate(cur)
