import warnings
from pathlib import Path

import pytest
from ebooklib import epub

from narrate.document.base import Chapter, Document
from narrate.document.text import document_from_text
from narrate.document import load_document
from narrate.errors import InputError
from narrate.text.normalize import normalize


def chapters(doc):
    return [(c.title, c.text) for c in doc.chapters]


# --- plain text -----------------------------------------------------------------------------


def test_text_without_headings_is_one_chapter(tmp_path):
    path = tmp_path / "story.txt"
    path.write_text("Just text.\n\nMore text.\n", encoding="utf-8")
    assert load_document(path) == Document(title="story", chapters=[Chapter("", "Just text.\n\nMore text.")])


def test_chapter_headings_in_plain_text():
    text = (
        "The Project Gutenberg eBook\n\nContents\n\n"
        "CHAPTER I. Down the Rabbit-Hole\nCHAPTER II. The Pool of Tears\n\n\n"
        "CHAPTER I.\nDown the Rabbit-Hole\n\n"
        "Alice was tired.\nAs described in\nChapter 3. The end of this line is prose.\n\n"
        "CHAPTER IV\n\nThe pool.\n\n"
        "Chapter 12\n\nTwelve.\n\n"
        "Chapter 3: The Storm\n\nRain.\n\n"
        "PROLOGUE\n\nBefore.\n\n"
        "BOOK ONE\n\nChapter the First\n\nOnce.\n\n"
        "Epilogue\n\nAfter.\n"
    )
    doc = document_from_text(text, title="Alice")
    assert doc.title == "Alice"
    assert chapters(doc) == [
        ("", "The Project Gutenberg eBook\n\nContents"),  # the table of contents is dropped
        (
            "CHAPTER I: Down the Rabbit-Hole",
            "Alice was tired.\nAs described in\nChapter 3. The end of this line is prose.",
        ),
        ("CHAPTER IV", "The pool."),
        ("Chapter 12", "Twelve."),
        ("Chapter 3: The Storm", "Rain."),
        ("PROLOGUE", "Before."),
        ("BOOK ONE: Chapter the First", "Once."),
        ("Epilogue", "After."),
    ]


def test_heading_titles_are_spoken_as_numbers():
    doc = document_from_text("Chapter IV\n\nText.")
    assert doc.chapters[0].title == "Chapter IV"
    assert normalize(doc.chapters[0].title) == "Chapter four"


def test_prose_mentioning_chapters_is_not_a_heading():
    text = "Chapter one was the best part of the book.\n\nPart Mix\n\nPart DIM\n\nchapter 2\n\nEnd."
    assert len(document_from_text(text).chapters) == 1


def test_empty_text_is_an_error():
    with pytest.raises(InputError, match="no text"):
        document_from_text(" \n\n\t")


# --- Markdown -------------------------------------------------------------------------------

MARKDOWN = """# My Book

## Chapter 1

Hello *world* with [a link](http://example.com) and `code`.

- item one
- item **two**

| name | age |
|------|-----|
| Ann  | 42  |

```python
print("not read aloud")
```

> A quote
> on two lines

### A sub heading

## Chapter 2

![cover](cover.png) Some <span>inline</span> html.

CHAPTER IV

Four.
"""


def test_markdown_chapters_and_stripped_markup(tmp_path):
    path = tmp_path / "book.md"
    path.write_text(MARKDOWN, encoding="utf-8")
    doc = load_document(path)
    assert doc.title == "My Book"
    assert chapters(doc) == [
        (
            "Chapter 1",
            "Hello world with a link and code.\n\nitem one\n\nitem two\n\nname, age\n\nAnn, 42"
            "\n\nA quote\non two lines\n\nA sub heading",
        ),
        ("Chapter 2", "Some inline html."),
        ("CHAPTER IV", "Four."),
    ]


def test_markdown_front_matter_title_and_text_under_book_title():
    text = "---\ntitle: \"Front Title\"\nauthor: x\n---\n# Heading One\n\nIntro.\n\n# Heading Two\n\nBody."
    doc = document_from_text(text, markdown=True)
    assert doc.title == "Front Title"
    assert chapters(doc) == [("Heading One", "Intro."), ("Heading Two", "Body.")]


def test_markdown_suffix_is_case_insensitive(tmp_path):
    path = tmp_path / "NOTES.MARKDOWN"
    path.write_text("# Notes\n\nSome **bold** text.", encoding="utf-8")
    doc = load_document(path)
    assert chapters(doc) == [("Notes", "Some bold text.")]


def test_html_file(tmp_path):
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>Ignored</title><style>p {}</style></head><body>"
        "<h1>Intro</h1><p>First <b>bold</b> words.</p><h3>Aside</h3><p>Note<sup>2</sup>.</p>"
        "<h2>Next</h2><ul><li>one</li><li>two</li></ul></body></html>",
        encoding="utf-8",
    )
    doc = load_document(path)
    assert doc.title == "page"
    assert chapters(doc) == [("Intro", "First bold words.\n\nAside\n\nNote."), ("Next", "one\n\ntwo")]


# --- EPUB -----------------------------------------------------------------------------------


