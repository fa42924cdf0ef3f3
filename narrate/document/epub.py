"""EPUB: chapters from the table of contents, metadata and cover; zip limits against bombs."""

from __future__ import annotations

import io
import posixpath
import warnings
from typing import Iterator
from urllib.parse import unquote

from narrate.document.base import BookInfo, Chapter, Document, _fold, cover_type
from narrate.document.html import _html_blocks
from narrate.errors import InputError

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

    from narrate.document.matter import epub_matter

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
