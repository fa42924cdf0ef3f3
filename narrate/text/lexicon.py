"""A user pronunciation lexicon: whole-word replacements applied to raw text before normalization.

File format (UTF-8), one entry per line::

    # comment lines start with '#'; blank lines are ignored
    Hermione = her-MY-oh-nee          respelling, read by the phonemizer as ordinary text
    Nguyen<TAB>[[ ŋwˈɪn ]]            raw phonemes, passed to the engine untouched
    New York = noo YORK               multi-word keys are allowed

The key and replacement are separated by the first TAB, or by the first '=' on lines without a
TAB. Matching is whole-word and case-insensitive; longer keys win over shorter ones.
"""

from __future__ import annotations

import re
from pathlib import Path

from narrate.errors import InputError


MAX_REPLACEMENT = 400  # characters: a few words' respelling or phonemes, never a chapter


class Lexicon:
    """Word -> spoken replacement (respelling or ``[[ phonemes ]]``)."""

    def __init__(self, entries: dict[str, str] | None = None):
        self._entries: dict[str, str] = {}
        for key, value in (entries or {}).items():
            self._entries[_fold(key)] = value
        self._pattern = _compile(self._entries)

    @classmethod
    def load(cls, path: str | Path) -> "Lexicon":
        """Read a lexicon file; InputError naming the file (and line) if it cannot be used."""
        path = Path(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise InputError(f"lexicon file '{path}' not found") from None
        except IsADirectoryError:
            raise InputError(f"lexicon '{path}' is a directory, not a file") from None
        except PermissionError:
            raise InputError(f"cannot read lexicon '{path}': permission denied") from None
        except OSError as e:
            raise InputError(f"cannot read lexicon '{path}': {e.strerror or e}") from None
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            bad = raw[: e.start].count(b"\n") + 1
            raise InputError(f"lexicon '{path}' line {bad}: not UTF-8 text") from None

        entries: dict[str, str] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            key, value = _parse_line(stripped, path, number)
            entries[key] = value
        return cls(entries)

    def apply(self, text: str) -> str:
        """``text`` with every whole-word, case-insensitive match of a key replaced."""
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda m: self._entries.get(_fold(m.group(0)), m.group(0)), text)

    def __len__(self) -> int:
        return len(self._entries)


def _parse_line(line: str, path: Path, number: int) -> tuple[str, str]:
    where = f"lexicon '{path}' line {number}"
    sep = "\t" if "\t" in line else "="
    if sep not in line:
        raise InputError(f"{where}: expected 'word = replacement' (or word<TAB>replacement)")
    key, value = (part.strip() for part in line.split(sep, 1))
    if not key:
        raise InputError(f"{where}: the word before '{sep.strip() or 'TAB'}' is empty")
    if not value:
        raise InputError(f"{where}: no replacement for '{key}'")
    if any(ord(c) < 32 and c != "\t" or ord(c) == 127 for c in line):
        raise InputError(f"{where}: holds a control character (such as NUL)")
    if len(value) > MAX_REPLACEMENT:
        raise InputError(f"{where}: the replacement is {len(value)} characters long; at most "
                         f"{MAX_REPLACEMENT} are allowed")
    if "[[" in key or "]]" in key:
        raise InputError(f"{where}: the word '{key}' cannot contain [[ or ]]")
    if value.startswith("[[") or value.endswith("]]"):
        inner = value[2:-2].strip() if value.startswith("[[") and value.endswith("]]") else ""
        if not inner or "[[" in inner or "]]" in inner:
            raise InputError(f"{where}: phonemes must be written as [[ phonemes ]], got '{value}'")
    elif "[[" in value or "]]" in value:
        raise InputError(f"{where}: phonemes must be the whole replacement, as [[ phonemes ]]")
    return key, value


def _fold(key: str) -> str:
    # Case and inner spacing do not matter: "new  york" and "New York" are one key.
    return " ".join(key.split()).lower()


def _compile(entries: dict[str, str]) -> re.Pattern | None:
    if not entries:
        return None
    # Longest first, because the regex alternation takes the first alternative that matches.
    keys = sorted(entries, key=len, reverse=True)
    alternatives = "|".join(r"\s+".join(re.escape(word) for word in key.split()) for key in keys)
    return re.compile(r"(?<!\w)(?:" + alternatives + r")(?!\w)", re.IGNORECASE)
