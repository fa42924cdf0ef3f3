"""The shipped voices: how one is made from a training speaker, and that those shipped differ."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from narrate.train.bundled_voices import describe, pairwise, write_voices
from narrate.train.speakers import Speaker


def test_a_bundled_voice_is_a_training_speaker_reading_the_passage(tmp_path):
    embeddings = write_voices(tmp_path, {"ruth": "joe-f-low-1"})
    wav, sr = sf.read(tmp_path / "ruth.wav", dtype="float32")
    assert sr == 22050 and wav.ndim == 1 and len(wav) > 5 * sr
    e = np.load(tmp_path / "ruth.npy")
    assert e.shape == (256,) and np.array_equal(e, embeddings["ruth"]) and abs(np.linalg.norm(e) - 1) < 1e-3
    line = (tmp_path / "ruth.txt").read_text().strip()
    assert line.startswith("US English female narrator, median pitch ") and "not in the bundled model's training" in line
    write_voices(tmp_path, {"ruth": "joe-f-low-1"}, seen=True)
    assert (tmp_path / "ruth.txt").read_text().strip().endswith("; seen in training")
    with pytest.raises(SystemExit, match="not training speakers: slt-hts"):  # a held-out voice is never bundled
        write_voices(tmp_path, {"x": "slt-hts"})


def test_descriptions_name_accent_register_and_source():
    assert describe(Speaker("awb", "awb"), 125.0).startswith("Scottish English male narrator, median pitch 125 Hz")
    assert "female" in describe(Speaker("joe-f-low-1", "joe", "f-low", 1.5, 1.1), 265.0)
    assert "unknown" in describe(Speaker("joe", "joe"), float("nan"))
    e = {"a": np.array([1.0, 0.0]), "b": np.array([0.6, 0.8])}
    assert pairwise(e) == [("a", "b", pytest.approx(0.6))]
