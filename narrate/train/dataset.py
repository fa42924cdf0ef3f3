"""The prepared corpus as training examples: per decoder step the tracked text position, the
semantic target (progress), the codec codes and the frames, from the teacher's alignments."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from narrate.errors import NarrateError
from narrate.train.prepare import VOICES, split


@dataclass
class Utterance:
    ids: np.ndarray        # [N] token ids
    durations: np.ndarray  # [N] frames per token (sum = T)
    rate: float            # log length scale the teacher used


@dataclass
class Example:
    chunks: list[np.ndarray]  # token ids per text chunk (1 or 2 sentences)
    positions: np.ndarray     # [S] tracked position per step
    semantic: np.ndarray      # [S] progress class per step (moves 0..3, STOP)
    codes: np.ndarray         # [S, r, K]
    feats: np.ndarray         # [S, r, F] true log-mel
    speaker: np.ndarray       # [D]
    rate: float


class Corpus:
    """One or more prepared corpus folders as one: every folder's training sentences train, the
    first folder's held-out sentences evaluate. The folders must share one codec."""

    def __init__(self, roots: Path | list[Path], voices: list[str] | None = None):
        self.roots = [Path(r) for r in ([roots] if isinstance(roots, (str, Path)) else roots)]
        self.voices = voices or list(VOICES)
        self.utts: list[Utterance] = []
        self.codes: dict[str, list[np.ndarray]] = {v: [] for v in self.voices}
        self.feats: dict[str, list[np.ndarray]] = {v: [] for v in self.voices}
        speakers: dict[str, list[np.ndarray]] = {v: [] for v in self.voices}
        self._train: list[int] = []
        self._heldout: list[int] = []
        for n, root in enumerate(self.roots):
            if n and (root / "codec.safetensors").read_bytes() != (self.roots[0] / "codec.safetensors").read_bytes():
                raise NarrateError(f"corpus {root} has another codec than {self.roots[0]} (build it with --extends)")
            texts = json.loads((root / "texts.json").read_text())
            n_train, n_heldout, base = len(texts["train"]), len(texts["heldout"]), len(self.utts)
            self._train += range(base, base + n_train)
            if n == 0:
                self._heldout = list(range(base + n_train, base + n_train + n_heldout))
            t = np.load(root / "teacher.npz")
            ids = split(t["ids"], t["ids_len"])
            durs = split(t["durations"], t["ids_len"])
            self.utts += [Utterance(i.astype(np.int64), d.astype(np.int64), float(np.log(ls)))
                          for i, d, ls in zip(ids, durs, t["length_scale"])]
            for v in self.voices:
                c = np.load(root / f"codes_{v}.npz")
                self.codes[v] += split(c["codes"].T, c["codes_len"])  # list of [T, K]
                self.feats[v] += split(np.load(root / f"voice_{v}.npz")["mel"], c["codes_len"])
            spk = np.load(root / "speakers.npz")
            for v in self.voices:
                speakers[v].append(spk[v])
        self.speakers = {v: np.concatenate(e) for v, e in speakers.items()}

    def train_ids(self) -> list[int]:
        return list(self._train)

    def heldout_ids(self) -> list[int]:
        return list(self._heldout)

    def example(self, utts: list[int], voice: str, r: int, rng: random.Random, max_move: int = 3) -> Example:
        """One training example: the utterances spoken back to back in one voice."""
        chunks, pos, codes, feats, offset = [], [], [], [], 0
        for u in utts:
            utt = self.utts[u]
            chunks.append(utt.ids)
            pos.append(np.repeat(np.arange(len(utt.ids)), utt.durations) + offset)
            codes.append(self.codes[voice][u])
            feats.append(self.feats[voice][u])
            offset += len(utt.ids)
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
        spk = self.speakers[voice]
        return Example(chunks, steps, semantic, codes.reshape(S, r, -1).astype(np.int64),
                       feats.reshape(S, r, -1), spk[rng.randrange(len(spk))], float(np.mean([self.utts[u].rate for u in utts])))


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
    return Batch(chunk_ids, chunk_mask, owner, torch.tensor(offsets), positions, semantic, codes, feats, mask,
                 torch.from_numpy(np.stack([e.speaker for e in examples])).float(), torch.tensor([e.rate for e in examples]))


def batches(corpus: Corpus, ids: list[int], r: int, max_steps: int, rng: random.Random, pair_prob: float = 0.4):
    """Endless stream of batches of at most ``max_steps`` padded decoder steps."""
    while True:
        order = [(u, rng.choice(corpus.voices)) for u in ids]
        rng.shuffle(order)
        for g in range(0, len(order), 64):
            group = []
            for u, v in order[g : g + 64]:
                utts = [u, rng.choice(ids)] if rng.random() < pair_prob else [u]
                group.append(corpus.example(utts, v, r, rng))
            group.sort(key=lambda e: len(e.positions))
            cur: list[Example] = []
            for e in group:
                if cur and (len(cur) + 1) * len(e.positions) > max_steps:
                    yield collate(cur)
                    cur = []
                cur.append(e)
            if cur:
                yield collate(cur)
