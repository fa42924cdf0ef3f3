"""Train narrate's per-frame voicing and F0 predictor (narrate.codec.pitch_track) on the vocoder's
distillation shards (narrate.train.vocoder_data), resumably.

Targets: Praat's autocorrelation F0 (as narrate.pitch measures) of each shard's teacher waveform,
read at the frames' centres (frame t is centred on sample t * hop: centred STFT), as log2 of the
ratio to the utterance's median voiced F0. Sources whose waveform is the teacher's of the TRUE
frames give targets: gta (the model's teacher-forced frames of a true reading, the run-time
domain), and joe, shifted, awb, kal16, world (true frames: sharper than the model's, so blurred
in time and frequency as augmentation). ``model`` shards are left out: their waveform's pitch is
the teacher's invention. Shard 0 of each source is held out for ``--eval``.

    python -m narrate.train.pitch_track --out /work/runs/s16/f0 --minutes 30
    python -m narrate.train.pitch_track --out /work/runs/s16/f0 --eval
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from narrate.codec.frame_net import FrameNetConfig
from narrate.codec.pitch_track import PitchTrack, save

SR, HOP = 22050, 256
TARGET_SOURCES = ("gta", "joe", "shifted", "awb", "kal16", "world")
FLOOR, CEIL = 60.0, 500.0


def _log(msg: str) -> None:
    print(f"[pitch-track] {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def _praat(x: np.ndarray, sr: int, hop: int, floor: float, ceil: float):
    import parselmouth

    return parselmouth.Sound(x, sr).to_pitch_ac(time_step=hop / sr, pitch_floor=floor, pitch_ceiling=ceil)


def frame_f0(wav: np.ndarray, n_frames: int, sr: int = SR, hop: int = HOP,
             floor: float = FLOOR, ceil: float = CEIL, adapt: bool = True) -> np.ndarray:
    """Praat's F0 (Hz, 0 unvoiced) [n_frames] at the centres of frames t * hop / sr: Praat's
    autocorrelation pitch with a step of one hop, its nearest frame to each centre. ``adapt``:
    a second pass in the range the first found, [0.72 * q35, 1.9 * q65] (De Looze & Hirst), which
    removes most octave jumps (piper's joe, 87 Hz median, read 2 octaves up on creaky frames)."""
    out = np.zeros(n_frames, np.float32)
    x = np.ascontiguousarray(wav, np.float64)
    if len(x) < int(3 * sr / floor):
        return out
    pitch = _praat(x, sr, hop, floor, ceil)
    f0 = pitch.selected_array["frequency"]
    if adapt and (f0 > 0).sum() >= 10:
        q35, q65 = np.percentile(f0[f0 > 0], [35, 65])
        lo, hi = max(floor * 0.8, 0.72 * q35), min(ceil * 1.2, 1.9 * q65)
        if len(x) >= int(3 * sr / lo):
            pitch = _praat(x, sr, hop, lo, hi)
            f0 = pitch.selected_array["frequency"]
    idx = np.rint((np.arange(n_frames) * hop / sr - pitch.xs()[0]) / pitch.time_step).astype(int)
    ok = (idx >= 0) & (idx < len(f0))
    out[ok] = f0[idx[ok]]
    return out


def relative(f0: np.ndarray) -> tuple[np.ndarray, float]:
    """(log2 of F0 over its voiced median, 0 where unvoiced; the median in Hz, NaN if none)."""
    v = f0 > 0
    if not v.any():
        return np.zeros_like(f0), math.nan
    med = float(np.median(f0[v]))
    return np.where(v, np.log2(np.maximum(f0, 1e-3) / med), 0.0).astype(np.float32), med


def extract(data: Path, cache: Path) -> None:
    """Per-utterance targets of every target source's shards, once: cache/<shard>.npz with
    ``mel`` [N, 80] float16, ``mel_len``, ``f0`` [N] Hz (0 unvoiced)."""
    cache.mkdir(parents=True, exist_ok=True)
    for path in sorted(glob.glob(str(data / "*.npz"))):
        name = Path(path).stem
        if name.rsplit("_", 1)[0] not in TARGET_SOURCES or (cache / f"{name}.npz").exists():
            continue
        d = np.load(path)
        lens = d["mel_len"].astype(int)
        starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
        f0 = np.concatenate([frame_f0(d["wav"][s * HOP:(s + n) * HOP], n) for s, n in zip(starts, lens)])
        tmp = cache / f"{name}.tmp.npz"
        np.savez(tmp, mel=d["mel"], mel_len=lens, f0=f0)
        os.replace(tmp, cache / f"{name}.npz")
        _log(f"targets of {name}: {len(lens)} utterances, {float((f0 > 0).mean()):.2f} voiced")


def load_utterances(cache: Path, held_out: bool) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """{source: [(mel [T, 80] float32, f0 [T])]} of shard 0 (held_out) or the others."""
    out: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for path in sorted(glob.glob(str(cache / "*.npz"))):
        name = Path(path).stem
        src, k = name.rsplit("_", 1)
        if (int(k) == 0) != held_out:
            continue
        d = np.load(path)
        s = 0
        for n in d["mel_len"]:
            out.setdefault(src, []).append((d["mel"][s:s + n].astype(np.float32), d["f0"][s:s + n]))
            s += n
    return out


def _blur(mel: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """[B, T, M] true frames made more like the model's: smoothed over time and mel bins (the
    model's frames have almost no harmonic structure), a random level offset."""
    b = mel.shape[0]
    out = []
    for i in range(b):
        x = mel[i]
        st, sf = float(torch.rand(1, generator=g)) * 1.5, float(torch.rand(1, generator=g)) * 2.0
        for sigma, dim in ((st, 0), (sf, 1)):
            if sigma > 0.2:
                r = int(math.ceil(2.5 * sigma))
                k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / sigma) ** 2)
                k = (k / k.sum()).view(1, 1, -1)
                y = x.T if dim == 0 else x   # convolve along the last axis
                y = F.conv1d(F.pad(y[:, None], (r, r), mode="replicate"), k)[:, 0]
                x = y.T if dim == 0 else y
        out.append(x + (float(torch.rand(1, generator=g)) - 0.5))
    return torch.stack(out)


