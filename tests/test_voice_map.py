"""--voice-map FILE: voices by chapter (narrate.jobs.voice_map), carried by each sentence to the
narrator, which decodes it with that voice's conditioning."""

from __future__ import annotations

from pathlib import Path

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


def test_in_a_batch_a_rule_reads_the_chapters_each_document_has(tmp_path):
    from dataclasses import replace

    vmap = _map(tmp_path, "3-5 = a\nThe Storm = b; dialogue = c\n7 = d\n")
    short, long = ["One", "The Storm", "Three"], ["Prologue", "Two", "Three", "Four", "Five", "Six", "Seven"]
    with pytest.raises(InputError, match="line 1: the book has 3 chapters"):
        vmap.assign(short)  # one book: a chapter it lacks is an error
    batch = replace(vmap, batch=True)
    assert batch.assign(short) == [(None, None), ("b", "c"), ("a", None)]  # no chapter 7, 4 or 5 here
    assert batch.assign(long) == [(None, None)] * 2 + [("a", None)] * 3 + [(None, None), ("d", None)]
    batch.check_batch([short, long])
    with pytest.raises(InputError, match="line 3: no document in the batch has chapter 7 "):
        batch.check_batch([short])
    with pytest.raises(InputError, match="line 2: no document in the batch has a chapter titled 'The Storm'"):
        batch.check_batch([long])
    with pytest.raises(InputError, match="line 2: chapter 2 is already given a voice on line 1"):
        replace(_map(tmp_path, "1-2 = a\nThe Storm = b\n"), batch=True).assign(short)  # still an error
    assert batch.settings() == vmap.settings()  # (the resume record does not change with it)


def test_batch_takes_a_voice_map_and_resumes_only_with_the_same_map(tmp_path, narrate_cmd, tiny_model, voice_wav):
    """A rule no document matches stops the batch before anything is read; a batch killed in a
    mapped document resumes with the same map, and refuses that document with another."""
    import subprocess
    import sys

    from conftest import cli_env
    from narrate.audio.resume import load_record

    first = tmp_path / "first.md"
    first.write_text("## Alpha\n\nA short first document.\n", encoding="utf-8")
    two = tmp_path / "two.md"
    two.write_text("## First part\n\nThe first part has two sentences. This is the second.\n\n"
                   "## Second part\n\nThe second part is short. It ends here.\n", encoding="utf-8")
    (tmp_path / "map.txt").write_text(f"Second part = {voice_wav}\nEpilogue = joe\n", encoding="utf-8")
    out = tmp_path / "out"
    proc = narrate_cmd("batch", first, two, "-d", out, "--voice-map", tmp_path / "map.txt",
                       "--model", tmp_path / "no-model", model=False)
    assert proc.returncode == 1
    assert "map.txt' line 2: no document in the batch has a chapter titled 'Epilogue'" in error_line(proc.stderr)
    assert not out.exists()

    (tmp_path / "map.txt").write_text(f"Second part = {voice_wav}\n1 = joe\n", encoding="utf-8")
    killer = Path(__file__).with_name("kill_at_chapter.py")
    cmd = [sys.executable, str(killer), "1", "batch", str(first), str(two), "-d", str(out), "-f", "flac",
           "--voice-map", str(tmp_path / "map.txt"), "--model", str(tiny_model), "--voice", str(voice_wav)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=cli_env(), timeout=300)
    assert proc.returncode == -9, proc.stderr  # killed in two.md as its second chapter began
    record = load_record(out / "two.flac")
    assert record.chapter == 1 and record.settings["voice_map"] == [
        ["Second part", str(voice_wav.resolve()), None], ["1", "joe", None]]

    (tmp_path / "other.txt").write_text(f"Second part = {voice_wav}\n", encoding="utf-8")
    wide = {**cli_env(), "COLUMNS": "400"}  # (the table's cells unwrapped)
    proc = narrate_cmd("batch", first, two, "-d", out, "-f", "flac", "--voice-map", tmp_path / "other.txt", env=wide)
    assert proc.returncode == 1
    table = proc.stdout.decode()
    assert "settings differ" in table and "voice_map" in table, table
    proc = narrate_cmd("batch", first, two, "-d", out, "-f", "flac", "--voice-map", tmp_path / "map.txt", env=wide)
    assert proc.returncode == 0, proc.stderr
    assert "resumed" in proc.stdout.decode() and (out / "two.flac").exists()