def write_epub(path: Path) -> None:
    book = epub.EpubBook()
    book.set_identifier("tiny-1")
    book.set_title("Tiny Book")
    book.set_language("en")
    cover = epub.EpubHtml(title="Cover", file_name="cover.xhtml", content="<html><body><p>Cover page</p></body></html>")
    ch1 = epub.EpubHtml(
        title="One",
        file_name="text/ch1.xhtml",
        content="<html><body><h1>Chapter 1</h1><p>It was a dark night.<sup><a href='#n1'>1</a></sup></p>"
        "<p>Second &amp; last paragraph.</p></body></html>",
    )
    ch2 = epub.EpubHtml(
        title="Two",
        file_name="text/ch2.xhtml",
        content="<html><body><h2>Chapter 2: The Storm</h2><p>Rain<br/>fell.</p><script>var x;</script>"
        "<h2 id='s3'>Chapter 3</h2><p>Third text.</p></body></html>",
    )
    for item in (cover, ch1, ch2):
        book.add_item(item)
    book.toc = [
        epub.Link("text/ch1.xhtml", "Chapter 1", "c1"),
        (
            epub.Section("Part Two"),
            [epub.Link("text/ch2.xhtml", "Chapter 2: The Storm", "c2"), epub.Link("text/ch2.xhtml#s3", "Chapter 3", "c3")],
        ),
    ]
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", cover, ch1, ch2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        epub.write_epub(str(path), book)


def test_epub_chapters_from_table_of_contents(tmp_path):
    path = tmp_path / "tiny.epub"
    write_epub(path)
    doc = load_document(path)
    assert doc.title == "Tiny Book"
    assert chapters(doc) == [
        ("Chapter 1", "It was a dark night.\n\nSecond & last paragraph."),
        ("Chapter 2: The Storm", "Rain\nfell."),
        ("Chapter 3", "Third text."),
    ]


@pytest.mark.parametrize("content", [b"PK\x03\x04 garbage" * 10, b"just some text"])
def test_corrupt_epub(tmp_path, content):
    path = tmp_path / "broken.epub"
    path.write_bytes(content)
    with pytest.raises(InputError, match=r"'.*broken\.epub' is not a valid EPUB file"):
        load_document(path)


def test_truncated_epub(tmp_path):
    good = tmp_path / "good.epub"
    write_epub(good)
    path = tmp_path / "cut.epub"
    path.write_bytes(good.read_bytes()[:500])
    with pytest.raises(InputError, match="cut.epub' is not a valid EPUB file"):
        load_document(path)


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.txt", b"", "is empty"),
        ("blank.md", b"  \n\t\n", "is empty"),
        ("nul.txt", b"abc\x00def", "looks like a binary file"),
        ("noise.txt", bytes(range(128, 256)) * 20, "looks like a binary file"),
        ("latin1.txt", "caf\u00e9 au lait".encode("latin-1"), "is not UTF-8 text (byte 0xe9 at offset 3)"),
        ("wide.txt", "Hi".encode("utf-16"), "is UTF-16 text, not UTF-8"),
        ("only-code.md", b"```\ncode\n```\n", "has no readable text"),
    ],
)
def test_bad_files(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError) as err:
        load_document(path)
    assert name in str(err.value)
    assert message in str(err.value)


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfHello.\r\nWorld.\r\n")
    assert chapters(load_document(path)) == [("", "Hello.\nWorld.")]


def test_unknown_suffix_is_read_as_text(tmp_path):
    path = tmp_path / "README"
    path.write_text("Plain words.", encoding="utf-8")
    assert chapters(load_document(path)) == [("", "Plain words.")]


@pytest.mark.parametrize("suffix", [".docx", ".odt"])
def test_unsupported_formats(tmp_path, suffix):
    path = tmp_path / f"paper{suffix}"
    path.write_bytes(b"%PDF-1.4")
    with pytest.raises(InputError) as err:
        load_document(path)
    assert str(err.value) == f"'{path}': unsupported input format '{suffix}' (use .txt, .md, .html, .epub or .pdf)"


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InputError, match=r"input file '.*nothere\.txt' not found"):
        load_document(tmp_path / "nothere.txt")
    with pytest.raises(InputError, match="is a directory, not a file"):
        load_document(tmp_path)


def test_permission_denied(tmp_path, monkeypatch):
    path = tmp_path / "secret.txt"
    path.write_text("hidden", encoding="utf-8")

    def deny(self):
        raise PermissionError(13, "Permission denied")

    # Simulated: the tests may run as root, for whom chmod 000 changes nothing.
    monkeypatch.setattr(Path, "read_bytes", deny)
    with pytest.raises(InputError, match=r"cannot read '.*secret\.txt': permission denied"):
        load_document(path)


def test_footnotes_are_left_out_unless_asked_for(tmp_path):
    html = tmp_path / "notes.html"
    html.write_text("<html><body><h1>Notes</h1><p>Main text.<a epub:type='noteref' href='#n1'>1</a></p>"
                    "<aside epub:type='footnote' id='n1'><p>A note <aside>nested</aside> here.</p></aside>"
                    "<section role='doc-endnotes'><ol><li>End note.</li></ol></section>"
                    "<p>After the notes.</p></body></html>", encoding="utf-8")
    assert chapters(load_document(html)) == [("Notes", "Main text.\n\nAfter the notes.")]
    read = chapters(load_document(html, footnotes=True))[0][1]
    assert "A note" in read and "End note." in read and read.endswith("After the notes.")
