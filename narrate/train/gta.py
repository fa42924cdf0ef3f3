"""Ground-truth-aligned (GTA) frames: what a narrate model predicts for a reading whose timing
and frames are known, frame for frame beside the true ones.

The model decodes teacher-forced (its previous frames are the true ones, its text position
follows the reading's per-token durations, as in training) and emits the expected code vectors,
the frames it hands its vocoder at run time (``emit="mean"``). A vocoder trained from these to
the true frames' waveform learns to give back what the model's averaging blurs (harmonics, hence
pitch and timbre), as Tacotron 2's WaveNet was trained on GTA mels.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch


@torch.no_grad()
def gta_frames(loaded, ids: np.ndarray, durations: np.ndarray, feats: np.ndarray, speaker: torch.Tensor,
               length_scale: float = 1.0, prompt: np.ndarray | torch.Tensor | None = None) -> np.ndarray:
    """loaded: a model (narrate.hub.from_pretrained); ids [N] token ids; durations [N] frames per
    token (sum = len(feats)); feats [T, F] the reading's true log-mel; speaker: the voice's
    speaker vector (``NarrateModel.speaker_vector``); prompt [Tp, F] its prompt's frames or None
    -> the model's frames [T, F] for the same reading, aligned to ``feats``."""
    from narrate.train.dataset import Example, collate
    from narrate.train.loop import memory_of, prev_features

    model, codec = loaded.model.eval(), loaded.codec
    r = model.cfg.reduction
    T = len(feats)
    if int(np.sum(durations)) != T or len(durations) != len(ids):
        raise ValueError(f"durations add up to {int(np.sum(durations))} frames over {len(durations)} tokens; "
                         f"the reading has {T} frames and {len(ids)} tokens")
    pos = np.repeat(np.arange(len(ids)), durations)
    codes = codec.quantize(torch.from_numpy(np.asarray(feats, np.float32))).numpy().T  # [T, K]
    pad = (-T) % r
    if pad:  # as in training: the last frame repeated to fill the last step
        pos, codes = np.concatenate([pos, np.repeat(pos[-1:], pad)]), np.concatenate([codes, np.repeat(codes[-1:], pad, 0)])
        feats = np.concatenate([feats, np.repeat(feats[-1:], pad, 0)])
    S = len(pos) // r
    example = Example([np.asarray(ids, np.int64)], pos[::r], np.zeros(S, np.int64), codes.reshape(S, r, -1).astype(np.int64),
                      np.asarray(feats, np.float32).reshape(S, r, -1), np.zeros(model.cfg.speaker_dim, np.float32),
                      math.log(length_scale), None if prompt is None else np.asarray(prompt, np.float32))
    batch = collate([example])
    prompted = model.cfg.prompt_tokens or model.cfg.voice_stats
    hidden, _ = model(memory_of(model, batch), batch.mem_len, batch.positions, prev_features(model, batch.codes),
                      speaker.float().view(1, -1), batch.rate, prompt=batch.prompt if prompted else None,
                      prompt_mask=batch.prompt_mask)
    logits = model.codebook_heads.teacher_forced(hidden, batch.codes, model.codebooks)
    return model.expected_features(logits)[0].flatten(0, 1)[:T].numpy()  # [S, r, F] -> [T, F]


class GTAReader:
    """A model's GTA frames of a sentence read by piper's joe voice or by one of the corpus's
    WORLD pseudo-speakers of joe (joe's timing): (model frames, true frames). The voice's
    embedding, pitch and prompt come from the reading itself (at run time the prompt is another
    recording of the speaker: close enough for the frames' blur, which is what this is for)."""

    def __init__(self, model: str | None):
        from narrate.codec.mel import MelConfig, MelSpec
        from narrate.hub import from_pretrained

        self.loaded = from_pretrained(model)
        self.spec = MelSpec(MelConfig())

    def pair(self, text: str, rng: random.Random, speaker=None) -> tuple[np.ndarray, np.ndarray]:
        from narrate.train.prepare import _synth
        from narrate.train.speakers import SAMPLE_RATE, render
        from narrate.voices import SpeakerEncoder, Voice, conditioning

        length_scale = rng.uniform(0.85, 1.15)
        _, audio, ids, durations, _ = _synth((0, text, length_scale, rng.uniform(0.4, 0.8)))
        wav = audio.astype(np.float32) / 32768.0 if speaker is None else render(speaker, text, audio)
        feats = self.spec.features(wav).numpy()
        voice = Voice("x", None, SpeakerEncoder().embed(wav, SAMPLE_RATE), wav, SAMPLE_RATE)
        vector, prompt = conditioning(self.loaded.model, voice, self.spec)  # as the narrator conditions it
        return gta_frames(self.loaded, ids, durations.astype(np.int64), feats, vector, length_scale, prompt), feats
