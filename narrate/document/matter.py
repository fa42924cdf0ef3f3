"""Front and back matter: the parts of a book that are not read by default (--front-matter reads
them): cover and title pages, copyright, contents, dedication, "Also by", acknowledgements,
index, bibliography, notes, colophon.

Told by a chapter's title in any input, and in an EPUB also by what the book says of its files:
the EPUB 2 guide, the EPUB 3 landmarks and the epub:type of a file's body or first section.
"""

from __future__ import annotations

import posixpath
import re
from html.parser import HTMLParser
from urllib.parse import unquote

# (what it is, titles that say so: the whole title, lowercased, punctuation as spaces)
_TITLES = [
    ("cover", r"(front )?cover( page)?"),
    ("title page", r"(half )?title( page)?"),
    ("copyright", r"copyright( page| notice)?|imprint|legal notice|publisher s note"),
    ("contents", r"(table of )?contents|toc"),
    ("dedication", r"dedication"),
    ("also by", r"(also|other (books|titles|works)|more books|books) by\b.*|by the same author|praise( for\b.*)?"),
    ("acknowledgements", r"acknowledge?ments?"),
    ("index", r"(general |subject )?index( of\b.*)?"),
    ("bibliography", r"bibliography|references|works cited|further reading"),
    ("notes", r"(end)?notes"),
    ("list", r"list of (illustrations|figures|tables|maps|abbreviations)"),
    ("colophon", r"colophon|about the (type|typeface|publisher)"),
]
_BY_TITLE = [(kind, re.compile(pattern)) for kind, pattern in _TITLES]

# epub:type values (EPUB 3 structural semantics) and guide types (EPUB 2) -> what it is
_EPUB_TYPES = {
    "cover": "cover", "titlepage": "title page", "title-page": "title page", "halftitlepage": "title page",
    "copyright-page": "copyright", "copyright": "copyright", "imprint": "copyright",
    "toc": "contents", "dedication": "dedication", "seriespage": "also by",
    "acknowledgements": "acknowledgements", "acknowledgments": "acknowledgements",
    "index": "index", "bibliography": "bibliography", "colophon": "colophon",
    "endnotes": "notes", "rearnotes": "notes", "loi": "list", "lot": "list", "other-credits": "credits",
}


def matter_by_title(title: str) -> str:
    """What a chapter with this title is, if front or back matter ("copyright", "contents",
    ...); "" for the book's text."""
    folded = " ".join(re.sub(r"[^\w\s]", " ", title.lower()).split())
    for kind, pattern in _BY_TITLE:
        if pattern.fullmatch(folded):
            return kind
    return ""


def epub_matter(book, spine: list[tuple[str, str]]) -> dict[str, str]:
    """{spine file name: what it is} for the files an EPUB marks as front or back matter."""
    names = {posixpath.basename(name): name for name, _ in spine}
    kinds: dict[str, str] = {}

    def mark(href: str, types: str) -> None:
        name = names.get(posixpath.basename(unquote(href.partition("#")[0])))
        kind = next((_EPUB_TYPES[t] for t in types.split() if t in _EPUB_TYPES), "")
        if name and kind:
            kinds.setdefault(name, kind)

    for ref in getattr(book, "guide", None) or []:
        mark(ref.get("href", ""), ref.get("type", ""))
    for item in book.get_items():
        if type(item).__name__ == "EpubNav":
            for href, types in _landmarks(_text(item)):
                mark(href, types)
    for name, html in spine:
        m = re.search(r"<(?:body|section)\b[^>]*\bepub:type\s*=\s*[\"']([^\"']+)", html)
        if m:
            mark(name, m.group(1))
    return kinds


def _text(item) -> str:
    content = item.content
    return content if isinstance(content, str) else content.decode("utf-8", errors="replace")


class _Landmarks(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.depth = 0  # inside <nav epub:type="landmarks">: nav elements open
        self.links: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "nav" and (self.depth or "landmarks" in (a.get("epub:type") or "").split()):
            self.depth += 1
        elif tag == "a" and self.depth and a.get("href"):
            self.links.append((a["href"], a.get("epub:type") or ""))

    def handle_endtag(self, tag):
        if tag == "nav" and self.depth:
            self.depth -= 1


def _landmarks(html: str) -> list[tuple[str, str]]:
    """(href, epub:type) of the links in a navigation document's landmarks."""
    parser = _Landmarks()
    parser.feed(html)
    parser.close()
    return parser.links
