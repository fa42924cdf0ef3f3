"""Markdown or HTML arriving on standard input, turned into plain text block by block as it
comes (``narrate - --input-format md|html``), so that markup is not read aloud and speech still
starts before the input ends.

A Markdown block is complete at a blank line outside a fenced code block; an HTML block when
the parser closes it (a new block tag, or its end tag). Each complete block is read by the
same reader a file of that format goes through (narrate.document.markdown, .html): code is not
read, emphasis and link marks carry no words, headings become sentences of their own.
"""

from __future__ import annotations

import re

from narrate.document.html import _HTMLText
from narrate.document.markdown import _front_matter, _markdown_items

_FENCE = re.compile(r" {0,3}(```|~~~)")
_FINAL = re.compile(r"[.!?:;\u2026][\"'\u201d\u2019)\]]*$")


def _said(items) -> str:
    """Items (kind, text, role) as paragraphs of plain text; a heading ends like a sentence."""
    parts = []
    for kind, text, *_ in items:
        text = text.strip()
        if kind == "heading" and not _FINAL.search(text):
            text += "."
        if text:
            parts.append(text)
    return "".join(p + "\n\n" for p in parts)


class MarkdownBlocks:
    """Markdown in (any pieces), plain text out (whole blocks)."""

    def __init__(self):
        self.pending = ""
        self.started = False  # past a leading front-matter block

    def feed(self, text: str) -> str:
        self.pending += text
        cut = self._last_break()
        if cut == 0:
            return ""
        done, self.pending = self.pending[:cut], self.pending[cut:]
        return self._read(done)

    def flush(self) -> str:
        """Everything pending, the input being quiet for now; an open code block stays pending."""
        if self._in_fence(self.pending):
            return ""
        done, self.pending = self.pending, ""
        return self._read(done)

    def end(self) -> str:
        """Everything pending: the input has ended."""
        done, self.pending = self.pending, ""
        return self._read(done)

    def _read(self, text: str) -> str:
        if not self.started and text.strip():
            self.started = True
            _, text = _front_matter(text.lstrip("\ufeff"))
        return _said(_markdown_items(text)) if text.strip() else ""

    def _last_break(self) -> int:
        """The end of the last blank line outside a code fence (0: none yet)."""
        cut, pos, fence = 0, 0, False
        for line in self.pending.splitlines(keepends=True):
            pos += len(line)
            if not line.endswith("\n"):
                break  # still arriving
            if _FENCE.match(line):
                fence = not fence
            elif not fence and not line.strip():
                cut = pos
        return cut

    @staticmethod
    def _in_fence(text: str) -> bool:
        return sum(1 for line in text.splitlines() if _FENCE.match(line)) % 2 == 1


class HtmlBlocks:
    """HTML in (any pieces), plain text out (each block as the parser closes it)."""

    def __init__(self, footnotes: bool = False):
        self.parser = _HTMLText(footnotes=footnotes)
        self.taken = 0

    def feed(self, text: str) -> str:
        try:
            self.parser.feed(text)
        except (AssertionError, ValueError):  # markup html.parser gives up on: its words, as text
            self.parser.handle_data(re.sub(r"<[^>]*>", " ", text))
        return self._new()

    def flush(self) -> str:
        self.parser._flush()  # the block being written is all there is for now
        return self._new()

    def end(self) -> str:
        try:
            self.parser.close()
        except (AssertionError, ValueError):
            self.parser._flush()
        return self._new()

    def _new(self) -> str:
        blocks = self.parser.blocks[self.taken:]
        self.taken = len(self.parser.blocks)
        return _said(blocks)


def markup_reader(fmt: str | None, footnotes: bool = False) -> MarkdownBlocks | HtmlBlocks | None:
    """The block reader of ``fmt`` ("md", "html"); None for plain text (txt, None)."""
    if fmt == "md":
        return MarkdownBlocks()
    return HtmlBlocks(footnotes) if fmt == "html" else None
