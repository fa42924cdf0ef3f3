"""Book metadata: read from EPUB and Markdown front matter, written as tags (narrate.audio.tags)."""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from narrate.audio.tags import Tags, write_tags
from narrate.document.text import document_from_text
from narrate.document import load_document
from narrate.errors import InputError

mutagen = pytest.importorskip("mutagen")
needs_ffmpeg = pytest.mark.skipif(not (shutil.which("ffmpeg") and shutil.which("ffprobe")),
                                  reason="ffmpeg/ffprobe not installed")

# The smallest PNG: one transparent pixel.
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")
RATE = 22050


def tagged(tmp_path: Path, fmt: str) -> Path:
    path = tmp_path / f"a.{fmt}"
    tone = (0.3 * np.sin(np.arange(RATE) * 0.05)).astype(np.float32)
    if fmt == "m4b":
        wav = tmp_path / "a.wav"
        sf.write(wav, tone, RATE)
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(wav), "-c:a", "aac", "-f", "ipod", str(path)],
                       check=True)
    else:
        sf.write(path, tone, RATE, format={"mp3": "MP3", "ogg": "OGG", "flac": "FLAC"}[fmt])
    write_tags(path, fmt, Tags("Ch 2", "The Book", author="Ann Author", year="1999", track=(2, 5), cover=PNG))
    return path


@needs_ffmpeg
@pytest.mark.parametrize("fmt", ["m4b", "mp3", "flac", "ogg"])
def test_every_tagged_format_carries_title_album_author_track_and_cover(tmp_path, fmt):
    path = tagged(tmp_path, fmt)
    probe = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json",
                                       str(path)], capture_output=True, text=True, check=True).stdout)
    tags = {k.lower(): v for k, v in probe["format"].get("tags", {}).items()}
    for stream in probe["streams"]:
        if stream["codec_type"] == "audio":  # (the picture's stream has a title of its own)
            tags.update({k.lower(): v for k, v in stream.get("tags", {}).items()})
    assert tags["title"] == "Ch 2" and tags["album"] == "The Book" and tags["artist"] == "Ann Author"
    assert tags["track"].split("/")[0] == "2" if "track" in tags else tags["tracknumber"] == "2"
    audio = mutagen.File(path)
    if fmt == "m4b":
        pictures = [bytes(c) for c in audio["covr"]]
    elif fmt == "mp3":
        pictures = [f.data for f in audio.tags.getall("APIC")]
    elif fmt == "flac":
        pictures = [p.data for p in audio.pictures]
    else:
        from mutagen.flac import Picture
        import base64

        pictures = [Picture(base64.b64decode(v)).data for v in audio["metadata_block_picture"]]
    assert pictures == [PNG]
    assert sf.info(str(path)).duration > 0.9 if fmt != "m4b" else True  # still audio


def test_wav_gets_no_tags_and_a_broken_file_is_a_one_line_error(tmp_path):
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(100, np.float32), RATE)
    before = wav.read_bytes()
    write_tags(wav, "wav", Tags("t", "t"))
    assert wav.read_bytes() == before
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"not flac at all")
    with pytest.raises(Exception) as info:
        write_tags(bad, "flac", Tags("t", "t"))
    assert "tags could not be written" in str(info.value) and "\n" not in str(info.value)


def test_markdown_front_matter_gives_the_book_s_info(tmp_path):
    (tmp_path / "cover.png").write_bytes(PNG)
    md = tmp_path / "book.md"
    md.write_text("---\ntitle: 'A Tale'\nauthors:\n  - Ann One\n  - Bob Two\ndate: 2001-02-03\nlanguage: en\n"
                  "publisher: Small Press\ncover: cover.png\n---\n\n## One\n\nText.\n", encoding="utf-8")
    doc = load_document(md)
    assert doc.title == "A Tale"
    assert (doc.info.author, doc.info.year, doc.info.language, doc.info.publisher) == ("Ann One, Bob Two", "2001",
                                                                                       "en", "Small Press")
    assert doc.info.cover == PNG
    md.write_text("---\ncover: missing.jpg\n---\n\nText.\n", encoding="utf-8")
    with pytest.raises(InputError, match="missing.jpg"):
        load_document(md)
    assert document_from_text("Just text.", markdown=True).info.author == ""


def test_epub_metadata_and_cover(tmp_path):
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("meta-1")
    book.set_title("Meta Book")
    book.set_language("en")
    book.add_author("Carol Writer")
    book.add_metadata("DC", "publisher", "Big House")
    book.add_metadata("DC", "date", "2010-01-01")
    book.add_metadata("DC", "description", "<p>A <b>short</b> book.</p>")
    book.set_cover("cover.png", PNG)
    chapter = epub.EpubHtml(title="One", file_name="one.xhtml", content="<html><body><p>Words.</p></body></html>")
    book.add_item(chapter)
    book.toc = [epub.Link("one.xhtml", "One", "one")]
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", chapter]
    path = tmp_path / "meta.epub"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        epub.write_epub(str(path), book)
    doc = load_document(path)
    assert doc.title == "Meta Book"
    info = doc.info
    assert (info.author, info.publisher, info.year, info.language) == ("Carol Writer", "Big House", "2010", "en")
    assert info.description == "A short book."
    assert info.cover == PNG
