"""Where sentences end in a stream: in the pause before the next one, not at its onset."""

from __future__ import annotations

import torch

from narrate.cuts import TAIL_TOKENS, SentenceCuts


def frames(*levels: float) -> torch.Tensor:
    """A step's frames [r, 8], each as loud as its level (log-mel, every band the same)."""
    return torch.tensor(levels, dtype=torch.float32).view(-1, 1).expand(-1, 8)


def test_a_sentence_ends_at_the_quietest_frame_of_its_tail():
    cuts = SentenceCuts(ends=[20, 40])
    # frames 0-2: inside the sentence, one very quiet (a stop, before the tail: not a place to end)
    assert cuts.step(frames(0.0, -9.0, 0.0), position=10, done=False, paused=False) == []
    # frames 3-5: its last phoneme and the pause (quietest: frame 5)
    assert cuts.step(frames(0.0, -3.0, -6.0), position=20 - TAIL_TOKENS, done=False, paused=False) == []
    # frames 6-8: still the pause, less quiet, then the next sentence is reached at its onset
    assert cuts.step(frames(-5.0, -2.0, -1.0), position=19, done=False, paused=False) == []
    assert cuts.step(frames(0.0, 0.0, 0.0), position=21, done=False, paused=False) == [6]
    assert (cuts.sentence, cuts.quiet) == (1, None)


def test_a_stream_that_stops_ends_its_sentences_after_the_last_frame():
    cuts = SentenceCuts(ends=[20, 25])
    cuts.step(frames(0.0, -6.0, 0.0), position=19, done=False, paused=False)
    # the position passes both ends in one step: the first in its pause, the second (no tail
    # seen of its own) after the step's frames
    assert cuts.step(frames(0.0, -1.0, 0.0), position=26, done=False, paused=False) == [2, 6]
    live = SentenceCuts(ends=[20])
    live.step(frames(0.0, -6.0, 0.0), position=19, done=False, paused=False)
    assert live.step(frames(0.0, 0.0, 0.0), position=19, done=False, paused=True) == [6]
    live.ends.append(30)
    assert live.step(frames(-8.0, 0.0, 0.0), position=29, done=True, paused=False) == [9]
