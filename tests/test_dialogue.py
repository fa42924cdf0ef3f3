"""Dialogue voices (--dialogue-voice): quoted speech is cut out of the sentences
(narrate.text.dialogue) and decoded with the second voice's conditioning, in the same stream,
each voice going on from its own decoder state (narrate.engine.generate.VoiceState)."""

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


def _equal(a, b) -> bool:
    """Two decoder states (narrate.engine.model.DecoderState), to the last bit."""
    import torch

    return torch.equal(a.prev_feats, b.prev_feats) and all(
        torch.equal(x.conv, y.conv) and torch.equal(x.ssm, y.ssm) for x, y in zip(a.layers, b.layers))


def test_each_voice_goes_on_from_its_own_decoder_state(voices, monkeypatch):
    """Narration and quotes alternating: every segment starts from the decoder state its own
    voice's previous segment ended in (the dialogue voice's first from a new state), not the
    other voice's and not a new one; the frames equal, to the last bit, a reference decoded with
    the engine's lower-level calls (append, step) that keeps one decoder state per voice itself.
    A stream holds one state per voice however often they alternate."""
    import torch

    from narrate.engine.generate import Engine
    from narrate.runtime.narrator import NarrateSettings, Narrator
    from narrate.voices import conditioning

    loaded, main, other = voices
    settings = NarrateSettings(seed=3, vocoder_process=False)
    narrator = Narrator(loaded, main, settings, dialogue=other)
    sentences = [Sentence("It was late when she spoke,", INNER), Sentence('"Come here at once."', INNER, True),
                 Sentence("and he came to the door, slowly.", INNER), Sentence('"Good. Sit down."', INNER, True),
                 Sentence("He sat by the fire and said nothing.", INNER), Sentence('"Well?"', INNER, True),
                 Sentence("The fire went out.")]
    steps = []  # per decoder step: (the text it had, closed, voice, decoder before, decoder after, frames, codes)
    step = narrator.engine.step

    def watched(states):
        (s,) = states
        before = s.decoder.copy()
        (out,) = step(states)
        steps.append((s.n_tokens, s.closed, s.voice, before, s.decoder.copy(), out.feats.clone(), out.codes.clone()))
        return [out]

    monkeypatch.setattr(narrator.engine, "step", watched)
    try:
        assert len({chunk.sentence for chunk in narrator.narrate(sentences)}) == len(sentences)
    finally:
        narrator.close()
    dialogue = narrator.dialogue_cond
    assert len({id(s[2]) for s in steps}) == 2  # one state per voice

    # segments: runs of steps in one voice
    segments: list[list[int]] = []
    for i, (_, _, voice, *_) in enumerate(steps):
        if i and voice is steps[i - 1][2]:
            segments[-1].append(i)
        else:
            segments.append([i])
    quoted = [steps[seg[0]][2].cond is dialogue for seg in segments]
    assert quoted == [False, True, False, True, False, True, False]
    fresh = narrator.engine.model.init_state(1)
    for j, seg in enumerate(segments):
        start = steps[seg[0]][3]
        if j < 2:  # each voice's first: a new state (the narration's is the stream's start)
            assert _equal(start, fresh)
            continue
        own, other_voice = segments[j - 2], segments[j - 1]
        assert _equal(start, steps[own[-1]][4]), j  # where its own voice stopped ...
        assert not _equal(start, steps[other_voice[-1]][4]) and not _equal(start, fresh), j  # ... not the other's

    # the reference: the same text appended before the same steps, and the decoder state kept per voice here
    engine = Engine(loaded.model, loaded.codec.frame_rate, narrator.settings.decode(), narrator.kernel)
    state = engine.new_stream(narrator.speaker, narrator.model_speed, settings.seed, narrator.prompt)
    speaker, prompt = conditioning(loaded.model, other, getattr(loaded.codec, "spec", None))
    conds = {False: state.cond, True: engine.condition(speaker, narrator.model_speed, prompt)}
    kept = {False: state.decoder, True: engine.model.init_state(1)}
    encoded = [narrator.phonemizer.encode(s.text) for s in sentences]
    starts: list[int] = []
    speaking = False
    for n_tokens, closed, _, _, _, feats, codes in steps:
        while state.n_tokens < n_tokens:
            starts.append(state.n_tokens)
            ph = encoded[len(starts) - 1]
            engine.append(state, ph.ids, ph.words, ph.text_words)
        if closed and not state.closed:
            engine.close(state)
        k = max(i for i, s in enumerate(starts) if i == 0 or state.position >= s - 1)
        if sentences[k].dialogue != speaking:
            kept[speaking], speaking = state.decoder, sentences[k].dialogue
            state.decoder, state.cond = kept[speaking], conds[speaking]
        (out,) = engine.step([state])
        assert torch.equal(out.feats, feats) and torch.equal(out.codes, codes)
    assert state.done and len(starts) == len(sentences)


def test_the_source_filter_speaks_each_voice_at_its_own_pitch(tiny_model, voices, monkeypatch):
    from narrate.codec.pitched import PitchedVocoder
    from narrate.hub import from_pretrained
    from narrate.runtime.narrator import NarrateSettings, Narrator

    _, main, other = voices
    loaded = from_pretrained(str(tiny_model), vocoder="source-filter")
    heard: list[float] = []
    speak_at = PitchedVocoder.speak_at
    monkeypatch.setattr(PitchedVocoder, "speak_at", lambda self, pitch: (heard.append(pitch), speak_at(self, pitch))[1])
    narrator = Narrator(loaded, main, NarrateSettings(seed=0, vocoder_process=False), dialogue=other)
    sentences = [Sentence("He said,", INNER), Sentence('"Come here."', INNER, dialogue=True), Sentence("and left.")]
    assert sum(len(c.samples) for c in narrator.narrate(sentences)) > 0
    low, high = main.pitch(), other.pitch()
    assert high == pytest.approx(2 * low, rel=0.1)  # (the other prompt: an octave up)
    assert set(heard) == {low, high}  # each voice's frames at its prompt's median pitch
    assert heard[0] == low and heard[-1] == low  # narration, the quote, narration again
