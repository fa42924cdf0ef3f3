"""Is a text English? A cheap guess for a warning, since the model reads any text as English.

Two signs, on a sample of the text: the share of its letters that are not Latin (Cyrillic, Greek,
CJK, Arabic...), and, for Latin script, the share of its words that are among the commonest
English words (about 40% of running English, a few percent of French, German or Spanish).
"""

from __future__ import annotations

import re

_SAMPLE = 20_000  # characters looked at
_MIN_WORDS = 40  # fewer words say too little to guess from
_COMMON = frozenset(
    "the of and to a in is it you that he was for on are with as i his they be at one have this "
    "from or had by not but what all were we when your can said there an which she do their if "
    "will up other about out many then them these so some her would make like him into has two "
    "more no way could my than been who its now over did down only me just".split()
)
_WORD = re.compile(r"[^\W\d_]+")


def not_english(text: str) -> str | None:
    """Why ``text`` does not look like English ("mostly non-Latin letters", ...), or None."""
    sample = text[:_SAMPLE]
    letters = [c for c in sample if c.isalpha()]
    if not letters:
        return None
    latin = sum(1 for c in letters if c < "\u0250")  # ASCII, Latin-1 and Latin Extended-A/B
    if latin < 0.5 * len(letters):
        return "most of its letters are not Latin"
    words = [w.lower() for w in _WORD.findall(sample)]
    if len(words) >= _MIN_WORDS and sum(w in _COMMON for w in words) < 0.12 * len(words):
        return "few of its words are common English words"
    return None
