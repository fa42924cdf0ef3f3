"""--speed beyond the model's trained rates: WSOLA keeps the pitch and scales the length, the
narrator scales each sentence of what the model says at its nearest rate, and --speed outside
0.5-2.0 is a one-line usage error."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from conftest import cli_env
from narrate.audio.stretch import SPEEDS, wsola
from narrate.runtime.narrator import split_speed

SR = 24000


def voiced(seconds: float, pitch: float = 180.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.5 * np.sin(2 * np.pi * pitch * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def peak_frequency(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spectrum)) * SR / x.size


@pytest.mark.parametrize("tempo", [0.5, 0.7, 1.4, 2.0])
def test_wsola_scales_length_and_keeps_pitch(tempo):
    x = voiced(2.0)
    y = wsola(x, tempo, SR)
    assert y.size == round(x.size / tempo)
    assert peak_frequency(y) == pytest.approx(180.0, abs=1.0)  # resampling would give 180 x tempo
    # Windows lined up with the waveform: the level stays (misaligned overlap-add cancels).
    middle = slice(y.size // 4, 3 * y.size // 4)
    assert np.sqrt(np.mean(y[middle] ** 2)) == pytest.approx(np.sqrt(np.mean(x ** 2)), rel=0.1)


def test_wsola_at_tempo_one_is_the_input():
    x = voiced(0.5)
    assert np.array_equal(wsola(x, 1.0, SR), x)


def test_speed_is_split_between_the_model_and_time_scaling():
    assert split_speed(1.1, (0.83, 1.18)) == (1.1, 1.0)
    model, tempo = split_speed(2.0, (0.83, 1.18))
    assert model == 1.18 and model * tempo == pytest.approx(2.0)
    model, tempo = split_speed(0.5, (0.83, 1.18))
    assert model == 0.83 and model * tempo == pytest.approx(0.5)


@pytest.fixture(scope="module")
def narrators(tiny_model, voice_wav):
    """The tiny model trained (as its config now says) for 0.8-1.2: one narrator at 1.2, one
    at 1.6, which asks the model for 1.2 and time-scales by 4/3."""
    import torch

    from narrate.runtime.narrator import NarrateSettings, Narrator, load_model_and_voice

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    loaded, voice = load_model_and_voice(str(tiny_model), str(voice_wav))
    loaded.config = replace(loaded.config, speed_range=(0.8, 1.2))
    made = [Narrator(loaded, voice, NarrateSettings(speed=s, seed=0, vocoder_process=False)) for s in (1.2, 1.6)]
    yield made
    for n in made:
        n.close()
    torch.set_num_threads(threads)


def sentences_of(narrator, text):
    audio, words = {}, {}
    for chunk in narrator.narrate(text):
        audio.setdefault(chunk.sentence, []).append(chunk.samples)
        words.setdefault(chunk.sentence, []).extend(chunk.words)
    return {s: np.concatenate(a) for s, a in audio.items()}, words


def test_narrator_time_scales_each_sentence_beyond_the_trained_rate(narrators):
    at_edge, faster = narrators
    assert (faster.model_speed, faster.tempo) == (1.2, pytest.approx(4 / 3))
    text = ["The first sentence is here.", "And a second one follows it."]
    plain, plain_words = sentences_of(at_edge, text)
    scaled, scaled_words = sentences_of(faster, text)
    assert sorted(scaled) == sorted(plain) == [0, 1]
    for s in plain:  # what the model said at 1.2, scaled sentence by sentence
        assert np.array_equal(scaled[s], wsola(plain[s], 4 / 3, faster.sample_rate))
    # Word times move with the audio: scaled within the sentence, from where it now starts.
    starts = {0: (0.0, 0.0), 1: (plain[0].size / SR, scaled[0].size / SR)}
    for s in plain_words:
        was, now = starts[s]
        expected = [replace(w, start=now + (w.start - was) * 0.75, end=now + (w.end - was) * 0.75)
                    for w in plain_words[s]]
        assert [(w.text, round(w.start, 6), round(w.end, 6)) for w in scaled_words[s]] == \
               [(w.text, round(w.start, 6), round(w.end, 6)) for w in expected]


@pytest.mark.parametrize("speed, bound", [("0.4", SPEEDS[0]), ("2.5", SPEEDS[1])])
def test_speed_outside_the_range_is_a_one_line_usage_error(speed, bound, tmp_path):
    book = tmp_path / "b.txt"
    book.write_text("Some words.", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "narrate", str(book), "--speed", speed],
                          capture_output=True, text=True, env=cli_env(), timeout=120)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("narrate: error: Invalid value for '--speed'"), lines[0]
    assert f"equal to {bound:g}" in lines[0], lines[0]
