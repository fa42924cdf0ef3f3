"""The vocoder's distillation sources (narrate.train.vocoder_data): each gives frames of a sentence."""

from __future__ import annotations

import random
import shutil

import numpy as np
import pytest

from narrate.train.vocoder_data import Sources, pitch_shift, training_texts

pytestmark = pytest.mark.skipif(not shutil.which("sox"), reason="sox not installed")


def test_pitch_shift_keeps_the_length_and_moves_the_pitch():
    rate = 22050
    t = np.arange(rate) / rate
    tone = (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    up = pitch_shift(tone, 1200)  # an octave
    assert up.dtype == np.float32 and len(up) == len(tone)
    spectrum = np.abs(np.fft.rfft(up[rate // 4: 3 * rate // 4]))
    assert abs(np.argmax(spectrum) * 2 - 400) <= 8  # 0.5 s window: bins of 2 Hz
    assert np.array_equal(pitch_shift(tone, 0), tone)


def test_joe_and_shifted_sources_give_frames_of_the_same_sentence():
    text = training_texts(20)[0]
    sources = Sources(None)
    joe = sources.frames("joe", text, random.Random("a"))
    shifted = sources.frames("shifted", text, random.Random("a"))
    assert joe.shape[1] == 80 and len(joe) > 16
    assert shifted.shape[1] == 80 and abs(len(shifted) - len(joe)) < 0.15 * len(joe)  # same sentence, same rate
    n = min(len(joe), len(shifted))
    assert not np.allclose(joe[:n].numpy(), shifted[:n].numpy(), atol=0.5)


def test_world_source_uses_training_pseudo_speakers_only_high_voices_included():
    from narrate.train.speakers import HELDOUT_FAMILY, HELDOUT_REAL
    from narrate.train.vocoder_data import world_speakers

    pool = world_speakers()
    assert pool and all(s.transformed for s in pool)
    assert not any(s.family == HELDOUT_FAMILY or s.base in HELDOUT_REAL for s in pool)
    assert any(s.family == "f-high" and s.f0 >= 1.75 for s in pool)  # ~300 Hz voices are in it


def test_world_source_gives_frames_of_the_sentence_in_another_voice():
    text = training_texts(20)[0]
    sources = Sources(None)
    joe = sources.frames("joe", text, random.Random("a"))
    world = sources.frames("world", text, random.Random("a"))  # joe's or another synthesizer's reading
    assert world.shape[1] == 80 and 0.6 * len(joe) < len(world) < 1.6 * len(joe)
    n = min(len(joe), len(world))
    assert np.abs(joe[:n].numpy() - world[:n].numpy()).mean() > 0.3
