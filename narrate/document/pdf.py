"""PDF input: the text layer of a PDF (pypdf) as a Document of chapters of paragraphs.

- Running headers and footers (a line at a page's top or bottom that comes back, digits aside,
  on at least ``RUNNING`` of the pages) and page numbers (a bare number there) are dropped.
- A word cut at a line's end ("exam-" / "ple") is joined; lines are joined into paragraphs, a
  paragraph ending at a blank line or at a short line (flowed text fills its lines, only a
  paragraph's last line and headings fall well short); a short line without a sentence's end
  is a heading, a paragraph of its own.
- Chapters come from the outline (bookmarks), each from its entry's heading line (found on the
  page by its title; else the page's top) to the next entry's; pages before the first entry
  (title page, copyright) are not read, as in an EPUB. Entries at the same place share a
  chapter ("Part One: Chapter 1"). Without an outline, headings are found in the text as in a
  .txt file ("Chapter 3", "CHAPTER IV").
- Columns come out in the order pypdf finds them in the page's content, usually column by column.

A PDF that is not one, is encrypted with a password, or has no text layer (scanned pages) is an
InputError naming the file.
"""

from __future__ import annotations

import io
import logging
import re
import warnings

from narrate.document.base import BookInfo, Document, _document_from_items, _fold
from narrate.document.epub import _epub_chapter
from narrate.document.text import _text_items
from narrate.errors import InputError

RUNNING = 0.4      # share of the pages a line must be on (at their top or bottom) to be a running header
EDGE = 2           # lines at a page's top and at its bottom that may be headers, footers or numbers
SHORT = 0.75       # a line shorter than this share of the usual line ends its paragraph
MIN_CHARACTERS = 20  # letters and digits below which a PDF has no text layer to speak of

_PAGE_NUMBER = re.compile(r"[\W_]*(?:page\s+)?(?:\d+|[ivxlcdm]+)(?:\s+of\s+\d+)?[\W_]*", re.I)
_SENTENCE_END = re.compile(r"[.!?:][\"'”’)\]]*$")

Position = tuple[int, int]  # (page, line) in the cleaned pages


def load_pdf(raw: bytes, shown: str, stem: str) -> Document:
    reader = _open(raw, shown)
    pages = _clean_pages([_page_lines(page, n, shown) for n, page in enumerate(reader.pages)])
    if sum(ch.isalnum() for lines in pages for line in lines for ch in line) < MIN_CHARACTERS:
        raise InputError(f"'{shown}' has no text layer (scanned pages?); narrate reads text, not "
                         f"images: give it a PDF with text (e.g. made by OCR with ocrmypdf)")
    typical = _typical_length(pages)
    meta = reader.metadata or {}
    title = " ".join(str(meta.get("/Title") or "").split()) or stem
    info = BookInfo(author=" ".join(str(meta.get("/Author") or "").split()))
    marks = _outline_marks(reader, pages)
    if not marks:
        lines = [line for page in pages for line in page]
        text = "\n\n".join(_paragraphs(lines, typical))
        doc = _document_from_items(_text_items(text), title)
        if doc is None:
            raise InputError(f"'{shown}' has no readable text")
        doc.info = info
        return doc
    chapters, before = [], ""  # (the title of an entry with no text of its own goes before the next's)
    for n, (start, name) in enumerate(marks):
        end = marks[n + 1][0] if n + 1 < len(marks) else (len(pages), 0)
        lines = [line for p, page in enumerate(pages) for i, line in enumerate(page) if start <= (p, i) < end]
        blocks = [("text", paragraph) for paragraph in _paragraphs(_after_heading(lines, name), typical)]
        name = f"{before}: {name}" if before else name
        chapter = _epub_chapter(name, blocks)
        if chapter:
            chapters.append(chapter)
        before = "" if chapter else name
    if not chapters:
        raise InputError(f"'{shown}' has no readable text after its first bookmark")
    return Document(title=title, chapters=chapters, info=info)


def _open(raw: bytes, shown: str):
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its notes on odd files are not the user's business
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader = PdfReader(io.BytesIO(raw))
            if reader.is_encrypted and not reader.decrypt(""):  # (an owner password alone does not stop reading)
                raise InputError(f"'{shown}' is encrypted with a password; decrypt it first "
                                 f"(e.g. qpdf --decrypt --password=... in.pdf out.pdf)")
            len(reader.pages)
    except InputError:
        raise
    except DependencyError as e:
        raise InputError(f"'{shown}' is encrypted in a way that needs another package ({e})") from None
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as e:
        reason = " ".join((str(e) or type(e).__name__).split())[:120]
        raise InputError(f"'{shown}' is not a valid PDF file ({reason})") from None
    return reader


