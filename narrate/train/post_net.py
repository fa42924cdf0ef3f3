"""Train narrate's post-net (narrate.codec.post_net): the model's ground-truth-aligned frames in,
the true frames out, resumably.

Data (``--make-pairs``): sentences of the text pool past the ones the model trained on
(``--first``, ``--count``), each read by piper's joe or by one of joe's WORLD pseudo-speakers
(never the held-out family, nor a speaker a bundled voice is made from), then decoded
teacher-forced by the model (``narrate.train.gta``): (model frames, true frames), frame for frame.
Shards ``pairs_<k>.npz`` (``model``, ``true`` [N, 80] float16, ``lengths`` [n]) that exist are
kept, so a rerun continues; the first ``HELD`` pairs of shard 0 are held out.

Loss: L1 between the corrected and the true frames, plus L1 between their differences along time
and along frequency (the blur is in both).

    python -m narrate.train.post_net --out /work/runs/pn --make-pairs --first 2200 --count 1900
    python -m narrate.train.post_net --out /work/runs/pn --minutes 12
    cp /work/runs/pn/post_net.safetensors MODEL_FOLDER/   # the bundled narrate-joe has none (README, "The vocoder")
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

from narrate.codec.frame_net import FrameNetConfig
from narrate.codec.post_net import PostNet, save

PER_SHARD = 100
HELD = 60


def _log(msg: str) -> None:
    print(f"[post-net] {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def pair_speakers() -> list:
    """The pseudo-speakers whose readings the pairs may be: joe's WORLD ones of the training
    families, less the bundled voices' sources."""
    from narrate.train.bundled_voices import MADE_FROM
    from narrate.train.vocoder_data import world_speakers

    return [s for s in world_speakers() if s.base == "joe" and s.name not in MADE_FROM.values()]


def make_pairs(out: Path, first: int, count: int, model: str | None, world_share: float = 0.5, seed: int = 0) -> None:
    """Shards of GTA pairs for pool sentences [first, first + count)."""
    from narrate.train.gta import GTAReader
    from narrate.train.texts import corpus_texts

    out.mkdir(parents=True, exist_ok=True)
    texts = corpus_texts(n_train=first + count)[0][first:]
    speakers = pair_speakers()
    reader = None
    for k in range(math.ceil(len(texts) / PER_SHARD)):
        path = out / f"pairs_{k}.npz"
        if path.exists():
            continue
        reader = reader or GTAReader(model)
        rng = random.Random(f"{seed}-{first}-{k}")
        t0, models, trues = time.perf_counter(), [], []
        for text in texts[k * PER_SHARD:(k + 1) * PER_SHARD]:
            speaker = rng.choice(speakers) if speakers and rng.random() < world_share else None
            m, t = reader.pair(text, rng, speaker)
            models.append(m.astype(np.float16))
            trues.append(t.astype(np.float16))
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, model=np.concatenate(models), true=np.concatenate(trues), lengths=np.array([len(m) for m in models]))
        os.replace(tmp, path)
        _log(f"{path.name}: {len(models)} pairs in {time.perf_counter() - t0:.0f} s")


def load_pairs(out: Path) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[tuple[np.ndarray, np.ndarray]]]:
    """(training pairs, held-out pairs) from the shards."""
    train, held = [], []
    for name in sorted(glob.glob(str(out / "pairs_*.npz")), key=lambda p: int(Path(p).stem.split("_")[1])):
        with np.load(name) as z:
            ends = np.cumsum(z["lengths"])
            pairs = [(z["model"][e - n:e].astype(np.float32), z["true"][e - n:e].astype(np.float32))
                     for n, e in zip(z["lengths"], ends)]
        if name.endswith("pairs_0.npz"):
            held, pairs = pairs[:HELD], pairs[HELD:]
        train += pairs
    return train, held


