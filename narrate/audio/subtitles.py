"""Subtitles beside the audio: SRT or WebVTT cues timed from the narrator's word timings.

A sentence becomes one cue, or several when it is longer than ``MAX_CUE`` characters (cut at
word boundaries into phrases, each timed by its own words). A cue runs from its first word's
start to its last word's end, inside its sentence's audio (the span of output samples the
sentence's chunks filled); a sentence none of whose words was timed (the decoder's position can
step over a short word) shows for its whole span. The text is the sentence as the engine read
it (numbers and abbreviations spelled out).

"vtt-words" is WebVTT whose cues also time each word: a timestamp tag before every word but the
first (``One <00:00:01.200>two``), the WebVTT way of karaoke-style captions; a word the decoder
stepped over shows with the word before it.

The file is written cue by cue as sentences end, so an interrupted run keeps its cues; a resumed
run keeps those inside the audio it keeps and numbers on from there.
"""

from __future__ import annotations

import os
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from narrate.engine.generate import WordTiming
from narrate.errors import OutputError

FORMATS = ("srt", "vtt", "vtt-words")
LINE = 42      # characters per subtitle line (the usual broadcast limit)
MAX_CUE = 2 * LINE  # a cue shows at most two lines
MIN_CUE = 0.2  # seconds: a cue shorter than this is stretched within its sentence


@dataclass(frozen=True)
class Cue:
    start: float  # seconds in the output audio
    end: float
    text: str
    # (word number in ``text``, seconds its speech starts) of the words that were timed, in order
    words: tuple[tuple[int, float], ...] = field(default=(), compare=False)


def sentence_cues(text: str, words: list[WordTiming], span: tuple[float, float], offset: float = 0.0) -> list[Cue]:
    """The cues of one sentence: ``text``, its timed ``words`` (numbered within the sentence,
    seconds from ``offset``), and the span [start, end) its audio fills in the output."""
    first, last = span
    pieces = _phrases(text.split())
    timed: list[list[float] | None] = [None] * len(pieces)
    owner = [p for p, (a, b) in enumerate(pieces) for _ in range(a, b)]
    for w in words:
        if 0 <= w.index < len(owner):
            t = timed[owner[w.index]]
            s, e = w.start + offset, w.end + offset
            timed[owner[w.index]] = [min(t[0], s), max(t[1], e)] if t else [s, e]
    if not any(timed):
        return [Cue(first, last, text)]
    # A phrase without a timed word joins the one before it (the first: the one after).
    merged: list[tuple[int, int, list[float]]] = []
    pending_start = None
    for (a, b), t in zip(pieces, timed):
        if t is None:
            if merged:
                merged[-1] = (merged[-1][0], b, merged[-1][2])
            elif pending_start is None:
                pending_start = a
            continue
        merged.append((a if pending_start is None else pending_start, b, t))
        pending_start = None
    tokens = text.split()
    starts: dict[int, float] = {}  # word number -> its start (the earliest, if timed twice)
    for w in words:
        starts[w.index] = min(starts.get(w.index, w.start + offset), w.start + offset)
    cues = []
    floor = first
    for i, (a, b, (s, e)) in enumerate(merged):
        s = min(max(s, floor), last)
        e = min(max(e, s + MIN_CUE), last)
        if i + 1 == len(merged) and e <= s:
            e = last
        timed_words = tuple((k - a, min(max(starts[k], s), e)) for k in range(a, b) if k in starts)
        cues.append(Cue(s, e, " ".join(tokens[a:b]), timed_words))
        floor = e
    return [c for c in cues if c.end > c.start] or [Cue(first, last, text)]


def _phrases(tokens: list[str]) -> list[tuple[int, int]]:
    """[a, b) token ranges of at most MAX_CUE characters (one overlong word alone), cut after
    punctuation where that keeps the phrases at least half full."""
    pieces, a = [], 0
    while a < len(tokens):
        b, length = a, 0
        while b < len(tokens) and (b == a or length + 1 + len(tokens[b]) <= MAX_CUE):
            length += len(tokens[b]) + (b > a)
            b += 1
        if b < len(tokens):
            for c in range(b - 1, a, -1):  # the last punctuation in the second half
                if tokens[c - 1][-1] in ",;:" and len(" ".join(tokens[a:c])) >= MAX_CUE // 2:
                    b = c
                    break
        pieces.append((a, b))
        a = b
    return pieces


# --- the file -----------------------------------------------------------------------------------


