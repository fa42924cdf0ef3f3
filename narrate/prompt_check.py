"""Say when a voice prompt is poor: clipping, mostly silence, noise, music, several speakers.

Each check is one plain measure of the recording, with a threshold set on signals made here
(piper's joe and four flite voices, then damaged: white noise at 0-30 dB SNR, gain and
clipping, long silences, sox-made tones mixed in, two voices one after the other):

- clipped: the share of samples at the recording's own peak (within 0.1%). Clipping leaves
  flat tops there; clean speech has a handful of samples at its peak.
- mostly silence: the share of 20-ms frames more than 30 dB below the loud ones (the 95th
  percentile of frame energies).
- noisy: the loud frames' level over the quiet ones' (95th over 5th percentile of frame
  energies), an estimate of the signal-to-noise ratio: clean speech has pauses between words.
- music: the share of sounding 10-ms frames whose pitch holds within 1% for 100 ms. Notes hold
  their pitch; a speaking voice glides all the time.
- several speakers: resemblyzer embeds the prompt in 1.6-s parts; the lowest similarity between
  the mean of the parts before some point and the mean of those after it. One speaker's
  halves sound alike; a change of speaker shows as a split where they don't. Measured only when
  the recording is neither noisy nor musical, which lower the similarity on their own.

A prompt with under a second of speech cannot be used: that is an error, not a warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from narrate.errors import VoiceError

RATE = 16000                # all measures but clipping are taken at this rate
FRAME = 320                 # 20 ms: energy frames
HOP = 160                   # 10 ms: pitch frames
MIN_SPEECH_SECONDS = 1.0    # less speech than this (after voice activity detection): an error

CLIPPED_SHARE = 0.0005      # clean speech <= 0.00005; gain x2 into full scale >= 0.0009
SILENT_SHARE = 0.5          # clean speech <= 0.22; 2 s of speech then 6 s of silence >= 0.76
SNR_DB = 18.0               # clean speech >= 39; white noise at 15 dB SNR >= 19.3, at 10 dB <= 17.2
STEADY_SHARE = 0.12         # clean speech <= 0.08 (flite slt); sox tones >= 0.50; speech + tones at 0 dB >= 0.15
SPEAKER_SIMILARITY = 0.80   # one speaker >= 0.84; two speakers one after the other <= 0.79 (mostly < 0.70)


@dataclass
class PromptMeasures:
    """What the checks measured on one prompt (shares are fractions of 1)."""

    seconds: float
    speech_seconds: float           # what resemblyzer's voice activity detection keeps
    clipped: float                  # share of samples at the peak
    silent: float                   # share of 20-ms frames 30 dB below the loud ones
    snr_db: float                   # 95th over 5th percentile of frame energies, dB
    steady: float                   # share of sounding frames with a held pitch
    speaker_similarity: float | None  # lowest similarity across a split (None: not measured)

    def problems(self) -> list[str]:
        """The prompt's problems, each named in a few words with its measure."""
        found = []
        if self.clipped >= CLIPPED_SHARE:
            found.append(f"clipped ({self.clipped:.1%} of samples at the peak)")
        if self.silent >= SILENT_SHARE:
            found.append(f"mostly silence ({self.silent:.0%} of it)")
        musical = self.steady >= STEADY_SHARE
        if musical:
            found.append(f"music or held tones (a steady pitch in {self.steady:.0%} of the sound)")
        elif self.snr_db < SNR_DB:
            found.append(f"noisy (speech about {self.snr_db:.0f} dB above the noise)")
        if self.speaker_similarity is not None and self.speaker_similarity < SPEAKER_SIMILARITY:
            found.append(f"several speakers (its parts sound like different voices: similarity "
                         f"{self.speaker_similarity:.2f})")
        return found


def frame_levels(wav: np.ndarray, frame: int = FRAME) -> np.ndarray:
    """Energy of each whole frame in dB (full scale = 0): [len(wav) // frame]."""
    n = len(wav) // frame
    energy = (wav[: n * frame].reshape(n, frame).astype(np.float64) ** 2).mean(axis=1)
    return 10 * np.log10(energy + 1e-12)


