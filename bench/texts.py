"""The benchmark's text: held-out docstring sentences and everyday sentences (never trained on),
prepared by narrate's own front-end, and a deterministic endless cycle of them for long renders."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterator


@dataclass(frozen=True)
class Sentence:
    source: str   # "heldout" or "everyday"
    text: str     # the engine-ready piece both narrate and piper read (the reference for WER)


def bench_sentences(quick: bool, heldout: list[str] | None = None) -> list[Sentence]:
    """Quick: 10 everyday + the first 10 held-out; full: 10 everyday + all 100 held-out."""
    from narrate.text.segment import prepare_sentence
    from narrate.train.texts import EVERYDAY, heldout_texts

    heldout = heldout_texts() if heldout is None else heldout
    chosen = [("everyday", s) for s in EVERYDAY] + [("heldout", s) for s in heldout[: 10 if quick else 100]]
    out = []
    for source, raw in chosen:
        for piece in prepare_sentence(raw):
            out.append(Sentence(source, piece))
    return out


def cycle(sentences: list[Sentence], offset: int = 0) -> Iterator[Sentence]:
    """The sentences endlessly, starting at ``offset`` (deterministic)."""
    n = len(sentences)
    for i in itertools.count(offset):
        yield sentences[i % n]


def take(sentences: list[Sentence], count: int, offset: int = 0) -> list[Sentence]:
    """``count`` sentences of the cycle from ``offset``."""
    return list(itertools.islice(cycle(sentences, offset), count))


def balanced(sentences: list[Sentence], streams: int, per_stream: int) -> list[list[Sentence]]:
    """``streams`` lists of ``per_stream`` sentences from the cycle, with about the same number
    of characters each (longest first, each to the lightest stream with room; each keeps the
    cycle's order), so the streams last about as long and a batch of them stays full to the end."""
    pool = take(sentences, streams * per_stream)
    load, chosen = [0] * streams, [[] for _ in range(streams)]
    for i in sorted(range(len(pool)), key=lambda i: -len(pool[i].text)):
        k = min((k for k in range(streams) if len(chosen[k]) < per_stream), key=load.__getitem__)
        load[k] += len(pool[i].text)
        chosen[k].append(i)
    return [[pool[i] for i in sorted(c)] for c in chosen]


def replaying(sentences: list[Sentence], ends: list[int], sr: int, length_s: float, window_s: float) -> Iterator[str]:
    """The long rendering's text: the sentences cycled until ``length_s - window_s`` seconds of
    audio are done, then again the sentences that ended within the first ``window_s``, so the
    last window repeats the first and drift compares the same text. ``ends`` is the renderer's
    list of sentence end samples, read as it grows (``narrate_render(..., ends=)``)."""
    spoken = []
    for s in cycle(sentences):
        if ends and ends[-1] >= (length_s - window_s) * sr:
            break
        spoken.append(s.text)
        yield s.text
    yield from spoken[: sum(1 for e in ends if e <= window_s * sr)]
