"""Output sinks: write a stream of mono float32 audio blocks to a file, a folder of chapters or stdout.

Every file output is written under a hidden temporary name beside its target (".book.wav.partial")
and renamed into place when finished, so the target path only ever holds a complete, playable file
and an existing file is never overwritten without ``force``. Audio is written block by block as it
arrives: memory stays constant however long the book. WAV (and raw) are written directly; FLAC, OGG,
MP3 and M4B are encoded from a lossless Wave64 intermediate (".book.mp3.partial.w64") once the audio
is complete (M4B by ffmpeg, with the chapter marks as its chapters). The intermediate's header is
kept current after every write, so after an interrupt or a kill it is a playable, resumable file,
and an unfinished encoded output never sits under its final name.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import soundfile as sf

from narrate.errors import OutputError

FORMATS = ("wav", "flac", "ogg", "mp3", "m4b", "raw")
ENCODED = ("flac", "ogg", "mp3", "m4b")  # written through a Wave64 intermediate, encoded at the end

_SUFFIXES = {
    ".wav": "wav", ".wave": "wav", ".flac": "flac", ".ogg": "ogg", ".oga": "ogg",
    ".mp3": "mp3", ".m4b": "m4b", ".m4a": "m4b", ".raw": "raw", ".pcm": "raw",
}
# libsndfile (major format, subtype) of each kind of file written through soundfile.
_SOUNDFILE_TYPES = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "raw": ("RAW", "PCM_16"),
    # The m4b intermediate: Wave64 has no 4 GiB limit (a long book outgrows a WAV) and ffmpeg reads it.
    "w64": ("W64", "PCM_16"),
}
_BLOCK = 1 << 16  # frames per libsndfile call: bounds the scratch memory of the int16 conversion
# A RIFF WAV stores its sizes in 32 bits; stop with a clear message well before they overflow.
_WAV_MAX_SAMPLES = (0xFFFFFFFF - 4096) // 2
_LOW_SPACE = 1 << 20  # this little space left after a failed write means the disk is full
_M4B_BITRATE = "64k"  # AAC for mono speech: clean, about 29 MB per hour
# libsndfile command soundfile does not name (value from sndfile.h): rewrite the header after
# every write, so a file cut off by a crash or kill -9 is still a valid, resumable WAV.
_SFC_SET_UPDATE_HEADER_AUTO = 0x1061
_CHAPTER_FILE = re.compile(r"^\d+ - .+\.[A-Za-z0-9]+$")
_UNSAFE_CHARS = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')


def format_for(path: str, explicit: str | None) -> str:
    """The output format: ``explicit`` (--format) if given, else from the suffix of ``path``.

    stdout ("-") without --format streams WAV, which players recognise without further options.
    """
    if explicit:
        fmt = explicit.strip().lower().lstrip(".")
        if fmt not in FORMATS:
            raise OutputError(f"unknown output format {explicit!r}; choose one of {', '.join(FORMATS)}")
        return fmt
    if str(path) == "-":
        return "wav"
    suffix = Path(path).suffix.lower()
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    if not suffix:
        raise OutputError(f"cannot tell the audio format of {path}: it has no suffix; "
                          f"add one (.wav, .m4b, ...) or use --format")
    raise OutputError(f"unknown audio format {suffix!r} for {path}; use a suffix among "
                      f"{', '.join('.' + f for f in FORMATS)} or --format")


class Sink:
    """One output stream of mono float32 audio in [-1, 1] at a fixed sample rate.

    As a context manager it calls abort() when the block raises (Ctrl-C included) and close()
    otherwise. ``chapters`` holds (title, start sample) of every mark_chapter() call.
    """

    def __init__(self, sample_rate: int, name: str):
        self.sample_rate = int(sample_rate)
        self.samples_written = 0
        self.chapters: list[tuple[str, int]] = []
        self.name = name  # how messages refer to this output
        self._finished = False

    def write(self, samples: np.ndarray) -> None:
        """Append ``samples`` (any length, mono); values outside [-1, 1] are clipped."""
        if self._finished:
            raise ValueError(f"write to {self.name} after it was closed")
        block = _as_block(samples)
        if block.size:
            self._write(block)
            self.samples_written += block.size

    def mark_chapter(self, title: str) -> None:
        """A chapter called ``title`` starts at the current position."""
        self.chapters.append((str(title), self.samples_written))

    def close(self) -> None:
        """Finish the output: the complete file is put in place."""
        if not self._finished:
            self._finished = True
            self._close()

    def abort(self) -> None:
        """Finish what was written so far into a valid, playable output (after an interrupt)."""
        if not self._finished:
            self._finished = True
            self._abort()

    def truncate_to(self, n_samples: int) -> None:
        """Drop everything after the first ``n_samples`` (file outputs but raw, before resuming)."""
        raise OutputError(f"{self.name}: only file output can be truncated for resuming")

    @property
    def kept_in(self) -> str:
        """Where the audio written so far is once abort() has run."""
        return self.name

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, exc_type, exc, tb) -> Literal[False]:
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False

    def _write(self, block: np.ndarray) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def _abort(self) -> None:
        self._close()


def open_sink(path: str | Path, fmt: str, sample_rate: int, force: bool = False,
              resume: bool = False, keep_unfinished: bool = True) -> Sink:
    """Open the output ``path`` ("-" is stdout) in format ``fmt`` (one of FORMATS).

    ``force`` allows replacing an existing file. ``resume`` (files but raw) reopens the audio of
    an interrupted run and appends to it; see Sink.truncate_to. ``keep_unfinished`` (encoded
    formats): abort() keeps the intermediate for a later resume instead of encoding it.
    """
    if fmt not in FORMATS:
        raise OutputError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if int(sample_rate) <= 0:
        raise ValueError(f"sample rate must be positive, got {sample_rate}")
    if str(path) == "-":
        if resume:
            raise OutputError("cannot resume output to stdout; give an output file")
        if fmt not in ("wav", "raw"):
            raise OutputError(f"{fmt} cannot be streamed to stdout; use --format wav or raw, "
                              f"or give an output file")
        return _StreamSink(_stdout_binary(), sample_rate, wav_header=fmt == "wav")
    target = Path(path).expanduser()
    if fmt in ENCODED:
        return _EncodedSink(target, fmt, sample_rate, force, resume, keep_unfinished)
    if resume and fmt != "wav":
        raise OutputError(f"resume needs wav, flac, ogg, mp3 or m4b output; {target} is {fmt}")
    return _SoundFileSink(target, fmt, sample_rate, force, resume)


def unfinished_path(target: Path, fmt: str) -> Path:
    """Where the audio of an unfinished ``fmt`` file output to ``target`` is kept until it is
    complete (the temporary file a resumed run continues)."""
    return _temp_path(Path(target), ".w64" if fmt in ENCODED else "")


def streaming_wav_header(sample_rate: int) -> bytes:
    """A 44-byte PCM16 mono WAV header for a stream of unknown length.

    The RIFF and data sizes are 0xFFFFFFFF, which streaming readers (ffplay, aplay, sox) take
    as "until the end of the stream".
    """
    block_align = 2
    return b"".join([
        b"RIFF", (0xFFFFFFFF).to_bytes(4, "little"), b"WAVE",
        b"fmt ", (16).to_bytes(4, "little"),
        (1).to_bytes(2, "little"),  # PCM
        (1).to_bytes(2, "little"),  # channels
        int(sample_rate).to_bytes(4, "little"),
        (int(sample_rate) * block_align).to_bytes(4, "little"),  # byte rate
        block_align.to_bytes(2, "little"),
        (16).to_bytes(2, "little"),  # bits per sample
        b"data", (0xFFFFFFFF).to_bytes(4, "little"),
    ])


class _StreamSink(Sink):
    """s16le PCM to a binary stream, optionally after a streaming WAV header; flushed per write."""

    def __init__(self, stream: BinaryIO, sample_rate: int, wav_header: bool, name: str = "stdout"):
        super().__init__(sample_rate, name)
        self._stream = stream
        self._header_at = _rewritable_offset(stream) if wav_header else None
        if wav_header:
            self._send(streaming_wav_header(sample_rate))

    def _write(self, block: np.ndarray) -> None:
        self._send(_to_pcm16(block))

    def _send(self, data: bytes) -> None:
        try:
            self._stream.write(data)
            # Flushing per write lets a player start at once and follow the narration live.
            self._stream.flush()
        except BrokenPipeError as exc:
            self._finished = True
            _silence_stdout(self._stream)
            raise OutputError(f"the program reading the audio from {self.name} stopped "
                              f"(broken pipe)") from exc
        except OSError as exc:
            self._finished = True
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise OutputError(f"disk full while writing audio to {self.name}; the audio "
                                  f"written so far is kept where {self.name} points") from exc
            raise OutputError(f"cannot write audio to {self.name}: {_reason(exc)}") from exc

    def _close(self) -> None:
        try:
            self._stream.flush()
            self._fix_header()
        except BrokenPipeError:
            _silence_stdout(self._stream)
        except OSError as exc:
            raise OutputError(f"cannot write audio to {self.name}: {_reason(exc)}") from exc

    def _fix_header(self) -> None:
        """stdout redirected to a file: write the real sizes into the WAV header (players read
        0xFFFFFFFF as 27 hours). A pipe cannot be rewound; there the header stays open-ended."""
        data = 2 * self.samples_written
        if self._header_at is None or 36 + data > 0xFFFFFFFF:
            return
        end = self._stream.tell()
        for offset, value in ((4, 36 + data), (40, data)):
            self._stream.seek(self._header_at + offset)
            self._stream.write(value.to_bytes(4, "little"))
        self._stream.seek(end)
        self._stream.flush()

    def _abort(self) -> None:
        try:
            self._stream.flush()
            self._fix_header()
        except OSError:
            # Interrupted anyway: the reader may be gone, and there is nothing left to save.
            _silence_stdout(self._stream)


class _FileSink(Sink):
    """Base of file outputs: audio goes block by block into ``audio_path`` through libsndfile.

    After a failed write (full disk, I/O error) the sink is "failed": abort() then only closes
    the file and leaves it under its temporary name, which the error message names.
    """

    def __init__(self, target: Path, sample_rate: int, audio_path: Path, kind: str):
        super().__init__(sample_rate, str(target))
        self.path = target
        self.audio_path = audio_path
        self._kind = kind
        self._failed = False
        self._sf: sf.SoundFile | None = None

    def _open_new(self) -> None:
        major, subtype = _SOUNDFILE_TYPES[self._kind]
        endian = "LITTLE" if major == "RAW" else "FILE"  # raw output is s16le on every machine
        try:
            self._sf = sf.SoundFile(str(self.audio_path), "w", self.sample_rate, 1, subtype,
                                    endian=endian, format=major)
        except (OSError, RuntimeError, ValueError) as exc:
            raise OutputError(f"cannot write {self.path}: {_reason(exc)}") from exc
        _update_header_after_writes(self._sf)

    def _write(self, block: np.ndarray) -> None:
        audio = self._sf
        assert audio is not None  # (open from __init__ until close)
        try:
            for start in range(0, block.size, _BLOCK):
                audio.write(block[start:start + _BLOCK])
        except (OSError, RuntimeError, AssertionError) as exc:
            # soundfile raises LibsndfileError (a RuntimeError) or asserts on a short write.
            self._failed = True
            if _is_disk_full(exc, self.audio_path.parent):
                raise OutputError(f"disk full while writing {self.path}; the audio written so far "
                                  f"is kept in {self.audio_path}") from exc
            raise OutputError(f"cannot write {self.path}: {_reason(exc)}; the audio written so "
                              f"far is kept in {self.audio_path}") from exc

    def _finish_audio(self) -> None:
        """Close the audio file, writing its final header."""
        if self._sf is None:
            return
        audio, self._sf = self._sf, None
        try:
            audio.close()
        except (OSError, RuntimeError) as exc:
            if self._failed:
                return  # already reported; keep whatever reached the disk
            self._failed = True
            if _is_disk_full(exc, self.audio_path.parent):
                raise OutputError(f"disk full while writing {self.path}; the audio written so far "
                                  f"is kept in {self.audio_path}") from exc
            raise OutputError(f"cannot finish {self.path}: {_reason(exc)}") from exc

    def _quiet_close(self) -> None:
        """Close after a failed write, keeping the temporary file where the error said."""
        try:
            self._finish_audio()
        except OutputError:
            pass  # the write error already reported is the one the user needs

    def _reopen(self, source: Path) -> None:
        """Continue the audio file ``source`` of an interrupted run (16-bit mono, this rate, of
        this sink's kind), moved to ``audio_path`` if it is elsewhere, positioned at its end."""
        major, subtype = _SOUNDFILE_TYPES[self._kind]
        try:
            info = sf.info(str(source))
        except (OSError, RuntimeError) as exc:
            raise OutputError(f"cannot resume {source}: not a readable {major} file ({_reason(exc)})") from exc
        if (info.format, info.subtype, info.channels, info.samplerate) != (
                major, subtype, 1, self.sample_rate):
            raise OutputError(f"cannot resume {source}: it is {info.format} {info.subtype} with "
                              f"{info.channels} channel(s) at {info.samplerate} Hz, but this run "
                              f"writes 16-bit mono {major} at {self.sample_rate} Hz")
        try:
            if source != self.audio_path:
                os.replace(source, self.audio_path)
            self._sf = sf.SoundFile(str(self.audio_path), "r+")
        except (OSError, RuntimeError) as exc:
            raise OutputError(f"cannot resume {source}: {_reason(exc)}") from exc
        _update_header_after_writes(self._sf)
        self._sf.seek(0, sf.SEEK_END)
        self.samples_written = self._sf.frames

    def truncate_to(self, n_samples: int) -> None:
        if self._kind not in ("wav", "w64") or self._sf is None:
            super().truncate_to(n_samples)
        n_samples = int(n_samples)
        if n_samples < 0:
            raise ValueError(f"cannot truncate to a negative length ({n_samples})")
        if n_samples > self.samples_written:
            raise OutputError(f"cannot resume {self.path}: it holds {self.samples_written} samples, "
                              f"fewer than the {n_samples} the resume record expects")
        try:
            _truncate(self._sf, n_samples)
        except (OSError, RuntimeError) as exc:
            raise OutputError(f"cannot truncate {self.path} for resuming: {_reason(exc)}") from exc
        self.samples_written = n_samples
        self.chapters = [c for c in self.chapters if c[1] <= n_samples]


class _SoundFileSink(_FileSink):
    """wav or raw file, written under a temporary name and renamed into place."""

    def __init__(self, target: Path, fmt: str, sample_rate: int, force: bool, resume: bool):
        super().__init__(target, sample_rate, _temp_path(target), fmt)
        _prepare_target(target, overwrite_ok=force or resume)
        if resume:
            # Its temporary name if a crash left one, else the file an interrupt finished (moved
            # back under the temporary name until this run completes).
            source = next((p for p in (self.audio_path, self.path) if p.is_file()), None)
            if source is None:
                raise OutputError(f"nothing to resume: neither {self.path} nor {self.audio_path} exists")
            self._reopen(source)
        else:
            self._open_new()

    def _write(self, block: np.ndarray) -> None:
        if self._kind == "wav" and self.samples_written + block.size > _WAV_MAX_SAMPLES:
            hours = _WAV_MAX_SAMPLES / self.sample_rate / 3600
            raise OutputError(f"{self.path} reached the 4 GiB size limit of WAV (about {hours:.0f} h "
                              f"at {self.sample_rate} Hz); the audio so far is kept; use --format "
                              f"flac, ogg, mp3 or m4b for a book this long")
        super()._write(block)

    def _close(self) -> None:
        self._finish_audio()
        if self._failed:
            return
        try:
            os.replace(self.audio_path, self.path)
        except OSError as exc:
            raise OutputError(f"cannot move {self.audio_path} to {self.path}: {_reason(exc)}") from exc

    def _abort(self) -> None:
        if self._failed:
            self._quiet_close()
            return
        # What was written is valid as it stands (the header is kept up to date), so an
        # interrupted book is finished exactly like a complete one.
        self._close()


class _EncodedSink(_FileSink):
    """flac, ogg, mp3 or m4b: PCM goes to a Wave64 intermediate, encoded when the audio is complete.

    The intermediate is lossless and its header current after every write: a kill leaves it
    playable, and a resumed run continues it, so clean and resumed runs encode the same samples.
    abort() keeps it (``keep_unfinished``) for --resume, or encodes what there is.
    """

    def __init__(self, target: Path, fmt: str, sample_rate: int, force: bool, resume: bool,
                 keep_unfinished: bool):
        super().__init__(target, sample_rate, _temp_path(target, ".w64"), "w64")
        self.fmt = fmt
        self.keep_unfinished = keep_unfinished
        _prepare_target(target, overwrite_ok=force or resume)
        if fmt == "m4b":  # checked now, not after hours of synthesis
            _require_tools(target, ("ffmpeg",))
        if resume:
            if not self.audio_path.is_file():
                raise OutputError(f"nothing to resume: {self.audio_path} (the unfinished audio "
                                  f"of {self.path}) does not exist")
            self._reopen(self.audio_path)
        else:
            self._open_new()

    @property
    def kept_in(self) -> str:
        return str(self.audio_path) if self.keep_unfinished else self.name

    def _close(self) -> None:
        self._finish(interrupted=False)

    def _abort(self) -> None:
        if self.keep_unfinished and not self._failed:
            self._finish_audio()  # the final header; the file stays for --resume
            if self.samples_written == 0:
                self.audio_path.unlink(missing_ok=True)
            return
        self._finish(interrupted=True)

    def _finish(self, interrupted: bool) -> None:
        if self._failed:
            self._quiet_close()
            return
        self._finish_audio()
        if self.samples_written == 0 and self.fmt == "m4b":
            self.audio_path.unlink(missing_ok=True)
            if interrupted:
                return  # nothing was narrated yet: there is nothing to keep
            raise OutputError(f"no audio to write to {self.path}")
        if self.fmt == "m4b":
            marks = [(title, start / self.sample_rate) for title, start in self.chapters]
            _encode_m4b(["-i", str(self.audio_path)], marks, self.samples_written / self.sample_rate,
                        self.path.stem, self.path, kept=self.audio_path)
        else:
            _transcode(self.audio_path, self.path, self.fmt)
        self.audio_path.unlink(missing_ok=True)


class ChapterFiles:
    """A folder output: one audio file per chapter ("01 - Title.wav"), plus, with ``with_m4b``,
    the whole book as "<book title>.m4b" (default: the folder's name) with chapters, made by
    ffmpeg from the chapter files.

    The chapter number in a file name is ``index`` as given (callers count from 1), zero-padded to
    the width of ``n_chapters`` (at least 2 digits) so that the files sort in order.
    ``resume`` accepts the folder of an interrupted run: its chapter files may be replaced, and
    chapters finished by that run are included in the m4b through add_existing().
    As a context manager, an exception skips the m4b: the chapter files are already playable.
    """

    def __init__(self, folder, fmt: str, sample_rate: int, force: bool = False,
                 with_m4b: bool = True, resume: bool = False, n_chapters: int | None = None,
                 book_title: str | None = None):
        self.folder = Path(folder).expanduser()
        if fmt not in FORMATS or fmt == "raw":
            raise OutputError(f"chapter files cannot be {fmt!r}; choose wav, flac, ogg, mp3 or m4b")
        self.fmt = fmt
        self.sample_rate = int(sample_rate)
        self.force = force
        self.resume = resume
        self.with_m4b = with_m4b
        folder_name = self.folder.resolve().name or "book"
        self.book_title = book_title or folder_name
        self.m4b_path = self.folder / f"{safe_filename(self.book_title, fallback=folder_name)}.m4b"
        self._width = max(2, len(str(n_chapters))) if n_chapters else 2
        self._chapters: dict[int, tuple[str, Path]] = {}
        self._closed = False
        if self.folder.exists() and not self.folder.is_dir():
            raise OutputError(f"{self.folder} exists and is not a folder")
        if not (force or resume):
            # Refuse now rather than at the first chapter or, worse, at the end.
            if with_m4b and self.m4b_path.exists():
                raise OutputError(f"{self.m4b_path} exists; use --force to overwrite")
            existing = self._existing_chapter_files()
            if existing:
                raise OutputError(f"{self.folder} already holds chapter files (such as "
                                  f"{existing[0].name!r}); use --force to overwrite")
        _ensure_folder(self.folder)
        if with_m4b:
            _require_tools(self.m4b_path, ("ffmpeg", "ffprobe"))

    def chapter_path(self, index: int, title: str) -> Path:
        """Where chapter ``index`` called ``title`` is written."""
        name = safe_filename(title, fallback=f"Chapter {index}")
        return self.folder / f"{index:0{self._width}d} - {name}.{self.fmt}"

    def start_chapter(self, index: int, title: str, resume: bool = False) -> Sink:
        """A Sink for chapter ``index``'s file; ``resume`` continues its partial file."""
        path = self.chapter_path(index, title)
        sink = open_sink(path, self.fmt, self.sample_rate, force=self.force or self.resume,
                         resume=resume)
        self._chapters[index] = (str(title), path)
        return sink

    def add_existing(self, index: int, title: str) -> None:
        """Count in a chapter file finished by an interrupted run (for the combined m4b)."""
        path = self.chapter_path(index, title)
        if not path.is_file():
            raise OutputError(f"cannot resume: chapter file {path} is missing")
        self._chapters[index] = (str(title), path)

    def close(self) -> None:
        """Build the combined m4b from the chapter files, in chapter order (if with_m4b)."""
        if self._closed:
            return
        self._closed = True
        if not self.with_m4b or not self._chapters:
            return
        marks, parts, total = [], [], 0.0
        for index in sorted(self._chapters):
            title, path = self._chapters[index]
            duration = _probe_duration(path)
            if duration <= 0:
                continue  # an empty chapter file would make the concat demuxer fail
            marks.append((title, total))
            parts.append(path)
            total += duration
        if not parts:
            return
        listing = self.folder / f".{self.m4b_path.name}.concat.txt"
        try:
            listing.write_text("ffconcat version 1.0\n" + "".join(
                f"file {_concat_quote(p.resolve())}\n" for p in parts), encoding="utf-8")
            _encode_m4b(["-f", "concat", "-safe", "0", "-i", str(listing)], marks, total,
                        self.book_title, self.m4b_path, kept=self.folder)
        except OSError as exc:
            raise OutputError(f"cannot write {listing}: {_reason(exc)}") from exc
        finally:
            listing.unlink(missing_ok=True)

    def __enter__(self) -> ChapterFiles:
        return self

    def __exit__(self, exc_type, exc, tb) -> Literal[False]:
        if exc_type is None:
            self.close()
        else:
            self._closed = True
        return False

    def _existing_chapter_files(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.glob(f"*.{self.fmt}") if _CHAPTER_FILE.match(p.name))


def safe_filename(title: str, fallback: str) -> str:
    """``title`` made safe as a file name on every common filesystem (``fallback`` if empty)."""
    name = _UNSAFE_CHARS.sub(" ", str(title))
    name = " ".join(name.split()).strip(" .")
    # Limit bytes, not characters: filesystems cap names at 255 bytes and titles may be non-ASCII.
    name = name.encode("utf-8")[:120].decode("utf-8", "ignore").rstrip(" .")
    return name or fallback


def _as_block(samples) -> np.ndarray:
    """``samples`` as a contiguous 1-D float32 array, clipped to [-1, 1]."""
    block = np.asarray(samples, dtype=np.float32)
    if block.ndim == 2 and block.shape[1] == 1:
        block = block[:, 0]
    if block.ndim != 1:
        raise ValueError(f"expected mono audio (a 1-D array), got shape {block.shape}")
    # NaN would become arbitrary PCM values (a loud click); silence is the safe reading.
    block = np.nan_to_num(block, nan=0.0, posinf=1.0, neginf=-1.0)
    np.clip(block, -1.0, 1.0, out=block)
    return np.ascontiguousarray(block)


def _to_pcm16(block: np.ndarray) -> bytes:
    # The scale libsndfile uses (x 32768, clipped to int16), so stdout and files agree to within
    # one step (libsndfile rounds down; rounding to nearest halves the error).
    return np.clip(np.rint(block * 32768.0), -32768, 32767).astype("<i2").tobytes()


def _stdout_binary() -> BinaryIO:
    stream = getattr(sys.stdout, "buffer", None)
    if stream is None:
        raise OutputError("stdout cannot take binary audio here; give an output file")
    try:
        is_terminal = stream.isatty()
    except (OSError, ValueError):
        is_terminal = False
    if is_terminal:
        raise OutputError("refusing to write binary audio to a terminal; pipe it to a player "
                          "(| ffplay -nodisp -) or give an output file")
    return stream


def _rewritable_offset(stream: BinaryIO) -> int | None:
    """Where the stream's next byte goes, if it can be rewound there to rewrite it later (a
    regular file not opened for appending); None for pipes, terminals and appending files."""
    try:
        if not stream.seekable():
            return None
        fd = stream.fileno()
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND or not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return stream.tell()
    except (OSError, ValueError, AttributeError):
        return None


def _silence_stdout(stream: BinaryIO) -> None:
    """After the reader of stdout went away, point stdout at /dev/null so that Python's final
    flush at exit does not print a second BrokenPipeError (as the Python docs advise)."""
    if stream is not getattr(sys.stdout, "buffer", None):
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _temp_path(target: Path, extra: str = "") -> Path:
    return target.with_name(f".{target.name}.partial{extra}")


def _prepare_target(target: Path, overwrite_ok: bool) -> None:
    """Refuse to replace an existing file (unless allowed) and make sure the folder is writable."""
    if target.is_dir():
        raise OutputError(f"{target} is a folder, not a file")
    if target.exists() and not target.is_file():  # never replaced, even with --force
        raise OutputError(f"{target} is not a regular file (a device, pipe or socket); give "
                          f"the name of a file to write")
    if target.exists() and not overwrite_ok:
        raise OutputError(f"{target} exists; use --force to overwrite")
    _ensure_folder(target.parent)


def _ensure_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise OutputError(f"cannot create folder {folder}: a file has that name") from exc
    except OSError as exc:
        raise OutputError(f"cannot create folder {folder}: {_reason(exc)}") from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to folder {folder}: permission denied")


def _update_header_after_writes(audio: sf.SoundFile) -> None:
    """Ask libsndfile to keep the header current after every write (see the constant)."""
    # soundfile has no wrapper for this command; _snd/_ffi are its own handles to libsndfile.
    # Should a soundfile release rename them, files are still correct, just not crash-proof.
    snd, ffi = getattr(sf, "_snd", None), getattr(sf, "_ffi", None)
    handle = getattr(audio, "_file", None)
    if audio.format in ("WAV", "W64") and snd is not None and ffi is not None and handle is not None:
        snd.sf_command(handle, _SFC_SET_UPDATE_HEADER_AUTO, ffi.NULL, 1)


def _truncate(audio: sf.SoundFile, frames: int) -> None:
    if hasattr(audio, "truncate"):  # soundfile >= 0.13
        audio.truncate(frames)
        return
    err = sf._snd.sf_command(audio._file, sf._snd.SFC_FILE_TRUNCATE,
                             sf._ffi.new("sf_count_t*", frames), sf._ffi.sizeof("sf_count_t"))
    if err:
        raise RuntimeError("libsndfile could not truncate the file")
    audio.seek(frames)


def _is_disk_full(exc: BaseException, folder: Path) -> bool:
    full = (errno.ENOSPC, errno.EDQUOT)
    if isinstance(exc, OSError):
        if exc.errno in full:
            return True
    elif getattr(sf._ffi, "errno", None) in full:
        # libsndfile reports only "System error"; cffi keeps the errno of its last C call.
        return True
    try:
        return shutil.disk_usage(folder).free < _LOW_SPACE
    except OSError:
        return False


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower() if exc.strerror[:1].isupper() else exc.strerror
    return " ".join(str(exc).split()) or type(exc).__name__


def _require_tools(target: Path, tools: tuple[str, ...]) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            raise OutputError(f"{tool} is needed to write {target} but is not installed (not on "
                              f"PATH); install ffmpeg or choose --format wav, flac, ogg or mp3")


def _encode_m4b(inputs: list[str], marks: list[tuple[str, float]], total_seconds: float,
                title: str, target: Path, kept: Path) -> None:
    """Encode the audio ffmpeg reads from ``inputs`` to an AAC .m4b at ``target`` with chapters
    starting at ``marks`` (title, seconds); ``kept`` is where the audio stays if this fails."""
    partial = _temp_path(target)
    metadata = target.with_name(f".{target.name}.chapters.txt")
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *inputs,
           "-i", str(metadata), "-map", "0:a", "-map_metadata", "1", "-map_chapters", "1",
           "-c:a", "aac", "-b:a", _M4B_BITRATE, "-f", "ipod", str(partial)]
    try:
        metadata.write_text(_ffmetadata(title, marks, total_seconds), encoding="utf-8")
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, errors="replace")
    except OSError as exc:
        partial.unlink(missing_ok=True)
        if _is_disk_full(exc, target.parent):
            raise OutputError(f"disk full while writing {target}; the audio written so far is "
                              f"kept in {kept}") from exc
        raise OutputError(f"cannot run ffmpeg to write {target}: {_reason(exc)}; the audio is "
                          f"kept in {kept}") from exc
    finally:
        metadata.unlink(missing_ok=True)
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        if "No space left" in proc.stderr:
            raise OutputError(f"disk full while writing {target}; the audio written so far is "
                              f"kept in {kept}")
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        detail = lines[-1].strip() if lines else f"exit status {proc.returncode}"
        raise OutputError(f"ffmpeg failed to write {target} ({detail}); the audio is kept in {kept}")
    try:
        os.replace(partial, target)
    except OSError as exc:
        raise OutputError(f"cannot move {partial} to {target}: {_reason(exc)}") from exc


