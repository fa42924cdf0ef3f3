"""The vocoders side by side on held-out sentences, several measures at once: DNSMOS (P.808,
P.835 SIG/BAK/OVRL), Whisper tiny.en WER, speaker similarity (resemblyzer) and the long-term
average spectrum (LTAS) of the output against the teacher's.

Frames: the narrate model's (what it gives its vocoder), piper's own audio turned into log-mel
(the vocoders' ceiling), and with --voices other voices' audio turned into log-mel (e.g. flite's
slt or the held-out pseudo-speaker joe-f-breathy-0: voices the vocoder never trained on). Each
made audio by Griffin-Lim (streaming, as shipped), HiFi-GAN V1 universal (the teacher) and
narrate's neural vocoder (streaming): the model's, or with --student each run, checkpoint or
model folder given. Similarity: joe's frames against voices/joe.wav, another voice's against its
own recordings of the same sentences. Then each vocoder's speed on one thread.

    python -m bench.vocoder_eval [--model narrate-joe] [--n 12] [--voices slt,joe-f-breathy-0]
        [--student RUN|CKPT.pt|MODEL ...] [--cache DIR] [--save DIR] [--json out.json]

With --cache, everything but the neural vocoders (frames, recordings, Griffin-Lim and teacher
audio and their scores) is kept and read back, so a new student is measured in minutes.
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

from bench.vocoder_select import BANDS, band_difference, compare, ltas, select

SR = 22050
FIXED = ("griffin-lim", "hifigan")  # vocoders whose audio does not change between runs


def _log(msg: str) -> None:
    print(f"[vocoder-eval] {msg}", file=sys.stderr, flush=True)


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


def load_student(spec: str):
    """A run folder (its checkpoint.pt), a checkpoint file, or a model folder -> (name, Vocos in
    float32 with fp16-rounded weights, as an export ships them)."""
    from narrate.codec.vocos import Vocos, VocoderConfig
    from narrate.hub import from_pretrained

    path = Path(spec)
    ckpt = path / "checkpoint.pt" if path.is_dir() and (path / "checkpoint.pt").exists() else path
    if ckpt.suffix == ".pt":
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        net = Vocos(VocoderConfig.from_dict(state["vocoder"]))
        net.load_state_dict({k: v.half().float() for k, v in state["model"].items()})
        return f"{path.name}@{state['step']}", net.eval()
    return path.name, from_pretrained(spec, vocoder="neural").codec.vocoder


class Scorer:
    """DNSMOS, WER, similarity to a reference embedding, voiced share and LTAS of a list of
    utterances."""

    def __init__(self, spec):
        from bench.quality import embed

        self.spec, self.embed = spec, embed

    def __call__(self, audio: list[np.ndarray], texts: list[str], reference: np.ndarray) -> dict:
        from bench.measures import similarity, transcribe, wer
        from narrate.pitch import voiced_share

        scores = [dnsmos(a) for a in audio]
        out = {k: float(np.mean([x[k] for x in scores])) for k in scores[0]}
        out["wer"] = wer(texts, [transcribe(a, SR) for a in audio])
        out["sim"] = float(np.mean([similarity(self.embed(a, SR), reference) for a in audio]))
        out["voiced"] = float(np.nanmean([voiced_share(a, SR) for a in audio]))
        out["ltas"] = ltas([self.spec.features(a).numpy() for a in audio]).tolist()
        return out


def _key(args, texts: list[str], voices: list[str]) -> str:
    """What the cached frames (and the audio made from them) depend on."""
    return json.dumps({"texts": texts, "voice_n": args.voice_n, "voices": voices})


def _frames(args, texts: list[str], voices: list[str], codec) -> tuple[dict, dict]:
    """(recordings {name: [wav]}, frames {source: [logmel]}): piper's joe and its log-mel, the
    model's frames, and each voice's recordings and their log-mel; cached."""
    from narrate.train import speakers as S
    from narrate.train.prepare import _synth
    from narrate.train.vocoder_data import Sources

    stored = args.cache / "frames.npz" if args.cache else None
    key = _key(args, texts, voices)
    if stored and stored.exists():
        d = np.load(stored, allow_pickle=False)
        if str(d["key"]) == key:
            rec = {n: [d[f"rec/{n}/{i}"] for i in range(int(d[f"count/{n}"]))] for n in ["piper", *voices]}
            fr = {s: [torch.from_numpy(d[f"fr/{s}/{i}"]) for i in range(int(d[f"count/{s}"]))]
                  for s in ["piper-mel", "model", *voices]}
            return rec, fr
    sources = Sources(args.model)
    rec: dict[str, list[np.ndarray]] = {"piper": [], **{v: [] for v in voices}}
    fr: dict[str, list[torch.Tensor]] = {"piper-mel": [], "model": [], **{v: [] for v in voices}}
    for i, text in enumerate(texts):
        _, pcm, _, _, _ = _synth((0, text, 1.0, 0.667))
        wav = pcm.astype(np.float32) / 32768
        rec["piper"].append(wav)
        fr["piper-mel"].append(codec.spec.features(wav))
        fr["model"].append(sources.frames("model", text, random.Random(0)))
        if i < args.voice_n:
            for v in voices:
                rec[v].append(S.render(S.speaker_named(v), text, pcm))
                fr[v].append(codec.spec.features(rec[v][-1]))
        _log(f"frames {i + 1}/{len(texts)}")
    if stored:
        args.cache.mkdir(parents=True, exist_ok=True)
        arrays = {"key": np.array(key)}
        for n, xs in rec.items():
            arrays[f"count/{n}"] = np.array(len(xs))
            arrays.update({f"rec/{n}/{i}": x for i, x in enumerate(xs)})
        for s, xs in fr.items():
            arrays[f"count/{s}"] = np.array(len(xs))
            arrays.update({f"fr/{s}/{i}": x.numpy() for i, x in enumerate(xs)})
        np.savez(stored, **arrays)
    return rec, fr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--n", type=int, default=12, help="held-out sentences (joe's frames)")
    ap.add_argument("--voices", default="", help="comma-separated voices whose recordings' frames are vocoded too "
                                                 "(narrate.train.speakers names: slt, slt-hts, rms, joe-f-breathy-0...)")
    ap.add_argument("--voice-n", type=int, default=12, help="sentences per voice of --voices")
    ap.add_argument("--student", action="append", default=[],
                    help="neural vocoder to measure: run folder, checkpoint .pt or model folder (repeatable; "
                         "default: the model's)")
    ap.add_argument("--no-model-vocoder", action="store_true", help="with --student: leave the model's own out")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="--json of an earlier run: its model+neural is what the students are compared with")
    ap.add_argument("--no-piper-mel", action="store_true", help="leave piper's frames out (quicker)")
    ap.add_argument("--save", type=Path, default=None, help="folder for the wavs")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=None,
                    help="folder keeping what does not depend on the neural vocoder, for reruns")
    ap.add_argument("--skip-rtf", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from narrate.codec.hifigan import HiFiGAN
    from narrate.codec.mel import StreamingVocoder, mel_centres
    from narrate.codec.vocos import StreamingNeuralVocoder
    from narrate.hub import from_pretrained
    from narrate.train.texts import heldout_texts
    from bench.quality import embed

    loaded = from_pretrained(args.model, vocoder="auto")
    codec = loaded.codec
    students = {}
    if not args.no_model_vocoder and getattr(codec, "vocoder", None) is not None:
        students["neural"] = codec.vocoder
    for spec in args.student:
        name, net = load_student(spec)
        students[name] = net
    if not students:
        ap.error("no neural vocoder to measure (the model has none and no --student was given)")
    voices = [v for v in args.voices.split(",") if v]
    texts = heldout_texts()[: args.n]
    rec, frames = _frames(args, texts, voices, codec)
    if args.no_piper_mel:
        del frames["piper-mel"]
    centres = mel_centres(codec.spec.cfg)
    joe_ref = embed(*_joe_wav())
    refs = {"piper": joe_ref, **{v: embed(np.concatenate(rec[v]), SR) for v in voices}}
    source_of = {"piper-mel": "piper", "model": "piper", **{v: v for v in voices}}  # frames -> whose voice

    scores_path = args.cache / "scores.json" if args.cache else None
    cached = json.loads(scores_path.read_text()) if scores_path and scores_path.exists() else {}
    cached_audio = args.cache / "audio.npz" if args.cache else None
    fixed_audio: dict[str, list[np.ndarray]] = {}
    key = _key(args, texts, voices)  # the audio is made from the frames: valid while they are
    d = np.load(cached_audio) if cached_audio and cached_audio.exists() else None
    if d is not None and "key" in d.files and str(d["key"]) == key:
        for k in d.files:
            if k == "key":
                continue
            system, i = k.rsplit("/", 1)
            fixed_audio.setdefault(system, []).append((int(i), d[k]))
        fixed_audio = {s: [a for _, a in sorted(v)] for s, v in fixed_audio.items()}
    if cached.get("key") != key:
        cached = {"key": key}

    teacher = None
    audio: dict[str, list[np.ndarray]] = {}
    for src, mels in frames.items():
        for voc in FIXED:
            system = f"{src}+{voc}"
            if system in fixed_audio and len(fixed_audio[system]) == len(mels):
                audio[system] = fixed_audio[system]
                continue
            if voc == "hifigan":
                teacher = teacher or HiFiGAN("universal")
            audio[system] = [streamed(StreamingVocoder(codec.spec), m) if voc == "griffin-lim" else teacher.vocode(m)
                             for m in mels]
            _log(f"{system} vocoded")
        for name, net in students.items():
            audio[f"{src}+{name}"] = [streamed(StreamingNeuralVocoder(net), m) for m in mels]
    if cached_audio:
        keep = {**fixed_audio, **{s: xs for s, xs in audio.items() if s.split("+")[1] in FIXED}}
        np.savez(cached_audio, key=np.array(key), **{f"{s}/{i}": a for s, xs in keep.items() for i, a in enumerate(xs)})
    for name, xs in rec.items():
        audio[name] = xs
    if args.save:
        import soundfile as sf

        args.save.mkdir(parents=True, exist_ok=True)
        for s, xs in audio.items():
            for i, a in enumerate(xs):
                sf.write(args.save / f"{s}_{i:02d}.wav", a, SR)

    score = Scorer(codec.spec)
    results = {}
    for system, xs in audio.items():
        fixed = "+" not in system or system.split("+")[1] in FIXED
        if fixed and system in cached:
            results[system] = cached[system]
            continue
        voice = source_of.get(system.split("+")[0], system)
        results[system] = score(xs, texts[: len(xs)], refs[voice])
        _log(f"{system}: " + ", ".join(f"{k} {v:.3f}" for k, v in results[system].items() if k != "ltas"))
        if fixed and scores_path:
            cached[system] = results[system]
            scores_path.write_text(json.dumps(cached))  # as it goes: an interrupted run keeps what it scored

    if not args.skip_rtf:
        mel = torch.cat(frames["model"])[:860]  # ~10 s of frames
        teacher = teacher or HiFiGAN("universal")
        net = next(iter(students.values()))
        results["rtf_one_thread"] = {
            "griffin-lim": rtf(lambda m: streamed(StreamingVocoder(codec.spec), m), mel),
            "neural": rtf(lambda m: streamed(StreamingNeuralVocoder(net), m), mel),
            "neural, one pass": rtf(net.vocode, mel),
            "hifigan": rtf(teacher.vocode, mel, repeats=1),
        }
    print("| audio | n | P.808 | SIG | BAK | OVRL | WER | similarity | voiced | LTAS - teacher's, dB: "
          + " / ".join(f"{lo}-{hi} Hz" for lo, hi in BANDS)
          + " |\n|---|---|---|---|---|---|---|---|---|---|")
    for system, r in results.items():
        if system == "rtf_one_thread":
            continue
        src = system.split("+")[0]
        teacher_ltas = results.get(f"{src}+hifigan", {}).get("ltas")
        tilt = (" / ".join(f"{v:+.1f}" for v in band_difference(np.array(r["ltas"]), np.array(teacher_ltas), centres).values())
                if teacher_ltas else "")
        print(f"| {system} | {len(audio[system])} | {r['p808']:.2f} | {r['sig']:.2f} | {r['bak']:.2f} | {r['ovrl']:.2f} "
              f"| {r['wer']:.3f} | {r['sim']:.3f} | {r.get('voiced', float('nan')):.2f} | {tilt} |")
    if "rtf_one_thread" in results:
        print("RTF, one thread: " + ", ".join(f"{k} {v:.4f}" for k, v in results["rtf_one_thread"].items()))
    base = json.loads(args.baseline.read_text())["model+neural"] if args.baseline else results.get("model+neural")
    cands = {n: results[f"model+{n}"] for n in students if n != "neural"}
    if base and cands:
        for n, r in cands.items():
            better, s, worse = compare(r, base)
            print(f"{n} against the model's vocoder (model frames): combined {s:+.2f}, "
                  + ("better by the measures together" if better else f"not better (worse: {', '.join(worse) or 'none'})"))
        print(f"selected: {select(cands, base) or 'none (keep the model vocoder)'}")
    if args.json:
        args.json.write_text(json.dumps({"n": len(texts), "model": str(loaded.path), **results}, indent=1))


def _joe_wav() -> tuple[np.ndarray, int]:
    """The bundled joe voice prompt (samples, rate): the reference of joe's similarity."""
    from narrate.voices import bundled_voices, read_prompt

    return read_prompt(bundled_voices()["joe"])


if __name__ == "__main__":
    main()
