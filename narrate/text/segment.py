"""Cut text into speakable sentences: sentence boundaries (nupunkt), paragraph breaks, and
overlong sentences split at clause boundaries so the engine never gets an unbounded input."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Iterator

import nupunkt

from narrate.text.normalize import normalize

if TYPE_CHECKING:
    from narrate.text.lexicon import Lexicon

_PARAGRAPH_BREAK = re.compile(r"\n[ \t\f\v]*(?:\n[ \t\f\v]*)+")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of ``text``, surrounding whitespace excluded.

    A blank line always ends a sentence; within a paragraph nupunkt decides, so abbreviations
    (Mr., a.m., U.S.), decimals ($3.50) and quoted speech do not end one.
    """
    return list(_iter_spans(text))


def _iter_spans(text: str) -> Iterator[tuple[int, int]]:
    # One paragraph at a time, so a long chapter is not tokenized before its first sentence.
    start = 0
    for brk in [*_PARAGRAPH_BREAK.finditer(text), None]:
        end = brk.start() if brk else len(text)
        paragraph = text[start:end]
        if paragraph.strip():
            for s, e in nupunkt.sent_spans(paragraph):
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


_PHONEMES = re.compile(r"\[\[.*?\]\]")
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

    Raw phonemes ``[[ ... ]]`` are never cut, so one block longer than ``max_chars`` stays a
    longer piece; a word longer than ``max_chars`` is cut hard at the limit.
    """
    if len(sentence) <= max_chars:
        return [sentence]
    max_chars = max(max_chars, 2)
    pieces = []
    rest = sentence.strip()
    while len(rest) > max_chars:
        cut = _cut_point(rest, max_chars)
        pieces.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    pieces.append(rest)
    return [p for p in pieces if p]


def _cut_point(text: str, max_chars: int) -> int:
    protected = [m.span() for m in _PHONEMES.finditer(text)]

    def allowed(i: int) -> bool:
        return 0 < i <= max_chars and not any(s < i < e for s, e in protected)

    # A clause cut that leaves a tiny first piece is worse than a later, weaker cut.
    shortest = max_chars // 3
    for pattern in _CUTS:
        ends = [m.end() for m in pattern.finditer(text, 0, max_chars + 1) if allowed(m.end())]
        ends = [i for i in ends if i >= shortest]
        if ends:
            return ends[-1]
    ends = [m.end() for m in _SPACE.finditer(text, 0, max_chars + 1) if allowed(m.end())]
    if ends:
        return ends[-1]
    # No space before the limit: keep a phoneme block whole, else cut the word at the limit.
    for s, e in protected:
        if s < max_chars < e:
            return e if s == 0 else s
    return max_chars


def prepare_sentence(sentence: str, max_chars: int = 200, lexicon: "Lexicon | None" = None) -> list[str]:
    """One raw sentence -> the engine-ready pieces: lexicon, then normalize, then split_long.

    Pieces with nothing to say (scene breaks such as "* * *") are dropped.
    """
    if lexicon is not None:
        sentence = lexicon.apply(sentence)
    pieces = (p.strip() for p in split_long(normalize(sentence), max_chars))
    return [p for p in pieces if any(ch.isalnum() for ch in p)]


def sentences(text: str, max_chars: int = 200, lexicon: "Lexicon | None" = None) -> Iterator[str]:
    """The whole text front-end for one chapter body, lazily, one engine-ready piece at a time.

    Sentences are found on the raw text (so "Mr." or "$3.50" cannot fool the splitter after
    normalization rewrote them), then each is prepared with ``prepare_sentence``.
    """
    for sentence in _iter_sentences(text):
        yield from prepare_sentence(sentence, max_chars, lexicon)