def _transcode(source: Path, target: Path, fmt: str) -> None:
    """Encode the 16-bit intermediate ``source`` to ``fmt`` (flac, ogg or mp3) at ``target``,
    block by block, through a temporary name; the intermediate is kept if this fails."""
    partial = _temp_path(target)
    major, subtype = _SOUNDFILE_TYPES[fmt]
    try:
        with sf.SoundFile(str(source)) as audio, sf.SoundFile(
                str(partial), "w", audio.samplerate, 1, subtype, format=major) as out:
            # int16 in and out: a lossless format gets exactly the intermediate's samples
            for block in audio.blocks(blocksize=_BLOCK, dtype="int16"):
                out.write(block)
        os.replace(partial, target)
    except (OSError, RuntimeError, AssertionError) as exc:
        if _is_disk_full(exc, target.parent):
            raise OutputError(f"disk full while writing {target}; the audio is kept in {source}") from exc
        raise OutputError(f"cannot write {target}: {_reason(exc)}; the audio is kept in {source}") from exc
    finally:
        partial.unlink(missing_ok=True)  # gone already unless this failed or was interrupted


def _ffmetadata(title: str, marks: list[tuple[str, float]], total_seconds: float) -> str:
    """An FFMETADATA1 document: the book title and one [CHAPTER] per chapter span."""
    lines = [";FFMETADATA1", f"title={_meta_escape(title)}"]
    for name, start, end in _chapter_spans(marks, round(total_seconds * 1000)):
        lines += ["[CHAPTER]", "TIMEBASE=1/1000", f"START={start}", f"END={end}",
                  f"title={_meta_escape(name)}"]
    return "\n".join(lines) + "\n"


