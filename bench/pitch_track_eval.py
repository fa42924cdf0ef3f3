"""The source filter driven by the trained pitch track (narrate/codec/pitch_track.py) on the
narrate model's frames, against the student, the teacher and the simple-F0 source filter, on the
40 held-out sentences of bench.source_filter_eval (same scoring: DNSMOS, Whisper WER, voiced share,
median pitch), plus resemblyzer similarity of each condition's 40 sentences joined to the voice
prompt (narrate/assets/voices/joe.wav).

Conditions ``model+sf+track@<voicing>[@<median>]``: the model's frames pushed 3 at a time into a
PitchTrackStream; each output it gives (lagging by its lookahead) is paired with its own frame,
held back until then, and both pushed to a SourceFilter (the streaming vocoder's delay).
voicing: ``soft`` = F0 = M * 2 ** rel on every frame, voicing = sigmoid(logit); ``hard`` = F0 =
to_hz(logit, rel, M) (threshold 0), voicing from F0 > 0. median: ``joe`` (default) = median_pitch
of joe.wav; ``piper`` = median_pitch of that sentence's piper recording (the training targets'
reference, an oracle).

    python -m bench.pitch_track_eval [--sentences 0:40] [--conditions ...] [--out DIR]
        [--track WEIGHTS] [--similarity] [--save-wavs]

``--track``: the pitch track's weights (default /work/runs/s16/f0/pitch_track.safetensors). The
scores are cached by condition name, not by weights: give each weights file its own ``--out``
(with ``--track``, the scores and wavs of /work/runs/s16/sf are not read either).

Extra ``@key=value`` parts after the median tune the hard condition: ``thr`` (voicing threshold on
the logit), ``smooth`` (causal mean of relative F0 over k voiced frames), and SourceFilter's
``floor``, ``cutoff``, ``noise_gain``, ``lifter``; e.g. ``model+sf+track@hard@joe@thr=-0.5@floor=0.1``.

Scores cached in OUT/scores/<condition>.json; wavs in OUT/wavs/<condition>/NN.wav (needed for
--similarity; the student, teacher and simple-F0 conditions' wavs are read from
/work/runs/s16/sf/wavs when there).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from bench.source_filter_eval import SR, Data, make, score, single_threaded, summarise

ROOT = Path(__file__).resolve().parents[1]
VOICE = ROOT / "narrate/assets/voices/joe.wav"
TRACK = Path("/work/runs/s16/f0/pitch_track.safetensors")
OLD_WAVS = Path("/work/runs/s16/sf/wavs")
ALIASES = {"model+sf": "model+sf@lift100"}  # the simple-F0 source filter (lifter 100, now the default)


def _log(msg: str) -> None:
    print(f"[track-eval] {msg}", file=sys.stderr, flush=True)


_TRACK = None


SF_KEYS = {"floor": float, "cutoff": float, "noise_gain": float, "lifter": int}


def track_audio(mel: np.ndarray, median_hz: float, voicing: str, step: int = 3,
                opts: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(waveform, F0 per frame as used): streamed as the decoder would, ``step`` frames a push.
    opts: ``thr`` (hard voicing threshold on the logit, default 0), ``smooth`` (causal mean of the
    relative F0 over the last k voiced frames, default 1 = none), and SourceFilter's floor,
    cutoff, noise_gain, lifter."""
    global _TRACK
    from narrate.codec.pitch_track import PitchTrackStream, load, to_hz
    from narrate.codec.source_filter import SourceFilter

    opts = opts or {}
    if _TRACK is None:
        _TRACK = load(str(TRACK))
    ts = PitchTrackStream(_TRACK)
    sf = SourceFilter(**{k: v for k, v in opts.items() if k in SF_KEYS})
    thr, k_smooth = float(opts.get("thr", 0.0)), int(opts.get("smooth", 1))
    hist: list[float] = []  # relative F0 of the last voiced frames (causal smoothing)
    out, f0s, done = [], [], 0

    def smooth(logit: np.ndarray, rel: np.ndarray) -> np.ndarray:
        if k_smooth <= 1:
            return rel
        rel = np.asarray(rel, np.float64).copy()
        for j in range(len(rel)):
            if logit[j] > thr:
                hist.append(float(rel[j]))
                del hist[:-k_smooth]
                rel[j] = float(np.mean(hist))
            else:
                hist.clear()  # a voiced run starts afresh
        return rel

    def feed(logit: np.ndarray, rel: np.ndarray) -> None:
        nonlocal done
        n = len(logit)
        if n == 0:
            return
        frames = mel[done:done + n]  # the frames the outputs belong to (held back since pushed)
        if voicing == "soft":
            f0 = median_hz * np.exp2(rel.astype(np.float64))
            v = 1.0 / (1.0 + np.exp(-logit.astype(np.float64)))
        else:
            f0, v = to_hz(logit, smooth(logit, rel), median_hz, threshold=thr), None
        f0s.append(f0 if v is None else np.where(v > 0.5, f0, 0.0))
        out.append(sf.push(frames, f0, v))
        done += n

    for a in range(0, len(mel), step):
        feed(*ts.push(mel[a:a + step]))
    feed(*ts.flush())
    assert done == len(mel), (done, len(mel))
    out.append(sf.flush())
    return np.concatenate(out), np.concatenate(f0s)


