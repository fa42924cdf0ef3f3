"""The pipeline: where output goes, when resuming is allowed, and interrupted runs that are
finished into playable files and continued exactly (in process and through real signals)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import cli_env
from narrate.jobs import pipeline
from narrate.audio.resume import ResumeRecord, load_record, record_path, save_record, sha256_file
from narrate.errors import InputError, OutputError
from narrate.runtime.pauses import CHAPTER_PAUSE, PARAGRAPH_PAUSE, Sentence
from narrate.jobs.pipeline import Interrupted, Job, Terminated, make_plan, plan_output, run
from narrate.cli.progress import Progress

needs_ffmpeg = pytest.mark.skipif(not (shutil.which("ffmpeg") and shutil.which("ffprobe")),
                                  reason="ffmpeg/ffprobe not installed")


# --- where the audio goes ---------------------------------------------------------------------


def test_default_output_is_beside_the_input(tmp_path):
    book = tmp_path / "novel.md"
    t = plan_output(str(book), None, None, None, stdout_is_tty=True)
    assert (t.kind, t.path, t.fmt) == ("file", tmp_path / "novel.wav", "wav")
    t = plan_output(str(book), None, "mp3", None, stdout_is_tty=True)
    assert (t.path, t.fmt) == (tmp_path / "novel.mp3", "mp3")
    t = plan_output(str(book), None, None, "chapters", stdout_is_tty=True)
    assert (t.kind, t.path, t.fmt) == ("folder", tmp_path / "novel", "wav")


def test_stdin_goes_to_stdout_unless_it_is_a_terminal():
    assert plan_output("-", None, None, None, stdout_is_tty=False).kind == "stdout"
    t = plan_output("-", None, None, None, stdout_is_tty=True)
    assert (t.kind, t.path) == ("file", Path("narrate-output.wav"))
    t = plan_output("-", "-", "raw", None, stdout_is_tty=False)
    assert (t.kind, t.fmt) == ("stdout", "raw")


def test_folders_mean_one_file_per_chapter(tmp_path):
    book = str(tmp_path / "b.txt")
    assert plan_output(book, str(tmp_path / "out") + "/", None, None, True).kind == "folder"
    (tmp_path / "existing").mkdir()
    t = plan_output(book, str(tmp_path / "existing"), "flac", None, True)
    assert (t.kind, t.fmt) == ("folder", "flac")
    # --split none into an existing folder: one file inside it.
    t = plan_output(book, str(tmp_path / "existing"), None, "none", True)
    assert (t.kind, t.path) == ("file", tmp_path / "existing" / "b.wav")


def test_impossible_outputs_are_refused(tmp_path):
    book = tmp_path / "b.wav.txt"
    with pytest.raises(InputError, match="standard input has no chapters"):
        plan_output("-", None, None, "chapters", False)
    with pytest.raises(OutputError, match="stdout"):
        plan_output(str(book), "-", None, "chapters", False)
    with pytest.raises(OutputError, match="terminal"):
        plan_output(str(book), "-", None, None, True)
    with pytest.raises(OutputError, match="is the input"):
        plan_output(str(book), str(book), "wav", None, True)
    with pytest.raises(OutputError, match="no suffix"):
        plan_output(str(book), str(tmp_path / "noext"), None, None, True)


# --- deciding about resuming (no model needed) ------------------------------------------------


@pytest.fixture
def book(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text("Chapter 1\n\nOne sentence. Two sentences.\n\nChapter 2\n\nThree. Four.\n",
                    encoding="utf-8")
    return path


def job(book, out, **kw) -> Job:
    return Job(str(book), str(out), settings={"seed": 1}, **kw)


def interrupted_output(book, out, **settings):
    """An output file and its record, as an interrupted run leaves them."""
    out.write_bytes(b"RIFF")
    record = ResumeRecord(sha256_file(book), {"seed": 1, "format": "wav", "split": "file", **settings},
                          chapter=0, sentences_done=1, samples_written=0)
    save_record(out, record)
    return record


def test_plan_reads_chapters_and_sentences(book, tmp_path):
    plan = make_plan(job(book, tmp_path / "out.wav"), stdout_is_tty=True)
    assert [title for title, _ in plan.chapters] == ["Chapter 1", "Chapter 2"]
    # each chapter's title is spoken first, then a paragraph's pause; the first chapter ends
    # with the chapter pause, the book after a sentence's
    assert plan.chapters[0][1] == [Sentence("Chapter one.", PARAGRAPH_PAUSE), Sentence("One sentence."),
                                   Sentence("Two sentences.", CHAPTER_PAUSE)]
    assert plan.chapters[1][1] == [Sentence("Chapter two.", PARAGRAPH_PAUSE), Sentence("Three."), Sentence("Four.")]
    assert plan.input_sha256 == sha256_file(book)
    assert plan.record is None
    quiet = make_plan(job(book, tmp_path / "quiet.wav", titles=False, paragraph_pause=0.5, chapter_pause=3.0),
                      stdout_is_tty=True)
    assert [s.pause for _, sents in quiet.chapters for s in sents] == [None, 3.0, None, None]
    folder = make_plan(job(book, f"{tmp_path}/book/"), stdout_is_tty=True)
    assert [sents[-1].pause for _, sents in folder.chapters] == [None, None]  # a file ends after a sentence


def test_untitled_chapters_have_one_name_everywhere(tmp_path):
    md = tmp_path / "tale.md"
    md.write_text("Before any heading.\n\n## The Middle\n\nIn it.\n", encoding="utf-8")
    plan = make_plan(job(md, tmp_path / "tale.wav"), stdout_is_tty=True)
    assert [name for name, _ in plan.chapters] == [pipeline.OPENING, "The Middle"]
    assert plan.chapters[0][1] == [Sentence("Before any heading.", CHAPTER_PAUSE)]  # no title to speak
    assert plan.chapters[1][1][0] == Sentence("The Middle.", PARAGRAPH_PAUSE)
    assert pipeline.chapter_names(["", ""], "Tale") == [pipeline.OPENING, "Chapter 2"]
    assert pipeline.chapter_names([""], "Tale") == ["Tale"]


def test_chapter_folders_decode_on_every_core(tmp_path, monkeypatch):
    from dataclasses import replace

    from narrate.jobs.pipeline import decoder_processes

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    md = four_chapters(tmp_path)
    folder = make_plan(Job(str(md), str(tmp_path / "four") + "/", settings={"seed": 0}), stdout_is_tty=True)
    assert decoder_processes(folder) == 3  # four chapters, three cores
    assert decoder_processes(replace(folder, record=ResumeRecord("", {}, chapters_done=[0, 1]))) == 2
    assert decoder_processes(replace(folder, record=ResumeRecord("", {}, chapters_done=[0, 1, 2]))) == 1
    one_file = make_plan(job(md, tmp_path / "four.wav"), stdout_is_tty=True)
    assert decoder_processes(one_file) == 1  # its chapters follow one another in one file


def test_unfinished_output_needs_resume_or_force(book, tmp_path):
    out = tmp_path / "out.wav"
    interrupted_output(book, out)
    with pytest.raises(OutputError, match="--resume.*--force"):
        make_plan(job(book, out), stdout_is_tty=True)
    plan = make_plan(job(book, out, resume=True), stdout_is_tty=True)
    assert plan.record is not None and plan.record.sentences_done == 1
    plan = make_plan(job(book, out, force=True), stdout_is_tty=True)
    assert plan.record is None and not record_path(out).exists()


def test_resume_refuses_other_settings_or_text(book, tmp_path):
    out = tmp_path / "out.wav"
    interrupted_output(book, out, seed=2)
    with pytest.raises(OutputError, match="seed"):
        make_plan(job(book, out, resume=True), stdout_is_tty=True)
    interrupted_output(book, out)
    book.write_text("Another text entirely.", encoding="utf-8")
    with pytest.raises(OutputError, match="input text changed"):
        make_plan(job(book, out, resume=True), stdout_is_tty=True)


def test_resume_without_record(book, tmp_path):
    out = tmp_path / "out.wav"
    assert make_plan(job(book, out, resume=True), stdout_is_tty=True).record is None  # nothing yet
    out.write_bytes(b"RIFF")  # a finished output
    with pytest.raises(OutputError, match="nothing to resume"):
        make_plan(job(book, out, resume=True), stdout_is_tty=True)
    with pytest.raises(OutputError, match="exists; use --force"):
        make_plan(job(book, out), stdout_is_tty=True)


def test_stale_record_without_output_is_dropped(book, tmp_path):
    out = tmp_path / "out.wav"
    interrupted_output(book, out)
    out.unlink()
    assert make_plan(job(book, out), stdout_is_tty=True).record is None
    assert not record_path(out).exists()


def test_resume_needs_a_file_but_raw(book, tmp_path):
    with pytest.raises(OutputError, match="needs an output file"):
        make_plan(job(book, tmp_path / "out.raw", resume=True), stdout_is_tty=True)
    assert make_plan(job(book, tmp_path / "out.mp3", resume=True), stdout_is_tty=True).record is None


def test_a_finished_encoded_output_is_not_resumed(book, tmp_path):
    # A record left beside a finished mp3 (a kill between the encode and the record's removal)
    # describes nothing unfinished: it is dropped, and the output counts as finished.
    out = tmp_path / "out.mp3"
    interrupted_output(book, out)
    out.write_bytes(b"ID3")
    with pytest.raises(OutputError, match="nothing to resume"):
        make_plan(job(book, out, resume=True), stdout_is_tty=True)
    assert not record_path(out).exists()
    with pytest.raises(OutputError, match="exists; use --force"):
        make_plan(job(book, out), stdout_is_tty=True)


def test_text_without_words(tmp_path):
    empty = tmp_path / "stars.txt"
    empty.write_text("* * *\n\n---\n", encoding="utf-8")
    with pytest.raises(InputError, match="nothing to read aloud"):
        make_plan(job(empty, tmp_path / "out.wav"), stdout_is_tty=True)


# --- interrupted chapter folders, in process ----------------------------------------------------


@pytest.fixture(scope="module")
def narrator(tiny_model, voice_wav):
    import torch

    from narrate.runtime.narrator import NarrateSettings, Narrator

    # One thread, as for the subprocesses (see conftest.cli_env); restored afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield Narrator.load(str(tiny_model), str(voice_wav), NarrateSettings(seed=0))
    torch.set_num_threads(threads)


def test_vocoder_process_gives_the_same_chunks_as_vocoding_inline(narrator):
    """The vocoder process (default) against vocoding inline, the reference: the same chunks,
    in the same order, for batched streams and for live text."""
    from narrate.runtime.narrator import NarrateSettings, Narrator

    assert narrator.vocoding.in_process
    inline = Narrator(narrator.loaded, narrator.voice, NarrateSettings(seed=0, vocoder_process=False))
    assert not inline.vocoding.in_process
    books = [["One short sentence.", "And a second one, a little longer."], ["Another stream entirely."]]

    def chunks(n, live):
        return [(i, c.sentence, c.final, [w.text for w in c.words], c.samples.tobytes())
                for i, c in n.narrate_many([iter(b) for b in books], live=live)]

    for live in (False, True):
        threaded = chunks(narrator, live)
        assert threaded == chunks(inline, live)
        assert {i for i, *_ in threaded} == {0, 1} and sum(final for _, _, final, _, _ in threaded) == 3


def test_streams_join_as_others_end_and_sound_as_in_one_batch(narrator):
    """width=2 over four streams: the next starts as one ends, never more than two at once, and
    each stream's audio is what it is with all four decoded together."""
    books = [["One short sentence."], ["A second stream, longer than the first one.", "With more."],
             ["Third."], ["The fourth stream, which comes last."]]

    def audio(width):
        got = {}
        for i, c in narrator.narrate_many((iter(b) for b in books), width=width):
            got.setdefault(i, []).append(c.samples)
        return {i: np.concatenate(parts) for i, parts in got.items()}

    steps = []
    step = narrator.engine.step
    narrator.engine.step = lambda states: steps.append(len(states)) or step(states)
    try:
        pooled = audio(2)
    finally:
        narrator.engine.step = step
    together = audio(0)
    assert max(steps) == 2 and steps.count(2) > len(steps) // 2  # the pool stayed full most of the time
    assert sorted(pooled) == [0, 1, 2, 3]
    for i in range(4):
        assert np.array_equal(pooled[i], together[i])


