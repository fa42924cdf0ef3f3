"""Dialogue voices (--dialogue-voice): quoted speech is cut out of the sentences
(narrate.text.dialogue) and decoded with the second voice's conditioning, in the same stream."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from conftest import PROMPT_RATE, prompt_audio
from narrate.text.dialogue import dialogue_pieces
from narrate.runtime.pauses import INNER, Sentence
from narrate.jobs.pipeline import Job, make_plan
from narrate.text.segment import spoken


def test_quotes_are_cut_out_across_sentences_and_closed_by_a_paragraph():
    text = ("He said, “Come here. Now,” and then he left. “Why?” she asked.\n\n"
            "A paragraph with “a word” in it. “Open and never closed.\n\nNext paragraph.")
    got = [(s.text, s.pause, s.dialogue) for s in dialogue_pieces(spoken(text, 200, None, 0.9))]
    assert got == [
        ("He said,", INNER, False), ('"Come here.', None, True), ('Now,"', INNER, True),
        ("and then he left.", None, False), ('"Why?"', INNER, True), ("she asked.", 0.9, False),
        ("A paragraph with", INNER, False), ('"a word"', INNER, True), ("in it.", None, False),
        ('"Open and never closed.', 0.9, True), ("Next paragraph.", 0.9, False)]
    # no quotes: the sentences as they were
    plain = list(spoken("Nothing quoted here. It's all narration.", 200))
    assert list(dialogue_pieces(plain)) == plain


def test_the_plan_marks_quoted_speech_only_with_a_dialogue_voice(tmp_path):
    book = tmp_path / "b.md"
    book.write_text('# One\n\nShe said, "Hello there." He nodded.\n', encoding="utf-8")
    plain = make_plan(Job(str(book), str(tmp_path / "a.wav")), stdout_is_tty=True)
    assert not any(s.dialogue for s in plain.chapters[0][1])
    plan = make_plan(Job(str(book), str(tmp_path / "b.wav"), dialogue=True), stdout_is_tty=True)
    assert [(s.text, s.dialogue) for s in plan.chapters[0][1]] == [
        ("One.", False), ("She said,", False), ('"Hello there."', True), ("He nodded.", False)]


@pytest.fixture(scope="module")
def voices(tiny_model, voice_wav, tmp_path_factory):
    import torch

    from narrate.hub import from_pretrained
    from narrate.voices import load_voice

    other = tmp_path_factory.mktemp("other") / "higher.wav"
    sf.write(str(other), prompt_audio(5.0)[::2], PROMPT_RATE)  # an octave up
    torch.set_num_threads(1)
    return from_pretrained(str(tiny_model)), load_voice(str(voice_wav), "joe"), load_voice(str(other), "joe")


def test_quoted_sentences_are_decoded_with_the_dialogue_voice(voices, monkeypatch):
    from narrate.runtime.narrator import NarrateSettings, Narrator

    loaded, main, other = voices
    settings = NarrateSettings(seed=0, vocoder_process=False)
    narrator = Narrator(loaded, main, settings, dialogue=other)
    sentences = [Sentence("She said,", INNER), Sentence('"Come here at once."', INNER, True),
                 Sentence("and he came, slowly."), Sentence('"Good."', None, True)]
    steps: list[tuple[object, int]] = []  # (conditioning, text position) at each decoder step
    step = narrator.engine.step

    def watched(states):
        steps.extend((s.cond, s.position) for s in states)
        return step(states)

    monkeypatch.setattr(narrator.engine, "step", watched)
    audio = {}
    for chunk in narrator.narrate(sentences):
        audio.setdefault(chunk.sentence, []).append(chunk.samples)
    dialogue = narrator.dialogue_cond
    assert dialogue is not None and len(audio) == 4
    # each sentence's voice from the end token of the one before (in the pause) to its own
    starts = np.cumsum([0] + [len(narrator.phonemizer.encode(s.text).ids) for s in sentences])
    for cond, position in steps:
        k = max(i for i in range(len(sentences)) if i == 0 or position >= starts[i] - 1)
        assert (cond is dialogue) == sentences[k].dialogue, (k, position)
    assert {id(c) for c, _ in steps} - {id(dialogue)}  # the narration's own voice too
    voices_in_order = [c is dialogue for c, _ in steps]
    changes = [a for a, b in zip(voices_in_order, voices_in_order[1:]) if a != b]
    assert len(changes) == 3  # narration, quote, narration, quote

    # against the same text all in the main voice: the same until the first quote, then not
    alone = Narrator(loaded, main, settings)
    plain = {}
    for chunk in alone.narrate(sentences):
        plain.setdefault(chunk.sentence, []).append(chunk.samples)
    first, first_plain = np.concatenate(audio[0]), np.concatenate(plain[0])
    half = len(first) // 2
    assert np.array_equal(first[:half], first_plain[:half])
    quote, quote_plain = np.concatenate(audio[1]), np.concatenate(plain[1])
    n = min(len(quote), len(quote_plain))
    assert not np.array_equal(quote[:n], quote_plain[:n])
    narrator.close()
    alone.close()
