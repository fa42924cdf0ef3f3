"""Intelligibility (Whisper WER), speaker similarity (resemblyzer), naturalness (DNSMOS) and
pauses, drift over a long rendering, seam statistics and the codec round trip, all computed on
Render objects."""

from __future__ import annotations

import math

import numpy as np

from bench.analysis import (jump_stats, pause_stats, same_text_pairs, score_windows, seam_pauses, sentence_windows,
                            silence_runs, summary)
from bench.render import Render


def _encoder():
    from narrate.voices import SpeakerEncoder

    return SpeakerEncoder()


def embed(wav: np.ndarray, sr: int) -> np.ndarray | None:
    """Speaker embedding as narrate computes it (resemblyzer, voice-activity trimmed). When the
    trimming finds no speech (e.g. noise), the untrimmed audio is embedded instead, so such
    output still gets a (low) similarity; None only for audio too short to embed."""
    import librosa

    from narrate.errors import VoiceError

    x = np.asarray(wav, np.float32)
    if not np.any(x):
        return None
    try:
        return _encoder().embed(x, sr)
    except VoiceError:
        x16 = librosa.resample(x, orig_sr=sr, target_sr=16000) if sr != 16000 else x
        if len(x16) < 1600 or not np.any(x16):
            return None
        return _encoder().encoder.embed_utterance(x16 / np.max(np.abs(x16))).astype(np.float32)


def file_embedding(path) -> np.ndarray:
    import soundfile as sf

    wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    emb = embed(wav.mean(axis=1), sr)
    if emb is None:
        raise RuntimeError(f"no speech found in {path}")
    return emb


def sim(emb: np.ndarray | None, ref: np.ndarray) -> float:
    from bench.measures import similarity

    return similarity(emb, ref) if emb is not None and ref is not None else math.nan


def intelligibility(render: Render) -> dict:
    """WER over the sentences, each transcribed on its own."""
    from bench.measures import transcribe, wer

    hyps = [transcribe(render.segment(i), render.sr) for i in range(len(render.spans))]
    return {"wer": wer(render.texts, hyps), "n_sentences": len(hyps), "hyps": hyps,
            "examples": [{"ref": r, "hyp": h} for r, h in list(zip(render.texts, hyps))[:3]]}


def speaker(render: Render, refs: dict[str, np.ndarray]) -> dict:
    """Similarity of the whole output (its sentences joined) and the per-sentence mean, to each
    reference embedding."""
    whole = embed(render.audio, render.sr)
    per = [embed(render.segment(i), render.sr) for i in range(len(render.spans))]
    out = {}
    for name, ref in refs.items():
        values = [sim(e, ref) for e in per if e is not None]
        out[name] = {"whole": sim(whole, ref), "sentence_mean": float(np.mean(values)) if values else math.nan,
                     "sentence_sd": float(np.std(values)) if values else math.nan, "n": len(values)}
    return out


DNSMOS_RATE = 16000
DNSMOS_WINDOW_S = 9.01  # the length DNSMOS scores at once (speechmos.dnsmos.INPUT_LENGTH)


def dnsmos(wav: np.ndarray, sr: int) -> dict:
    """DNSMOS (Microsoft's P.808 MOS and P.835 SIG/BAK/OVRL, from the speechmos wheel) of audio:
    the mean over consecutive 9 s windows (see ``score_windows``), at 16 kHz, peak at most 1."""
    import librosa
    from speechmos import dnsmos as dns

    x = np.asarray(wav, np.float32)
    if sr != DNSMOS_RATE:
        x = librosa.resample(x, orig_sr=sr, target_sr=DNSMOS_RATE)
    x = x / max(1.0, float(np.max(np.abs(x), initial=0.0)))
    scores = [dns.run(x[a:b], DNSMOS_RATE) for a, b in score_windows(len(x), int(DNSMOS_WINDOW_S * DNSMOS_RATE))]
    keys = {"p808": "p808_mos", "sig": "sig_mos", "bak": "bak_mos", "ovrl": "ovrl_mos"}
    return {k: float(np.mean([r[v] for r in scores])) if scores else math.nan for k, v in keys.items()}


def naturalness(render: Render) -> dict:
    """DNSMOS of the whole rendering and its pauses (``pause_stats``; the benchmark's text is
    one paragraph, so every pause is inside one)."""
    return {"dnsmos": dnsmos(render.audio, render.sr), "pauses": pause_stats(render.audio, render.sr, render.seams)}


