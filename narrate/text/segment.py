"""Cut text into speakable sentences: sentence boundaries (nupunkt), paragraph breaks, explicit
pauses (``[pause 2s]``), and overlong sentences split at clause boundaries so the engine never
gets an unbounded input."""

from __future__ import annotations

import re
from bisect import bisect_left
from typing import TYPE_CHECKING, Iterator

import nupunkt

from narrate.errors import InputError
from narrate.runtime.pauses import PARAGRAPH_PAUSE, Sentence
from narrate.text.normalize import PHONEME_BLOCK, normalize

if TYPE_CHECKING:
    from narrate.text.lexicon import Lexicon

_PARAGRAPH_BREAK = re.compile(r"\n[ \t\f\v]*(?:\n[ \t\f\v]*)+")
# An explicit pause in the text: [pause 2s], [pause 1.5 s], [pause 300ms]; [pause] alone is a
# paragraph's pause. Where a text asks for a pause, narrate makes it exactly that long.
PAUSE_MARK = re.compile(r"\[\s*pause(?:\s+(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|sec|seconds?)?)?\s*\]", re.I)
MAX_PAUSE = 60.0  # seconds: the longest explicit pause


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of ``text``, surrounding whitespace excluded.

    A blank line always ends a sentence; within a paragraph nupunkt decides, so abbreviations
    (Mr., a.m., U.S.), decimals ($3.50) and quoted speech do not end one.
    """
    return list(_iter_spans(text))


# A symbol repeated more than three times ("!!!!!!", "........", a run of U+FEFF): the sentence
# splitter's time grows with the square of such a run, so it sees three and spaces for the rest
# (the same length: its spans still index the text).
_REPEATED_SYMBOL = re.compile(r"([^\w\s])\1{3,}")


def _fold_runs(m: re.Match) -> str:
    return m.group(1) * 3 + " " * (len(m.group(0)) - 3)


def _iter_spans(text: str) -> Iterator[tuple[int, int]]:
    # One paragraph at a time, so a long chapter is not tokenized before its first sentence.
    start = 0
    for brk in [*_PARAGRAPH_BREAK.finditer(text), None]:
        end = brk.start() if brk else len(text)
        paragraph = text[start:end]
        if paragraph.strip():
            for s, e in nupunkt.sent_spans(_REPEATED_SYMBOL.sub(_fold_runs, paragraph)):
                chunk = paragraph[s:e]
                lead = len(chunk) - len(chunk.lstrip())
                trail = len(chunk.rstrip())
                if trail > lead:
                    yield start + s + lead, start + s + trail
        if brk:
            start = brk.end()


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, each on one line (inner whitespace collapsed)."""
    return list(_iter_sentences(text))


def _iter_sentences(text: str) -> Iterator[str]:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    for s, e in _iter_spans(text):
        yield " ".join(text[s:e].split())


_PHONEMES = re.compile(PHONEME_BLOCK)
_CONJUNCTION = (
    r"and|but|or|nor|so|yet|because|while|although|though|whereas|which|who|whom|whose|when|"
    r"where|if|unless|until|since|then|as|that"
)
# Cut points in order of preference; each finds the index the first piece ends at.
_CUTS = (
    re.compile(r"[;:](?=\s)"),  # cut after the mark
    re.compile(r"(?:,|\s[\u2014\u2013-]|\u2014)(?=\s)"),
    re.compile(r"(?=\s(?:" + _CONJUNCTION + r")\b)"),  # cut before the conjunction
)
_SPACE = re.compile(r"(?=\s)")


def split_long(sentence: str, max_chars: int = 200) -> list[str]:
    """``sentence`` in pieces of at most ``max_chars`` characters, cut at the strongest clause
    boundary available (; : then , and dashes, then before a conjunction, then any space).

    Raw phonemes ``[[ ... ]]`` are never cut (split_phoneme_blocks makes each fit), so one block
    longer than ``max_chars`` stays a longer piece; a word longer than ``max_chars`` is cut hard
    at the limit. Time is linear in the length: each cut looks at ``max_chars`` characters.
    """
    if len(sentence) <= max_chars:
        return [sentence]
    max_chars = max(max_chars, 2)
    text = sentence.strip()
    protected = [m.span() for m in _PHONEMES.finditer(text)]  # sorted, disjoint
    pieces = []
    pos = 0
    while len(text) - pos > max_chars:
        cut = pos + _cut_point(text, pos, max_chars, protected)
        pieces.append(text[pos:cut].strip())
        pos = cut
        while pos < len(text) and text[pos].isspace():
            pos += 1
    pieces.append(text[pos:])
    return [p for p in pieces if p]