def _stamp(seconds: float, fmt: str) -> str:
    h, rest = divmod(_ms(seconds), 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{',' if fmt == 'srt' else '.'}{ms:03d}"


def format_cue(number: int, cue: Cue, fmt: str) -> str:
    """One cue block, ending in a blank line."""
    if fmt == "vtt-words":
        lines = _tagged(cue)
    else:
        lines = "\n".join(textwrap.wrap(cue.text, LINE, break_long_words=False)) or cue.text
        lines = _escaped(lines) if fmt == "vtt" else lines
    return f"{number}\n{_stamp(cue.start, fmt)} --> {_stamp(cue.end, fmt)}\n{lines}\n\n"


def _tagged(cue: Cue) -> str:
    """The cue's lines with a timestamp tag before each timed word but the first. WebVTT wants
    them after the cue's start, before its end and increasing, as written (to the millisecond):
    a word whose start would break that shows with the word before it."""
    tokens = cue.text.split()
    tags: dict[int, str] = {}
    last, end = _ms(cue.start), _ms(cue.end)
    for k, start in cue.words:
        if 0 < k < len(tokens) and last < _ms(start) < end:
            tags[k], last = f"<{_stamp(start, 'vtt')}>", _ms(start)
    # wrapped on the words alone (the tags take no room on screen), never inside one
    lines, k = [], 0
    for line in textwrap.wrap(cue.text, LINE, break_long_words=False, break_on_hyphens=False) or [cue.text]:
        n = len(line.split())
        lines.append(" ".join(tags.get(j, "") + _escaped(tokens[j]) for j in range(k, k + n)))
        k += n
    return "\n".join(lines)


def _escaped(text: str) -> str:
    """WebVTT cue text: '<' starts a tag and '&' an entity ('a < b' would not parse)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _ms(seconds: float) -> int:
    return max(0, int(round(seconds * 1000)))


_BLOCK = re.compile(r"(\d+)\n(\d\d):(\d\d):(\d\d)[,.](\d{3}) --> (\d\d):(\d\d):(\d\d)[,.](\d{3})\n(.+?)\n\n", re.S)


def read_cues(text: str) -> list[tuple[int, float, float, str]]:
    """(number, start, end, text) of each whole cue block of an SRT or VTT file (a block cut
    short by an interruption is left out)."""
    cues = []
    for m in _BLOCK.finditer(text):
        g = [int(x) for x in m.groups()[1:9]]
        start = g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000
        end = g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000
        cues.append((int(m.group(1)), start, end, m.group(10)))
    return cues


def subtitle_path(audio: Path, fmt: str) -> Path:
    return audio.with_suffix(".vtt" if fmt == "vtt-words" else f".{fmt}")


class SubtitleFile:
    """The cues of one audio file, appended as sentences end.

    resume_at: seconds of audio a resumed run keeps (None: a fresh file); the cues inside it
    are kept and the numbering goes on after them.
    """

    def __init__(self, path: Path, fmt: str, resume_at: float | None = None, force: bool = False):
        self.path, self.fmt = path, fmt
        self.count = 0
        kept = ""
        if resume_at is not None and path.exists():
            try:
                old = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise OutputError(f"cannot read the subtitles {path} to resume them: {e}") from None
            limit = round(resume_at * 1000)
            for block, (_number, _start, end, _text) in zip(_BLOCK.finditer(old), read_cues(old)):
                if round(end * 1000) > limit:
                    break
                self.count += 1
                kept += block.group(0)  # (as written: numbered from 1 as the cues it counts)
        elif resume_at is None and path.exists() and not force:
            raise OutputError(f"{path} exists; use --force to overwrite")
        tmp = path.with_name(f".{path.name}.partial")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(("" if fmt == "srt" else "WEBVTT\n\n") + kept)
        os.replace(tmp, path)
        self.file = open(path, "a", encoding="utf-8")

    def add(self, cues: list[Cue]) -> None:
        self.file.write("".join(format_cue(self.count + i + 1, c, self.fmt) for i, c in enumerate(cues)))
        self.count += len(cues)
        self.file.flush()

    def sync(self) -> None:
        """On disk before a resume record that counts on these cues is saved."""
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


class SentenceTimes:
    """Where each sentence of a stream lies in one output file: its span of samples (counted as
    its chunks are written) and its timed words; a sentence's cues once its last chunk is out."""

    def __init__(self, file: SubtitleFile, rate: int, texts, first_sample: int):
        self.file, self.rate = file, rate
        self.texts = texts            # sentence number in the stream -> its text
        self.origin = first_sample / rate  # the stream's first sample, in the file
        self.start = self.origin      # of the sentence going on
        self.words: dict[int, list[WordTiming]] = {}

    def chunk(self, chunk, samples_written: int) -> None:
        """An AudioChunk just written, with the file's sample count after it."""
        for w in chunk.words:
            self.words.setdefault(w.sentence, []).append(w)
        if chunk.final:
            end = samples_written / self.rate
            words = self.words.pop(chunk.sentence, [])
            for s in [s for s in self.words if s < chunk.sentence]:
                del self.words[s]  # (late words of a sentence already out)
            self.file.add(sentence_cues(self.texts(chunk.sentence), words, (self.start, end), self.origin))
            self.start = end
