"""Where sentences end in a stream: in the pause before the next one, not at its onset."""

from __future__ import annotations

import torch

from narrate.runtime.cuts import LEAD_FRAMES, TAIL_TOKENS, SentenceCuts


def frames(*levels: float) -> torch.Tensor:
    """A step's frames [r, 8], each as loud as its level (log-mel, every band the same)."""
    return torch.tensor(levels, dtype=torch.float32).view(-1, 1).expand(-1, 8)


def test_a_sentence_ends_in_the_middle_of_the_pause_in_its_tail():
    cuts = SentenceCuts(ends=[20, 40])
    # frames 0-2: inside the sentence, one very quiet (a stop, before the tail: not a place to end)
    assert cuts.step(frames(0.0, -20.0, 0.0), position=10, done=False, paused=False) == []
    # frames 3-5: its last phoneme dies away; 5 is the quietest frame, the pause's first
    assert cuts.step(frames(0.0, -3.0, -9.0), position=20 - TAIL_TOKENS, done=False, paused=False) == []
    # frames 6-11: the pause goes on (within 10 dB of its quietest), a short sound (10), the pause
    assert cuts.step(frames(-8.5, -8.6, -8.4), position=19, done=False, paused=False) == []
    assert cuts.step(frames(-8.7, -1.0, -8.9), position=19, done=False, paused=False) == []
    # frames 12-14: the next sentence is reached at its onset: the pause's longest run, frames
    # 5-9, too short to keep LEAD_FRAMES of it for the next sentence, ends this one at its middle
    # (the frame count 8: frames 0-7 are this sentence's)
    assert cuts.step(frames(0.0, 0.0, 0.0), position=21, done=False, paused=False) == [8]
    assert (cuts.sentence, cuts.tail) == (1, [])


def test_the_next_sentence_keeps_the_end_of_a_long_pause():
    cuts = SentenceCuts(ends=[20])
    for levels in [(0.0, -9.0, -9.0), (-9.0, -9.0, -8.0), (-9.0, -9.0, -9.0), (-9.0, -9.0, -9.0)]:
        assert cuts.step(frames(*levels), position=19, done=False, paused=False) == []
    assert cuts.step(frames(0.0, 0.0, 0.0), position=21, done=False, paused=False) == [12 - LEAD_FRAMES]


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


def test_the_sentences_ended_are_forgotten():
    cuts = SentenceCuts()
    speech, pause = torch.zeros(4, 8), torch.full((4, 8), -20.0)
    for k in range(100):
        cuts.ends.append(10 * (k + 1))
        for position in range(10 * k, 10 * (k + 1) + 1, 5):
            cuts.step(speech if position % 10 else pause, position, done=False, paused=False)
    assert cuts.sentence == 100 and len(cuts.ends) == 0  # no record of a sentence it is done with
