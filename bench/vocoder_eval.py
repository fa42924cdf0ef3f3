"""The vocoders side by side on held-out sentences: DNSMOS (P.808, P.835 SIG/BAK/OVRL) and
Whisper tiny.en WER of piper, and of the narrate model's frames made audio by Griffin-Lim (the
streaming vocoder as shipped), HiFi-GAN V1 universal (the teacher) and narrate's neural vocoder
(streaming, as shipped); also piper's own log-mel through each (the vocoders' ceiling). Then each
vocoder's speed on one thread.

    python -m bench.vocoder_eval [--model narrate-joe] [--n 12] [--save DIR] [--json out.json]
                                 [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

SR = 22050


def dnsmos(wav: np.ndarray) -> dict[str, float]:
    import librosa
    from speechmos import dnsmos as dns

    x = librosa.resample(np.asarray(wav, np.float32), orig_sr=SR, target_sr=16000)
    x = x / max(1.0, float(np.abs(x).max()))
    r = dns.run(x, 16000)
    return {"p808": float(r["p808_mos"]), "sig": float(r["sig_mos"]), "bak": float(r["bak_mos"]),
            "ovrl": float(r["ovrl_mos"])}


def streamed(decoder, mel: torch.Tensor, step: int = 3) -> np.ndarray:
    """Frames pushed a decoder step (3 frames) at a time, as narrate feeds its vocoder."""
    parts = [decoder.push(mel[i : i + step]) for i in range(0, len(mel), step)]
    return np.concatenate(parts + [decoder.flush()])


def rtf(fn, mel: torch.Tensor, repeats: int = 3) -> float:
    fn(mel)
    t = time.perf_counter()
    for _ in range(repeats):
        fn(mel)
    return (time.perf_counter() - t) / repeats / (len(mel) * 256 / SR)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--save", type=Path, default=None, help="folder for the wavs")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=None,
                    help="folder keeping what does not depend on the neural vocoder, for reruns")
    ap.add_argument("--skip-rtf", action="store_true")
    ap.add_argument("--neural-only", action="store_true",
                    help="measure the neural vocoder only (with --cache: on the cached frames)")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from narrate.codec.hifigan import HiFiGAN
    from narrate.codec.mel import StreamingVocoder
    from narrate.codec.vocos import StreamingNeuralVocoder
    from narrate.hub import from_pretrained
    from bench.measures import transcribe, wer
    from narrate.train.prepare import _synth
    from narrate.train.texts import heldout_texts
    from narrate.train.vocoder_data import Sources

    loaded = from_pretrained(args.model, vocoder="neural")
    codec, student = loaded.codec, loaded.codec.vocoder
    texts = heldout_texts()[: args.n]
    systems = ["piper", "piper-mel+griffin-lim", "piper-mel+hifigan", "piper-mel+neural",
               "model+griffin-lim", "model+hifigan", "model+neural"]
    # --cache: what does not depend on the neural vocoder (piper, the model's frames, Griffin-Lim,
    # HiFi-GAN and their scores) is kept and read back, so a new vocoder is measured quickly
    cache = args.cache
    scores_path = cache / "scores.json" if cache else None
    cached = json.loads(scores_path.read_text()) if scores_path and scores_path.exists() else {}
    if cached.get("texts") != texts:
        cached = {"texts": texts}
    teacher, sources = None, None
    audio: dict[str, list[np.ndarray]] = {s: [] for s in systems}
    for i, text in enumerate(texts):
        stored = cache / f"frames_{i:02d}.npz" if cache else None
        if stored and stored.exists():
            d = np.load(stored)
            wav, frames = d["piper"], {"piper-mel": torch.from_numpy(d["piper_mel"]), "model": torch.from_numpy(d["model"])}
        else:
            sources = sources or Sources(args.model)
            _, pcm, _, _, _ = _synth((0, text, 1.0, 0.667))
            wav = pcm.astype(np.float32) / 32768
            frames = {"piper-mel": codec.spec.features(wav), "model": sources.frames("model", text, random.Random(0))}
            if cache:
                cache.mkdir(parents=True, exist_ok=True)
                np.savez(stored, piper=wav, piper_mel=frames["piper-mel"].numpy(), model=frames["model"].numpy())
        audio["piper"].append(wav)
        for src, mel in frames.items():
            audio[f"{src}+neural"].append(streamed(StreamingNeuralVocoder(student), mel))
            if f"{src}+hifigan" in cached or args.neural_only:
                continue
            teacher = teacher or HiFiGAN("universal")
            audio[f"{src}+griffin-lim"].append(streamed(StreamingVocoder(codec.spec), mel))
            audio[f"{src}+hifigan"].append(teacher.vocode(mel))
        print(f"[vocoder-eval] {i + 1}/{len(texts)} {text[:60]}", file=sys.stderr, flush=True)
    if args.save:
        import soundfile as sf

        args.save.mkdir(parents=True, exist_ok=True)
        for s in systems:
            for i, a in enumerate(audio[s]):
                sf.write(args.save / f"{s}_{i:02d}.wav", a, SR)
    results = {}
    for s in systems:
        if s in cached and not s.endswith("+neural"):
            results[s] = cached[s]
            continue
        if args.neural_only and not s.endswith("+neural"):
            continue
        scores = [dnsmos(a) for a in audio[s]]
        hyps = [transcribe(a, SR) for a in audio[s]]
        results[s] = {k: float(np.mean([x[k] for x in scores])) for k in scores[0]}
        results[s]["wer"] = wer(texts, hyps)
        print(f"[vocoder-eval] {s}: {results[s]}", file=sys.stderr, flush=True)
    if scores_path and not args.neural_only:
        scores_path.write_text(json.dumps({**cached, **{s: r for s, r in results.items() if not s.endswith("+neural")}}))
    if not args.skip_rtf:
        mel = torch.cat([codec.spec.features(a) for a in audio["piper"]])[:860]  # ~10 s of frames
        teacher = teacher or HiFiGAN("universal")
        results["rtf_one_thread"] = {
            "griffin-lim": rtf(lambda m: streamed(StreamingVocoder(codec.spec), m), mel),
            "neural": rtf(lambda m: streamed(StreamingNeuralVocoder(student), m), mel),
            "neural, one pass": rtf(student.vocode, mel),
            "hifigan": rtf(teacher.vocode, mel, repeats=1),
        }
    print("| system | P.808 | SIG | BAK | OVRL | WER |\n|---|---|---|---|---|---|")
    for s in [s for s in systems if s in results]:
        r = results[s]
        print(f"| {s} | {r['p808']:.2f} | {r['sig']:.2f} | {r['bak']:.2f} | {r['ovrl']:.2f} | {r['wer']:.3f} |")
    if "rtf_one_thread" in results:
        print("RTF, one thread: " + ", ".join(f"{k} {v:.4f}" for k, v in results["rtf_one_thread"].items()))
    if args.json:
        args.json.write_text(json.dumps({"n": len(texts), "model": str(loaded.path), **results}, indent=1))


if __name__ == "__main__":
    main()
