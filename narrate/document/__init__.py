"""Load an input file (plain text, Markdown, HTML, EPUB; PDF in narrate.document.pdf) as a titled list of chapters of plain text.

Everything a user can get wrong about the input file (missing, unreadable, binary, not UTF-8,
corrupt, unsupported) is reported as one ``InputError`` naming the file."""

from __future__ import annotations

from pathlib import Path
from narrate.errors import InputError
from narrate.document.base import _decode, _document_from_items, _read_bytes
from narrate.document.epub import _load_epub
from narrate.document.html import _html_items
from narrate.document.text import _document_from_text
from narrate.document.base import (
    Chapter as Chapter, BookInfo as BookInfo, Document as Document, read_cover as read_cover,
    cover_type as cover_type
)
from narrate.document.text import document_from_text as document_from_text


_MARKDOWN = {".md", ".markdown", ".mdown", ".mkd"}


_HTML = {".html", ".htm", ".xhtml"}


_UNSUPPORTED = {
    ".doc", ".docx", ".odt", ".rtf", ".mobi", ".azw", ".azw3", ".kfx", ".fb2", ".djvu",
    ".pages", ".ps", ".xls", ".xlsx", ".ppt", ".pptx", ".cbz", ".cbr",
}


FORMATS = ("txt", "md", "html", "epub", "pdf")  # what --input-format names


def load_document(path: str | Path, footnotes: bool = False, fmt: str | None = None) -> Document:
    """Read ``path`` as a Document, choosing the reader by ``fmt`` (one of FORMATS) or else by
    suffix (unknown suffixes: plain text). Footnotes of EPUB and HTML (marked as such) are left
    out unless ``footnotes``."""
    shown = str(path)
    path = Path(path)
    if fmt is not None and fmt not in FORMATS:
        raise InputError(f"unknown input format '{fmt}' (use {', '.join(FORMATS)})")
    suffix = f".{fmt}" if fmt else path.suffix.lower()
    if suffix in _UNSUPPORTED:
        raise InputError(f"'{shown}': unsupported input format '{suffix}' (use .txt, .md, .html, .epub or .pdf)")
    raw = _read_bytes(path, shown)
    if not raw.strip():
        raise InputError(f"'{shown}' is empty (no text to read)")
    if suffix == ".epub":
        return _load_epub(raw, shown, path.stem, footnotes)
    if suffix == ".pdf":
        from narrate.document.pdf import load_pdf  # (pypdf is imported only for a PDF)

        return load_pdf(raw, shown, path.stem)
    text = _decode(raw, shown)
    if not text.strip():
        raise InputError(f"'{shown}' is empty (no text to read)")
    if suffix in _HTML:
        doc = _document_from_items(_html_items(text, footnotes), title="")
    else:
        doc = _document_from_text(text, "", markdown=suffix in _MARKDOWN)
    if doc is None:
        raise InputError(f"'{shown}' has no readable text")
    doc.title = doc.title or path.stem
    if isinstance(doc.info.cover, str):  # front matter names a cover image beside the file
        doc.info.cover = read_cover(path.parent / doc.info.cover, f"the cover '{doc.info.cover}' named in '{shown}'")
    return doc
