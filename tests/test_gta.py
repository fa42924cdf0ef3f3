"""Ground-truth-aligned frames (narrate.train.gta): a model's frames for a known reading, frame
for frame beside the true ones, as the vocoder's 'gta' source pairs them."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from narrate.train.gta import GTAReader, gta_frames

TEXT = "The lamps along the river came on one by one as the evening grew cold."


@pytest.fixture(scope="module")
def reader():
    torch.set_num_threads(1)
    return GTAReader(None)  # the bundled model


def test_gta_frames_line_up_with_the_reading_and_only_look_back(reader):
    model_frames, true = reader.pair(TEXT, random.Random(0))
    assert model_frames.shape == true.shape and true.shape[1] == 80
    err = np.abs(model_frames - true).mean()
    for shift in (6, 12):  # the model's frames are nearest the true ones where they stand, not moved
        assert err < np.abs(model_frames[shift:] - true[:-shift]).mean()
        assert err < np.abs(model_frames[:-shift] - true[shift:]).mean()
    # teacher forcing looks back only: true frames changed from the middle on leave the frames before it
    from narrate.train.prepare import _synth

    _, audio, ids, durations, _ = _synth((0, TEXT, 1.0, 0.5))
    feats = reader.spec.features(audio.astype(np.float32) / 32768.0).numpy()
    speaker = reader.loaded.model.speaker_vector(torch.zeros(1, 256), torch.zeros(1))[0]
    a = gta_frames(reader.loaded, ids, durations.astype(np.int64), feats, speaker)
    changed = feats.copy()
    half = (len(feats) // 2) // 3 * 3
    changed[half:] += 1.0
    b = gta_frames(reader.loaded, ids, durations.astype(np.int64), changed, speaker)
    # (a step's later code groups are conditioned on its own true earlier groups: from `half` on)
    assert np.allclose(a[:half], b[:half], atol=1e-5) and not np.allclose(a[half:], b[half:])
    with pytest.raises(ValueError, match="durations add up to"):
        gta_frames(reader.loaded, ids, durations.astype(np.int64) + 1, feats, speaker)


def test_the_gta_source_pairs_model_frames_with_the_true_ones():
    from narrate.train.vocoder_data import Sources

    sources = Sources(None)
    mel, target = sources.pair("gta", TEXT, random.Random(1))
    assert mel.shape == target.shape and not torch.allclose(mel, target)
    joe, same = sources.pair("joe", TEXT, random.Random(1))
    assert joe is same  # other sources: the teacher vocodes the frames the vocoder gets