def drift(render: Render, window_s: float, ref: np.ndarray) -> list[dict]:
    """WER and similarity per window of ~window_s (whole sentences, by where each ends)."""
    from bench.measures import transcribe, wer

    out = []
    for w in sentence_windows(render.spans, window_s, render.sr):
        audio = render.audio[w["start"]: w["end"]]
        text = " ".join(render.texts[i] for i in w["sentences"])
        hyp = transcribe(audio, render.sr)
        out.append({"start_min": w["start"] / render.sr / 60, "end_min": w["end"] / render.sr / 60,
                    "n_sentences": len(w["sentences"]), "wer": wer([text], [hyp]),
                    "similarity": sim(embed(audio, render.sr), ref), "dnsmos": dnsmos(audio, render.sr)})
    return out


def same_text_drift(render: Render, window_s: float, ref: np.ndarray) -> dict | None:
    """The last window's sentences against the same sentences when first spoken: the same text
    early and late, so the change is the rendering's own (windows of different sentences differ
    in difficulty as much as the bar allows). None when nothing in the last window was spoken
    before."""
    from bench.measures import transcribe, wer

    windows = sentence_windows(render.spans, window_s, render.sr)
    pairs = same_text_pairs(render.texts, windows[-1]["sentences"]) if len(windows) > 1 else []
    if not pairs:
        return None
    out = {"n_sentences": len(pairs)}
    for name, idx in (("early", [a for a, _ in pairs]), ("late", [b for _, b in pairs])):
        audio = np.concatenate([render.segment(i) for i in idx])
        text = " ".join(render.texts[i] for i in idx)
        out[name] = {"start_min": render.spans[min(idx)][1] / render.sr / 60,
                     "end_min": render.spans[max(idx)][2] / render.sr / 60,
                     "wer": wer([text], [transcribe(audio, render.sr)]), "similarity": sim(embed(audio, render.sr), ref)}
    out["wer_change"] = out["late"]["wer"] / out["early"]["wer"] - 1 if out["early"]["wer"] else math.nan
    out["similarity_change"] = out["late"]["similarity"] / out["early"]["similarity"] - 1
    return out


def seams(render: Render) -> dict:
    """Pauses at sentence joins vs inside sentences; largest jump within ±5 ms of each seam vs
    elsewhere (10 ms frames, -40 dB below the clip's peak, runs >= 50 ms)."""
    runs = silence_runs(render.audio, render.sr)
    at_seam, inner = seam_pauses(runs, render.seams, render.sr)
    j_seam, j_else = jump_stats(render.audio, render.seams, render.sr)
    longest_inner = max(inner, default=math.inf)
    p99 = float(np.percentile(j_else, 99)) if j_else else math.nan
    return {"n_seams": len(render.seams),
            "pause_at_seam_s": summary(at_seam), "pause_inside_s": summary(inner),
            "seams_without_pause": int(sum(1 for p in at_seam if p == 0)),
            # the bar: pauses at joins within the range of pauses inside sentences
            "seams_pause_above_inside_max": int(sum(1 for p in at_seam if p > longest_inner)),
            "jump_at_seam": summary(j_seam), "jump_elsewhere": summary(j_else),
            "jump_elsewhere_p99": p99,
            "seams_above_elsewhere_p99": int(sum(1 for j in j_seam if j > p99)),
            "raw": {"pause_at_seam_s": at_seam, "pause_inside_s": inner, "jump_at_seam": j_seam,
                    "jump_elsewhere_sample": _subsample(j_else, 5000)}}


def _subsample(values: list[float], n: int) -> list[float]:
    if len(values) <= n:
        return list(values)
    idx = np.linspace(0, len(values) - 1, n).astype(int)
    return [values[i] for i in idx]


def codec_round_trip(codec, original: Render, original_wer: float | None = None) -> tuple[Render, dict]:
    """encode -> decode every sentence of ``original`` with the codec; WER of both (the
    original's given or measured), and the similarity of the decoded audio to the original."""
    import librosa

    parts, spans, n = [], [], 0
    for k in range(len(original.spans)):
        wav = original.segment(k)
        if codec.sample_rate != original.sr:
            wav = librosa.resample(wav, orig_sr=original.sr, target_sr=codec.sample_rate)
        out = np.asarray(codec.decode(codec.encode(wav)), np.float32)
        parts.append(out)
        spans.append((k, n, n + len(out)))
        n += len(out)
    decoded = Render(np.concatenate(parts) if parts else np.zeros(0, np.float32), codec.sample_rate, spans,
                     list(original.texts), 0.0, 0.0)
    orig_emb = embed(original.audio, original.sr)
    per = [sim(embed(decoded.segment(k), decoded.sr), embed(original.segment(k), original.sr))
           for k in range(len(spans))]
    per = [p for p in per if not math.isnan(p)]
    return decoded, {"wer_original": intelligibility(original)["wer"] if original_wer is None else original_wer, "wer_decoded": intelligibility(decoded)["wer"],
                     "similarity_whole": sim(embed(decoded.audio, decoded.sr), orig_emb),
                     "similarity_sentence_mean": float(np.mean(per)) if per else math.nan,
                     "n_sentences": len(spans)}