def test_a_dead_vocoder_process_is_a_one_line_error(narrator):
    from narrate.errors import NarrateError
    from narrate.runtime.narrator import NarrateSettings, Narrator

    n = Narrator(narrator.loaded, narrator.voice, NarrateSettings(seed=0))
    n.vocoding.process.proc.kill()
    n.vocoding.process.proc.join()
    with pytest.raises(NarrateError, match="vocoder process ended"):
        list(n.narrate(["A sentence that will not be heard."]))
    n.close()


class Stopping:
    """The narrator, but Ctrl-C (or ``signal``) arrives in call ``on_call`` (counted from 0):
    ``after`` items into it, or once ``when`` holds for the items so far."""

    def __init__(self, narrator, on_call=None, after=0, signal=KeyboardInterrupt, when=None):
        self.inner, self.on_call, self.after, self.signal, self.when = narrator, on_call, after, signal, when
        self.sample_rate = narrator.sample_rate
        self.calls: list[int] = []  # streams decoded per call

    def _watch(self, chunks, call):
        seen = []
        for n, item in enumerate(chunks):
            if call == self.on_call and (n == self.after if self.when is None else self.when(seen)):
                raise self.signal()
            seen.append(item)
            yield item

    def narrate(self, sentences, live=False):
        self.calls.append(1)
        return self._watch(self.inner.narrate(sentences, live), len(self.calls) - 1)

    def narrate_many(self, streams, live=False, width=0):
        streams = list(streams)
        self.calls.append(len(streams))
        return self._watch(self.inner.narrate_many(streams, live, width), len(self.calls) - 1)


