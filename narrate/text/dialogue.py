"""Quoted speech for a second voice: sentences cut where double quotes open and close.

Runs after the text front-end (``narrate.text.segment.spoken``), whose normalization has already
folded typographic quotes (“ ”) to ASCII ("), so a quote mark opens or closes by turn. A quote
may run over several sentences; a paragraph's end (a sentence with a pause of its own) closes
it, as a quotation going on into the next paragraph opens again there. A piece cut out of a
sentence is followed by a comma's pause (``narrate.runtime.pauses.INNER``); the sentence's last piece
keeps the sentence's pause. Apostrophes and single quotes are never quotes here.
"""

from __future__ import annotations

import re
from typing import Iterable, Iterator

from narrate.runtime.pauses import INNER, Sentence

_QUOTE = '"'
_TRAILING = re.compile(r"[.,;:!?)\]]*")  # punctuation right after a closing quote goes with it


def dialogue_pieces(sentences: Iterable[Sentence]) -> Iterator[Sentence]:
    """The sentences cut into pieces of narration and of quoted speech (``dialogue=True``)."""
    inside = False
    for sentence in sentences:
        pieces, inside = _cut(sentence.text, inside)
        for i, (text, quoted) in enumerate(pieces):
            last = i == len(pieces) - 1
            yield Sentence(text, sentence.pause if last else INNER, quoted, sentence.voice)
        if sentence.pause is not None:
            inside = False


def _cut(text: str, inside: bool) -> tuple[list[tuple[str, bool]], bool]:
    """(piece, quoted) of one sentence, starting inside a quote or not; and whether it ends
    inside one. Pieces without a letter or digit join their neighbour."""
    pieces: list[tuple[str, bool]] = []
    start, i = 0, 0
    while i < len(text):
        if text[i] != _QUOTE:
            i += 1
            continue
        if inside:  # closing: the mark and the punctuation after it end the quoted piece
            trailing = _TRAILING.match(text, i + 1)
            assert trailing is not None  # (it matches the empty string)
            end = trailing.end()
            pieces.append((text[start:end], True))
            start = i = end
        else:  # opening: the quoted piece starts with the mark
            pieces.append((text[start:i], False))
            start, i = i, i + 1
        inside = not inside
    pieces.append((text[start:], inside))
    merged: list[tuple[str, bool]] = []
    for piece, quoted in pieces:
        piece = piece.strip()
        if not piece:
            continue
        if not any(ch.isalnum() for ch in piece) and merged:
            merged[-1] = (f"{merged[-1][0]} {piece}", merged[-1][1])
        elif merged and not any(ch.isalnum() for ch in merged[-1][0]):
            merged[-1] = (f"{merged[-1][0]} {piece}", quoted)
        else:
            merged.append((piece, quoted))
    return merged or [(text, inside)], inside