def _chapter_spans(marks: list[tuple[str, float]], total_ms: int) -> list[tuple[str, int, int]]:
    """(title, start ms, end ms) of each chapter from (title, start seconds) marks.

    Marks at the same time leave an empty chapter, which players show as a useless entry: the
    later heading (usually the more specific one) wins. Marks at the very end hold no audio and
    are dropped. The first chapter starts at 0, as an mp4 chapter track does anyway.
    """
    spans: list[tuple[str, int]] = []
    for name, start_s in sorted(marks, key=lambda m: m[1]):  # stable: keeps marking order
        start = min(max(round(start_s * 1000), 0), total_ms)
        if spans and spans[-1][1] == start:
            spans[-1] = (name, start)
        else:
            spans.append((name, start))
    spans = [s for s in spans if s[1] < total_ms]
    if spans:
        spans[0] = (spans[0][0], 0)
    ends = [s[1] for s in spans[1:]] + [total_ms]
    return [(name, start, end) for (name, start), end in zip(spans, ends)]


def _meta_escape(text: str) -> str:
    # A newline would end the value; '=', ';', '#' and '\' are special in FFMETADATA.
    return re.sub(r"([=;#\\])", r"\\\1", " ".join(str(text).split()))


def _concat_quote(path: Path) -> str:
    return "'" + str(path).replace("'", "'\\''") + "'"


def _probe_duration(path: Path) -> float:
    """Duration in seconds as ffmpeg sees it (what the concat demuxer will use)."""
    proc = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration",
                           "-of", "default=noprint_wrappers=1:nokey=1", str(path)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        detail = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        raise OutputError(f"cannot read chapter file {path} back with ffprobe: {detail[0]}")
    try:
        return float(proc.stdout.strip())
    except ValueError:
        return 0.0  # "N/A": a file without audio
