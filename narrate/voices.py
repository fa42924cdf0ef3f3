"""Voice prompts: a bundled voice by name or any recording, turned into a speaker embedding.

The embedding comes from resemblyzer's encoder (trained on thousands of real speakers and
shipped inside its wheel), so a prompt never heard in training still lands somewhere sensible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from narrate import assets
from narrate.errors import VoiceError

if TYPE_CHECKING:
    import torch

VOICES_DIR = assets.VOICES
MIN_SECONDS, MAX_SECONDS = 2.0, 60.0
PROMPT_SECONDS = 8.0  # of a prompt, the model's prompt encoder reads this much (as in training)


@dataclass
class Voice:
    name: str
    path: Path | None
    embedding: np.ndarray  # [256] unit-norm speaker embedding
    audio: np.ndarray | None = None  # the prompt recording (mono float32), for a model's prompt encoder
    sample_rate: int = 0
    _pitch: float | None = field(default=None, init=False, repr=False, compare=False)  # pitch(), once measured

    def pitch(self) -> float:
        """Median pitch (Hz) of the prompt's voiced speech (narrate.pitch); NaN: no recording or
        nothing voiced. Measured (Praat) at the first call, then kept."""
        if self._pitch is None:
            from narrate.pitch import median_pitch

            self._pitch = math.nan if self.audio is None else median_pitch(self.audio, self.sample_rate)
        return self._pitch

    def prompt_frames(self, mel_spec) -> np.ndarray | None:
        """The prompt's log-mel frames [T, F] in the model's mel configuration: its middle
        ``PROMPT_SECONDS`` (None: no recording)."""
        if self.audio is None:
            return None
        wav = self.audio
        if self.sample_rate != mel_spec.cfg.sample_rate:
            import librosa

            wav = librosa.resample(wav, orig_sr=self.sample_rate, target_sr=mel_spec.cfg.sample_rate)
        frames = mel_spec.features(np.asarray(wav, np.float32)).numpy()
        n = int(PROMPT_SECONDS * mel_spec.cfg.sample_rate / mel_spec.cfg.hop)
        start = max(0, (len(frames) - n) // 2)
        return frames[start : start + n]


def conditioning(model, voice: Voice, mel_spec) -> tuple[torch.Tensor, torch.Tensor | None]:
    """What ``model`` (a NarrateModel) hears of ``voice``: (its speaker vector: the embedding, and
    the pitch where the model takes it; its prompt's frames [T, F] in ``mel_spec``'s
    configuration, or None where the model has no prompt encoder or there is no ``mel_spec``).
    Narration and the vocoder's GTA frames (narrate.train.gta) condition the model through this
    one function, so a vocoder is trained on the frames the narrator makes."""
    import torch

    from narrate.pitch import pitch_feature

    embedding = torch.from_numpy(np.asarray(voice.embedding, np.float32)).view(1, -1)
    pitch = pitch_feature(voice.pitch()) if model.cfg.voice_stats else 0.0  # (ignored otherwise)
    speaker = model.speaker_vector(embedding, torch.tensor([pitch]))[0]
    use_prompt = (model.cfg.prompt_tokens or model.cfg.voice_stats) and mel_spec is not None
    frames = voice.prompt_frames(mel_spec) if use_prompt else None
    return speaker, None if frames is None else torch.from_numpy(frames)


def bundled_voices() -> dict[str, Path]:
    """name -> wav path of the voices shipped with narrate (``narrate.assets.VOICES``)."""
    if not VOICES_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(VOICES_DIR.glob("*.wav"))}


def voice_description(path: Path) -> str:
    txt = path.with_suffix(".txt")
    # Users edit their own voices' files: an empty or mis-encoded one is no reason to fail.
    lines = txt.read_text(encoding="utf-8", errors="replace").strip().splitlines() if txt.exists() else []
    return lines[0] if lines else ""


def read_prompt(path: Path) -> tuple[np.ndarray, int]:
    """Any readable audio file -> (mono float32, sample rate), with the prompt checks."""
    import soundfile as sf

    if not path.exists():
        raise VoiceError(f"voice prompt '{path}' does not exist (bundled voices: {', '.join(bundled_voices()) or 'none'})")
    try:
        wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises its own error type for non-audio
        raise VoiceError(f"voice prompt '{path}' is not readable audio ({str(e).splitlines()[0][:80]})") from None
    wav = wav.mean(axis=1)
    seconds = len(wav) / sr
    if seconds < MIN_SECONDS:
        raise VoiceError(f"voice prompt '{path}' is too short ({seconds:.1f} s; give {MIN_SECONDS:.0f}-{MAX_SECONDS:.0f} s of speech)")
    if seconds > MAX_SECONDS:
        raise VoiceError(f"voice prompt '{path}' is too long ({seconds:.1f} s; give {MIN_SECONDS:.0f}-{MAX_SECONDS:.0f} s of speech)")
    if not np.isfinite(wav).all() or np.sqrt(np.mean(wav**2)) < 1e-3:
        raise VoiceError(f"voice prompt '{path}' is silent")
    return wav, sr


class SpeakerEncoder:
    """resemblyzer's d-vector encoder: waveform at any rate -> [256] unit-norm embedding."""

    _encoder = None

    def __init__(self):
        if SpeakerEncoder._encoder is None:
            import logging

            from resemblyzer import VoiceEncoder

            logging.getLogger("resemblyzer").setLevel(logging.ERROR)
            SpeakerEncoder._encoder = VoiceEncoder(device="cpu", verbose=False)
        self.encoder = SpeakerEncoder._encoder

    def embed(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        return self.embed_parts(wav, sample_rate)[0]

    def embed_parts(self, wav: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray, float]:
        """(embedding [256], the embeddings of its 1.6-s parts [P, 256], seconds of speech kept
        by resemblyzer's voice activity detection)."""
        import librosa
        from resemblyzer import preprocess_wav

        if sample_rate != 16000:
            wav = librosa.resample(np.asarray(wav, np.float32), orig_sr=sample_rate, target_sr=16000)
        processed = preprocess_wav(wav, source_sr=16000)
        if len(processed) < 1600:  # trimmed to (almost) nothing: no speech found
            raise VoiceError("voice prompt has no speech in it")
        embedding, parts, _ = self.encoder.embed_utterance(processed, return_partials=True)
        return embedding.astype(np.float32), parts.astype(np.float32), len(processed) / 16000


def load_voice(voice: str | None, default: str) -> Voice:
    """--voice NAME|WAV (None -> the model's default voice) -> Voice with its embedding.

    A name is looked up among the user's own voices (narrate.voice_store) first, so that one
    kept with --force under a bundled name is the one used."""
    from narrate.voice_store import load_user_voice, user_voices

    if voice is not None and not voice.strip():
        raise VoiceError("empty voice name (give a voice name or a recording, or leave --voice out "
                         "for the model's default voice)")
    name = default if voice is None else voice
    if name in user_voices():
        return load_user_voice(name)
    bundled = bundled_voices()
    if name in bundled:
        path = bundled[name]
    else:
        path = Path(name)
        if path.suffix == "" and not path.exists():
            raise VoiceError(f"unknown voice '{name}' (bundled voices: {', '.join(bundled) or 'none'}; yours: "
                             f"{', '.join(user_voices()) or 'none'}; or give a .wav file)")
    cache = path.with_suffix(".npy")
    wav, sr = read_prompt(path)
    if path.parent == VOICES_DIR and cache.exists():
        return Voice(path.stem, path, np.load(cache), wav, sr)
    return Voice(path.stem, path, SpeakerEncoder().embed(wav, sr), wav, sr)
