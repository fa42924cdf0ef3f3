"""Subtitles (narrate.audio.subtitles): cues from word timings in the output's own timeline, through
pause shaping, spoken titles, chapter pauses and a resumed run."""

from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile as sf

from narrate.engine.generate import WordTiming
from narrate.errors import OutputError
from narrate.runtime.pauses import Sentence
from narrate.jobs.pipeline import Interrupted, Job, make_plan, run
from narrate.cli.progress import Progress
from narrate.audio.subtitles import MAX_CUE, Cue, SubtitleFile, format_cue, read_cues, sentence_cues


def words(*spans: tuple[float, float]) -> list[WordTiming]:
    return [WordTiming(i, "", s, e, 0) for i, (s, e) in enumerate(spans)]


def test_a_short_sentence_is_one_cue_from_its_first_word_to_its_last():
    cues = sentence_cues("One two three.", words((1.0, 1.3), (1.3, 1.5), (1.5, 2.0)), (10.9, 12.6), offset=10.0)
    assert cues == [Cue(11.0, 12.0, "One two three.")]  # (span in the file, words from the stream's start)
    cues = sentence_cues("One two three.", words((1.0, 1.3), (1.3, 1.5), (1.5, 2.0)), (11.2, 11.8), offset=10.0)
    assert cues == [Cue(11.2, 11.8, "One two three.")]  # kept inside the sentence's audio


def test_a_long_sentence_is_cut_into_phrases_timed_by_their_own_words():
    text = " ".join(f"word{i:02d}" for i in range(30))  # 30 words of 6 letters: 209 characters
    cues = sentence_cues(text, words(*[(i * 0.5, i * 0.5 + 0.4) for i in range(30)]), (0.0, 20.0))
    assert len(cues) == 3 and all(len(c.text) <= MAX_CUE for c in cues)
    assert " ".join(c.text for c in cues) == text
    assert [c.start for c in cues] == [0.0, 6.0, 12.0] and cues[-1].end == pytest.approx(14.9)
    # a phrase none of whose words was timed joins the one before
    untimed = [w for w in words(*[(i * 0.5, i * 0.5 + 0.4) for i in range(30)]) if not 12 <= w.index < 24]
    cues = sentence_cues(text, untimed, (0.0, 20.0))
    assert len(cues) == 2 and cues[0].end == pytest.approx(5.9) and cues[1].start == 12.0
    # no word timed at all: the sentence's whole span
    assert sentence_cues("Hm.", [], (3.0, 4.0)) == [Cue(3.0, 4.0, "Hm.")]


def test_a_resumed_file_keeps_the_cues_inside_the_kept_audio(tmp_path):
    path = tmp_path / "a.srt"
    first = SubtitleFile(path, "srt")
    first.add([Cue(0.0, 1.0, "One."), Cue(1.0, 2.5, "Two.")])
    first.add([Cue(2.5, 3.0, "Three, with a longer text that takes two lines on the screen.")])
    first.close()
    assert [(n, t) for n, _, _, t in read_cues(path.read_text())] == [
        (1, "One."), (2, "Two."), (3, "Three, with a longer text that takes two\nlines on the screen.")]
    with open(path, "a") as f:
        f.write("4\n00:00:03,000 --> 00:00:0")  # a cue cut short by the interruption
    with pytest.raises(OutputError, match="exists; use --force"):
        SubtitleFile(path, "srt")
    again = SubtitleFile(path, "srt", resume_at=2.5)
    again.add([Cue(2.6, 3.1, "Three again.")])
    again.close()
    assert [(n, s, e, t) for n, s, e, t in read_cues(path.read_text())] == [
        (1, 0.0, 1.0, "One."), (2, 1.0, 2.5, "Two."), (3, 2.6, 3.1, "Three again.")]
    vtt = tmp_path / "a.vtt"
    SubtitleFile(vtt, "vtt").add([Cue(3661.25, 3662.0, "Late.")])
    assert vtt.read_text().startswith("WEBVTT\n\n1\n01:01:01.250 --> 01:01:02.000\nLate.\n")


