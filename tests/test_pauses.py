"""Pauses in the frame domain (narrate.runtime.pauses) and in the text (paragraphs, [pause Ns])."""

from __future__ import annotations

import numpy as np
import pytest

from narrate.errors import InputError
from narrate.runtime.pauses import INNER, KEEP_LEAD, SILENT, PauseShaper, Sentence
from narrate.text.segment import prepare_sentence, spoken

RATE = 100.0  # frames per second: a frame count is a number of hundredths of a second
LOUD, QUIET = 1.0, 1.0 - SILENT - 2.0


def stream(*runs: tuple[float, int]) -> tuple[np.ndarray, list[float]]:
    """Frames [n, 2] from (loudness, count) runs; each frame's first value is its number."""
    loud = [level for level, count in runs for _ in range(count)]
    frames = np.stack([np.arange(len(loud), dtype=np.float32), np.asarray(loud, np.float32)], axis=1)
    return frames, loud


def shape(pauses: list[float | None], runs, ends: list[tuple[int, int]], step: int = 0,
          sentence_pause: float = 0.4) -> tuple[np.ndarray, list[int]]:
    """Push the frames in steps of ``step`` (0: all at once), each end with the step that reaches
    it, holding nothing; then flush."""
    shaper = PauseShaper(RATE, sentence_pause)
    for p in pauses:
        shaper.add_sentence(p)
    frames, loud = stream(*runs)
    step = step or len(loud)
    out, out_ends = [], []
    for i in range(0, len(loud), step):
        j = min(i + step, len(loud))
        f, e = shaper.push(frames[i:j], loud[i:j], [x for x in ends if i < x[0] <= j], j, flush=j == len(loud))
        out.append(f)
        out_ends += e
    return np.concatenate(out), out_ends


def test_a_long_pause_inside_a_sentence_is_shortened_in_its_middle():
    out, ends = shape([None], [(LOUD, 10), (QUIET, 150), (LOUD, 10)], [])
    inner = round(INNER * RATE)
    assert len(out) == 20 + inner and ends == []
    kept = out[:, 0].astype(int).tolist()
    # the speech, the pause's first frames, its last KEEP_LEAD (the lead into the next sound), the speech
    assert kept == [*range(10 + inner - KEEP_LEAD), *range(160 - KEEP_LEAD, 170)]


def test_a_short_pause_inside_a_sentence_is_left_alone():
    out, ends = shape([None], [(LOUD, 10), (QUIET, 20), (LOUD, 10)], [])
    assert out[:, 0].astype(int).tolist() == list(range(40))


def test_a_sentence_pause_is_shortened_before_its_end_and_the_end_moves_with_it():
    # the end (frame count 157) is 3 frames before the next sentence's first sound
    out, ends = shape([None, None], [(LOUD, 10), (QUIET, 150), (LOUD, 10)], [(157, 0)])
    assert len(out) == 20 + 40
    kept = out[:, 0].astype(int).tolist()
    assert kept[:47] == list(range(47)) and kept[47:] == list(range(157, 170))
    assert ends == [47]  # the frames after the end, as they were: the next sentence's lead
    assert out[ends[0], 0] == 157


def test_paragraph_and_explicit_pauses_are_exactly_as_long_as_asked():
    for pause, natural in [(0.9, 30), (0.9, 200), (2.5, 10)]:
        out, ends = shape([pause, None], [(LOUD, 10), (QUIET, natural), (LOUD, 10)], [(10 + natural - 3, 0)])
        assert len(out) == 20 + round(pause * RATE)
        assert (out[10:-10, 1] == QUIET).all()  # the added frames are the pause's quietest
        assert ends == [len(out) - 13] and out[ends[0], 0] == 10 + natural - 3


def test_a_sentence_run_into_the_next_gets_half_the_sentence_pause():
    out, ends = shape([None, None], [(QUIET, 5), (LOUD, 20), (LOUD, 20)], [(25, 0)])
    added = round(0.2 * RATE)
    assert len(out) == 45 + added and ends == [25 + added]
    assert (out[25:25 + added, 1] == QUIET).all() and out[25 + added, 0] == 25


def test_the_pause_after_the_last_sentence_is_made_when_the_stream_stops():
    out, ends = shape([2.0], [(LOUD, 10), (QUIET, 30)], [(40, 0)])
    assert len(out) == 10 + 200 and ends == [210]


def test_frames_in_steps_or_at_once_give_the_same_frames_and_ends():
    runs = [(LOUD, 7), (QUIET, 90), (LOUD, 12), (QUIET, 40), (LOUD, 3), (QUIET, 300), (LOUD, 9), (QUIET, 12)]
    ends = [(94, 0), (145, 1), (409, 2), (465, 3)]
    pauses = [None, 0.9, 3.0, None]
    whole = shape(pauses, runs, ends)
    for step in (1, 3, 7):
        parts = shape(pauses, runs, ends, step=step)
        assert np.array_equal(parts[0], whole[0]) and parts[1] == whole[1]


def test_frames_held_for_a_sentence_tail_come_out_as_if_its_end_were_known():
    runs = [(LOUD, 10), (QUIET, 120), (LOUD, 10)]
    whole = shape([None, None], runs, [(127, 0)])
    shaper = PauseShaper(RATE, 0.4)
    shaper.add_sentence(None)
    shaper.add_sentence(None)
    frames, loud = stream(*runs)
    held = shaper.push(frames[:135], loud[:135], [], hold_from=5, flush=False)  # a tail from frame 5
    assert len(held[0]) == 5 and held[1] == []
    rest = shaper.push(frames[135:], loud[135:], [(127, 0)], hold_from=140, flush=True)
    assert np.array_equal(np.concatenate([held[0], rest[0]]), whole[0]) and rest[1] == whole[1]


