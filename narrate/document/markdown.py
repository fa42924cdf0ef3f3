"""Markdown: headings, paragraphs and front matter (markdown-it)."""

from __future__ import annotations

import re

from narrate.document.base import _Item
from narrate.document.headings import _heading
from narrate.document.html import _html_items


def _front_matter(text: str) -> tuple[dict[str, str], str]:
    """(the plain "key: value" lines of a leading YAML front-matter block, the text without it);
    "author" is also taken from "authors" (its items joined with commas)."""
    m = re.match(r"---[ \t]*\n(.*?)\n(?:---|\.\.\.)[ \t]*(?:\n|$)", text, re.S)
    if not m:
        return {}, text
    values: dict[str, str] = {}
    key = None
    for line in m.group(1).split("\n"):
        item = re.match(r"\s+-\s+(.+?)\s*$", line)
        if item and key:  # a list under the last key
            values[key] = ", ".join(v for v in (values.get(key, ""), item.group(1).strip("\"'")) if v)
            continue
        pair = re.match(r"([A-Za-z_][\w-]*):\s*(.*?)\s*$", line)
        if pair:
            key = pair.group(1).lower()
            values[key] = pair.group(2).strip("\"'")
    if "authors" in values and not values.get("author"):
        values["author"] = values["authors"]
    return values, text[m.end():]


def _markdown_items(text: str) -> list[_Item]:
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable(["table", "strikethrough"]).parse(text)
    h1_count = sum(1 for t in tokens if t.type == "heading_open" and t.tag == "h1")
    items: list[_Item] = []
    row: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.type == "heading_open":
            content = _inline_text(tokens[i + 1]).strip()
            if tok.tag in ("h1", "h2") and content:
                # A lone H1 opening the file is the book's title, the H2s its chapters.
                role = "doc" if tok.tag == "h1" and h1_count == 1 and not items else ""
                items.append(("heading", " ".join(content.split()), role))
            elif content:
                items.append(("text", content, ""))
            i += 3
            continue
        if tok.type == "inline" and tokens[i - 1].type in ("th_open", "td_open"):
            row.append(_inline_text(tok).strip())
        elif tok.type == "tr_close":
            cells = [c for c in row if c]
            if cells:
                items.append(("text", ", ".join(cells), ""))
            row = []
        elif tok.type == "inline":
            content = _inline_text(tok).strip()
            title = _heading(content) if "\n" not in content else None
            if title:
                items.append(("heading", title, ""))
            elif content:
                items.append(("text", content, ""))
        elif tok.type == "html_block":
            items.extend(item for item in _html_items(tok.content) if item[0] == "text")
        # Code (fence, code_block) is not read aloud.
        i += 1
    return items


def _inline_text(tok) -> str:
    parts = []
    for child in tok.children or []:
        if child.type in ("text", "code_inline", "text_special"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")
        # Emphasis and link markers, images and inline HTML tags carry no words.
    return "".join(parts)