def parse(cond: str) -> tuple[str, str, dict]:
    """``model+sf+track[@voicing[@median[@key=value...]]]`` -> (voicing, median, opts)."""
    parts = cond.split("@")[1:]
    conv = {**SF_KEYS, "thr": float, "smooth": int}
    opts = {}
    for p in parts[2:]:
        k, v = p.split("=")
        opts[k] = conv[k](v)
    return (parts[0] if parts else "hard"), (parts[1] if len(parts) > 1 else "joe"), opts


def main() -> None:
    global TRACK, OLD_WAVS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sentences", default="0:40")
    ap.add_argument("--conditions", default="model+sf+track@soft,model+sf+track@hard")
    ap.add_argument("--out", type=Path, default=Path("/work/runs/s16/sftrack"))
    ap.add_argument("--track", type=Path, default=None,
                    help=f"pitch track weights (.safetensors; default {TRACK}); give each its own --out")
    ap.add_argument("--similarity", action="store_true", help="also each condition's joined 40 vs joe.wav")
    ap.add_argument("--save-wavs", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    old_scores = Path("/work/runs/s16/sf/scores")
    if a.track is not None:
        TRACK = a.track
        old_scores = OLD_WAVS = a.out / "none"  # another track's scores and wavs are not this one's
    import soundfile as sfio

    from narrate.pitch import median_pitch

    lo, hi = (int(x) for x in a.sentences.split(":"))
    data = Data()
    joe, joe_sr = sfio.read(VOICE, dtype="float32")
    m_joe = median_pitch(joe, joe_sr)
    _log(f"median pitch of joe.wav {m_joe:.1f} Hz")
    (a.out / "scores").mkdir(parents=True, exist_ok=True)
    results = {}
    scorer_ready = False
    for cond in a.conditions.split(","):
        tag = ALIASES.get(cond, cond)
        store = a.out / "scores" / f"{tag}.json"
        old = old_scores / f"{tag}.json"
        cached = json.loads(store.read_text()) if store.exists() else json.loads(old.read_text()) if old.exists() else {}
        wdir = a.out / "wavs" / tag
        for i in range(lo, hi):
            have_wav = (wdir / f"{i:02d}.wav").exists() or (OLD_WAVS / tag / f"{i:02d}.wav").exists()
            if str(i) in cached and "hyp" in cached[str(i)] and (have_wav or not a.save_wavs):
                continue
            if cond.startswith("model+sf+track"):
                voicing, med, opts = parse(cond)
                m = m_joe if med == "joe" else median_pitch(data.rec[i], SR)
                wav, f0 = track_audio(data.model[i], m, voicing, opts=opts)
                extra = {"m": m, "f0_med_in": float(np.median(f0[f0 > 0])) if (f0 > 0).any() else None,
                         "f0_share_in": float((f0 > 0).mean())}
            else:
                wav, extra = make(data, cond, i, {}), {}
            if not scorer_ready:
                single_threaded()
                scorer_ready = True
            if str(i) not in cached or "hyp" not in cached[str(i)]:
                cached[str(i)] = {**score(wav, data.texts[i]), **extra}
                store.write_text(json.dumps(cached, indent=0))
            if a.save_wavs:
                wdir.mkdir(parents=True, exist_ok=True)
                sfio.write(wdir / f"{i:02d}.wav", wav, SR)
            _log(f"{tag} {i} done")
        res = summarise([cached[str(i)] for i in range(lo, hi)])
        if hi - lo == 40:
            res["halves"] = [summarise([cached[str(i)] for i in range(0, 20)]),
                             summarise([cached[str(i)] for i in range(20, 40)])]
        if a.similarity:
            from narrate.voices import SpeakerEncoder

            enc = SpeakerEncoder()
            ref = enc.embed(joe, joe_sr)
            wavs = []
            for i in range(lo, hi):
                p = wdir / f"{i:02d}.wav"
                p = p if p.exists() else OLD_WAVS / tag / f"{i:02d}.wav"
                wavs.append(sfio.read(p, dtype="float32")[0])
            res["sim"] = round(float(enc.embed(np.concatenate(wavs), SR) @ ref), 4)
        results[tag] = res
        _log(f"{tag} [{lo}:{hi}] {json.dumps(res)}")
    print(json.dumps({"sentences": [lo, hi], "median_joe": m_joe, "results": results}))


if __name__ == "__main__":
    main()
