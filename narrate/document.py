"""Load an input file (plain text, Markdown, HTML, EPUB; PDF in narrate.pdf) as a titled list of chapters of plain text.

Everything a user can get wrong about the input file (missing, unreadable, binary, not UTF-8,
corrupt, unsupported) is reported as one ``InputError`` naming the file.
"""

from __future__ import annotations

import codecs
import io
import posixpath
import re
import warnings
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote

from narrate.errors import InputError
from narrate.text.normalize import roman_to_int


@dataclass
class Chapter:
    title: str  # "" if none
    text: str  # raw text of the chapter body (heading excluded)
    matter: str = ""  # front or back matter the book marks it as ("copyright", ...; narrate.matter)


@dataclass
class BookInfo:
    """What a book says about itself (EPUB metadata, Markdown front matter): written as tags."""

    author: str = ""
    language: str = ""
    year: str = ""
    publisher: str = ""
    description: str = ""
    cover: bytes | None = None  # the cover image's bytes (JPEG or PNG)


@dataclass
class Document:
    title: str
    chapters: list[Chapter]  # at least one; a text without headings is one chapter
    info: BookInfo = field(default_factory=BookInfo)


_MARKDOWN = {".md", ".markdown", ".mdown", ".mkd"}
_HTML = {".html", ".htm", ".xhtml"}
_UNSUPPORTED = {
    ".doc", ".docx", ".odt", ".rtf", ".mobi", ".azw", ".azw3", ".kfx", ".fb2", ".djvu",
    ".pages", ".ps", ".xls", ".xlsx", ".ppt", ".pptx", ".cbz", ".cbr",
}


def load_document(path: str | Path, footnotes: bool = False) -> Document:
    """Read ``path`` as a Document, choosing the reader by suffix (unknown suffixes: plain text).
    Footnotes of EPUB and HTML (marked as such) are left out unless ``footnotes``."""
    shown = str(path)
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in _UNSUPPORTED:
        raise InputError(f"'{shown}': unsupported input format '{suffix}' (use .txt, .md, .html, .epub or .pdf)")
    raw = _read_bytes(path, shown)
    if not raw.strip():
        raise InputError(f"'{shown}' is empty (no text to read)")
    if suffix == ".epub":
        return _load_epub(raw, shown, path.stem, footnotes)
    if suffix == ".pdf":
        from narrate.pdf import load_pdf  # (pypdf is imported only for a PDF)

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


# --- reading bytes ----------------------------------------------------------------------------


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


# --- chapters from headings ------------------------------------------------------------------

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


# An item is ("heading", title, role) or ("text", body, ""); role "doc" marks the book's title.
_Item = tuple[str, str, str]


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


# --- Markdown -------------------------------------------------------------------------------


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


# --- HTML -------------------------------------------------------------------------------------

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


# --- EPUB -------------------------------------------------------------------------------------


# Bounds on what an EPUB (a zip) may inflate to: a real book is a few MB of text and images;
# a "zip bomb" member inflates a small file to gigabytes.
_ZIP_MEMBERS = 10_000
_ZIP_MEMBER_BYTES = 64 << 20
_ZIP_TOTAL_BYTES = 512 << 20
_ZIP_RATIO = 100  # inflated / compressed, for members over 1 MB (text deflates about 3-10x)