_TIMING = re.compile(r"(\d\d):(\d\d):(\d\d)\.(\d{3}) --> (\d\d):(\d\d):(\d\d)\.(\d{3})")
_TAG = re.compile(r"<(\d\d):(\d\d):(\d\d)\.(\d{3})>")


def _seconds(h, m, s, ms) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def webvtt(text: str) -> list[tuple[float, float, str, list[float]]]:
    """A small WebVTT checker for what narrate writes: the header, then blocks of an identifier,
    a timing line and text; in the text, timestamp tags after the cue's start, before its end and
    increasing, no other tag and no bare '&'. (start, end, text without tags, word times) per cue."""
    assert text.startswith("WEBVTT\n\n") and text.endswith("\n\n"), text[:40]
    cues = []
    for block in text[len("WEBVTT\n\n"):-2].split("\n\n"):
        ident, timing, *lines = block.split("\n")
        assert ident and "-->" not in ident, block
        m = _TIMING.fullmatch(timing)
        assert m and lines and all(line.strip() for line in lines), block
        start, end = _seconds(*m.groups()[:4]), _seconds(*m.groups()[4:])
        payload = "\n".join(lines)
        times = [_seconds(*t) for t in _TAG.findall(payload)]
        assert all(start < t < end for t in times) and times == sorted(set(times)), block
        plain = _TAG.sub("", payload)
        assert "<" not in plain and ">" not in plain and re.fullmatch(r"([^&]|&(amp|lt|gt);)*", plain, re.S), block
        assert start < end and (not cues or cues[-1][1] <= start), block
        cues.append((start, end, " ".join(plain.split()), times))
    return cues


def test_word_cues_time_each_word_inside_its_cue_as_webvtt_tags(tmp_path):
    """vtt-words: a tag before each word but the first, at its start; a word whose start is not
    after the previous tag and inside the cue (untimed, clamped to the cue's start, the same
    millisecond) has none and shows with the word before. Text that would read as markup is escaped."""
    text = "Tom & Jerry ran, a < b, and then " + " ".join(f"word{i:02d}" for i in range(14)) + "."
    tokens = text.split()
    timed = [WordTiming(i, "", 10.0 + 0.3 * i, 10.0 + 0.3 * i + 0.25, 0) for i in range(len(tokens))]
    timed[1] = WordTiming(1, "", 9.0, 9.1, 0)         # before the sentence's audio: clamped to the cue's start
    timed[3] = WordTiming(3, "", 10.6, 10.8, 0)       # starts with the word before it
    del timed[5]                                       # stepped over by the decoder
    cues = sentence_cues(text, timed, (9.5, 30.0))
    assert len(cues) == 2
    path = tmp_path / "a.vtt"
    file = SubtitleFile(path, "vtt-words")
    file.add(cues)
    file.close()
    parsed = webvtt(path.read_text(encoding="utf-8"))
    assert [(s, e, t) for s, e, t, _ in parsed] == [(c.start, c.end, c.text.replace("&", "&amp;").replace("<", "&lt;"))
                                                    for c in cues]
    first, second = parsed[0][3], parsed[1][3]
    # words 1 (clamped), 3 (the same start as 2) and 5 (untimed) untagged, as is each cue's first
    assert first == [round(10.0 + 0.3 * i, 3) for i in range(len(cues[0].text.split())) if i not in (0, 1, 3, 5)]
    assert len(second) == len(cues[1].text.split()) - 1
    n = len(cues[0].text.split())
    assert second == [round(10.0 + 0.3 * (n + i), 3) for i in range(1, len(cues[1].text.split()))]
    assert "\nTom &amp; <00:00:10.600>Jerry ran, <00:00:11.200>a &lt; <00:00:11.800>b," in path.read_text()
    # srt keeps the text as it is; vtt escapes it too, without tags
    assert "Tom & Jerry" in format_cue(1, cues[0], "srt") and "<" not in format_cue(1, cues[0], "vtt")


# --- with the tiny model ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def narrator(tiny_model, voice_wav):
    import torch

    from narrate.runtime.narrator import NarrateSettings, Narrator

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    n = Narrator.load(str(tiny_model), str(voice_wav), NarrateSettings(seed=0, vocoder_process=False))
    yield n
    n.close()
    torch.set_num_threads(threads)