def _cut_point(text: str, pos: int, max_chars: int, protected: list[tuple[int, int]]) -> int:
    """Where the piece starting at ``pos`` ends, counted from ``pos``."""
    window = text[pos:pos + max_chars + 1]
    # The phoneme blocks that reach into the window, relative to it.
    first = max(0, bisect_left(protected, (pos, pos)) - 1)
    near = []
    for s, e in protected[first:]:
        if s > pos + max_chars:
            break
        if e > pos:
            near.append((s - pos, e - pos))

    def allowed(i: int) -> bool:
        return 0 < i <= max_chars and not any(s < i < e for s, e in near)

    # A clause cut that leaves a tiny first piece is worse than a later, weaker cut.
    shortest = max_chars // 3
    for pattern in _CUTS:
        ends = [m.end() for m in pattern.finditer(window) if allowed(m.end())]
        ends = [i for i in ends if i >= shortest]
        if ends:
            return ends[-1]
    ends = [m.end() for m in _SPACE.finditer(window) if allowed(m.end())]
    if ends:
        return ends[-1]
    # No space before the limit: keep a phoneme block whole, else cut the word at the limit.
    for s, e in near:
        if s < max_chars < e:
            return e if s <= 0 else s
    return max_chars


def split_phoneme_blocks(text: str, max_chars: int = 200) -> str:
    """Each ``[[ ... ]]`` block longer than ``max_chars`` rewritten as several shorter blocks,
    cut between phoneme words (or within an overlong one), so that no piece outgrows the limit."""
    room = max(max_chars - 6, 1)  # "[[ " + phonemes + " ]]"

    def split(m: re.Match) -> str:
        if len(m.group(0)) <= max_chars:
            return m.group(0)
        parts, current = [], ""
        for word in m.group(0)[2:-2].split():
            for start in range(0, len(word), room):
                piece = word[start:start + room]
                if current and len(current) + 1 + len(piece) > room:
                    parts.append(current)
                    current = ""
                current = f"{current} {piece}" if current else piece
        if current:
            parts.append(current)
        return " ".join(f"[[ {p} ]]" for p in parts)

    return _PHONEMES.sub(split, text)


def prepare_sentence(sentence: str, max_chars: int = 200, lexicon: "Lexicon | None" = None) -> list[str]:
    """One raw sentence -> the engine-ready pieces: lexicon, then normalize, then split_long.

    Pieces with nothing to say (scene breaks such as "* * *") are dropped.
    """
    sentence = PAUSE_MARK.sub(" ", sentence)  # where a pause is not made (live input), it is not read either
    sentence = _REPEATED_SYMBOL.sub(r"\1\1\1", sentence)  # "!!!!!!!!" says no more than "!!!"
    if lexicon is not None:
        sentence = lexicon.apply(sentence)
    text = split_phoneme_blocks(normalize(sentence), max_chars)
    pieces = (p.strip() for p in split_long(text, max_chars))
    return [p for p in pieces if any(ch.isalnum() for ch in p)]


def sentences(text: str, max_chars: int = 200, lexicon: "Lexicon | None" = None) -> Iterator[str]:
    """The whole text front-end for one chapter body, lazily, one engine-ready piece at a time
    (``spoken`` without the pauses)."""
    for sentence in spoken(text, max_chars, lexicon):
        yield sentence.text


def spoken(text: str, max_chars: int = 200, lexicon: "Lexicon | None" = None,
           paragraph_pause: float | None = None) -> Iterator[Sentence]:
    """One chapter body as engine-ready Sentences, lazily, each with the pause after it: a
    paragraph's last one ``paragraph_pause``, one followed by ``[pause Ns]`` that pause (a mark
    opening a paragraph lengthens the paragraph's pause before it; one opening the text does
    nothing), the others None (the narrator's sentence pause). InputError for a pause mark
    over MAX_PAUSE seconds.

    Sentences are found on the raw text (so "Mr." or "$3.50" cannot fool the splitter after
    normalization rewrote them), then each is prepared with ``prepare_sentence``.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    last: Sentence | None = None  # held back until what follows it says its pause
    start = 0
    for brk in [*_PARAGRAPH_BREAK.finditer(text), None]:
        end = brk.start() if brk else len(text)
        pos = start
        for mark in [*PAUSE_MARK.finditer(text, start, end), None]:
            words = text[pos:mark.start() if mark else end]
            if last is not None and words.strip():  # nothing can change its pause any more
                yield last
                last = None
            for s, e in _iter_spans(words):
                for piece in prepare_sentence(" ".join(words[s:e].split()), max_chars, lexicon):
                    if last is not None:
                        yield last
                    last = Sentence(piece)
            if mark is not None:
                if last is not None:
                    seconds = pause_seconds(mark, paragraph_pause)
                    last = Sentence(last.text, seconds if last.pause is None else max(seconds, last.pause))
                pos = mark.end()
        if last is not None and last.pause is None and paragraph_pause is not None:
            last = Sentence(last.text, paragraph_pause)
        if brk:
            start = brk.end()
    if last is not None:
        yield last


def pause_seconds(mark: re.Match, paragraph_pause: float | None = None) -> float:
    """The seconds a PAUSE_MARK match asks for (a bare [pause]: a paragraph's pause)."""
    if mark.group(1) is None:
        return PARAGRAPH_PAUSE if paragraph_pause is None else paragraph_pause
    seconds = float(mark.group(1)) / (1000 if (mark.group(2) or "s").lower() == "ms" else 1)
    if seconds > MAX_PAUSE:
        raise InputError(f"'{mark.group(0)}' is too long a pause (at most {MAX_PAUSE:g} s)")
    return seconds