def _page_lines(page, number: int, shown: str) -> list[str]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            text = page.extract_text() or ""
    except Exception as e:  # noqa: BLE001 - any failure inside a page's content is the file's fault
        reason = " ".join((str(e) or type(e).__name__).split())[:120]
        raise InputError(f"'{shown}': cannot read the text of page {number + 1} ({reason})") from None
    lines = [" ".join(line.split()) for line in text.replace("\r", "\n").split("\n")]
    while lines and not lines[-1]:  # (a page's end is no paragraph's end)
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return lines


def _edges(lines: list[str]) -> list[int]:
    """Indices of the first and last EDGE non-blank lines."""
    filled = [i for i, line in enumerate(lines) if line]
    return sorted(set(filled[:EDGE] + filled[-EDGE:]))


def _key(line: str) -> str:
    return re.sub(r"\d+", "#", line.lower())


def _clean_pages(pages: list[list[str]]) -> list[list[str]]:
    """The pages without running headers, footers and page numbers."""
    seen: dict[str, int] = {}
    for lines in pages:
        for key in {_key(lines[i]) for i in _edges(lines)}:
            seen[key] = seen.get(key, 0) + 1
    running = {k for k, n in seen.items() if len(pages) >= 3 and n >= RUNNING * len(pages)}
    cleaned = []
    for lines in pages:
        drop = {i for i in _edges(lines) if _key(lines[i]) in running or _PAGE_NUMBER.fullmatch(lines[i])}
        cleaned.append([line for i, line in enumerate(lines) if i not in drop])
    return cleaned


def _typical_length(pages: list[list[str]]) -> int:
    lengths = sorted(len(line) for lines in pages for line in lines if line)
    return lengths[int(0.8 * (len(lengths) - 1))] if lengths else 0


def _paragraphs(lines: list[str], typical: int) -> list[str]:
    """Lines joined into paragraphs, words cut by a hyphen at a line's end made whole again."""
    paragraphs, current = [], ""
    for line in lines + [""]:
        if not line:
            if current:
                paragraphs.append(current)
            current = ""
            continue
        short = len(line) < SHORT * typical and not line.endswith(("-", ","))
        if short and current and not _SENTENCE_END.search(line):  # a heading: a paragraph of its own
            paragraphs.append(current)
            current = ""
        if current.endswith(("-", "\u00ad")) and len(current) > 1 and current[-2].isalpha() and line[0].islower():
            current = current[:-1] + line
        else:
            current = f"{current} {line}" if current else line
        if short:
            paragraphs.append(current)
            current = ""
    return paragraphs


def _outline_marks(reader, pages: list[list[str]]) -> list[tuple[Position, str]]:
    """(where each outline entry starts, its title), in reading order; entries at one place
    share it, their titles joined."""
    at: dict[Position, list[str]] = {}
    for title, page in _flatten_outline(reader, reader.outline if _has_outline(reader) else []):
        if 0 <= page < len(pages):
            at.setdefault((page, _heading_line(pages[page], title)), []).append(title)
    return sorted((pos, ": ".join(t for t in titles if t)) for pos, titles in at.items())


def _has_outline(reader) -> bool:
    try:
        return bool(reader.outline)
    except Exception:  # noqa: BLE001 - a broken outline is read as none
        return False


def _flatten_outline(reader, outline) -> list[tuple[str, int]]:
    """(title, page index) of every outline entry in order, nested ones included."""
    entries = []
    for item in outline:
        if isinstance(item, list):
            entries += _flatten_outline(reader, item)
            continue
        try:
            page = reader.get_destination_page_number(item)
        except Exception:  # noqa: BLE001 - an entry pointing nowhere is skipped
            continue
        entries.append((" ".join(str(item.title or "").split()), page))
    return entries


def _heading_line(lines: list[str], title: str) -> int:
    """The line of the page where the entry's heading stands (0: not found, the page's top)."""
    want = _fold(title)
    for i, line in enumerate(lines):
        got = _fold(line)
        if got and (got == want or (want.startswith(got) and len(got) >= min(8, len(want)))):
            return i
    return 0


def _after_heading(lines: list[str], title: str) -> list[str]:
    """A chapter's lines without the heading lines at its top that its title already says."""
    want, start = f" {_fold(title)} ", 0
    while start < len(lines) and (not lines[start] or (_fold(lines[start]) and f" {_fold(lines[start])} " in want)):
        start += 1
    return lines[start:]