def test_word_timings_are_in_the_shaped_audio(narrator):
    """Each word's time lies in its own sentence's audio (the samples of its chunks), also
    after pauses that shaping made far longer than the model's (the words' decoder times
    would put every later word seconds early)."""
    sentences = [Sentence("One short sentence.", 3.0), Sentence("Then another one follows it.", 2.0),
                 Sentence("And a third, to end the stream.")]
    spans, at, timed = {}, 0, []
    for chunk in narrator.narrate(sentences):
        timed += chunk.words
        first = spans.setdefault(chunk.sentence, [at, at])
        at += len(chunk.samples)
        first[1] = at
    rate = narrator.sample_rate
    assert len(spans) == 3 and spans[1][0] / rate > 3.0  # the pause is in the first sentence's audio
    assert timed and {w.sentence for w in timed} == {0, 1, 2}
    assert [w.start for w in timed] == sorted(w.start for w in timed)
    for w in timed:
        a, b = spans[w.sentence]
        assert a / rate - 0.05 <= w.start <= w.end <= b / rate + 1e-6, (w, a / rate, b / rate)
        assert 0 <= w.index < len(sentences[w.sentence].text.split())


def four_chapters(tmp_path):
    md = tmp_path / "four.md"
    md.write_text("".join(f"## Part {n}\n\nThis is part {n}. It has two sentences, the second one "
                          f"long enough to make two cues of its words on the screen, as a long "
                          f"sentence in a book does.\n\n"
                          for n in ("one", "two", "three", "four")), encoding="utf-8")
    return md


def cues_of(path):
    return read_cues(path.read_text(encoding="utf-8"))


class StopAfter:
    """The narrator, but Ctrl-C comes ``after`` chunks into its call ``call``."""

    def __init__(self, narrator, call, after):
        self.inner, self.call, self.after, self.calls = narrator, call, after, 0
        self.sample_rate = narrator.sample_rate

    def narrate(self, sentences, live=False):
        self.calls += 1
        for n, chunk in enumerate(self.inner.narrate(sentences, live)):
            if self.calls - 1 == self.call and n == self.after:
                raise KeyboardInterrupt
            yield chunk


def test_cues_of_a_book_and_of_a_resumed_run(tmp_path, narrator):
    md, out, clean = four_chapters(tmp_path), tmp_path / "four.wav", tmp_path / "clean.wav"
    plan = make_plan(Job(str(md), str(clean), subtitles="srt", settings={"seed": 0}), stdout_is_tty=True)
    run(narrator, plan, Progress(live=False))
    cues = cues_of(tmp_path / "clean.srt")
    duration = sf.info(str(clean)).duration
    # spoken titles, one cue per short sentence, two for each long one
    assert [t.replace("\n", " ") for _, _, _, t in cues[:4]] == [
        "Part one.", "This is part one.", "It has two sentences, the second one long enough to make two cues of its words on",
        "the screen, as a long sentence in a book does."]
    assert len(cues) == 4 * 4 and [n for n, *_ in cues] == list(range(1, 17))
    starts, ends = [s for _, s, _, _ in cues], [e for _, _, e, _ in cues]
    assert all(s < e for s, e in zip(starts, ends)) and all(e <= s for e, s in zip(ends, starts[1:]))
    assert ends[-1] <= duration + 0.001 and duration - ends[-1] < 1.0
    # the chapter pause (2 s) lies between a chapter's last cue and the next one's title
    assert starts[4] - ends[3] > 1.5

    # interrupted in the second chapter, then resumed: the same cues, numbered the same
    plan = make_plan(Job(str(md), str(out), subtitles="srt", settings={"seed": 0}), stdout_is_tty=True)
    with pytest.raises(Interrupted):
        run(StopAfter(narrator, call=1, after=3), plan, Progress(live=False))
    kept = cues_of(tmp_path / "four.srt")
    assert 4 <= len(kept) < 16 and kept == cues[:len(kept)]
    plan = make_plan(Job(str(md), str(out), subtitles="srt", resume=True, settings={"seed": 0}), stdout_is_tty=True)
    run(narrator, plan, Progress(live=False))
    resumed = cues_of(tmp_path / "four.srt")
    assert [(n, t) for n, _, _, t in resumed] == [(n, t) for n, _, _, t in cues]
    # (the resumed stream starts afresh at a sentence: the same audio up to there, then close)
    assert np.allclose([s for _, s, _, _ in resumed], starts, atol=0.3)
    assert resumed[-1][2] <= sf.info(str(out)).duration + 0.001


