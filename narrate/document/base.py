"""What every reader makes: ``Document`` (chapters and ``BookInfo``), and the pieces they
share (reading and decoding the bytes, turning headed items into chapters)."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from pathlib import Path

from narrate.errors import InputError


@dataclass
class Chapter:
    title: str  # "" if none
    text: str  # raw text of the chapter body (heading excluded)
    matter: str = ""  # front or back matter the book marks it as ("copyright", ...; narrate.document.matter)


@dataclass
class BookInfo:
    """What a book says about itself (EPUB metadata, Markdown front matter): written as tags."""

    author: str = ""
    language: str = ""
    year: str = ""
    publisher: str = ""
    description: str = ""
    # the cover image's bytes (JPEG or PNG); a Markdown file's front matter gives a path (str),
    # which load_document reads
    cover: bytes | str | None = None


@dataclass
class Document:
    title: str
    chapters: list[Chapter]  # at least one; a text without headings is one chapter
    info: BookInfo = field(default_factory=BookInfo)


def read_cover(path: Path, shown: str) -> bytes:
    """A cover image's bytes (JPEG or PNG); InputError naming ``shown`` otherwise."""
    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as e:
        raise InputError(f"cannot read {shown}: {e.strerror or e}") from None
    if cover_type(data) is None:
        raise InputError(f"{shown} is not a JPEG or PNG image")
    return data


def cover_type(data: bytes) -> str | None:
    """"image/jpeg" or "image/png" by the image's first bytes; None for anything else."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    return None


def _read_bytes(path: Path, shown: str) -> bytes:
    if path.is_dir():
        raise InputError(f"'{shown}' is a directory, not a file")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"input file '{shown}' not found") from None
    except IsADirectoryError:
        raise InputError(f"'{shown}' is a directory, not a file") from None
    except PermissionError:
        raise InputError(f"cannot read '{shown}': permission denied") from None
    except OSError as e:
        raise InputError(f"cannot read '{shown}': {e.strerror or e}") from None


def _decode(raw: bytes, shown: str) -> str:
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise InputError(f"'{shown}' is UTF-16 text, not UTF-8 (convert it: iconv -f UTF-16 -t UTF-8)")
    if b"\x00" in raw[:65536]:
        raise InputError(f"'{shown}' looks like a binary file, not text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        if _mostly_binary(raw):
            raise InputError(f"'{shown}' looks like a binary file, not text") from None
        raise InputError(
            f"'{shown}' is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
            "convert it to UTF-8, e.g. iconv -f latin1 -t UTF-8"
        ) from None
    nul = text.find("\x00")
    if nul >= 0:  # past the sample above: a damaged file, and no phonemizer takes a NUL
        raise InputError(f"'{shown}' holds a NUL byte (character {nul}); it is not plain text")
    sample = text[:65536]
    controls = sum(1 for c in sample if (ord(c) < 32 and c not in "\t\n\r\f\v") or ord(c) == 127)
    if controls > 0.05 * len(sample):
        raise InputError(f"'{shown}' looks like a binary file, not text")
    return text


def _mostly_binary(raw: bytes) -> bool:
    # Text in a legacy 8-bit encoding is still mostly printable ASCII; binary data is not.
    sample = raw[:65536]
    texty = sum(1 for b in sample if 32 <= b < 127 or b in (9, 10, 12, 13))
    return texty < 0.7 * len(sample)


# An item is ("heading", title, role) or ("text", body, ""); role "doc" marks the book's title.
_Item = tuple[str, str, str]


def _document_from_items(items: list[_Item], title: str) -> Document | None:
    """Group items into chapters. Headings with nothing under them: a single one names the next
    chapter ("Part One: Chapter 1"), a run of them is a table of contents and is dropped."""
    chapters: list[Chapter] = []
    heading: str | None = None
    body: list[str] = []
    run: list[str] = []

    def close() -> None:
        nonlocal run
        text = "\n\n".join(b for b in body if b.strip()).strip()
        if heading is None and not text:
            return
        if not text:
            run.append(heading or "")
            return
        name = heading or ""
        if len(run) == 1 and run[0]:
            name = f"{run[0]}: {name}" if name else run[0]
        run = []
        chapters.append(Chapter(title=name, text=text))

    for kind, value, role in items:
        if kind == "heading":
            close()
            body = []
            if role == "doc":
                title = title or value
                heading = value if _has_text_after(items, value) else None
                continue
            heading = value
        else:
            body.append(value)
    close()
    if chapters:
        return Document(title=title, chapters=chapters)
    # Only headings: read them as the text itself rather than reading nothing.
    text = "\n\n".join(value for _, value, _ in items if value.strip()).strip()
    return Document(title=title, chapters=[Chapter("", text)]) if text else None


def _has_text_after(items: list[_Item], doc_heading: str) -> bool:
    """Whether the book-title heading has body text before the next heading."""
    seen = False
    for kind, value, role in items:
        if seen:
            return kind == "text" and bool(value.strip())
        seen = role == "doc" and value == doc_heading
    return False


def _fold(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())