def _batches(utts: dict[str, list[tuple[np.ndarray, np.ndarray]]], seg: int, bs: int, gta_share: float,
             g: torch.Generator):
    """Endless batches (mel [B, seg, 80], rel [B, seg], voiced [B, seg], valid [B, seg], true [B]):
    random segments, a ``gta_share`` of them of gta (the model's frames)."""
    prepared: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    for s, us in utts.items():
        for m, f in us:
            rel, med = relative(f)
            if math.isfinite(med):
                prepared.setdefault(s, []).append((m, rel, (f > 0).astype(np.float32)))
    others = [s for s in prepared if s != "gta"]
    silence = math.log(1e-5)
    while True:
        mels, rels, voiced, valid, true = [], [], [], [], []
        for _ in range(bs):
            gta = "gta" in prepared and float(torch.rand(1, generator=g)) < gta_share
            src = "gta" if gta else others[int(torch.randint(len(others), (1,), generator=g))]
            m, r, v = prepared[src][int(torch.randint(len(prepared[src]), (1,), generator=g))]
            t0 = int(torch.randint(max(1, len(m) - seg + 1), (1,), generator=g))
            n = len(m[t0:t0 + seg])
            pad = seg - n
            mels.append(np.pad(m[t0:t0 + seg], ((0, pad), (0, 0)), constant_values=silence))
            rels.append(np.pad(r[t0:t0 + seg], (0, pad)))
            voiced.append(np.pad(v[t0:t0 + seg], (0, pad)))
            valid.append(np.pad(np.ones(n, np.float32), (0, pad)))
            true.append(not gta)
        yield (torch.from_numpy(np.stack(mels)), torch.from_numpy(np.stack(rels)), torch.from_numpy(np.stack(voiced)),
               torch.from_numpy(np.stack(valid)), torch.tensor(true))