def four_chapters(tmp_path) -> Path:
    md = tmp_path / "four.md"
    md.write_text("".join(f"## Part {n}\n\nThis is part {n}. It has two sentences.\n\n"
                          for n in ("one", "two", "three", "four")), encoding="utf-8")
    return md


@needs_ffmpeg
@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_folder_resume_skips_finished_chapters(tmp_path, narrator, monkeypatch, fmt):
    monkeypatch.setattr(pipeline, "CHAPTERS_AT_ONCE", 2)
    md, folder = four_chapters(tmp_path), tmp_path / "four"
    plan = make_plan(Job(str(md), str(folder) + "/", fmt=fmt, settings={"seed": 0}), stdout_is_tty=True)
    lengths = [len(sentences) for _, sentences in plan.chapters]

    def first_two_done(seen):  # two at a time: chapter three took chapter one's place as it ended
        return all(sum(c.final for s, c in seen if s == i) == lengths[i] for i in (0, 1))

    stopping = Stopping(narrator, on_call=0, signal=Terminated, when=first_two_done)
    with pytest.raises(Interrupted) as info:
        run(stopping, plan, Progress(live=False))
    assert info.value.exit_code == 143
    assert f"kept in {folder}" in str(info.value) and "--resume" in str(info.value)
    record = load_record(folder)
    assert record.chapters_done == [0, 1]
    # two finished, and any begun since cut short but playable: a wav under its name, an
    # encoded chapter as its intermediate
    first = sorted(folder.glob(f"*.{fmt}"))
    begun = sorted(folder.glob(f".*.{fmt}.partial.w64"))
    assert len(first) == 2 if fmt != "wav" else len(first) >= 2
    assert all(sf.info(str(f)).samplerate == narrator.sample_rate for f in first + begun)
    assert all(sf.info(str(f)).duration > 1.0 for f in first[:2])
    finished = {f.name: f.read_bytes() for f in first[:2]}
    assert not (folder / "four.m4b").exists()  # the book is incomplete

    again = Stopping(narrator)
    plan = make_plan(Job(str(md), str(folder) + "/", fmt=fmt, resume=True, settings={"seed": 0}),
                     stdout_is_tty=True)
    run(again, plan, Progress(live=False))
    assert again.calls == [2]  # only the two unfinished chapters were narrated
    assert {f: (folder / f).read_bytes() for f in finished} == finished
    assert len(list(folder.glob(f"*.{fmt}"))) == 4 and not list(folder.glob(".*.partial*"))
    assert load_record(folder) is None
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_chapters", "-of", "json",
                            str(folder / "four.m4b")], capture_output=True, text=True, check=True)
    titles = [c["tags"]["title"] for c in json.loads(probe.stdout)["chapters"]]
    assert titles == ["Part one", "Part two", "Part three", "Part four"]


