"""--voice-map FILE: voices by chapter (narrate.jobs.voice_map), carried by each sentence to the
narrator, which decodes it with that voice's conditioning."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from conftest import PROMPT_RATE, error_line, prompt_audio
from narrate.errors import InputError
from narrate.jobs.pipeline import Job, make_plan
from narrate.jobs.voice_map import VoiceMap
from narrate.runtime.pauses import Sentence

BOOK = """# The Book

## One

It was a dark night. She said, "Hello there." He nodded.

## The Storm

Rain fell on the roof. "Run!" he cried.

## Three

The end came quietly.
"""


def _map(tmp_path, text: str, name: str = "map.txt") -> VoiceMap:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return VoiceMap.load(path)


def test_rules_name_chapters_by_number_or_title_and_find_recordings_beside_the_map(tmp_path, monkeypatch):
    (tmp_path / "anna.wav").write_bytes(b"")
    vmap = _map(tmp_path, "# who reads what\n1, 3- = joe   # the narrator\n\n"
                          "  the   STORM = anna.wav ; dialogue = joe-deep\n")
    monkeypatch.chdir("/")  # the recording is found beside the map, not in the working folder
    vmap = VoiceMap.load(tmp_path / "map.txt")
    anna = str((tmp_path / "anna.wav").resolve())
    assert vmap.voices() == ["joe", anna, "joe-deep"]
    assert vmap.assign(["Opening", "The Storm", "Three", "Four"]) == [
        ("joe", None), (anna, "joe-deep"), ("joe", None), ("joe", None)]
    assert vmap.settings() == [["1, 3-", "joe", None], ["the STORM", anna, "joe-deep"]]


@pytest.mark.parametrize("text, message", [
    ("1 joe\n", "line 1: write 'CHAPTERS = VOICE'"),
    ("= joe\n", "line 1: write 'CHAPTERS = VOICE'"),
    ("\n2 =  \n", "line 2: no voice after '='"),
    ("1 = joe; speaker = anna\n", "line 1: after ';' write 'dialogue = VOICE'"),
    ("# only a comment\n", "has no rules"),
])
def test_malformed_lines_are_named(tmp_path, text, message):
    with pytest.raises(InputError, match="voice map '.*map.txt' " + message.replace("(", r"\(")):
        _map(tmp_path, text)


@pytest.mark.parametrize("text, message", [
    ("1-2 = joe\n2 = anna\n", "line 2: chapter 2 is already given a voice on line 1"),
    ("Epilogue = joe\n", "line 1: the book has no chapter titled 'Epilogue'"),
    ("2-5 = joe\n", "line 1: the book has 3 chapters"),
    ("0 = joe\n", "line 1: '0' is not a range of chapters"),
])
def test_chapters_the_book_lacks_or_named_twice_are_errors(tmp_path, text, message):
    vmap = _map(tmp_path, text)
    with pytest.raises(InputError, match=message):
        vmap.assign(["One", "Two", "Three"])


def test_the_plan_gives_each_sentence_its_chapters_voice(tmp_path):
    book = tmp_path / "b.md"
    book.write_text(BOOK, encoding="utf-8")
    vmap = _map(tmp_path, "1 = a\nThe Storm = b; dialogue = c\n")
    plan = make_plan(Job(str(book), str(tmp_path / "o.wav"), voice_map=vmap), stdout_is_tty=True)
    got = [[(s.text, s.voice) for s in sents] for _, sents in plan.chapters]
    assert got == [
        # no dialogue voice for chapter 1: its quotes are not cut out, all of it is a's
        [("One.", "a"), ("It was a dark night.", "a"), ('She said, "Hello there."', "a"), ("He nodded.", "a")],
        [("The Storm.", "b"), ("Rain fell on the roof.", "b"), ('"Run!"', "c"), ("he cried.", "b")],
        [("Three.", None), ("The end came quietly.", None)],  # not in the map: --voice
    ]
    # with --dialogue-voice as well: its quotes are the dialogue voice's (voice None, dialogue True),
    # except where the map names a dialogue voice of its own
    plan = make_plan(Job(str(book), str(tmp_path / "p.wav"), voice_map=vmap, dialogue=True), stdout_is_tty=True)
    one = [(s.text, s.voice, s.dialogue) for s in plan.chapters[0][1]]
    assert one[2:4] == [("She said,", "a", False), ('"Hello there."', None, True)]
    assert [(s.voice, s.dialogue) for s in plan.chapters[1][1]][2] == ("c", True)
    # the last sentence of a chapter keeps its voice when given the chapter pause
    assert plan.chapters[1][1][-1].voice == "b" and plan.chapters[1][1][-1].pause is not None


def test_a_quote_ending_a_chapter_stays_quoted(tmp_path):
    book = tmp_path / "b.md"
    book.write_text('## One\n\nHe said, "Go."\n\n## Two\n\nNext.\n', encoding="utf-8")
    plan = make_plan(Job(str(book), str(tmp_path / "o.wav"), dialogue=True), stdout_is_tty=True)
    last = plan.chapters[0][1][-1]
    assert (last.text, last.dialogue) == ('"Go."', True) and last.pause is not None


@pytest.fixture(scope="module")
def two_voices(tiny_model, voice_wav, tmp_path_factory):
    import torch

    from narrate.hub import from_pretrained
    from narrate.voices import load_voice

    other = tmp_path_factory.mktemp("other") / "higher.wav"
    sf.write(str(other), prompt_audio(5.0)[::2], PROMPT_RATE)  # an octave up
    torch.set_num_threads(1)
    return from_pretrained(str(tiny_model)), load_voice(str(voice_wav), "joe"), load_voice(str(other), "joe"), str(other)


def _audio(chunks) -> dict[int, np.ndarray]:
    parts: dict[int, list] = {}
    for s, chunk in chunks:
        parts.setdefault(s, []).append(chunk.samples)
    return {s: np.concatenate(p) for s, p in parts.items()}


@pytest.mark.parametrize("processes", [1, 2])
def test_a_mapped_chapter_sounds_as_if_its_voice_were_the_narrators(two_voices, processes):
    """Chapter 0 names the other voice in every sentence: its samples equal a narrator whose own
    voice that is, to the last bit; chapter 1 names none and equals the main voice's narrator.
    With 2 processes the forked decoders must hold the mapped voices too."""
    from narrate.runtime.narrator import NarrateSettings, Narrator

    loaded, main, other, key = two_voices
    text = ["The first sentence is here.", "And a second one follows it."]
    settings = NarrateSettings(seed=0, vocoder_process=False, decoder_processes=processes)
    mapped = Narrator(loaded, main, settings, voices={key: other})
    try:
        got = _audio(mapped.narrate_many([[Sentence(t, voice=key) for t in text], [Sentence(t) for t in text]]))
    finally:
        mapped.close()
    as_other = Narrator(loaded, other, settings)
    as_main = Narrator(loaded, main, settings)
    try:
        want_other = _audio(as_other.narrate_many([[Sentence(t) for t in text], [Sentence(t) for t in text]]))
        want_main = _audio(as_main.narrate_many([[Sentence(t) for t in text], [Sentence(t) for t in text]]))
    finally:
        as_other.close()
        as_main.close()
    assert np.array_equal(got[0], want_other[0])
    assert np.array_equal(got[1], want_main[1])
    n = min(len(want_main[0]), len(want_other[0]))
    assert not np.array_equal(want_main[0][:n], want_other[0][:n])  # the voices do differ


def test_the_cli_says_what_is_wrong_with_a_map_before_loading_the_model(narrate_cmd, tmp_path):
    book = tmp_path / "b.md"
    book.write_text(BOOK, encoding="utf-8")
    (tmp_path / "m.txt").write_text("1 = nobody-at-all\n", encoding="utf-8")
    # a model that cannot load: the map's error must come first
    proc = narrate_cmd(book, "--voice-map", tmp_path / "m.txt", "-o", tmp_path / "o.wav",
                       "--model", tmp_path / "no-model", model=False)
    assert proc.returncode == 1
    assert "line 1: no voice is named 'nobody-at-all'" in error_line(proc.stderr)
    (tmp_path / "m.txt").write_text("The Storm = joe\nthe storm = joe-deep\n", encoding="utf-8")
    proc = narrate_cmd(book, "--voice-map", tmp_path / "m.txt", "-o", tmp_path / "o.wav")
    assert proc.returncode == 1
    assert "line 2: chapter 2 is already given a voice on line 1" in error_line(proc.stderr)
    assert not (tmp_path / "o.wav").exists()
    proc = narrate_cmd("-", "--voice-map", tmp_path / "m.txt", "-o", tmp_path / "o.wav", input_bytes=b"Hi.")
    assert proc.returncode == 1 and "--voice-map needs an input file" in error_line(proc.stderr)


def test_narrate_chapters_shows_who_reads_each(narrate_cmd, tmp_path):
    book = tmp_path / "b.md"
    book.write_text(BOOK, encoding="utf-8")
    (tmp_path / "m.txt").write_text("1 = joe\n2 = joe-deep; dialogue = joe-high\n", encoding="utf-8")
    proc = narrate_cmd("chapters", book, "--voice-map", tmp_path / "m.txt", model=False, voice=False,
                       env={**__import__("conftest").cli_env(), "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.decode().splitlines() if "│" in line]
    assert "joe " in rows[0] and "One" in rows[0]
    assert "joe-deep (dialogue: joe-high)" in rows[1]
    assert "--voice" in rows[2] and "Three" in rows[2]
