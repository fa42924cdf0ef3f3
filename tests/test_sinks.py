"""Output sinks: every format round-trips, files appear only when complete, nothing is overwritten
without force, interrupted output stays playable and resumable, m4b chapters land where marked."""

import errno
import io
import json
import shutil
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf

from narrate.audio import sinks
from narrate.audio.sinks import (ChapterFiles, FORMATS, format_for, open_sink, safe_filename,
                                 streaming_wav_header)
from narrate.errors import OutputError

SR = 22050
PCM16_TOL = 1.0 / 32768 + 1e-6  # one PCM16 step
needs_ffmpeg = pytest.mark.skipif(not (shutil.which("ffmpeg") and shutil.which("ffprobe")),
                                  reason="ffmpeg/ffprobe not installed")


def tone(seconds, freq=220.0, amp=0.5, phase=0.0):
    t = np.arange(int(round(seconds * SR))) / SR
    return (amp * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def from_pcm16(data):
    """s16le bytes to float, as libsndfile reads them."""
    return np.frombuffer(data, "<i2") / 32768.0


def ffprobe(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-show_chapters", "-show_format",
                          "-of", "json", str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def write_in_blocks(sink, audio, sizes=(1000, 4410, 7, 12345)):
    pos, i = 0, 0
    while pos < audio.size:
        n = sizes[i % len(sizes)]
        sink.write(audio[pos:pos + n])
        pos, i = pos + n, i + 1


# --- format selection -------------------------------------------------------------------------

def test_format_from_suffix_and_explicit():
    assert format_for("book.WAV", None) == "wav"
    assert format_for("a/b.m4b", None) == "m4b"
    assert format_for("x.oga", None) == "ogg"
    assert format_for("x.wav", "FLAC") == "flac"
    assert format_for("-", None) == "wav"
    assert format_for("-", "raw") == "raw"
    assert set(FORMATS) == {"wav", "flac", "ogg", "mp3", "m4b", "raw"}


@pytest.mark.parametrize("path,explicit", [("book.xyz", None), ("book", None), ("b.wav", "aiff")])
def test_unknown_format_is_an_output_error(path, explicit):
    with pytest.raises(OutputError):
        format_for(path, explicit)


# --- plain files ------------------------------------------------------------------------------

def test_wav_round_trip_block_by_block(tmp_path):
    audio = np.concatenate([tone(1.0), np.array([1.7, -3.0, np.nan], np.float32)])
    target = tmp_path / "book.wav"
    sink = open_sink(target, "wav", SR)
    write_in_blocks(sink, audio)
    # Until close, only the hidden temporary exists.
    assert not target.exists() and (tmp_path / ".book.wav.partial").exists()
    assert sink.samples_written == audio.size
    sink.close()
    assert target.exists() and not (tmp_path / ".book.wav.partial").exists()
    data, rate = sf.read(target, dtype="float32")
    info = sf.info(target)
    assert (rate, info.subtype, info.channels) == (SR, "PCM_16", 1)
    assert data.size == audio.size
    expected = np.clip(np.nan_to_num(audio), -1, 1)  # out of range clipped, NaN silent
    assert np.max(np.abs(data - expected)) <= PCM16_TOL


def test_flac_and_raw_round_trip(tmp_path):
    audio = tone(0.7)
    for fmt in ("flac", "raw"):
        with open_sink(tmp_path / f"b.{fmt}", fmt, SR) as sink:
            write_in_blocks(sink, audio)
    flac, _ = sf.read(tmp_path / "b.flac", dtype="float32")
    raw = from_pcm16((tmp_path / "b.raw").read_bytes())
    for data in (flac, raw):
        assert data.size == audio.size
        assert np.max(np.abs(data - audio)) <= PCM16_TOL


@pytest.mark.parametrize("fmt", ["ogg", "mp3"])
def test_lossy_formats_are_readable_and_keep_the_sound(tmp_path, fmt):
    audio = tone(1.0)
    with open_sink(tmp_path / f"b.{fmt}", fmt, SR) as sink:
        write_in_blocks(sink, audio)
    data, rate = sf.read(tmp_path / f"b.{fmt}", dtype="float32")
    assert rate == SR
    assert abs(data.size - audio.size) <= 4096  # codec padding at most
    def rms(x):
        return float(np.sqrt(np.mean(x ** 2)))

    assert rms(data) == pytest.approx(rms(audio), rel=0.1)


def test_refuses_to_overwrite_without_force(tmp_path):
    target = tmp_path / "book.wav"
    target.write_bytes(b"precious")
    with pytest.raises(OutputError, match="exists; use --force to overwrite"):
        open_sink(target, "wav", SR)
    assert target.read_bytes() == b"precious"
    with open_sink(target, "wav", SR, force=True) as sink:
        sink.write(tone(0.1))
    assert sf.info(target).frames == int(0.1 * SR)


def test_missing_folders_are_created_and_bad_ones_refused(tmp_path):
    with open_sink(tmp_path / "a" / "b" / "book.flac", "flac", SR) as sink:
        sink.write(tone(0.1))
    assert sf.info(tmp_path / "a" / "b" / "book.flac").frames == int(0.1 * SR)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="cannot create folder"):
        open_sink(tmp_path / "file" / "book.wav", "wav", SR)
    with pytest.raises(OutputError, match="is a folder"):
        open_sink(tmp_path / "a", "wav", SR)


def test_abort_leaves_a_playable_file(tmp_path):
    # Resumable (the default): the lossless intermediate stays, playable; nothing under the name.
    target = tmp_path / "book.ogg"
    with pytest.raises(KeyboardInterrupt):
        with open_sink(target, "ogg", SR) as sink:
            sink.write(tone(0.5))
            raise KeyboardInterrupt
    assert sink.kept_in == str(tmp_path / ".book.ogg.partial.w64")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".book.ogg.partial.w64"]
    assert sf.info(sink.kept_in).frames == int(0.5 * SR)
    # Not resumable (live input): what there is gets encoded under the name.
    with pytest.raises(KeyboardInterrupt):
        with open_sink(target, "ogg", SR, force=True, keep_unfinished=False) as sink:
            sink.write(tone(0.5))
            raise KeyboardInterrupt
    assert sink.kept_in == str(target)
    data, _ = sf.read(target)
    assert abs(data.size - int(0.5 * SR)) <= 4096
    assert sorted(p.name for p in tmp_path.iterdir()) == ["book.ogg"]


