"""Chapter headings in lines of plain text: ``CHAPTER IV``, ``Chapter 12: The Storm``, ``Part One``."""

from __future__ import annotations

import re

from narrate.text.normalize import roman_to_int

_CARDINALS = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
    "sixteen|seventeen|eighteen|nineteen"
)


_TENS = "twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety"


_ORDINALS = (
    "first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|"
    "thirteenth|fourteenth|fifteenth|sixteenth|seventeenth|eighteenth|nineteenth|twentieth|last"
)


_NUMERAL = (
    rf"\d+|[ivxlcdm]+|(?:{_TENS})(?:[- ](?:{_CARDINALS}))?|{_CARDINALS}|the\s+(?:{_ORDINALS})"
)


_SEPARATOR = r"(?:\s*[:.\u2014\u2013]|\s+-)\s*(?P<sub>\S.*?)"


_NUMBERED_HEADING = re.compile(
    rf"(?P<head>(?:chapter|book|part|volume|act|letter|stave)\s+(?P<num>{_NUMERAL}))(?:{_SEPARATOR})?\s*[.:]?",
    re.IGNORECASE,
)


_NAMED_HEADING = re.compile(
    rf"(?P<head>prologue|epilogue|preface|foreword|afterword|introduction|interlude)(?:{_SEPARATOR})?\s*[.:]?",
    re.IGNORECASE,
)


def _heading(line: str) -> str | None:
    """The chapter title if ``line`` is a heading such as "CHAPTER IV" or "Chapter 3: The Storm"."""
    parts = _heading_parts(line)
    return parts[0] if parts else None


def _heading_parts(line: str) -> tuple[str, bool] | None:
    """(title, whether the line names the chapter after its number) for a heading line."""
    line = " ".join(line.split())
    if not line or len(line) > 100 or not line[0].isupper():
        return None
    m = _NUMBERED_HEADING.fullmatch(line) or _NAMED_HEADING.fullmatch(line)
    if not m:
        return None
    num = m.groupdict().get("num") or ""
    if re.fullmatch(r"[ivxlcdm]+", num, re.I) and not (num in (num.upper(), num.lower()) and roman_to_int(num)):
        return None  # "Part Mix" or "Part Dim" is not a numbered part
    sub = m.group("sub")
    if sub and (len(sub.split()) > 12 or sub[-1] in "!?\"'"):
        return None  # a line of prose that happens to start with "Chapter"
    return line.rstrip(".:").rstrip(), bool(sub)


def _subtitle(line: str) -> bool:
    """Whether a short line right under a bare heading is the chapter's name ("Loomings.")."""
    line = line.strip()
    if not line or len(line) > 60 or _heading(line) or line[-1] in "!?,;\"'":
        return False
    if line.endswith("."):
        words = line.rstrip(".").split()
        return len(words) <= 6 and all(w[0].isupper() or not w[0].isalpha() for w in words)
    return True
