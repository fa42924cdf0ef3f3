"""Plain text (and text given directly): paragraphs and headed chapters."""

from __future__ import annotations

from narrate.document.base import BookInfo, Document, _document_from_items, _Item
from narrate.document.headings import _heading_parts, _subtitle
from narrate.document.markdown import _front_matter, _markdown_items
from narrate.errors import InputError


def document_from_text(text: str, title: str = "", markdown: bool = False) -> Document:
    """Chapters of ``text`` (e.g. read from standard input); InputError if it has no text."""
    doc = _document_from_text(text, title, markdown)
    if doc is None:
        raise InputError("the input has no text to read")
    return doc


def _document_from_text(text: str, title: str, markdown: bool) -> Document | None:
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if markdown:
        front, text = _front_matter(text)
        doc = _document_from_items(_markdown_items(text), title or front.get("title", ""))
        if doc is not None:
            doc.info = BookInfo(author=front.get("author", ""), language=front.get("language", front.get("lang", "")),
                                year=front.get("year", front.get("date", ""))[:4],
                                publisher=front.get("publisher", ""), description=front.get("description", ""))
            doc.info.cover = front.get("cover") or None  # a path, read by load_document
        return doc
    return _document_from_items(_text_items(text), title)


def _text_items(text: str) -> list[_Item]:
    """Headings are lines after a blank line, at the start of the text, or right after another
    heading (a table of contents); inside a paragraph "Chapter 3. The..." is prose."""
    lines = text.split("\n")
    items: list[_Item] = []
    body: list[str] = []
    after_heading = False
    i = 0
    while i < len(lines):
        at_start = i == 0 or not lines[i - 1].strip() or after_heading
        parts = _heading_parts(lines[i]) if at_start else None
        after_heading = parts is not None
        if parts is None:
            body.append(lines[i])
            i += 1
            continue
        title, named = parts
        if body:
            items.append(("text", "\n".join(body), ""))
            body = []
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        after = lines[i + 2] if i + 2 < len(lines) else ""
        # Gutenberg style: "CHAPTER I." with the chapter's name on the next line.
        if not named and _subtitle(nxt) and not after.strip():
            title = f"{title}: {nxt.strip().rstrip('.')}"
            i += 1
        items.append(("heading", title, ""))
        i += 1
    if body:
        items.append(("text", "\n".join(body), ""))
    return items