def test_a_run_longer_than_held_is_still_shaped_to_its_length():
    out, ends = shape([5.0, None], [(LOUD, 3), (QUIET, 2000), (LOUD, 3)], [(2000, 0)])
    assert len(out) == 6 + 500 and ends == [len(out) - 3 - 3]


def test_text_pauses_paragraphs_and_marks():
    text = ("One. Two, and [pause 2s] three.\n\n"
            "[pause 300ms] Four. Five.\n[pause] Six.\n\n[pause 3s]\n\nSeven.")
    assert list(spoken(text, paragraph_pause=0.9)) == [
        Sentence("One."), Sentence("Two, and", 2.0), Sentence("three.", 0.9), Sentence("Four."),
        Sentence("Five.", 0.9), Sentence("Six.", 3.0), Sentence("Seven.", 0.9)]
    assert [s.pause for s in spoken("One. Two.\n\nThree.")] == [None, None, None]


def test_live_input_does_not_read_pause_marks_aloud():
    assert prepare_sentence("Wait [pause 2s] here.") == ["Wait here."]


def test_a_pause_mark_beyond_a_minute_is_refused():
    with pytest.raises(InputError, match="too long a pause"):
        list(spoken("Wait [pause 90s] here."))


def test_silence_is_measured_against_the_stream_s_loudest_frame():
    loud = shape([None], [(LOUD, 10), (QUIET, 150), (LOUD, 10)], [])
    quieter = shape([None], [(LOUD - 5, 10), (QUIET - 5, 150), (LOUD - 5, 10)], [])
    assert np.array_equal(loud[0][:, 0], quieter[0][:, 0]) and len(loud[0]) < 170
    # a voice that is never SILENT under its loudest has no pause to shorten
    flat = shape([None], [(LOUD, 10), (LOUD - SILENT + 0.5, 150), (LOUD, 10)], [])
    assert len(flat[0]) == 170


def test_every_frame_s_place_in_the_shaped_output_is_known_once_it_is_decided():
    """position(k) says where input frame k went: a sounding frame is found there, a dropped
    silent one at the cut; undecided while held; monotone, as word timings need."""
    runs = [(LOUD, 7), (QUIET, 90), (LOUD, 12), (QUIET, 40), (LOUD, 3), (QUIET, 300), (LOUD, 9), (QUIET, 12)]
    ends = [(94, 0), (145, 1), (409, 2), (465, 3)]
    shaper = PauseShaper(RATE, 0.4)
    for p in [None, 0.9, 3.0, None]:
        shaper.add_sentence(p)
    frames, loud = stream(*runs)
    out = [shaper.push(frames[:60], loud[:60], [], 60, flush=False)[0]]
    assert shaper.position(3) == 3 and shaper.position(30) is None  # (frame 30 is in a run still going)
    out.append(shaper.push(frames[60:], loud[60:], [x for x in ends if x[0] > 0], len(loud), flush=True)[0])
    out = np.concatenate(out)
    places = [shaper.position(k) for k in range(len(loud) + 1)]
    assert places == sorted(places) and places[-1] == len(out)
    sounding = [k for k, level in enumerate(loud) if level == LOUD]
    assert all(out[places[k], 0] == k for k in sounding)
    # The pauses asked for: the sound after the silent run (frames 109-148) in which the second
    # sentence ends comes 0.9 s after the sound before it, and after the third's (152-451) 3 s,
    # however long the model's own pauses were (0.4 s, 3 s).
    assert places[149] - places[109] == round(0.9 * RATE)
    assert places[452] - places[152] == round(3.0 * RATE)
    # where the sound before a boundary ends (a word's end, when the position leaves it in a pause)
    assert shaper.position(452, sound=True) == places[152] and shaper.position(300, sound=True) == places[152]
    assert shaper.position(len(loud), sound=True) == places[461] < len(out)
    assert places[97] - places[7] == round(0.4 * RATE)  # the first sentence's 0.9 s, shortened to 0.4 s



def test_a_long_stream_holds_only_the_pauses_of_sentences_still_to_shape():
    shaper = PauseShaper(RATE, 0.4)
    frames, loud = stream((LOUD, 30), (QUIET, 60))  # each sentence: speech, then a pause its end falls in
    pushed, out_ends = 0, []
    for k in range(200):
        shaper.add_sentence(None if k % 2 else 0.9)
        pushed += len(loud)
        _, e = shaper.push(frames, loud, [(pushed - 5, k)], pushed, flush=False)
        out_ends += e
    assert len(out_ends) >= 199  # every end but the last (its run goes on) was shaped
    assert len(shaper.pauses) <= 2 and shaper.first_pause >= 198  # not one pause per sentence spoken


def test_a_sentence_pause_in_range_is_the_model_s_own_scaled_to_the_teacher_s_length():
    from narrate.runtime.pauses import SENTENCE_SCALE

    # a 30-frame run (0.3 s) with the end 3 frames before the next sound: within 0.2-0.4 s, so scaled
    out, ends = shape([None, None], [(LOUD, 10), (QUIET, 30), (LOUD, 10)], [(37, 0)])
    assert len(out) == 20 + round(30 * SENTENCE_SCALE) < 50
    # scaled below half the sentence pause, it is held at that
    out, _ = shape([None, None], [(LOUD, 10), (QUIET, 22), (LOUD, 10)], [(29, 0)])
    assert len(out) == 20 + max(20, round(22 * SENTENCE_SCALE))
    # a pause the text asks for is exactly as long, whatever the model made
    out, _ = shape([0.3, None], [(LOUD, 10), (QUIET, 36), (LOUD, 10)], [(43, 0)])
    assert len(out) == 20 + 30