def test_word_level_vtt_of_a_book_and_of_a_resumed_run(tmp_path, narrator):
    """--subtitles vtt-words: the vtt cues (same times, same text) with each word's start as a
    tag inside its cue, increasing; an interrupted run's whole cues are kept as written."""
    md = four_chapters(tmp_path)
    for fmt, name in [("vtt", "plain.wav"), ("vtt-words", "words.wav")]:
        plan = make_plan(Job(str(md), str(tmp_path / name), subtitles=fmt, settings={"seed": 0}), stdout_is_tty=True)
        run(narrator, plan, Progress(live=False))
    plain = webvtt((tmp_path / "plain.vtt").read_text(encoding="utf-8"))
    tagged = webvtt((tmp_path / "words.vtt").read_text(encoding="utf-8"))
    assert [c[:3] for c in tagged] == [c[:3] for c in plain] and all(not c[3] for c in plain)
    tags = sum(len(c[3]) for c in tagged)
    assert tags >= 0.7 * sum(len(c[2].split()) - 1 for c in tagged)  # (the decoder may step over a short word)

    out = tmp_path / "four.wav"
    plan = make_plan(Job(str(md), str(out), subtitles="vtt-words", settings={"seed": 0}), stdout_is_tty=True)
    with pytest.raises(Interrupted):
        run(StopAfter(narrator, call=1, after=3), plan, Progress(live=False))
    kept = (tmp_path / "four.vtt").read_text(encoding="utf-8")
    assert 4 <= len(webvtt(kept)) < len(tagged)
    plan = make_plan(Job(str(md), str(out), subtitles="vtt-words", resume=True, settings={"seed": 0}),
                     stdout_is_tty=True)
    run(narrator, plan, Progress(live=False))
    resumed = (tmp_path / "four.vtt").read_text(encoding="utf-8")
    assert resumed.startswith(kept) and len(webvtt(resumed)) == len(tagged)


def test_subtitles_need_a_file_and_are_not_overwritten(tmp_path):
    md = four_chapters(tmp_path)
    with pytest.raises(OutputError, match="not stdout"):
        make_plan(Job(str(md), "-", subtitles="vtt"), stdout_is_tty=False)
    (tmp_path / "four.vtt").write_text("mine")
    with pytest.raises(OutputError, match="four.vtt exists"):
        make_plan(Job(str(md), str(tmp_path / "four.wav"), subtitles="vtt"), stdout_is_tty=True)
    assert (tmp_path / "four.vtt").read_text() == "mine"


def test_batch_writes_subtitles_and_reads_quotes_in_the_dialogue_voice(tmp_path, narrate_cmd, voice_wav):
    (tmp_path / "a.txt").write_text('One. "Two," she said.\n', encoding="utf-8")
    (tmp_path / "b.md").write_text("# Copyright\n\nNone.\n\n# Chapter 1\n\nThree.\n", encoding="utf-8")
    proc = narrate_cmd("batch", tmp_path / "a.txt", tmp_path / "b.md", "-d", tmp_path / "out",
                       "--subtitles", "vtt", "--dialogue-voice", voice_wav)
    assert proc.returncode == 0, proc.stderr
    cues = [t for _, _, _, t in read_cues((tmp_path / "out" / "a.vtt").read_text(encoding="utf-8"))]
    assert cues == ["One.", '"Two,"', "she said."]  # the quote cut out for the second voice
    cues = [t for _, _, _, t in read_cues((tmp_path / "out" / "b.vtt").read_text(encoding="utf-8"))]
    assert cues == ["Chapter one.", "Three."]  # the copyright page skipped