def clipped_share(wav: np.ndarray) -> float:
    """Share of samples within 0.1% of the peak (at the recording's own rate: resampling would
    round the flat tops off). A peak below 0.1 is a quiet recording, not a clipped one."""
    peak = float(np.abs(wav).max())
    if peak < 0.1:
        return 0.0
    return float((np.abs(wav) >= 0.999 * peak).mean())


def steady_share(wav: np.ndarray, levels_db: np.ndarray, loud_db: float) -> float:
    """Share of sounding 10-ms frames (within 25 dB of the loud level) whose pitch stays within
    1% over the 100 ms around them."""
    import librosa

    f0 = librosa.yin(wav, fmin=60, fmax=1000, sr=RATE, frame_length=1024, hop_length=HOP)
    power = np.convolve(wav.astype(np.float64) ** 2, np.ones(400) / 400, "same")[::HOP]
    n = min(len(f0), len(power))
    sounding = 10 * np.log10(power[:n] + 1e-12) > loud_db - 25
    if n < 11 or not sounding.any():
        return 0.0
    windows = np.lib.stride_tricks.sliding_window_view(np.log(f0[:n]), 11)  # [n - 10, 11]: ±50 ms
    held = np.zeros(n, bool)
    held[5 : n - 5] = np.ptp(windows, axis=1) < 0.01
    return float((held & sounding).sum() / sounding.sum())


def split_similarity(parts: np.ndarray) -> float | None:
    """Lowest cosine similarity between the mean of parts [:k] and of parts [k:] over the
    splits that leave two parts on each side (one, for prompts of three or four parts)."""
    if len(parts) < 2:
        return None
    unit = parts / np.linalg.norm(parts, axis=1, keepdims=True)
    least = 2 if len(unit) >= 5 else 1
    sims = []
    for k in range(least, len(unit) - least + 1):
        a, b = unit[:k].mean(axis=0), unit[k:].mean(axis=0)
        sims.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))
    return min(sims)


def measure_prompt(wav: np.ndarray, sample_rate: int, encoder=None) -> tuple[PromptMeasures, np.ndarray]:
    """(the measures, the prompt's speaker embedding [256]) of a mono float32 prompt.

    encoder: a narrate.voices.SpeakerEncoder (made here if not given; its first use loads
    resemblyzer's network). Raises VoiceError if the prompt has too little speech to use.
    """
    import librosa

    from narrate.voices import SpeakerEncoder

    wav = np.asarray(wav, np.float32)
    clipped = clipped_share(wav)
    at_rate = wav if sample_rate == RATE else librosa.resample(wav, orig_sr=sample_rate, target_sr=RATE)
    levels = frame_levels(at_rate)
    loud = float(np.percentile(levels, 95))
    silent = float((levels < loud - 30).mean())
    snr = loud - float(np.percentile(levels, 5))
    steady = steady_share(at_rate, levels, loud)
    try:
        embedding, parts, speech = (encoder or SpeakerEncoder()).embed_parts(at_rate, RATE)
    except VoiceError:  # resemblyzer's voice activity detection kept (almost) nothing
        speech = 0.0
    if speech < MIN_SPEECH_SECONDS:
        raise VoiceError(f"has only {speech:.1f} s of speech (give {MIN_SPEECH_SECONDS:.0f} s at least, "
                         "better 5-20 s of one person speaking)")
    clean = steady < STEADY_SHARE and snr >= SNR_DB
    similarity = split_similarity(parts) if clean else None
    measures = PromptMeasures(len(wav) / sample_rate, speech, clipped, silent, snr, steady, similarity)
    return measures, embedding


def check_prompt(path: Path, encoder=None) -> tuple[PromptMeasures, np.ndarray, np.ndarray, int]:
    """Read and measure a prompt file -> (measures, embedding [256], mono float32 audio, its
    sample rate). VoiceError (one line naming the file) if it cannot be used."""
    from narrate.voices import read_prompt

    wav, sample_rate = read_prompt(path)
    try:
        measures, embedding = measure_prompt(wav, sample_rate, encoder)
    except VoiceError as e:
        raise VoiceError(f"voice prompt '{path}' {e}") from None
    return measures, embedding, wav, sample_rate


def warning_line(shown: str, problems: list[str]) -> str:
    """One line naming the prompt's problems."""
    return (f"voice prompt '{shown}' is {'; '.join(problems)}: the voice may not come out like it "
            "(best: 5-20 s of one person speaking, in a quiet room)")
