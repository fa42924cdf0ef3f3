"""HTML (and an EPUB's XHTML): the text of its blocks, headings and notes."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from narrate.document.base import _Item

_BLOCK_TAGS = {
    "p", "div", "section", "article", "header", "footer", "aside", "blockquote", "li", "ul", "ol",
    "dl", "dt", "dd", "tr", "table", "thead", "tbody", "pre", "figure", "figcaption", "hr", "body",
    "main", "center", "address", "caption",
}


_HEADING_TAGS = {"h1", "h2", "h3", "h4", "h5", "h6"}


_NOTE = re.compile(r"\b(?:doc-)?(?:foot|end|rear)notes?\b")  # epub:type / role values of notes


_SKIP_TAGS = {"script", "style", "head", "title", "svg", "math", "noscript", "nav", "rt", "rp"}


class _HTMLText(HTMLParser):
    """HTML -> blocks of text: ("heading"|"text", text), paragraphs kept apart, <br> as a line
    break, footnote markers dropped, and footnotes themselves (epub:type or role footnote,
    endnote...) unless ``footnotes``; ``anchors`` records the block index where each watched
    id begins, so one file can hold several chapters."""

    def __init__(self, watch: set[str] | None = None, footnotes: bool = False):
        super().__init__(convert_charrefs=True)
        self._footnotes = footnotes
        self._note: list = []  # [tag, depth] of the footnote being skipped
        self.blocks: list[tuple[str, str]] = []
        self.levels: list[int] = []  # heading level of each block (7 for text)
        self._level = 7
        self.anchors: dict[str, int] = {}
        self._watch = watch or set()
        self._parts: list[str] = []
        self._kind = "text"
        self._skip = 0
        self._sup: list[list[str]] = []
        self._noteref = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if self._note:
            self._note[1] += tag == self._note[0]
        elif not self._footnotes and _NOTE.search(f"{attrs.get('epub:type', '')} {attrs.get('role', '')}"):
            self._flush()
            self._note = [tag, 1]
            self._skip += 1
        for key in ("id", "name"):
            if attrs.get(key) in self._watch and attrs[key] not in self.anchors:
                self._flush()
                self.anchors[attrs[key]] = len(self.blocks)
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag in _HEADING_TAGS:
            self._flush()
            self._kind = "heading"
            self._level = int(tag[1])
        elif tag in _BLOCK_TAGS:
            self._flush()
        elif tag == "br":
            self._parts.append("\n")
        elif tag in ("td", "th"):
            self._parts.append(" ")
        elif tag == "sup":
            self._sup.append([])
        elif tag == "a" and ("noteref" in attrs.get("epub:type", "") or attrs.get("role") == "doc-noteref"):
            self._noteref += 1

    def handle_endtag(self, tag):
        if self._note and tag == self._note[0]:
            self._note[1] -= 1
            if self._note[1] == 0:
                self._note = []
                self._skip = max(0, self._skip - 1)
                self._parts = []
                return
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in _HEADING_TAGS:
            self._flush()
        elif tag in _BLOCK_TAGS:
            self._flush()
        elif tag in ("td", "th"):
            self._parts.append(", ")
        elif tag == "sup" and self._sup:
            text = "".join(self._sup.pop())
            # A superscript of digits or symbols is a footnote marker, not something to say.
            if re.search(r"[^\W\d_]", text):
                self._write(text)
        elif tag == "a" and self._noteref:
            self._noteref -= 1

    def handle_data(self, data):
        if not self._skip and not self._noteref:
            self._write(data)

    def _write(self, text: str) -> None:
        (self._sup[-1] if self._sup else self._parts).append(text)

    def _flush(self) -> None:
        raw = "".join(self._parts)
        lines = (" ".join(line.split()) for line in raw.split("\n"))
        text = "\n".join(line for line in lines if line)
        text = re.sub(r"(?:\s*,)+\s*$", "", re.sub(r",(?:\s*,)+", ",", text)).strip()
        if text:
            self.blocks.append((self._kind, text))
            self.levels.append(self._level if self._kind == "heading" else 7)
        self._parts = []
        self._kind = "text"
        self._level = 7

    def close(self):
        super().close()
        self._flush()


def _html_blocks(html: str, watch: set[str] | None = None, footnotes: bool = False) -> _HTMLText:
    parser = _HTMLText(watch, footnotes)
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):
        # html.parser gives up on some malformed markup; the words matter more than the layout.
        parser = _HTMLText()
        parser.handle_data(re.sub(r"<[^>]*>", " ", html))
        parser.close()
    return parser


def _html_items(html: str, footnotes: bool = False) -> list[_Item]:
    """A standalone HTML file: h1/h2 start chapters, like Markdown headings."""
    parser = _html_blocks(html, footnotes=footnotes)
    items: list[_Item] = []
    for (kind, text), level in zip(parser.blocks, parser.levels):
        if kind == "heading" and level <= 2:
            items.append(("heading", " ".join(text.split()), ""))
        else:
            items.append(("text", text, ""))
    return items
