"""The resume record: a small JSON sidecar beside the output file ("book.wav.narrate.json"), or
inside a chapter folder ("book/.narrate.json"), so that a folder moved elsewhere still resumes.

It says how far an interrupted run got (chapters done, sentences of the current chapter, samples
in the output file) and what it was made from (hash of the input, settings), so that --resume
continues exactly where it stopped and refuses when the input or settings differ.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from narrate.errors import OutputError

RECORD_VERSION = 1


@dataclass
class ResumeRecord:
    """How far an interrupted run got, and what it was made from."""

    input_sha256: str  # of the input bytes
    settings: dict  # model, voice, speed, seed, format...: resume refuses if they differ
    chapters_done: list[int] = field(default_factory=list)  # fully written chapters
    chapter: int = 0  # chapter in progress
    sentences_done: int = 0  # sentences of that chapter fully written
    samples_written: int = 0  # samples in the output file when this was recorded
    loudness: dict | None = None  # the loudness normalizer's state then (narrate.audio.loudness)
    marks: list = field(default_factory=list)  # [title, start sample] of the chapters begun (m4b)
    # a chapter folder's chapters under way: "index" -> [sentences, samples, loudness state] its
    # file holds at its last finished sentence
    begun: dict = field(default_factory=dict)
    version: int = RECORD_VERSION  # layout of this file, for later changes


_INT_FIELDS = ("chapter", "sentences_done", "samples_written", "version")


FOLDER_RECORD = ".narrate.json"  # a chapter folder's record, inside it


def record_path(output: Path) -> Path:
    """The record of ``output``: "<output>.narrate.json" beside a file; inside a chapter folder
    (once it exists), so that it moves with the folder."""
    output = Path(output)
    if output.is_dir():
        return output / FOLDER_RECORD
    return _beside(output)


def _beside(output: Path) -> Path:
    # (where a folder's record was kept before narrate kept it inside)
    return output.with_name(output.name + ".narrate.json")


def load_record(output: Path) -> ResumeRecord | None:
    """The record of ``output``; None if there is none; OutputError if it is corrupt. A folder
    whose record is not inside may have one beside it, from an older narrate."""
    path = record_path(output)
    if Path(output).is_dir() and not path.exists():
        path = _beside(Path(output))
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise OutputError(f"cannot read resume record {path}: {exc}") from exc
    return parse_record(text, path)


def parse_record(text: str, shown) -> ResumeRecord:
    """A record from its JSON text; OutputError naming ``shown`` (where it was read) if corrupt."""
    try:
        return _parse(json.loads(text))
    except (ValueError, TypeError) as exc:
        raise OutputError(f"resume record {shown} is corrupt ({exc}); delete it to start over") from exc


def record_json(record: ResumeRecord) -> str:
    return json.dumps(asdict(record), indent=2, sort_keys=True, default=str) + "\n"


def save_record(output: Path, record: ResumeRecord) -> None:
    """Write the record atomically: a crash leaves either the old record or the new one."""
    path = record_path(output)
    temp = path.with_name(f".{path.name}.tmp")
    data = record_json(record)
    try:
        with open(temp, "w", encoding="utf-8") as f:
            f.write(data)
            f.flush()
            # Durable before the rename, or a power cut could leave an empty record in its place.
            os.fsync(f.fileno())
        os.replace(temp, path)
        if path.name == FOLDER_RECORD:
            _beside(Path(output)).unlink(missing_ok=True)  # an older narrate's, now replaced
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise OutputError(f"cannot write resume record {path}: {exc.strerror or exc}") from exc


def check_compatible(record: ResumeRecord, input_sha256: str, settings: dict) -> None:
    """OutputError naming what differs between the interrupted run and this one, if anything."""
    if record.input_sha256 != input_sha256:
        raise OutputError("cannot resume: the input text changed since the interrupted run; "
                          "use --force to start over")
    now, then = _normalized(settings), _normalized(record.settings)
    diffs = [f"{key}: {_shown(then, key)} then, {_shown(now, key)} now"
             for key in sorted(set(then) | set(now))
             if key not in then or key not in now or then[key] != now[key]]
    if diffs:
        raise OutputError(f"cannot resume: settings differ from the interrupted run "
                          f"({'; '.join(diffs)}); use the same settings or --force to start over")


def clear_record(output: Path) -> None:
    """Remove the record (the output is complete, or the user starts over)."""
    record_path(output).unlink(missing_ok=True)
    _beside(Path(output)).unlink(missing_ok=True)


def sha256_file(path) -> str:
    """Hex SHA-256 of the file's bytes, read in blocks (constant memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _normalized(settings: dict) -> dict:
    # Compare as the record stores them: through JSON (tuples become lists, paths strings).
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def _shown(settings: dict, key: str) -> str:
    return repr(settings[key]) if key in settings else "unset"


def _parse(data) -> ResumeRecord:
    """Validate the decoded JSON field by field; unknown keys (from newer versions) are ignored."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    sha = data.get("input_sha256")
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        raise ValueError("input_sha256 is not a SHA-256 hex digest")
    if not isinstance(data.get("settings"), dict):
        raise ValueError("settings is not an object")
    done = data.get("chapters_done", [])
    if not (isinstance(done, list) and all(_is_count(i) for i in done)):
        raise ValueError("chapters_done is not a list of chapter numbers")
    values = {key: data.get(key, 0 if key != "version" else RECORD_VERSION) for key in _INT_FIELDS}
    for key, value in values.items():
        if not _is_count(value):
            raise ValueError(f"{key} is not a non-negative integer")
    loudness = data.get("loudness")
    if loudness is not None and not isinstance(loudness, dict):
        raise ValueError("loudness is not an object")
    marks = data.get("marks", [])
    if not (isinstance(marks, list) and all(
            isinstance(m, list) and len(m) == 2 and isinstance(m[0], str) and _is_count(m[1])
            for m in marks)):
        raise ValueError("marks is not a list of [title, start sample]")
    begun = data.get("begun", {})
    if not (isinstance(begun, dict) and all(
            isinstance(k, str) and k.isdigit() and isinstance(b, list) and len(b) == 3
            and _is_count(b[0]) and _is_count(b[1]) and (b[2] is None or isinstance(b[2], dict))
            for k, b in begun.items())):
        raise ValueError("begun is not a map of chapter -> [sentences, samples, loudness]")
    if values["version"] > RECORD_VERSION:
        raise ValueError(f"it was written by a newer narrate (record version {values['version']})")
    return ResumeRecord(input_sha256=sha, settings=data["settings"], chapters_done=list(done),
                        loudness=loudness, marks=[list(m) for m in marks], begun=dict(begun), **values)


def _is_count(value) -> bool:
    # bool is an int subclass; true/false in a count field means the file is damaged.
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
