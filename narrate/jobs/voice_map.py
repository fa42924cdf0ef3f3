"""--voice-map FILE: which voice reads which chapters, and their quoted speech.

One rule per line; '#' starts a comment, blank lines are ignored::

    1-3       = joe
    4, 9-     = anna.wav
    The Storm = joe-deep
    12        = joe; dialogue = anna

Left of the first '=': chapters numbered as ``narrate chapters`` lists them (what ``--chapters``
takes), or one chapter's title (case and spacing aside). Right: a voice as ``--voice`` takes it
(a name, or a recording; a relative path is looked up beside the map first), and optionally
``; dialogue = VOICE``, which reads those chapters' quoted speech in that voice (as
``--dialogue-voice`` does for the whole book). Chapters no rule names keep ``--voice`` and
``--dialogue-voice``. A chapter named by two rules is an error.

Over a batch of documents (``narrate batch``) each rule applies to every document that has
its chapters: '12' or 'The Storm' to those with a twelfth chapter or a chapter so titled, '4-9'
to the chapters of 4 to 9 a document has. A rule that matches no document at all is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from narrate.errors import InputError

_NUMBERS = re.compile(r"[\d\s,-]+")  # a selector made of chapter numbers and ranges
MAX_BYTES = 1 << 20  # a voice map is a few lines; anything bigger is the wrong file


@dataclass(frozen=True)
class Rule:
    line: int  # in the file, from 1
    chapters: str  # the selector as written: numbers and ranges, or a title
    voice: str  # the voice's identity (a name, or a recording's absolute path)
    dialogue: str | None = None  # the voice of these chapters' quoted speech


@dataclass(frozen=True)
class VoiceMap:
    path: str  # as the user gave it, for messages
    rules: tuple[Rule, ...]
    # read over a batch of documents: a rule naming chapters a document lacks leaves that
    # document alone (``assign``) instead of being an error; ``unmatched`` checks the batch
    batch: bool = False

    @classmethod
    def load(cls, path: str | Path) -> "VoiceMap":
        """Read and check the file's syntax; InputError naming the file and line if it is unusable."""
        shown = str(path)
        path = Path(path)
        try:
            if path.is_dir():
                raise InputError(f"voice map '{shown}' is a folder, not a file")
            raw = path.read_bytes()[:MAX_BYTES + 1]
        except OSError as e:
            raise InputError(f"cannot read voice map '{shown}': {e.strerror or e}") from None
        if len(raw) > MAX_BYTES:
            raise InputError(f"voice map '{shown}' is over {MAX_BYTES >> 20} MB; it should be a few lines of text")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InputError(f"voice map '{shown}' is not UTF-8 text") from None
        if "\0" in text:
            raise InputError(f"voice map '{shown}' is not text (it holds NUL bytes)")
        rules = []
        for number, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if line:
                rules.append(_rule(line, number, shown, path.parent))
        if not rules:
            raise InputError(f"voice map '{shown}' has no rules; write one 'CHAPTERS = VOICE' per line")
        return cls(shown, tuple(rules))

    def voices(self) -> list[str]:
        """Every voice the map names, each once, in order."""
        seen: dict[str, None] = {}
        for rule in self.rules:
            seen[rule.voice] = None
            if rule.dialogue:
                seen[rule.dialogue] = None
        return list(seen)

    def assign(self, names: list[str]) -> list[tuple[str | None, str | None]]:
        """(voice, dialogue voice) of each chapter, ``names`` being the chapters as ``narrate
        chapters`` lists them; None where the map says nothing. InputError for a chapter named
        twice, or (but in a batch) one the book does not have."""
        given: list[tuple[str | None, str | None]] = [(None, None)] * len(names)
        by: dict[int, int] = {}  # chapter index -> the line that named it
        for rule in self.rules:
            where = f"voice map '{self.path}' line {rule.line}:"
            for i in self._chosen(rule, names, where):
                if i in by:
                    raise InputError(f"{where} chapter {i + 1} is already given a voice on line {by[i]}")
                by[i] = rule.line
                given[i] = (rule.voice, rule.dialogue)
        return given

    def _chosen(self, rule: Rule, names: list[str], where: str) -> list[int]:
        """The indices of the chapters ``rule`` names among ``names`` (in a batch: those of
        them the book has)."""
        from narrate.jobs.pipeline import chapter_selection

        if _NUMBERS.fullmatch(rule.chapters):
            # in a batch, numbers up to the largest written are chapters (those past this book's drop out)
            count = max([len(names)] + [int(n) for n in re.findall(r"\d+", rule.chapters)]) if self.batch else len(names)
            return [n - 1 for n in chapter_selection(rule.chapters, count, where) if n <= len(names)]
        titles = {_folded(name): i for i, name in reversed(list(enumerate(names)))}
        if _folded(rule.chapters) in titles:
            return [titles[_folded(rule.chapters)]]
        if self.batch:
            return []
        raise InputError(f"{where} the book has no chapter titled '{rule.chapters}' (see 'narrate chapters')")

    def check_batch(self, books: list[list[str]]) -> None:
        """InputError for a rule that names no chapter of any of ``books`` (each its chapters'
        names): in a batch as for one book, a rule that applies to nothing is a mistake."""
        for rule in self.rules:
            if any(self._chosen(rule, names, "") for names in books):
                continue
            if not _NUMBERS.fullmatch(rule.chapters):
                what = f"a chapter titled '{rule.chapters}'"
            else:
                what = f"chapter {rule.chapters}" if rule.chapters.isdigit() else f"any of chapters {rule.chapters}"
            raise InputError(f"voice map '{self.path}' line {rule.line}: no document in the batch has {what} "
                             f"(see 'narrate chapters')")

    def settings(self) -> list[list]:
        """The rules, for the resume record: a resumed run must read the same voices."""
        return [[r.chapters, r.voice, r.dialogue] for r in self.rules]


def _rule(line: str, number: int, shown: str, folder: Path) -> Rule:
    where = f"voice map '{shown}' line {number}:"
    chapters, eq, rest = line.partition("=")
    chapters = " ".join(chapters.split())
    if not eq or not chapters:
        raise InputError(f"{where} write 'CHAPTERS = VOICE' (e.g. '1-3 = joe' or 'The Storm = anna.wav')")
    voice, _, extra = rest.partition(";")
    voice = voice.strip()
    if not voice:
        raise InputError(f"{where} no voice after '='")
    dialogue = None
    if extra.strip():
        key, eq, value = extra.partition("=")
        if key.strip().lower() != "dialogue" or not eq or not value.strip():
            raise InputError(f"{where} after ';' write 'dialogue = VOICE' (the voice of quoted speech)")
        dialogue = _identity(value.strip(), folder)
    return Rule(number, chapters, _identity(voice, folder), dialogue)


def _identity(voice: str, folder: Path) -> str:
    """A recording beside the map is found from any working folder; a name stays a name."""
    beside = folder / Path(voice).expanduser()
    if beside.is_file():
        return str(beside.resolve())
    path = Path(voice).expanduser()
    return str(path.resolve()) if path.is_file() else voice


def _folded(title: str) -> str:
    return " ".join(title.split()).casefold()
