"""Training and held-out sentences.

The held-out set is a committed file (data/heldout.txt): docstring sentences narrate-joe never
trained on, which the benchmark reads. (Which docstrings a process can collect depends on what
imports in it, so the set is fixed in a file rather than recomputed.) The training pool, in
order: our own prose file, prose from the Python standard library's docstrings (always
present, no download; seeded shuffle), then sentences from the Debian `fortunes` package
(quotations, jokes, proverbs: dialogue and everyday words the docstrings lack). A corpus
that extends another excludes the sentences that one already has.
"""

from __future__ import annotations

import importlib
import random
import re
import sys
import warnings
from pathlib import Path

from narrate.errors import NarrateError

DATA = Path(__file__).parent / "data"

# Everyday sentences, never trained on: the benchmark's quick intelligibility check.
EVERYDAY = [
    "The train to the city leaves every morning at eight o'clock.",
    "Please remember to water the plants while I am away.",
    "She opened the window and listened to the rain on the roof.",
    "We walked along the river until the sun went down.",
    "He could not find his keys anywhere in the house.",
    "The children laughed as the dog chased its own tail.",
    "Could you tell me the way to the nearest library?",
    "My grandmother baked fresh bread for the whole family.",
    "The meeting has been moved to Thursday afternoon.",
    "A cold wind blew across the empty field.",
]

_WORD = re.compile(r"^[A-Za-z][A-Za-z'\-]*[,;:]?$")
FORTUNES = Path("/usr/share/games/fortunes")


def _clean_sentences(paragraph: str) -> list[str]:
    """Sentences of 6-20 plain words ending in a period (no digits, symbols or quotes)."""
    out = []
    for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", " ".join(paragraph.split())):
        words = s.split()
        if 6 <= len(words) <= 20 and s.endswith(".") and all(_WORD.match(w.rstrip(".")) for w in words):
            out.append(s)
    return out


def _docstring_sentences() -> list[str]:
    out: set[str] = set()
    # standard-library modules only; which of them import (and what their objects hold) varies
    # with the process, so a corpus's texts.json, not this list, records what it trained on
    names = sorted(n for n in sys.stdlib_module_names if not n.startswith("_"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            if name in {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo"}:
                continue
            try:
                module = importlib.import_module(name)
            except BaseException:
                continue
            if not getattr(module, "__file__", None) or "site-packages" in module.__file__:
                continue
            objs = [module] + [getattr(module, a, None) for a in dir(module)]
            for obj in objs:
                doc = getattr(obj, "__doc__", None)
                if not isinstance(doc, str):
                    continue
                for para in re.split(r"\n\s*\n", doc):
                    out.update(_clean_sentences(para))
    return sorted(out)


def _fortune_sentences() -> list[str]:
    """Sentences of the `fortunes` databases (the plain files beside their .dat indexes)."""
    root = FORTUNES
    if not root.is_dir():
        return []
    out: set[str] = set()
    for path in sorted(root.iterdir()):
        if path.suffix or not path.is_file() or path.is_symlink():
            continue
        for record in path.read_text(encoding="latin-1").split("\n%\n"):
            out.update(_clean_sentences(record))
    return sorted(out)


def heldout_texts() -> list[str]:
    """The held-out sentences: never in any training corpus, read by the benchmark."""
    return [line.strip() for line in (DATA / "heldout.txt").read_text(encoding="utf-8").splitlines() if line.strip()]


def corpus_texts(n_train: int = 1900, n_heldout: int = 100, seed: int = 0,
                 exclude: frozenset[str] = frozenset()) -> tuple[list[str], list[str]]:
    """(train, heldout): the first ``n_train`` pool sentences not in ``exclude`` nor held out,
    and the first ``n_heldout`` held-out sentences."""
    prose_file = DATA / "prose.txt"
    prose = ([line.strip() for line in prose_file.read_text(encoding="utf-8").splitlines() if line.strip()]
             if prose_file.exists() else [])
    heldout = heldout_texts()
    skip = set(heldout) | set(exclude)
    docs = _docstring_sentences()
    random.Random(seed).shuffle(docs)
    pool = [s for s in prose + docs if s not in skip]
    if len(pool) < n_train:
        fortunes = _fortune_sentences()
        random.Random(seed).shuffle(fortunes)
        pool += [s for s in fortunes if s not in skip]
        if len(pool) < n_train:
            raise NarrateError(f"the text pool has {len(pool)} sentences, fewer than the {n_train} asked for"
                               + ("" if fortunes else " (install the Debian package 'fortunes' for more)"))
    return pool[:n_train], heldout[:n_heldout]
