"""`narrate train`: resumable training on CPU (one process) or under torchrun (DDP, gloo).

Checkpoints (model + optimizer + data position) every few minutes in the run folder; a rerun
picks up where the last one stopped. Losses go to log.csv and loss.png.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from narrate.engine.config import ModelConfig
from narrate.engine.model import NarrateModel
from narrate.errors import NarrateError
from narrate.train.dataset import Batch, Corpus, batches
from narrate.train.losses import codebook_loss, feature_loss, semantic_loss


@dataclass
class TrainConfig:
    corpus: str | list[str]        # a corpus folder, or several that share a codec
    run: str
    steps: int = 4000              # length of the learning-rate schedule
    max_minutes: float = 0.0       # stop after this long (0: run to `steps`)
    max_steps_per_batch: int = 1600  # padded decoder steps per batch
    lr: float = 1e-3
    lr_min: float = 1e-4
    warmup: int = 100
    weight_decay: float = 0.01
    codebook_lambda: float = 0.1
    feature_weight: float = 1.0
    semantic_weight: float = 1.0
    ckpt_minutes: float = 4.0
    eval_every: int = 100
    seed: int = 0
    threads: int = 0               # 0: 2 threads, 1 while other processes compete for the cores
    model: dict = field(default_factory=dict)  # ModelConfig overrides
    init: str = ""                 # start from these weights: a run's checkpoint.pt or a model (id or folder)

    @property
    def corpora(self) -> list[Path]:
        return [Path(c) for c in ([self.corpus] if isinstance(self.corpus, str) else self.corpus)]


class _ThreadGovernor:
    """Two OpenMP threads on two cores stall badly when another process takes a core (each
    parallel region waits for the descheduled thread): use one thread while other processes
    used more than a third of a core over the last step, two otherwise."""

    def __init__(self):
        self.last = self._read()

    @staticmethod
    def _read() -> tuple[int, int] | None:
        try:
            cpu = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
            me = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
            return sum(cpu) - cpu[3] - cpu[4], int(me[11]) + int(me[12])  # busy ticks, our ticks
        except (OSError, ValueError, IndexError):
            return None

    def update(self, seconds: float) -> None:
        now = self._read()
        if now is None or self.last is None or seconds <= 0:
            self.last = now
            return
        ticks = os.sysconf("SC_CLK_TCK")
        others = ((now[0] - self.last[0]) - (now[1] - self.last[1])) / ticks / seconds
        self.last = now
        want = 1 if others > 0.33 else 2
        if torch.get_num_threads() != want:
            torch.set_num_threads(want)


def _lr(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * t))


def memory_of(model: NarrateModel, batch: Batch) -> torch.Tensor:
    """Encode every chunk on its own and lay the chunks of each example end to end."""
    enc = model.encoder(batch.chunk_ids, batch.chunk_mask)  # [Nc, Lc, d]
    B, N = batch.positions.shape[0], int(batch.mem_len.max())
    memory = enc.new_zeros(B, N, enc.shape[-1])
    for i, (b, off) in enumerate(batch.chunk_owner):
        n = int(batch.chunk_mask[i].sum())
        memory[b, off : off + n] = enc[i, :n]
    return memory


def prev_features(model: NarrateModel, codes: torch.Tensor) -> torch.Tensor:
    """Teacher forcing input: the decoded codes of the previous step, [B, S, r*F] (zeros first)."""
    feats = sum(model.codebooks[k][codes[..., k]] for k in range(codes.shape[-1]))  # [B, S, r, F]
    feats = feats.flatten(-2)
    return torch.cat([torch.zeros_like(feats[:, :1]), feats[:, :-1]], dim=1)


def compute_losses(model: NarrateModel, batch: Batch, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    core = model.module if hasattr(model, "module") else model
    memory = memory_of(core, batch)
    speaker = core.speaker_vector(batch.speaker, batch.pitch)
    prompted = core.cfg.prompt_tokens or core.cfg.voice_stats
    hidden, _ = model(memory, batch.mem_len, batch.positions, prev_features(core, batch.codes), speaker, batch.rate,
                      prompt=batch.prompt if prompted else None, prompt_mask=batch.prompt_mask)
    logits = core.codebook_heads.teacher_forced(hidden, batch.codes, core.codebooks)
    code_l, code_acc = codebook_loss(logits, batch.codes, batch.step_mask, cfg.codebook_lambda)
    feat_l = feature_loss(core.expected_features(logits), batch.feats, batch.step_mask)
    sem_l, sem_acc = semantic_loss(core.semantic_head(hidden), batch.semantic)
    total = code_l + cfg.feature_weight * feat_l + cfg.semantic_weight * sem_l
    return {"loss": total, "codes": code_l, "features": feat_l, "semantic": sem_l, "code1_acc": code_acc, "semantic_acc": sem_acc}


def plot_log(log_path: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(log_path.open()))
    if not rows:
        return
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, keys in zip(axes, [("loss", "codes"), ("features", "semantic"), ("code1_acc", "semantic_acc")]):
        for split in ("train", "heldout"):
            pts = [(int(r["step"]), float(r[k])) for r in rows if r["split"] == split for k in keys[:1]]
            pts2 = [(int(r["step"]), float(r[keys[1]])) for r in rows if r["split"] == split]
            if pts:
                ax.plot(*zip(*pts), label=f"{keys[0]} ({split})", alpha=0.8)
                ax.plot(*zip(*pts2), label=f"{keys[1]} ({split})", alpha=0.8)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)


def _codec_config(corpus: Path) -> tuple[dict, torch.Tensor]:
    from safetensors.torch import load_file

    from narrate.codec.mel import MelConfig

    books = load_file(str(corpus / "codec.safetensors"))["codebooks"]
    return {"name": "mel_rvq", "mel": asdict(MelConfig()), "n_codebooks": books.shape[0], "codebook_size": books.shape[1]}, books


def initial_weights(init: str) -> tuple[dict, dict]:
    """(model config dict, state dict) to start a run from: a run's checkpoint.pt (with the run's
    config.json beside it) or anything `from_pretrained` loads."""
    path = Path(init)
    if path.suffix == ".pt":
        state = torch.load(path, map_location="cpu", weights_only=False)["model"]
        return json.loads((path.parent / "config.json").read_text())["model"], state
    from narrate.hub import from_pretrained

    loaded = from_pretrained(init)
    return loaded.config.model.to_dict(), loaded.model.state_dict()


def transfer_codec(state: dict, books: torch.Tensor, mcfg: ModelConfig) -> dict:
    """``state`` (a model trained with other codebooks) made to start training with ``books``:
    each new code's logit row in the code heads is the row of the old code nearest to it (same
    codebook, L2 between code vectors), so a new code starts as likely as the old one that sounds
    most like it. Everything else reads code vectors, not code ids, and carries over as it is."""
    old = state["codebooks"].float()
    if old.shape != books.shape:
        raise NarrateError(f"--init has codebooks {tuple(old.shape)}, the corpus {tuple(books.shape)}: "
                           f"a codec of another shape cannot be carried over")
    nearest = torch.stack([torch.cdist(books[k].float(), old[k]).argmin(dim=1) for k in range(len(books))])  # [K, C]
    out = dict(state)
    out["codebooks"] = books.float().clone()
    r, C = mcfg.reduction, mcfg.codebook_size
    for g, k in enumerate(mcfg.codebook_groups):
        s = sum(mcfg.codebook_groups[:g])
        index = nearest[s:s + k]  # [k, C]: old code of each new code, per codebook of the group
        for name in (f"codebook_heads.heads.{g}.weight", f"codebook_heads.heads.{g}.bias"):
            rows = state[name].unflatten(0, (r, k, C))  # [r, k, C, ...]
            picked = torch.stack([rows[:, j, index[j]] for j in range(k)], dim=1)
            out[name] = picked.flatten(0, 2).clone()
    return out


def train(cfg: TrainConfig) -> Path:
    """Train (or continue training) into cfg.run; returns the checkpoint path."""
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank = 0
    if distributed:
        dist.init_process_group("gloo")
        rank = dist.get_rank()
    torch.set_num_threads(cfg.threads or 2)
    run = Path(cfg.run)
    run.mkdir(parents=True, exist_ok=True)
    corpus_dirs = cfg.corpora
    codec_cfg, books = _codec_config(corpus_dirs[0])
    from narrate.train.prepare import speed_range, text_config

    ckpt = run / "checkpoint.pt"
    base, init_state = {}, None
    if cfg.init and not ckpt.exists():
        base, init_state = initial_weights(cfg.init)
    elif ckpt.exists() and (run / "config.json").exists():  # a run continues with the architecture it has
        base = json.loads((run / "config.json").read_text())["model"]
    mcfg = ModelConfig(**{**base, "n_codebooks": books.shape[0], "codebook_size": books.shape[1], **cfg.model})
    torch.manual_seed(cfg.seed)
    model = NarrateModel(mcfg, books)
    if init_state is not None:
        if not torch.equal(init_state["codebooks"].float(), books.float()):
            init_state = transfer_codec(init_state, books, mcfg)
            print(f"[train] {cfg.init} was trained with another codec: its code heads are carried over "
                  f"by nearest code vector", flush=True)
        missing, unexpected = model.load_state_dict({k: v.float() for k, v in init_state.items()}, strict=False)
        if unexpected or any(not k.startswith(("prompt_encoder.", "prompt_in.", "stats_in.", "stats_tokens.")) for k in missing):
            raise NarrateError(f"--init {cfg.init} does not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]})")
        print(f"[train] starting from the weights of {cfg.init}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay)
    step, rng_state = 0, None
    if ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, rng_state = state["step"], state["rng"]
        print(f"[train] resumed from step {step}", flush=True)
    (run / "train_config.json").write_text(json.dumps(asdict(cfg), indent=1))
    (run / "config.json").write_text(json.dumps({"model": mcfg.to_dict(), "codec": codec_cfg, "text": text_config(),
                                                 "default_voice": "joe", "speed_range": speed_range()}, indent=1, ensure_ascii=False))
    net = torch.nn.parallel.DistributedDataParallel(model) if distributed else model
    corpus = Corpus(corpus_dirs)
    rng = random.Random(cfg.seed * 1000 + step + rank)
    if rng_state is not None and not distributed:
        rng.setstate(rng_state)
    train_ids = corpus.train_ids()
    if distributed:
        train_ids = train_ids[rank :: dist.get_world_size()]
    stream = batches(corpus, train_ids, mcfg.reduction, cfg.max_steps_per_batch, rng)
    heldout = batches(corpus, corpus.heldout_ids()[:48], mcfg.reduction, cfg.max_steps_per_batch, random.Random(1), 0.0)
    log_path = run / "log.csv"
    fields = ["step", "split", "time", "lr", "frames_per_s", "threads", "loss", "codes", "features", "semantic", "code1_acc", "semantic_acc"]
    if not log_path.exists():
        with log_path.open("w", newline="") as f:
            csv.DictWriter(f, fields).writeheader()
    t_start = t_ckpt = time.time()
    governor = _ThreadGovernor() if not cfg.threads else None

    def save():
        if rank:
            return
        tmp = run / "checkpoint.pt.tmp"
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "rng": rng.getstate()}, tmp)
        os.replace(tmp, ckpt)
        plot_log(log_path, run / "loss.png")

    try:
        while step < cfg.steps:
            if cfg.max_minutes and time.time() - t_start > cfg.max_minutes * 60:
                break
            batch = next(stream)
            for g in opt.param_groups:
                g["lr"] = _lr(cfg, step)
            t0 = time.time()
            net.train()
            losses = compute_losses(net, batch, cfg)
            opt.zero_grad()
            losses["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            if governor:
                governor.update(time.time() - t0)
            row = {k: round(float(v.detach()), 4) for k, v in losses.items()}
            row.update(step=step, split="train", time=round(time.time() - t_start, 1), lr=round(_lr(cfg, step), 6),
                       frames_per_s=round(batch.frames / (time.time() - t0)), threads=torch.get_num_threads())
            rows = [row]
            if step % cfg.eval_every == 0:
                net.eval()
                with torch.no_grad():
                    hl = [compute_losses(model, next(heldout), cfg) for _ in range(3)]
                rows.append({"step": step, "split": "heldout", "time": row["time"], "lr": row["lr"], "frames_per_s": 0,
                             **{k: round(sum(float(h[k]) for h in hl) / len(hl), 4) for k in hl[0]}})
            if rank == 0:
                with log_path.open("a", newline="") as f:
                    csv.DictWriter(f, fields).writerows(rows)
                if step % 10 == 0 or len(rows) > 1:
                    print(" ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
            if time.time() - t_ckpt > cfg.ckpt_minutes * 60:
                save()
                t_ckpt = time.time()
    except KeyboardInterrupt:  # Ctrl-C: keep what was learned since the last checkpoint
        save()
        print(f"[train] interrupted at step {step}; checkpoint saved, run again to continue", flush=True)
        raise
    save()
    if distributed:
        dist.destroy_process_group()
    return ckpt
