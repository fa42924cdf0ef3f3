"""Training and held-out sentences: our own prose file plus prose from the Python standard
library's docstrings (always present, no download), selected deterministically."""

from __future__ import annotations

import importlib
import random
import re
import sys
import warnings
from pathlib import Path

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


def _docstring_sentences() -> list[str]:
    out: set[str] = set()
    # standard-library modules only: the same text on every machine with the same Python
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
                    para = " ".join(para.split())
                    for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", para):
                        words = s.split()
                        if not (6 <= len(words) <= 20) or not s.endswith("."):
                            continue
                        if all(_WORD.match(w.rstrip(".")) for w in words):
                            out.add(s)
    return sorted(out)


def corpus_texts(n_train: int = 1900, n_heldout: int = 100, seed: int = 0) -> tuple[list[str], list[str]]:
    """(train, heldout): our prose (all of it trains) + docstring prose; held-out from docstrings."""
    prose_file = DATA / "prose.txt"
    prose = [l.strip() for l in prose_file.read_text(encoding="utf-8").splitlines() if l.strip()] if prose_file.exists() else []
    docs = _docstring_sentences()
    rng = random.Random(seed)
    rng.shuffle(docs)
    heldout = docs[:n_heldout]
    train = (prose + docs[n_heldout:])[:n_train]
    return train, heldout