def test_stdout_only_takes_wav_or_raw_and_never_resumes(tmp_path):
    with pytest.raises(OutputError, match="stdout"):
        open_sink("-", "flac", SR)
    with pytest.raises(OutputError, match="stdout"):
        open_sink("-", "wav", SR, resume=True)


# --- resume -----------------------------------------------------------------------------------

def test_resume_appends_exactly(tmp_path):
    target = tmp_path / "book.wav"
    first, second = tone(1.0, 220), tone(1.0, 330)
    sink = open_sink(target, "wav", SR)
    sink.write(first)
    sink.abort()
    assert sf.info(target).frames == SR
    sink = open_sink(target, "wav", SR, resume=True)
    assert sink.samples_written == SR
    # While resuming, the file lives under its temporary name again.
    assert not target.exists()
    sink.write(second)
    sink.close()
    data, _ = sf.read(target, dtype="float32")
    assert data.size == 2 * SR
    assert np.max(np.abs(data - np.concatenate([first, second]))) <= PCM16_TOL


def test_resume_truncates_to_the_recorded_position(tmp_path):
    target = tmp_path / "book.wav"
    with pytest.raises(KeyboardInterrupt):
        with open_sink(target, "wav", SR) as sink:
            sink.write(tone(1.0, 220))
            raise KeyboardInterrupt
    with open_sink(target, "wav", SR, resume=True) as sink:
        with pytest.raises(OutputError, match="fewer than"):
            sink.truncate_to(2 * SR)
        sink.truncate_to(SR // 2)
        assert sink.samples_written == SR // 2
        sink.write(tone(0.25, 440))
    data, _ = sf.read(target, dtype="float32")
    expected = np.concatenate([tone(1.0, 220)[:SR // 2], tone(0.25, 440)])
    assert data.size == expected.size
    assert np.max(np.abs(data - expected)) <= PCM16_TOL


def test_a_killed_run_leaves_a_resumable_partial_file(tmp_path):
    # A hard kill skips close(): the temporary must still have a valid header and all samples.
    target = tmp_path / "book.wav"
    script = textwrap.dedent(f"""
        import os, numpy as np
        from narrate.audio.sinks import open_sink
        sink = open_sink({str(target)!r}, "wav", {SR})
        sink.write(np.full({SR}, 0.25, np.float32))
        os._exit(9)
    """)
    subprocess.run([sys.executable, "-c", script], check=False)
    partial = tmp_path / ".book.wav.partial"
    assert not target.exists()
    assert sf.info(partial).frames == SR
    with open_sink(target, "wav", SR, resume=True) as sink:
        assert sink.samples_written == SR
        sink.write(np.full(SR, -0.25, np.float32))
    data, _ = sf.read(target, dtype="float32")
    assert data.size == 2 * SR and not partial.exists()
    assert np.allclose(data[:SR], 0.25, atol=PCM16_TOL)
    assert np.allclose(data[SR:], -0.25, atol=PCM16_TOL)


@pytest.mark.parametrize("fmt", ["flac", "ogg", "mp3"])
def test_a_killed_encoded_run_resumes_from_its_intermediate(tmp_path, fmt):
    # kill -9 mid-write: the intermediate is playable, nothing sits under the final name, and a
    # resumed sink continues it; flac then holds exactly the samples, lossy ones the length.
    target = tmp_path / f"book.{fmt}"
    first, second = tone(1.0, 220), tone(0.7, 330)
    np.save(tmp_path / "first.npy", first)
    script = textwrap.dedent(f"""
        import os, numpy as np
        from narrate.audio.sinks import open_sink
        sink = open_sink({str(target)!r}, {fmt!r}, {SR})
        sink.write(np.load({str(tmp_path / "first.npy")!r}))
        os._exit(9)
    """)
    subprocess.run([sys.executable, "-c", script], check=False)
    partial = sinks.unfinished_path(target, fmt)
    assert not target.exists()
    assert sf.info(partial).frames == SR
    with open_sink(target, fmt, SR, resume=True) as sink:
        sink.truncate_to(SR // 2)
        sink.write(second)
    assert not partial.exists()
    data, _ = sf.read(target, dtype="int16")
    expected = np.concatenate([first[:SR // 2], second])
    if fmt == "flac":
        reference = tmp_path / "reference.wav"
        sf.write(reference, expected, SR, "PCM_16")
        assert np.array_equal(data, sf.read(reference, dtype="int16")[0])
    else:
        assert abs(data.size - expected.size) <= 1152  # within one mp3 frame


def test_resume_refusals(tmp_path):
    with pytest.raises(OutputError, match="resume needs wav, flac"):
        open_sink(tmp_path / "b.raw", "raw", SR, resume=True)
    with pytest.raises(OutputError, match="nothing to resume"):
        open_sink(tmp_path / "b.flac", "flac", SR, resume=True)
    with pytest.raises(OutputError, match="nothing to resume"):
        open_sink(tmp_path / "b.wav", "wav", SR, resume=True)
    sf.write(tmp_path / "b.wav", tone(0.1), 16000, "PCM_16")
    with pytest.raises(OutputError, match="16000 Hz"):
        open_sink(tmp_path / "b.wav", "wav", SR, resume=True)
    assert (tmp_path / "b.wav").exists()  # a refused resume leaves the file where it was
    with open_sink(tmp_path / "c.raw", "raw", SR) as sink:
        with pytest.raises(OutputError):
            sink.truncate_to(0)


# --- failures while writing -------------------------------------------------------------------

def test_disk_full_keeps_the_partial_file_and_says_where(tmp_path, monkeypatch):
    target = tmp_path / "book.wav"
    sink = open_sink(target, "wav", SR)
    sink.write(tone(1.0))
    real_write = sf.SoundFile.write

    def full_disk(self, data):
        if self.name.endswith(".partial"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(sf.SoundFile, "write", full_disk)
    with pytest.raises(OutputError, match=r"disk full while writing .*book\.wav; the audio "
                                          r"written so far is kept in .*\.book\.wav\.partial"):
        with sink:
            sink.write(tone(1.0))
    partial = tmp_path / ".book.wav.partial"
    assert not target.exists()
    assert sf.info(partial).frames == SR  # readable, with everything written before the failure


@pytest.mark.skipif(not __import__("os").path.exists("/dev/full"), reason="needs /dev/full")
def test_disk_full_on_stdout_is_an_output_error():
    with open("/dev/full", "wb") as full:
        with pytest.raises(OutputError, match="disk full"):
            sinks._StreamSink(full, SR, wav_header=False).write(tone(0.1))


# --- stdout -----------------------------------------------------------------------------------

class Recorder(io.RawIOBase):
    """A binary stdout that remembers what reached it at each flush."""

    def __init__(self, tty=False):
        self.data, self.flushed, self.tty = bytearray(), [], tty

    def writable(self):
        return True

    def write(self, b):
        self.data += b
        return len(b)

    def flush(self):
        self.flushed.append(len(self.data))

    def isatty(self):
        return self.tty


class FakeStdout:
    def __init__(self, buffer):
        self.buffer = buffer


def test_raw_stdout_is_s16le_flushed_per_write(monkeypatch, tmp_path):
    out = Recorder()
    monkeypatch.setattr(sys, "stdout", FakeStdout(out))
    a, b = tone(0.1), tone(0.05, 440)
    with open_sink("-", "raw", SR) as sink:
        sink.write(a)
        assert out.flushed[-1] == 2 * a.size  # already delivered, not buffered
        sink.write(b)
    pcm = from_pcm16(bytes(out.data))
    assert pcm.size == a.size + b.size
    assert np.max(np.abs(pcm - np.concatenate([a, b]))) <= PCM16_TOL
    # The same samples as a raw file written through libsndfile, to within one PCM16 step.
    with open_sink(tmp_path / "b.raw", "raw", SR) as sink:
        sink.write(np.concatenate([a, b]))
    from_file = np.frombuffer((tmp_path / "b.raw").read_bytes(), "<i2").astype(int)
    assert np.max(np.abs(from_file - np.frombuffer(bytes(out.data), "<i2"))) <= 1


def test_streaming_wav_header_parses_and_plays(monkeypatch, tmp_path):
    out = Recorder()
    monkeypatch.setattr(sys, "stdout", FakeStdout(out))
    audio = tone(0.5)
    with open_sink("-", "wav", SR) as sink:
        sink.write(audio)
    data = bytes(out.data)
    (riff, riff_size, wave, fmt_id, fmt_size, codec, channels, rate, byte_rate, align, bits,
     data_id, data_size) = struct.unpack("<4sI4s4sIHHIIHH4sI", data[:44])
    assert (riff, wave, fmt_id, data_id) == (b"RIFF", b"WAVE", b"fmt ", b"data")
    assert riff_size == data_size == 0xFFFFFFFF
    assert (fmt_size, codec, channels, rate, byte_rate, align, bits) == (16, 1, 1, SR, 2 * SR, 2, 16)
    assert data[:44] == streaming_wav_header(SR)
    assert len(data) == 44 + 2 * audio.size
    # A player reading the stream (ffmpeg here) decodes every sample.
    if shutil.which("ffmpeg"):
        stream = tmp_path / "stream.wav"
        stream.write_bytes(data)
        decoded = subprocess.run(["ffmpeg", "-v", "error", "-i", str(stream), "-f", "s16le", "-"],
                                 capture_output=True, check=True).stdout
        pcm = from_pcm16(decoded)
        assert pcm.size == audio.size
        assert np.max(np.abs(pcm - audio)) <= PCM16_TOL


def test_stdout_refuses_a_terminal_and_reports_a_closed_pipe(monkeypatch):
    monkeypatch.setattr(sys, "stdout", FakeStdout(Recorder(tty=True)))
    with pytest.raises(OutputError, match="terminal"):
        open_sink("-", "raw", SR)

    class Closed(Recorder):
        def write(self, b):
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    sink = sinks._StreamSink(Closed(), SR, wav_header=False)
    with pytest.raises(OutputError, match="broken pipe"):
        sink.write(tone(0.1))


# --- m4b and chapter folders ------------------------------------------------------------------

@needs_ffmpeg
def test_m4b_has_the_marked_chapters(tmp_path):
    target = tmp_path / "book.m4b"
    with open_sink(target, "m4b", SR) as sink:
        sink.mark_chapter("Opening")
        sink.write(tone(1.0))
        sink.mark_chapter("A = B; #2")
        sink.write(tone(1.5, 330))
        sink.mark_chapter("Part Three")  # two marks at one spot: the later heading wins
        sink.mark_chapter("Three")
        sink.write(tone(0.5, 440))
        assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["book.m4b"]  # temporaries gone
    probe = ffprobe(target)
    chapters = [(c["tags"]["title"], c["start"], c["end"]) for c in probe["chapters"]]
    assert chapters == [("Opening", 0, 1000), ("A = B; #2", 1000, 2500), ("Three", 2500, 3000)]
    assert float(probe["format"]["duration"]) == pytest.approx(3.0, abs=0.1)
    assert probe["format"]["tags"]["title"] == "book"


@needs_ffmpeg
def test_interrupted_m4b_is_still_made_when_it_cannot_be_resumed(tmp_path):
    target = tmp_path / "book.m4b"
    with pytest.raises(KeyboardInterrupt):
        with open_sink(target, "m4b", SR, keep_unfinished=False) as sink:
            sink.mark_chapter("Only")
            sink.write(tone(1.5))
            raise KeyboardInterrupt
    probe = ffprobe(target)
    assert [c["tags"]["title"] for c in probe["chapters"]] == ["Only"]
    assert float(probe["format"]["duration"]) == pytest.approx(1.5, abs=0.1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["book.m4b"]


def test_m4b_without_ffmpeg_fails_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(OutputError, match="ffmpeg is needed"):
        open_sink(tmp_path / "book.m4b", "m4b", SR)
    assert list(tmp_path.iterdir()) == []


@needs_ffmpeg
def test_chapter_folder_with_combined_m4b(tmp_path):
    folder = tmp_path / "My Book"
    lengths = [0.8, 1.2]
    with ChapterFiles(folder, "wav", SR) as book:
        for index, (title, seconds) in enumerate(zip(["Intro", "Part 2: A/B?"], lengths), 1):
            with book.start_chapter(index, title) as sink:
                sink.write(tone(seconds))
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["01 - Intro.wav", "02 - Part 2 A B.wav", "My Book.m4b"]
    assert sf.info(folder / "02 - Part 2 A B.wav").frames == int(1.2 * SR)
    probe = ffprobe(folder / "My Book.m4b")
    chapters = [(c["tags"]["title"], c["start"], c["end"]) for c in probe["chapters"]]
    assert chapters == [("Intro", 0, 800), ("Part 2: A/B?", 800, 2000)]
    # A second run into the same folder must not silently replace the chapter files.
    with pytest.raises(OutputError, match="use --force"):
        ChapterFiles(folder, "wav", SR)


def test_chapter_file_names(tmp_path):
    book = ChapterFiles(tmp_path / "b", "flac", SR, with_m4b=False, n_chapters=120)
    assert book.chapter_path(7, "Chapter 7: The End").name == "007 - Chapter 7 The End.flac"
    assert safe_filename(" ..\x00 ", fallback="Chapter 3") == "Chapter 3"
    assert len(safe_filename("é" * 200, fallback="x").encode()) <= 120
    with pytest.raises(OutputError):
        ChapterFiles(tmp_path / "c", "raw", SR)


def test_chapter_spans():
    spans = sinks._chapter_spans([("a", 0.2), ("b", 1.0), ("c", 1.0), ("end", 3.0)], 3000)
    assert spans == [("a", 0, 1000), ("c", 1000, 3000)]
    assert sinks._chapter_spans([], 3000) == []
