"""Front and back matter (narrate.document.matter): skipped by default, listed as skipped, read with
--front-matter or when named by --chapters; told by title and by an EPUB's own marks."""

from __future__ import annotations

import warnings

import pytest
from ebooklib import epub

from narrate.document import load_document
from narrate.document.matter import matter_by_title
from narrate.jobs.pipeline import Job, make_plan


@pytest.mark.parametrize("title,kind", [
    ("Copyright", "copyright"), ("COPYRIGHT PAGE", "copyright"), ("Table of Contents", "contents"),
    ("Contents", "contents"), ("Dedication", "dedication"), ("Also by Jane Austen", "also by"),
    ("Other Books by the Author", "also by"), ("Acknowledgments", "acknowledgements"),
    ("Acknowledgements", "acknowledgements"), ("Index", "index"), ("Title Page", "title page"),
    ("Bibliography", "bibliography"), ("Notes", "notes"),
    # the book's own text, whatever words it shares with those
    ("Chapter 1", ""), ("The Index Finger", ""), ("Notes from Underground", ""), ("Contents of a Drawer", ""),
    ("Copyright and the Law", ""), ("", ""),
])
def test_matter_is_told_by_the_whole_title(title, kind):
    assert matter_by_title(title) == kind


@pytest.fixture
def book(tmp_path):
    path = tmp_path / "book.md"
    path.write_text("# Copyright\n\nAll rights reserved.\n\n# Contents\n\nOne, the night. Two, the rain.\n\n"
                    "# Chapter 1\n\nIt was a dark night.\n\n# Chapter 2\n\nIt rained.\n\n"
                    "# Acknowledgements\n\nThanks to everyone.\n\n# Index\n\nnight, 1\n", encoding="utf-8")
    return path


def read(book, tmp_path, **kw) -> list[str]:
    plan = make_plan(Job(str(book), str(tmp_path / "out.wav"), **kw), stdout_is_tty=True)
    return [name for name, _ in plan.chapters]


def test_front_and_back_matter_are_skipped_unless_asked_for(book, tmp_path):
    assert read(book, tmp_path) == ["Chapter 1", "Chapter 2"]
    assert read(book, tmp_path, front_matter=True) == ["Copyright", "Contents", "Chapter 1", "Chapter 2",
                                                       "Acknowledgements", "Index"]
    assert read(book, tmp_path, chapters="1,4") == ["Copyright", "Chapter 2"]  # named: read
    only = tmp_path / "thanks.md"
    only.write_text("# Acknowledgements\n\nThanks to everyone.\n", encoding="utf-8")
    assert read(only, tmp_path) == ["Acknowledgements"]  # nothing else to read: read it


def test_the_chapters_command_marks_what_is_skipped(book):
    from typer.testing import CliRunner

    from narrate.cli.core import app

    result = CliRunner().invoke(app, ["chapters", str(book)], terminal_width=140)
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 3}
    assert "(skipped: copyright)" in rows["1"] and "(skipped: contents)" in rows["2"]
    assert "skipped" not in rows["3"] + rows["4"]
    assert "(skipped: acknowledgements)" in rows["5"] and "(skipped: index)" in rows["6"]
    # the total is what is read: "Chapter one." + "It was a dark night." + "Chapter two." + "It rained."
    assert "│    11 │" in next(line for line in result.output.splitlines() if "all read" in line)
    every = CliRunner().invoke(app, ["chapters", str(book), "--front-matter"], terminal_width=140)
    assert every.exit_code == 0 and "skipped" not in every.output


def test_an_epub_marks_its_matter_in_its_guide_landmarks_and_epub_type(tmp_path):
    book = epub.EpubBook()
    book.set_identifier("matter-1")
    book.set_title("Matter")
    book.set_language("en")
    # titles that say nothing: the book's marks do
    legal = epub.EpubHtml(title="Legal", file_name="text/legal.xhtml",
                          content="<html><body><section epub:type='copyright-page'><h1>Legal</h1>"
                                  "<p>All rights reserved.</p></section></body></html>")
    mother = epub.EpubHtml(title="For M", file_name="text/for.xhtml",
                           content="<html><body><h1>For M</h1><p>To my mother.</p></body></html>")
    one = epub.EpubHtml(title="One", file_name="text/one.xhtml",
                        content="<html><body><h1>Chapter 1</h1><p>It was a dark night.</p></body></html>")
    for item in (legal, mother, one):
        book.add_item(item)
    book.toc = [epub.Link("text/legal.xhtml", "Legal", "l"), epub.Link("text/for.xhtml", "For M", "m"),
                epub.Link("text/one.xhtml", "Chapter 1", "c1")]
    book.guide = [{"href": "text/for.xhtml", "title": "Dedication", "type": "dedication"}]  # (also written as landmarks)
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", legal, mother, one]
    path = tmp_path / "matter.epub"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        epub.write_epub(str(path), book)
    assert [(c.title, c.matter) for c in load_document(path).chapters] == [
        ("Legal", "copyright"), ("For M", "dedication"), ("Chapter 1", "")]
    assert read(path, tmp_path) == ["Chapter 1"]