def _check_zip(raw: bytes, shown: str) -> None:
    """InputError unless every member of the zip inflates within the bounds above, checked both
    from the sizes its directory declares and by inflating each member through a bounded read."""
    import zipfile

    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # not a zip: the EPUB reader says so in its own words
    with archive:
        members = archive.infolist()
        if len(members) > _ZIP_MEMBERS:
            raise InputError(f"'{shown}' holds {len(members)} files, more than an EPUB may ({_ZIP_MEMBERS})")
        total = 0
        for info in members:
            size = info.file_size
            bomb = size > 1 << 20 and size > _ZIP_RATIO * max(info.compress_size, 1)
            if size > _ZIP_MEMBER_BYTES or bomb:
                raise InputError(f"'{shown}': '{info.filename}' inflates to {size / 1e6:.0f} MB "
                                 f"from {info.compress_size / 1e6:.1f} MB, beyond what an EPUB "
                                 f"may hold ({_ZIP_MEMBER_BYTES >> 20} MB, {_ZIP_RATIO}x)")
            total += size
            if total > _ZIP_TOTAL_BYTES:
                raise InputError(f"'{shown}' inflates to more than {_ZIP_TOTAL_BYTES >> 20} MB")
            if info.is_dir():
                continue
            try:
                with archive.open(info) as member:
                    read = 0
                    while block := member.read(1 << 16):
                        read += len(block)
                        if read > size:  # more than declared: a forged directory entry
                            raise InputError(f"'{shown}': '{info.filename}' inflates to more "
                                             f"than the {size} bytes it declares")
            except InputError:
                raise
            except Exception:  # noqa: BLE001 - a damaged member: the EPUB reader reports it
                return


def _load_epub(raw: bytes, shown: str, stem: str, footnotes: bool = False) -> Document:
    from ebooklib import ITEM_DOCUMENT, epub

    _check_zip(raw, shown)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            book = epub.read_epub(io.BytesIO(raw), {"ignore_ncx": True})
    except Exception as e:  # noqa: BLE001 - any parser failure on a bad file is the file's fault
        reason = getattr(e, "msg", None) or str(e) or type(e).__name__
        reason = " ".join(str(reason).split())[:120]
        raise InputError(f"'{shown}' is not a valid EPUB file ({reason})") from None

    spine: list[tuple[str, str]] = []  # (file name, html) in reading order
    for entry in book.spine:
        idref, linear = entry if isinstance(entry, tuple) else (entry, "yes")
        item = book.get_item_with_id(idref)
        if item is None or linear == "no" or item.get_type() != ITEM_DOCUMENT:
            continue
        if isinstance(item, epub.EpubNav):
            continue
        # The file as stored: ebooklib's get_content() re-parses it with lxml, whose depth limit
        # (256) silently drops everything after a deeply nested block.
        content = item.content
        html = content if isinstance(content, str) else content.decode("utf-8", errors="replace")
        spine.append((item.get_name(), html))

    from narrate.matter import epub_matter

    chapters = _epub_chapters(spine, list(_flatten_toc(book.toc)), footnotes, epub_matter(book, spine))
    if not chapters:
        raise InputError(f"'{shown}' has no readable text")
    meta = book.get_metadata("DC", "title")
    title = " ".join(str(meta[0][0]).split()) if meta and meta[0][0] else stem
    return Document(title=title, chapters=chapters, info=_epub_info(book))


def _epub_info(book) -> BookInfo:
    def first(name: str, joined: bool = False) -> str:
        values = [" ".join(str(v).split()) for v, _ in book.get_metadata("DC", name) if v]
        return ", ".join(values) if joined else (values[0] if values else "")

    description = first("description")
    if "<" in description:  # often HTML
        description = " ".join(" ".join(text for _, text in _html_blocks(description).blocks).split())
    return BookInfo(author=first("creator", joined=True), language=first("language"), year=first("date")[:4],
                    publisher=first("publisher"), description=description, cover=_epub_cover(book))


def _epub_cover(book) -> bytes | None:
    """The cover image: EPUB 3's cover-image item, EPUB 2's <meta name="cover">, or ebooklib's cover."""
    from ebooklib import ITEM_COVER, ITEM_IMAGE

    candidates = [item for item in book.get_items_of_type(ITEM_IMAGE) if "cover-image" in (getattr(item, "properties", None) or [])]
    for _, attrs in book.get_metadata("OPF", "cover"):
        item = book.get_item_with_id(attrs.get("content", "")) if isinstance(attrs, dict) else None
        if item is not None:
            candidates.append(item)
    candidates += list(book.get_items_of_type(ITEM_COVER))
    for item in candidates:
        data = item.get_content()
        if isinstance(data, bytes) and cover_type(data):
            return data
    return None