def loss(net: PostNet, model_frames: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """L1 of the corrected frames, of their steps along time and along frequency."""
    pred = net(model_frames)
    return ((pred - true).abs().mean() + (pred.diff(dim=1) - true.diff(dim=1)).abs().mean()
            + (pred.diff(dim=2) - true.diff(dim=2)).abs().mean())


@torch.no_grad()
def held_out_error(net: PostNet, held: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
    """(mean L1 of the corrected frames to the true ones, of the model's frames as they are)."""
    net.eval()
    ours, as_is = [], []
    for m, t in held:
        x, y = torch.from_numpy(m)[None], torch.from_numpy(t)[None]
        ours.append(float((net(x) - y).abs().mean()))
        as_is.append(float((x - y).abs().mean()))
    net.train()
    return float(np.mean(ours)), float(np.mean(as_is))


def _batch(pairs: list[tuple[np.ndarray, np.ndarray]], seg: int, size: int, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    long_enough = [p for p in pairs if len(p[0]) >= seg] or pairs
    xs, ys = [], []
    for _ in range(size):
        m, t = rng.choice(long_enough)
        n = min(seg, len(m))
        s = rng.randrange(len(m) - n + 1)
        xs.append(m[s:s + n])
        ys.append(t[s:s + n])
    n = min(len(x) for x in xs)
    return torch.from_numpy(np.stack([x[:n] for x in xs])), torch.from_numpy(np.stack([y[:n] for y in ys]))


def train(out: Path, minutes: float, cfg: FrameNetConfig, lr: float = 1e-3, seg: int = 200, batch: int = 16,
          seed: int = 0, name: str = "post_net") -> Path:
    """Train (resuming from ``out/<name>.ckpt.pt``) for ``minutes`` in all; the weights with the
    lowest held-out error go to ``out/<name>.safetensors``."""
    pairs, held = load_pairs(out)
    if not pairs:
        raise SystemExit(f"no pairs in {out}: make them first (--make-pairs)")
    net = PostNet(cfg)
    frames = np.concatenate([m for m, _ in pairs])
    net.mean.copy_(torch.from_numpy(frames.mean(0)))
    net.std.copy_(torch.from_numpy(frames.std(0) + 1e-3))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    rng = random.Random(seed)
    ckpt, weights = out / f"{name}.ckpt.pt", out / f"{name}.safetensors"
    step, elapsed, best = 0, 0.0, math.inf
    if ckpt.exists():
        st = torch.load(ckpt, weights_only=False)
        net.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step, elapsed, best = st["step"], st["elapsed"], st["best"]
        rng.setstate(st["rng"])
        _log(f"resumed at step {step} ({elapsed / 60:.1f} min)")
    _log(f"{sum(p.numel() for p in net.parameters())} parameters; {len(pairs)} pairs, {len(held)} held out")
    budget = minutes * 60
    t0, last = time.time() - elapsed, time.time()

    def keep_best() -> None:
        """Held-out error now; the weights if it is the lowest yet; a checkpoint."""
        nonlocal best, last
        ours, as_is = held_out_error(net, held) if held else (math.nan, math.nan)
        _log(f"step {step} {(time.time() - t0) / 60:.1f} min loss {value.item():.4f} held-out L1 {ours:.4f} (as is {as_is:.4f})")
        if not held or ours < best:
            best = ours if held else best
            save(net, str(weights.with_suffix(".tmp")))
            os.replace(weights.with_suffix(".tmp"), weights)
        st = {"model": net.state_dict(), "opt": opt.state_dict(), "step": step, "elapsed": time.time() - t0,
              "best": best, "rng": rng.getstate()}
        torch.save(st, ckpt.with_suffix(".tmp"))
        os.replace(ckpt.with_suffix(".tmp"), ckpt)
        last = time.time()

    value = torch.tensor(math.nan)
    while (elapsed := time.time() - t0) < budget:
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * elapsed / budget))
        x, y = _batch(pairs, seg, batch, rng)
        value = loss(net, x, y)
        opt.zero_grad()
        value.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 500 == 0 or time.time() - last > 120:
            keep_best()
    keep_best()
    _log(f"done at step {step}: {weights} (held-out L1 {best:.4f})")
    return weights


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="folder for the pairs, checkpoints and weights (outside git)")
    p.add_argument("--make-pairs", action="store_true", help="make the GTA pairs (shards that exist are kept)")
    p.add_argument("--first", type=int, default=2200, help="first pool sentence (past the model's training texts)")
    p.add_argument("--count", type=int, default=1900)
    p.add_argument("--model", default=None, help="the narrate model whose frames are corrected (default: the bundled one)")
    p.add_argument("--minutes", type=float, default=0.0, help="train this long in all (0: no training)")
    p.add_argument("--channels", type=int, default=192)
    p.add_argument("--dilations", default="1,2,4,8,1,2")
    p.add_argument("--lookahead", type=int, default=6, help="at most the pitch track's (narrate-joe's: 6)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    if a.make_pairs:
        make_pairs(a.out, a.first, a.count, a.model, seed=a.seed)
    if a.minutes > 0:
        cfg = FrameNetConfig(channels=a.channels, dilations=tuple(int(d) for d in a.dilations.split(",")),
                             lookahead=a.lookahead)
        train(a.out, a.minutes, cfg, seed=a.seed)


if __name__ == "__main__":
    main()
