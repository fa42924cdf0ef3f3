"""Book tags on finished audio files (mutagen): MP4 atoms with cover art for m4b, ID3 for mp3,
Vorbis comments with a picture block for FLAC and Ogg. WAV and raw PCM get none."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

from narrate.document.base import cover_type
from narrate.errors import OutputError

TAGGED = ("m4b", "mp3", "flac", "ogg")


@dataclass
class Tags:
    title: str                      # the file's: the book's, or a chapter file's chapter name
    album: str                      # the book's title
    author: str = ""
    year: str = ""
    publisher: str = ""
    description: str = ""
    language: str = ""
    track: tuple[int, int] | None = None  # (number, of how many) for chapter files
    cover: bytes | None = None      # JPEG or PNG


def write_tags(path: Path, fmt: str, tags: Tags) -> None:
    """Tag the finished file at ``path`` (a no-op for formats without tags); OutputError if the
    file cannot be tagged (the audio in it stays as it is)."""
    if fmt not in TAGGED:
        return
    try:
        {"m4b": _mp4, "mp3": _id3, "flac": _flac, "ogg": _ogg}[fmt](Path(path), tags)
    except Exception as e:  # noqa: BLE001 - mutagen raises many kinds; all mean the same to the user
        raise OutputError(f"the audio is in {path}, but its tags could not be written "
                          f"({' '.join(str(e).split()) or type(e).__name__})") from None


def _vorbis_comments(tags: Tags) -> dict[str, str]:
    values = {"TITLE": tags.title, "ALBUM": tags.album, "ARTIST": tags.author, "ALBUMARTIST": tags.author,
              "DATE": tags.year, "ORGANIZATION": tags.publisher, "DESCRIPTION": tags.description,
              "LANGUAGE": tags.language, "GENRE": "Audiobook"}
    if tags.track:
        values["TRACKNUMBER"], values["TRACKTOTAL"] = str(tags.track[0]), str(tags.track[1])
    return {k: v for k, v in values.items() if v}


def _picture(data: bytes):
    from mutagen.flac import Picture

    picture = Picture()
    picture.type = 3  # front cover
    picture.mime = cover_type(data) or "image/jpeg"
    picture.desc = "Cover"
    picture.data = data
    return picture


def _flac(path: Path, tags: Tags) -> None:
    from mutagen.flac import FLAC

    audio = FLAC(path)
    for key, value in _vorbis_comments(tags).items():
        audio[key] = value
    if tags.cover:
        audio.clear_pictures()
        audio.add_picture(_picture(tags.cover))
    audio.save()


def _ogg(path: Path, tags: Tags) -> None:
    from mutagen.oggvorbis import OggVorbis

    audio = OggVorbis(path)
    for key, value in _vorbis_comments(tags).items():
        audio[key] = value
    if tags.cover:
        audio["METADATA_BLOCK_PICTURE"] = base64.b64encode(_picture(tags.cover).write()).decode("ascii")
    audio.save()


def _id3(path: Path, tags: Tags) -> None:
    from mutagen import id3
    from mutagen.mp3 import MP3

    audio = MP3(path)
    if audio.tags is None:
        audio.add_tags()
    frames: list[id3.Frame] = [id3.TIT2(encoding=3, text=tags.title), id3.TALB(encoding=3, text=tags.album),
              id3.TCON(encoding=3, text="Audiobook")]
    if tags.author:
        frames += [id3.TPE1(encoding=3, text=tags.author), id3.TPE2(encoding=3, text=tags.author)]
    if tags.year:
        frames.append(id3.TDRC(encoding=3, text=tags.year))
    if tags.publisher:
        frames.append(id3.TPUB(encoding=3, text=tags.publisher))
    if tags.language:
        frames.append(id3.TLAN(encoding=3, text=tags.language))
    if tags.description:
        frames.append(id3.COMM(encoding=3, lang="eng", desc="", text=tags.description))
    if tags.track:
        frames.append(id3.TRCK(encoding=3, text=f"{tags.track[0]}/{tags.track[1]}"))
    if tags.cover:
        frames.append(id3.APIC(encoding=3, mime=cover_type(tags.cover) or "image/jpeg", type=3, desc="Cover",
                               data=tags.cover))
    assert audio.tags is not None  # (added above if missing)
    for frame in frames:
        audio.tags.add(frame)
    audio.save()


def _mp4(path: Path, tags: Tags) -> None:
    from mutagen.mp4 import MP4, MP4Cover

    audio = MP4(path)
    values = {"\xa9nam": tags.title, "\xa9alb": tags.album, "\xa9ART": tags.author, "aART": tags.author,
              "\xa9day": tags.year, "desc": tags.description, "\xa9gen": "Audiobook", "cprt": tags.publisher}
    for key, value in values.items():
        if value:
            audio[key] = [value]
    if tags.track:
        audio["trkn"] = [tags.track]
    if tags.cover:
        kind = MP4Cover.FORMAT_PNG if cover_type(tags.cover) == "image/png" else MP4Cover.FORMAT_JPEG
        audio["covr"] = [MP4Cover(tags.cover, imageformat=kind)]
    audio.save()
