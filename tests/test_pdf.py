"""PDF input (narrate.document.pdf): PDFs made here with pypdf, a text line per line asked for."""

from __future__ import annotations

import io

import pytest

from narrate.document import load_document
from narrate.errors import InputError


def make_pdf(pages: list[list[str]], outline: list[tuple[str, int]] = (), password: str | None = None,
             title: str | None = None) -> bytes:
    """A PDF whose pages show these lines (Helvetica, top to bottom), with outline entries
    (title, page index) and optionally a user password."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    font = writer._add_object(DictionaryObject({
        NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
        NameObject("/BaseFont"): NameObject("/Helvetica")}))
    for lines in pages:
        page = writer.add_blank_page(612, 792)
        shown = " ".join("({}) Tj T*".format(line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)"))
                         for line in lines)
        content = DecodedStreamObject()
        content.set_data(f"BT /F1 11 Tf 14 TL 72 740 Td {shown} ET".encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(content)
        page[NameObject("/Resources")] = DictionaryObject({
            NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})})
    for name, page_number in outline:
        writer.add_outline_item(title=name, page_number=page_number)
    if title:
        writer.add_metadata({"/Title": title, "/Author": "A. Writer"})
    if password:
        writer.encrypt(user_password=password, owner_password="owner")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


FULL = "x" * 60  # a full line's length, for the paragraph heuristics


def book_pages() -> list[list[str]]:
    """Five pages with a running header, page numbers, hyphenation and two chapters, the
    second starting mid-page."""
    body = [
        ["A Title Page"],
        ["Chapter One", "It was a dark and stormy night; the rain fell in tor-",
         "rents, except at occasional intervals, when it was checked",
         "by a violent gust of wind.", "Then the second paragraph began, and it went on across",
         "the end of the page, where the reader turns it over and goes"],
        ["on as if nothing had happened at all, for a good while longer,",
         "until it ended here."],
        ["The last paragraph of the first chapter is this one, short.", "Chapter Two",
         "The second chapter begins on the same page as the end of",
         "the first one and ends soon after."],
        ["It ends with this line."],
    ]
    return [["The Book of Tests"] + lines + [str(n + 1)] for n, lines in enumerate(body)]


def test_chapters_come_from_the_outline_without_headers_or_page_numbers(tmp_path):
    path = tmp_path / "book.pdf"
    path.write_bytes(make_pdf(book_pages(), [("Chapter One", 1), ("Chapter Two", 3)], title="Tests"))
    doc = load_document(path)
    assert doc.title == "Tests" and doc.info.author == "A. Writer"
    assert [c.title for c in doc.chapters] == ["Chapter One", "Chapter Two"]  # (the title page is not read)
    one, two = (c.text.split("\n\n") for c in doc.chapters)
    assert one == [
        "It was a dark and stormy night; the rain fell in torrents, except at occasional intervals, "
        "when it was checked by a violent gust of wind.",
        "Then the second paragraph began, and it went on across the end of the page, where the reader "
        "turns it over and goes on as if nothing had happened at all, for a good while longer, until it ended here.",
        "The last paragraph of the first chapter is this one, short."]
    assert two == ["The second chapter begins on the same page as the end of the first one and ends soon after.",
                   "It ends with this line."]
    text = " ".join(c.text for c in doc.chapters)
    assert "Book of Tests" not in text and not any(ch.isdigit() for ch in text)


def test_without_an_outline_headings_are_found_in_the_text(tmp_path):
    path = tmp_path / "plain.pdf"
    path.write_bytes(make_pdf(book_pages()[1:]))
    doc = load_document(path)
    assert doc.title == "plain"
    assert [c.title for c in doc.chapters] == ["Chapter One", "Chapter Two"]
    assert doc.chapters[0].text.startswith("It was a dark and stormy night; the rain fell in torrents, except")


def test_entries_at_one_place_share_a_chapter_and_a_short_pdf_keeps_its_lines(tmp_path):
    path = tmp_path / "two.pdf"
    pages = [["Part One", "Chapter 1", "Words of the first chapter, which goes on to fill a line", "and ends."],
             ["1", "Chapter 2", "More words."]]
    path.write_bytes(make_pdf(pages, [("Part One", 0), ("Chapter 1", 0), ("Chapter 2", 1)]))
    doc = load_document(path)
    # (only two pages: too few to tell a running header; the bare number at the top still goes)
    assert [(c.title, c.text) for c in doc.chapters] == [
        ("Part One: Chapter 1", "Words of the first chapter, which goes on to fill a line and ends."),
        ("Chapter 2", "More words.")]


@pytest.mark.parametrize("content,words", [
    (b"%PDF-1.4\nnot really a pdf", "not a valid PDF file"),
    (make_pdf([[], []]), "has no text layer"),
    (make_pdf([["Secret words that cannot be read without the password."]], password="pw"), "encrypted with a password"),
])
def test_bad_pdfs_are_one_line_errors(tmp_path, content, words):
    path = tmp_path / "bad.pdf"
    path.write_bytes(content)
    with pytest.raises(InputError) as err:
        load_document(path)
    assert words in str(err.value) and "bad.pdf" in str(err.value) and "\n" not in str(err.value)


def test_an_owner_password_alone_does_not_stop_reading(tmp_path):
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf([["Open to every reader, this text."]]))))
    writer.encrypt(user_password="", owner_password="owner")
    out = io.BytesIO()
    writer.write(out)
    path = tmp_path / "owner.pdf"
    path.write_bytes(out.getvalue())
    assert [c.text for c in load_document(path).chapters] == ["Open to every reader, this text."]


def test_a_pdf_is_narrated_and_listed(tmp_path, narrate_cmd):
    path = tmp_path / "book.pdf"
    path.write_bytes(make_pdf(book_pages(), [("Chapter One", 1), ("Chapter Two", 3)]))
    listed = narrate_cmd("chapters", path, model=False, voice=False)
    assert listed.returncode == 0, listed.stderr
    assert "Chapter One" in listed.stdout.decode() and "Chapter Two" in listed.stdout.decode()
    proc = narrate_cmd(path, "-o", tmp_path / "book.wav", "--chapters", "2", "--subtitles", "srt")
    assert proc.returncode == 0, proc.stderr
    cues = (tmp_path / "book.srt").read_text(encoding="utf-8")
    assert "Chapter Two." in cues and "It ends with this line." in cues and "Chapter One" not in cues
