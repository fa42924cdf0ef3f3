"""Time-scaling with the pitch kept (WSOLA), for speaking rates beyond what a model was trained for.

``wsola`` is the whole algorithm on one array. ``SentenceStretch`` applies it to a stream of
AudioChunk pieces one sentence at a time: a sentence ends in a pause, so scaling sentences
apart leaves no seam, a resumed run (which starts at a sentence) scales exactly as a clean one,
and the words' times move with their audio.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # (the command line imports SPEEDS at start: no torch for it)
    from narrate.engine.generate import WordTiming

SPEEDS = (0.5, 2.0)  # the --speed range: the model's trained range, then time-scaling beyond it
FRAME_SECONDS = 0.03  # analysis window: a few pitch periods of speech
SEEK_SECONDS = 0.01   # how far a window may move to line up with the waveform (> one period at 100 Hz)


def wsola(x: np.ndarray, tempo: float, sample_rate: int) -> np.ndarray:
    """``x`` (mono float32) played ``tempo`` times as fast, pitch unchanged; about len(x)/tempo long.

    Waveform-similarity overlap-add (Verhelst & Roelands 1993): Hann windows of FRAME_SECONDS are
    laid down every half window; the k-th is read near k * hop * tempo in the input, moved by up
    to SEEK_SECONDS to where it best continues the previous window (cross-correlation), so the
    periods line up and nothing is pitched up or down.
    """
    x = np.asarray(x, np.float32)
    if tempo == 1.0 or x.size == 0:
        return x.copy()
    n = max(16, int(FRAME_SECONDS * sample_rate)) // 2 * 2
    hop, seek = n // 2, int(SEEK_SECONDS * sample_rate)
    window = np.hanning(n + 1)[:n].astype(np.float32)  # periodic: halves overlap-add to one
    out_len = int(round(x.size / tempo))
    frames = out_len // hop + 1
    # Room for the last window and its seek on both sides: the input padded with silence.
    padded = np.concatenate([np.zeros(seek, np.float32), x, np.zeros(n + 2 * seek + int(hop * tempo) + hop, np.float32)])
    out = np.zeros(frames * hop + n, np.float32)
    previous = seek  # where the last window was read (in padded)
    for k in range(frames):
        nominal = seek + int(round(k * hop * tempo))
        if k == 0:
            at = nominal
        else:
            natural = padded[previous + hop: previous + hop + n]  # what would follow the last window
            lo = nominal - seek
            region = padded[lo: lo + n + 2 * seek]
            # correlation of ``natural`` with every window start in [nominal - seek, nominal + seek]
            scores = np.correlate(region, natural, mode="valid")
            at = lo + int(np.argmax(scores))
        out[k * hop: k * hop + n] += window * padded[at: at + n]
        previous = at
    return out[:out_len]


class SentenceStretch:
    """One stream's audio scaled by ``tempo``, a sentence at a time (see the module docstring).

    add() takes each AudioChunk of the stream in order and returns the chunks to pass on: none
    until a sentence ends, then that sentence as one chunk with its words' times scaled.
    """

    def __init__(self, tempo: float, sample_rate: int):
        self.tempo = tempo
        self.sample_rate = sample_rate
        self._parts: list[np.ndarray] = []
        self._words: list[WordTiming] = []
        self._taken = 0   # samples of the stream received before the sentence being collected
        self._given = 0   # samples given out for them

    def add(self, chunk):
        self._parts.append(np.asarray(chunk.samples, np.float32))
        self._words.extend(chunk.words)
        if not chunk.final:
            return []
        audio = np.concatenate(self._parts) if self._parts else np.zeros(0, np.float32)
        scaled = wsola(audio, self.tempo, self.sample_rate)
        start_in, start_out = self._taken / self.sample_rate, self._given / self.sample_rate
        words = [replace(w, start=start_out + (w.start - start_in) / self.tempo,
                         end=start_out + (w.end - start_in) / self.tempo) for w in self._words]
        self._taken += audio.size
        self._given += scaled.size
        self._parts, self._words = [], []
        return [replace(chunk, samples=scaled, words=words)]