def _flatten_toc(toc) -> Iterator[tuple[str, str]]:
    """(title, href) of every TOC entry in order, sections included when they link somewhere."""
    for entry in toc:
        if isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[1], (list, tuple)):
            section, children = entry
            if getattr(section, "href", ""):
                yield section.title or "", section.href
            yield from _flatten_toc(children)
        elif isinstance(entry, (tuple, list)):
            yield from _flatten_toc(entry)
        elif getattr(entry, "href", ""):
            yield entry.title or "", entry.href


def _epub_chapters(spine: list[tuple[str, str]], toc: list[tuple[str, str]],
                   footnotes: bool = False, matter: dict[str, str] | None = None) -> list[Chapter]:
    """Chapters from TOC entries: each runs from its (file, anchor) to the next entry's; a
    chapter starting in a file ``matter`` names is that front or back matter.

    Spine documents before the first TOC entry (cover, title page, copyright) are not read.
    Without a usable TOC, each spine document with text is a chapter named by its first heading.
    """
    names = [name for name, _ in spine]
    starts: dict[tuple[int, str], list[str]] = {}
    for title, href in toc:
        target, _, anchor = href.partition("#")
        target = posixpath.normpath(unquote(target))
        pos = _spine_index(names, target)
        if pos is not None:
            starts.setdefault((pos, unquote(anchor)), []).append(" ".join(title.split()))

    parsed = []
    for pos, (_, html) in enumerate(spine):
        watch = {anchor for (p, anchor) in starts if p == pos and anchor}
        parsed.append(_html_blocks(html, watch, footnotes))

    if not starts:
        chapters = []
        for (name, _), parser in zip(spine, parsed):
            headings = [t for k, t in parser.blocks if k == "heading"]
            chapter = _epub_chapter(headings[0] if headings else "", parser.blocks)
            if chapter:
                chapter.matter = (matter or {}).get(name, "")
                chapters.append(chapter)
        return chapters

    # Position of each chapter start in the flat list of (spine index, block index); entries
    # starting at the same place ("Part One" and its first chapter) share one chapter.
    at: dict[tuple[int, int], list[str]] = {}
    for (pos, anchor), titles in starts.items():
        block = parsed[pos].anchors.get(anchor, 0) if anchor else 0
        at.setdefault((pos, block), []).extend(t for t in titles if t)
    marks = sorted((key, ": ".join(titles)) for key, titles in at.items())
    flat = [((pos, i), block) for pos, parser in enumerate(parsed) for i, block in enumerate(parser.blocks)]

    chapters = []
    for n, (start, title) in enumerate(marks):
        end = marks[n + 1][0] if n + 1 < len(marks) else (len(parsed), 0)
        blocks = [block for key, block in flat if start <= key < end]
        chapter = _epub_chapter(title, blocks)
        if chapter:
            chapter.matter = (matter or {}).get(names[start[0]], "")
            chapters.append(chapter)
    return chapters


def _spine_index(names: list[str], target: str) -> int | None:
    if target in names:
        return names.index(target)
    # TOC hrefs are relative to the TOC file, spine names to the OPF: compare the tails.
    for i, name in enumerate(names):
        if name.endswith("/" + target) or target.endswith("/" + name) or posixpath.basename(name) == posixpath.basename(target):
            return i
    return None


def _epub_chapter(title: str, blocks: list[tuple[str, str]]) -> Chapter | None:
    """The chapter body without the leading headings the title already says."""
    folded_title = _fold(title)
    start = 0
    while start < len(blocks) and blocks[start][0] == "heading" and _fold(blocks[start][1]) in folded_title:
        start += 1
    text = "\n\n".join(text for _, text in blocks[start:]).strip()
    return Chapter(title=title, text=text) if text else None


def _fold(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())
