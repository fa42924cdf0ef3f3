"""--input-format: standard input read as Markdown or HTML as it arrives (narrate.text.live_markup),
and a file read as the format named whatever its suffix."""

from __future__ import annotations

import io
import os
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from conftest import error_line
from narrate.document import load_document
from narrate.errors import InputError
from narrate.text.live import live_sentences
from narrate.text.live_markup import HtmlBlocks, MarkdownBlocks

MARKDOWN = """---
title: Notes
author: Me
---

# Heading one

Some *emphasis* and a [link](http://example.com/x). More `code` here.

```python
print("not read")

x = 1
```

- item one
- item two

## Second
Last line"""

PLAIN = ["Heading one.", "Some emphasis and a link.", "More code here.", "item one", "item two",
         "Second.", "Last line"]


def test_markdown_on_standard_input_is_read_without_its_markup():
    assert list(live_sentences(io.StringIO(MARKDOWN), markup=MarkdownBlocks())) == PLAIN
    # without the option, the markup is read as it stands
    literal = list(live_sentences(io.StringIO(MARKDOWN)))
    assert any("*emphasis*" in s or "http" in s for s in literal)


def test_html_on_standard_input_is_read_without_its_markup():
    html = ("<html><head><title>T</title><style>p {color: red}</style></head><body><h1>Big</h1>"
            "<p>Hello <b>there</b>. Second &amp; third.</p><script>alert(1)</script>"
            "<ul><li>one</li><li>two</li></ul></body></html>")
    assert list(live_sentences(io.StringIO(html), markup=HtmlBlocks())) == [
        "Big.", "Hello there.", "Second and third.", "one", "two"]


def test_a_markdown_block_is_spoken_when_complete_not_at_the_end_of_input():
    """Blocks go on as their blank line arrives; a code block with blank lines inside is held
    whole; an unfinished paragraph goes after the quiet time."""
    read, write = os.pipe()
    stream = os.fdopen(read, "r", encoding="utf-8")
    got: list[tuple[float, str]] = []
    start = time.monotonic()

    def consume():
        for sentence in live_sentences(stream, quiet=0.5, markup=MarkdownBlocks()):
            got.append((time.monotonic() - start, sentence))

    reader = threading.Thread(target=consume)
    reader.start()
    out = os.fdopen(write, "w", encoding="utf-8")
    out.write("# Intro\n\nFirst *block* here.\n\n```\ncode\n\n")
    out.flush()
    time.sleep(1.5)  # quiet, but inside a code fence: its blank line does not end it
    out.write("more code\n```\n\nAfter the `code`")
    out.flush()
    time.sleep(1.5)  # quiet with a paragraph pending: it is read
    arrived = [s for _, s in got]
    out.write("\n\nLast.\n")
    out.close()
    reader.join(10)
    assert arrived == ["Intro.", "First block here.", "After the code"]
    assert [s for _, s in got] == ["Intro.", "First block here.", "After the code", "Last."]
    assert got[1][0] < 1.4  # before the writer went quiet and long before the end


def test_a_file_is_read_as_the_format_named(tmp_path):
    notes = tmp_path / "book.notes"
    notes.write_text("# Book\n\n## One\n\nText *here*.\n\n## Two\n\nMore.\n", encoding="utf-8")
    assert [c.title for c in load_document(notes, fmt="md").chapters] == ["One", "Two"]
    assert "*here*" in load_document(notes).chapters[0].text  # by its suffix: plain text
    page = tmp_path / "page.txt"
    page.write_text("<h2>A</h2><p>x <i>y</i></p>", encoding="utf-8")
    assert load_document(page, fmt="html").chapters[0].text.strip() == "x y"
    with pytest.raises(InputError, match="unknown input format 'doc'"):
        load_document(page, fmt="doc")


def test_standard_input_as_markdown_sounds_as_the_plain_text_does(tiny_model, voice_wav, tmp_path):
    """The whole command path: narrate - --input-format md gives the samples of the same text
    without markup."""
    from narrate.cli.progress import Progress
    from narrate.jobs.pipeline import Job, make_plan, run
    from narrate.runtime.narrator import NarrateSettings, Narrator

    narrator = Narrator.load(str(tiny_model), str(voice_wav), NarrateSettings(seed=0, vocoder_process=False))
    try:
        outputs = {}
        for name, fmt, text in [("md", "md", MARKDOWN), ("plain", None, "\n\n".join(PLAIN) + "\n")]:
            path = tmp_path / f"{name}.wav"
            plan = make_plan(Job("-", str(path), input_format=fmt, quiet_time=30), stdout_is_tty=True)
            run(narrator, plan, Progress(live=False), stdin=io.StringIO(text))
            outputs[name] = sf.read(str(path), dtype="int16")[0]
    finally:
        narrator.close()
    assert len(outputs["md"]) > 0 and np.array_equal(outputs["md"], outputs["plain"])


def test_standard_input_cannot_be_an_epub_or_an_unknown_format(narrate_cmd, tmp_path):
    proc = narrate_cmd("-", "--input-format", "epub", "-o", tmp_path / "o.wav", input_bytes=b"PK")
    assert proc.returncode == 1
    assert "--input-format epub needs an input file" in error_line(proc.stderr)
    proc = narrate_cmd("-", "--input-format", "docx", "-o", tmp_path / "o.wav", input_bytes=b"x")
    assert proc.returncode == 2
    assert "'docx' is not one of" in error_line(proc.stderr)
    assert not (tmp_path / "o.wav").exists()