def losses(model: PitchTrack, mel: torch.Tensor, rel: torch.Tensor, voiced: torch.Tensor,
           valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(voicing BCE over the valid frames, L1 of the relative log2 F0 over the voiced ones)."""
    logit, pred = model(mel)
    bce = (F.binary_cross_entropy_with_logits(logit, voiced, reduction="none") * valid).sum() / valid.sum()
    m = voiced * valid
    l1 = ((pred - rel).abs() * m).sum() / m.sum().clamp_min(1.0)
    return bce, l1


def save_weights(model: PitchTrack, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    save(model, str(tmp))
    os.replace(tmp, path)


def train(a: argparse.Namespace) -> None:
    cache = a.out / "targets"
    utts = load_utterances(cache, held_out=False)
    if a.no_gta:
        utts.pop("gta", None)
    held = load_utterances(cache, held_out=True).get("gta", [])
    cfg = FrameNetConfig(channels=a.channels, lookahead=a.lookahead)
    model = PitchTrack(cfg)
    allmel = np.concatenate([m for us in utts.values() for m, _ in us])
    model.mean.copy_(torch.from_numpy(allmel.mean(0)))
    model.std.copy_(torch.from_numpy(allmel.std(0) + 1e-3))
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(a.seed)
    ckpt = a.out / f"{a.name}.ckpt.pt"
    step, elapsed = 0, 0.0
    if ckpt.exists():
        st = torch.load(ckpt, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step, elapsed = st["step"], st["elapsed"]
        g.set_state(st["gen"])
        _log(f"resumed at step {step} ({elapsed / 60:.1f} min)")
    _log(f"{sum(p.numel() for p in model.parameters())} parameters; sources {sorted(utts)}; "
         f"{sum(len(u) for u in utts.values())} utterances")
    batches = _batches(utts, a.seg, a.batch, a.gta_share, g)
    budget = a.minutes * 60
    t0, last_ck = time.time() - elapsed, time.time()
    acc = np.zeros(2)
    while True:
        elapsed = time.time() - t0
        if elapsed >= budget:
            break
        lr = a.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed / budget)))
        for group in opt.param_groups:
            group["lr"] = lr
        mel, rel, voiced, valid, true = next(batches)
        if true.any() and a.blur:
            mel[true] = _blur(mel[true], g)
        model.train()
        bce, l1 = losses(model, mel, rel, voiced, valid)
        opt.zero_grad()
        (bce + a.f0_weight * l1).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        acc += [bce.item(), l1.item()]
        if step % 100 == 0:
            msg = f"step {step} {elapsed / 60:.1f} min lr {lr:.2e} train bce {acc[0] / 100:.3f} l1 {acc[1] / 100:.3f}"
            acc[:] = 0
            if held:
                r = evaluate(model, held)
                msg += f" | held gta vacc {r['vacc']:.3f} cents med {r['cents_med']:.0f} mean {r['cents_mean']:.0f} corr {r['corr']:.3f}"
            _log(msg)
        if time.time() - last_ck > 120:
            _checkpoint(model, opt, step, time.time() - t0, g, ckpt, a)
            last_ck = time.time()
    _checkpoint(model, opt, step, time.time() - t0, g, ckpt, a)
    _log(f"done at step {step}: {a.out / (a.name + '.safetensors')}")


def _checkpoint(model, opt, step, elapsed, g, ckpt: Path, a: argparse.Namespace) -> None:
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "elapsed": elapsed,
                "gen": g.get_state()}, ckpt.with_suffix(".tmp"))
    os.replace(ckpt.with_suffix(".tmp"), ckpt)
    save_weights(model, a.out / f"{a.name}.safetensors")


def energy_voicing(mel: np.ndarray, delta: float) -> np.ndarray:
    """The baseline's voicing: frames whose mean log-mel over the lowest 40 bins (0-~1.6 kHz)
    is within ``delta`` of the utterance's loudest."""
    e = mel[:, :40].mean(1)
    return e > e.max() - delta


@torch.inference_mode()
def evaluate(model: PitchTrack | None, utts: list[tuple[np.ndarray, np.ndarray]], delta: float = 3.0) -> dict:
    """Voicing accuracy, F0 error (cents, on frames voiced in both) and per-utterance contour
    correlation of the predictor, and its F0 error on every truly voiced frame; with model None, of the baseline: a flat contour at the
    utterance's median (relative 0), voiced by ``energy_voicing``."""
    model = model.eval() if model is not None else None
    hits = n = 0
    cents: list[np.ndarray] = []
    on_true: list[np.ndarray] = []   # on every truly voiced frame, whatever the voicing said
    corrs: list[float] = []
    for mel, f0 in utts:
        rel, med = relative(f0)
        tv = f0 > 0
        if model is None:
            pv, pr = energy_voicing(mel, delta), np.zeros(len(mel), np.float32)
        else:
            logit, r = model(torch.from_numpy(mel)[None])
            pv, pr = logit[0].numpy() > 0, r[0].numpy()
        hits += int((pv == tv).sum())
        n += len(tv)
        both = pv & tv
        if both.any():
            cents.append(1200 * (pr[both] - rel[both]))
        on_true.append(1200 * (pr[tv] - rel[tv]))
        if both.sum() > 10 and model is not None and np.std(pr[both]) > 0:
            corrs.append(float(np.corrcoef(pr[both], rel[both])[0, 1]))
    c = np.abs(np.concatenate(cents)) if cents else np.zeros(1)
    ct = np.abs(np.concatenate(on_true))
    return {"vacc": hits / max(1, n), "cents_med": float(np.median(c)), "cents_mean": float(c.mean()),
            "cents_med_true_voiced": float(np.median(ct)), "cents_mean_true_voiced": float(ct.mean()),
            "within_50c_true_voiced": float((ct < 50).mean()),
            "corr": float(np.mean(corrs)) if corrs else math.nan, "frames": n, "utterances": len(utts)}


def tune_delta(utts: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """The baseline's energy threshold (dB-like log units below the loudest) that voices
    training utterances best."""
    best = max(np.arange(1.0, 8.01, 0.25), key=lambda d: evaluate(None, utts, float(d))["vacc"])
    return float(best)


@torch.inference_mode()
def prosody(model: PitchTrack, utts: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """How the predicted relative F0 behaves on the truly voiced frames, against the truth:
    its spread, the declination (slope over the utterance, octaves per second) and how it follows
    the frame energy (stress)."""
    rows = []
    for mel, f0 in utts:
        rel, _ = relative(f0)
        v = f0 > 0
        if v.sum() < 20:
            continue
        pred = model(torch.from_numpy(mel)[None])[1][0].numpy()
        t = np.arange(len(mel))[v] / (SR / HOP)
        e = mel[v, :40].mean(1)
        rows.append([np.std(pred[v]), np.std(rel[v]), np.polyfit(t, pred[v], 1)[0], np.polyfit(t, rel[v], 1)[0],
                     np.corrcoef(pred[v], e)[0, 1], np.corrcoef(rel[v], e)[0, 1], np.median(pred[v])])
    r = np.array(rows)
    return {"std_pred": float(r[:, 0].mean()), "std_true": float(r[:, 1].mean()),
            "slope_pred_oct_per_s": float(r[:, 2].mean()), "slope_true_oct_per_s": float(r[:, 3].mean()),
            "slope_corr": float(np.corrcoef(r[:, 2], r[:, 3])[0, 1]) if len(r) > 2 else math.nan,
            "energy_corr_pred": float(r[:, 4].mean()), "energy_corr_true": float(r[:, 5].mean()),
            "median_pred_voiced": float(np.median(r[:, 6]))}


@torch.inference_mode()
def rtf(model: PitchTrack, utts: list[tuple[np.ndarray, np.ndarray]], chunks: tuple[int, ...] = (3, 12)) -> dict:
    """Seconds of compute per second of audio: whole utterances, and pushed ``chunk`` frames at
    a time through a stream (numpy: run with OPENBLAS_NUM_THREADS=1, or its idle threads' spinning
    is counted too)."""
    from narrate.codec.pitch_track import PitchTrackStream

    frames = sum(len(m) for m, _ in utts)
    t = time.process_time()
    for m, _ in utts:
        model(torch.from_numpy(m)[None])
    whole = time.process_time() - t
    secs = frames / (SR / HOP)
    out = {"rtf_whole": whole / secs}
    for chunk in chunks:
        stream = PitchTrackStream(model)
        t = time.process_time()
        for m, _ in utts:
            for i in range(0, len(m), chunk):
                stream.push(m[i:i + chunk])
            stream.flush()
        out[f"rtf_stream_{chunk}"] = (time.process_time() - t) / secs
    return out


def plot(model: PitchTrack, utts: list[tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(utts), 1, figsize=(12, 2.2 * len(utts)))
    for ax, (mel, f0) in zip(np.atleast_1d(axes), utts):
        rel, _ = relative(f0)
        with torch.inference_mode():
            logit, pred = (x[0].numpy() for x in model(torch.from_numpy(mel)[None]))
        t = np.arange(len(mel)) / (SR / HOP)
        ax.plot(t, np.where(f0 > 0, rel, np.nan), "k", lw=1.5, label="true (Praat)")
        ax.plot(t, np.where(logit > 0, pred, np.nan), "r", lw=1, label="predicted, voiced")
        ax.plot(t, np.where(logit > 0, np.nan, pred), "r:", lw=0.5)
        ax.set_ylim(-1, 1)
        ax.axhline(0, color="gray", lw=0.5)
    np.atleast_1d(axes)[0].legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def run_eval(a: argparse.Namespace) -> None:
    from narrate.codec.pitch_track import load

    model = load(str(a.out / f"{a.name}.safetensors"))
    cache = a.out / "targets"
    held = load_utterances(cache, held_out=True)
    delta = tune_delta(load_utterances(cache, held_out=False)["gta"])
    results: dict = {"baseline_delta": delta, "params": sum(p.numel() for p in model.parameters()),
                     "config": model.cfg.to_dict()}
    for src in ["gta"] + sorted(s for s in held if s != "gta"):
        results[src] = {"predictor": evaluate(model, held[src]), "baseline": evaluate(None, held[src], delta)}
        _log(f"{src}: {json.dumps(results[src])}")
    results["prosody_gta"] = prosody(model, held["gta"])
    results["prosody_true_sources"] = prosody(model, [u for s in held if s != "gta" for u in held[s]])
    results["rtf"] = rtf(model, held["gta"])
    _log(json.dumps({k: results[k] for k in ("prosody_gta", "prosody_true_sources", "rtf")}))
    plot(model, held["gta"][:6], a.out / f"{a.name}_contours.png")
    (a.out / f"{a.name}_eval.json").write_text(json.dumps(results, indent=1))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Train the per-frame voicing and F0 predictor (resumable).")
    p.add_argument("--data", type=Path, default=Path("/work/vocdata/mix"))
    p.add_argument("--out", type=Path, default=Path("/work/runs/s16/f0"))
    p.add_argument("--name", default="pitch_track")
    p.add_argument("--extract-only", action="store_true")
    p.add_argument("--eval", action="store_true", help="evaluate the saved weights on shard 0 of each source")
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--channels", type=int, default=96)
    p.add_argument("--lookahead", type=int, default=6)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seg", type=int, default=256)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--gta-share", type=float, default=0.5)
    p.add_argument("--f0-weight", type=float, default=4.0)
    p.add_argument("--no-blur", dest="blur", action="store_false")
    p.add_argument("--no-gta", action="store_true", help="train on the true-frame sources only")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    extract(a.data, a.out / "targets")
    if a.eval:
        run_eval(a)
    elif not a.extract_only:
        train(a)


if __name__ == "__main__":
    main()