def test_a_chapter_folder_moved_after_an_interrupt_resumes_where_it_is(tmp_path, narrator, monkeypatch):
    """The record lives inside the folder: moved (or renamed), the folder still resumes, with its
    finished chapters kept, and nothing is left at the old place."""
    monkeypatch.setattr(pipeline, "CHAPTERS_AT_ONCE", 1)
    md, folder = four_chapters(tmp_path), tmp_path / "four"
    plan = make_plan(Job(str(md), str(folder) + "/", settings={"seed": 0}), stdout_is_tty=True)
    first = len(plan.chapters[0][1])

    def into_chapter_two(seen):
        return sum(c.final for s, c in seen if s == 0) == first and any(s == 1 for s, _ in seen)

    with pytest.raises(Interrupted):
        run(Stopping(narrator, on_call=0, when=into_chapter_two), plan, Progress(live=False))
    assert load_record(folder).chapters_done == [0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["four", "four.md"]  # nothing beside it
    moved = tmp_path / "shelf" / "four-moved"
    moved.parent.mkdir()
    folder.rename(moved)
    finished = {p.name: p.read_bytes() for p in moved.glob("01 - *.wav")}
    assert len(finished) == 1
    again = Stopping(narrator)
    plan = make_plan(Job(str(md), str(moved) + "/", resume=True, settings={"seed": 0}), stdout_is_tty=True)
    assert plan.record is not None and plan.record.chapters_done == [0]
    run(again, plan, Progress(live=False))
    assert again.calls == [3]  # the three unfinished chapters only
    assert {name: (moved / name).read_bytes() for name in finished} == finished
    assert len(list(moved.glob("*.wav"))) == 4 and not list(moved.glob(".*"))
    assert not folder.exists()


class Counting:
    """The narrator, recording how many sentences each stream of each call was given."""

    def __init__(self, narrator):
        self.inner, self.sample_rate, self.streams = narrator, narrator.sample_rate, []

    def narrate_many(self, streams, live=False, width=0):
        streams = [list(s) for s in streams]
        self.streams.append([len(s) for s in streams])
        return self.inner.narrate_many(streams, live, width)


def test_a_chapter_under_way_in_a_folder_resumes_from_its_last_finished_sentence(tmp_path, narrator, monkeypatch):
    monkeypatch.setattr(pipeline, "CHAPTERS_AT_ONCE", 1)
    md = tmp_path / "book.md"
    md.write_text("".join(f"## Part {n}\n\nThis is part {n}. It has four sentences. They are short. "
                          f"This is the last.\n\n" for n in ("one", "two")), encoding="utf-8")
    folder = tmp_path / "book"
    plan = make_plan(Job(str(md), str(folder) + "/", subtitles="srt", settings={"seed": 0}), stdout_is_tty=True)
    lengths = [len(sentences) for _, sentences in plan.chapters]

    def two_sentences_in(seen):
        return sum(c.final for s, c in seen if s == 0) == 2

    with pytest.raises(Interrupted):
        run(Stopping(narrator, on_call=0, when=two_sentences_in), plan, Progress(live=False))
    record = load_record(folder)
    assert record.chapters_done == [] and list(record.begun) == ["0"]
    sentences, samples, loudness = record.begun["0"]
    assert sentences == 2 and samples > 0 and loudness is not None
    first = folder / "01 - Part one.wav"
    kept = sf.read(str(first), dtype="int16")[0][:samples]
    assert (folder / "01 - Part one.srt").read_text(encoding="utf-8").count(" --> ") >= 2

    again = Counting(narrator)
    plan = make_plan(Job(str(md), str(folder) + "/", subtitles="srt", resume=True, settings={"seed": 0}),
                     stdout_is_tty=True)
    run(again, plan, Progress(live=False))
    assert again.streams == [[lengths[0] - 2, lengths[1]]]  # chapter one from its third sentence
    audio = sf.read(str(first), dtype="int16")[0]
    assert np.array_equal(audio[:samples], kept)  # what it held is kept as it was
    assert load_record(folder) is None and not list(folder.glob(".*"))
    clean = tmp_path / "clean"
    run(narrator, make_plan(Job(str(md), str(clean) + "/", subtitles="srt", settings={"seed": 0}),
                            stdout_is_tty=True), Progress(live=False))
    assert abs(len(audio) - sf.info(str(clean / first.name)).frames) < 0.3 * narrator.sample_rate
    # its subtitles: the cues of the kept sentences kept, the rest added, numbered on
    from narrate.audio.subtitles import read_cues

    cues = [(n, t) for n, _, _, t in read_cues((folder / "01 - Part one.srt").read_text(encoding="utf-8"))]
    want = [(n, t) for n, _, _, t in read_cues((clean / "01 - Part one.srt").read_text(encoding="utf-8"))]
    assert cues == want and len(cues) == lengths[0]


def test_single_file_interrupt_keeps_a_sentence_boundary(tmp_path, narrator):
    md, out = four_chapters(tmp_path), tmp_path / "four.wav"
    plan = make_plan(Job(str(md), str(out), settings={"seed": 0}), stdout_is_tty=True)
    with pytest.raises(Interrupted) as info:
        run(Stopping(narrator, on_call=1, after=5), plan, Progress(live=False))
    assert info.value.exit_code == 130
    record = load_record(out)
    # Chapter one finished; chapter two was under way.
    assert (record.chapter, record.chapters_done) == (1, [0])
    assert record.samples_written <= sf.info(str(out)).frames
    plan = make_plan(Job(str(md), str(out), resume=True, settings={"seed": 0}), stdout_is_tty=True)
    run(narrator, plan, Progress(live=False))
    clean = tmp_path / "clean.wav"
    run(narrator, make_plan(Job(str(md), str(clean), settings={"seed": 0}), stdout_is_tty=True),
        Progress(live=False))
    assert abs(sf.info(str(out)).duration - sf.info(str(clean)).duration) < 0.3
    assert load_record(out) is None


# --- real signals (subprocess) ----------------------------------------------------------------


def long_text(path: Path, n: int = 80) -> Path:
    one = " ".join(f"This is sentence number {i} of the test." for i in range(n // 2))
    two = " ".join(f"Here is another line, called {i}." for i in range(n // 2))
    path.write_text(f"Chapter 1\n\n{one}\n\nChapter 2\n\n{two}\n", encoding="utf-8")
    return path


def start(args, tiny_model, voice_wav, cwd):
    cmd = [sys.executable, "-m", "narrate", *map(str, args), "--model", str(tiny_model),
           "--voice", str(voice_wav), "--seed", "3"]
    # A shell starts background jobs with SIGINT ignored, and children inherit that: give the
    # run the default disposition, as a terminal's foreground job has, whoever started pytest.
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            cwd=cwd, env=cli_env(), preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for_progress(proc, record: Path, key, timeout=180.0):
    """Wait until the run's resume record shows progress (``key`` of its JSON is true)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended before it was interrupted: {proc.stderr.read()}"
        try:
            if key(json.loads(record.read_text(encoding="utf-8"))):
                return
        except (OSError, ValueError):
            pass  # not written yet
        time.sleep(0.1)
    proc.kill()
    pytest.fail("no progress recorded in time")


def test_sigint_then_resume_equals_a_clean_run(tmp_path, tiny_model, voice_wav, narrate_cmd):
    text, out = long_text(tmp_path / "long.txt"), tmp_path / "out.wav"
    proc = start([text, "-o", out], tiny_model, voice_wav, tmp_path)
    wait_for_progress(proc, record_path(out), lambda r: r["samples_written"] > 0)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("narrate: interrupted: ") and lines[-1].endswith(
        f"s of audio kept in {out}; run again with --resume to continue"), stderr
    assert "Traceback" not in stderr
    kept = sf.info(str(out))  # playable as it is
    record = load_record(out)
    assert 0 < record.samples_written <= kept.frames
    assert kept.duration < 300

    proc = narrate_cmd(text, "-o", out)  # neither --resume nor --force
    assert proc.returncode == 1 and "--resume" in proc.stderr

    proc = narrate_cmd(text, "-o", out, "--resume", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    assert load_record(out) is None
    clean = tmp_path / "clean.wav"
    assert narrate_cmd(text, "-o", clean, "--seed", "3").returncode == 0
    resumed, expected = sf.info(str(out)).duration, sf.info(str(clean)).duration
    assert resumed > kept.duration
    assert abs(resumed - expected) < 0.3, (resumed, expected)


def test_sigterm_keeps_an_encoded_output_playable_and_resumable(tmp_path, tiny_model, voice_wav):
    text, out = long_text(tmp_path / "long.txt"), tmp_path / "out.flac"
    proc = start([text, "-o", out], tiny_model, voice_wav, tmp_path)
    wait_for_progress(proc, record_path(out), lambda r: r["samples_written"] > 0)
    os.kill(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    partial = tmp_path / ".out.flac.partial.w64"
    assert stderr.splitlines()[-1].endswith(
        f"s of audio kept in {partial}; run again with --resume to continue"), stderr
    assert "Traceback" not in stderr
    assert not out.exists()  # an unfinished book never sits under the name looking finished
    assert sf.info(str(partial)).frames >= load_record(out).samples_written > 0  # playable


def test_chapters_are_chosen_by_number(book, tmp_path):
    from narrate.jobs.pipeline import chapter_selection

    assert chapter_selection("3-5,8, 1", 9) == [1, 3, 4, 5, 8]
    assert chapter_selection("7-", 9) == [7, 8, 9]
    for bad, says in [("2-1", "not a range"), ("0", "not a range"), ("x", "such as 3-5,8"), ("10", "has 9 chapters")]:
        with pytest.raises(InputError, match=says):
            chapter_selection(bad, 9)
    plan = make_plan(job(book, tmp_path / "two.wav", chapters="2"), stdout_is_tty=True)
    assert [name for name, _ in plan.chapters] == ["Chapter 2"]
    assert plan.chapters[0][1][-1].pause is None  # the last chapter read ends the file
    with pytest.raises(InputError, match="has 2 chapters"):
        make_plan(job(book, tmp_path / "three.wav", chapters="3"), stdout_is_tty=True)


def test_the_chapters_command_lists_what_is_read(book):
    from typer.testing import CliRunner

    from narrate.cli.core import app

    result = CliRunner().invoke(app, ["chapters", str(book)], terminal_width=120)
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if "Chapter" in line]
    assert len(rows) == 2 and "│ 1 │ Chapter 1" in rows[0] and "│ 2 │ Chapter 2" in rows[1]
    assert "│     6 │" in rows[0]  # "Chapter one." + "One sentence. Two sentences."
    missing = CliRunner().invoke(app, ["chapters", str(book) + ".nope"])
    assert missing.exit_code == 1 and "not found" in missing.output
