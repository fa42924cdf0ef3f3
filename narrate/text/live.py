"""Read text as it arrives (a pipe, a terminal) and hand out each sentence as soon as it is complete.

A sentence is complete when the next one has started (its first word is whole), at a newline
after sentence-final punctuation, at a blank line, when the input has been quiet for a while
with text pending, or at end of input. A background thread reads the stream, so waiting for the
quiet timeout works the same on every platform and never needs EOF.
"""

from __future__ import annotations

import codecs
import io
import os
import queue
import re
import threading
import time
from typing import Callable, Iterator, TextIO

from narrate.errors import InputError
from narrate.text.segment import prepare_sentence, sentence_spans, split_sentences

_EOF = object()
_CHUNK = 65536
_FINAL = re.compile(r"[.!?\u2026][\"'\u201d\u2019)\]]*$")
# Text without any sentence boundary is cut anyway past this many sentence lengths, so memory
# and latency stay bounded for input such as a log with no punctuation and no pauses.
_RUNAWAY = 4


def live_sentences(
    stream: TextIO, quiet: float = 0.8, max_chars: int = 200, lexicon=None, markup=None
) -> Iterator[str]:
    """Engine-ready sentences (as ``segment.sentences`` makes them) from a live text stream.
    markup: a block reader (narrate.text.live_markup) the text goes through first: Markdown or
    HTML read as such."""
    chunks: queue.Queue = queue.Queue()
    threading.Thread(target=_pump, args=(stream, chunks), name="narrate-stdin", daemon=True).start()

    def ready(raw: list[str]) -> Iterator[str]:
        for sentence in raw:
            yield from prepare_sentence(sentence, max_chars, lexicon)

    pending = ""
    held = False  # markup received and not yet read as whole blocks
    deadline = 0.0
    while True:
        timeout = max(0.0, deadline - time.monotonic()) if pending.strip() or held else None
        try:
            item = chunks.get(timeout=timeout)
        except queue.Empty:
            # Quiet for long enough: whatever is pending is all the writer has to say for now.
            if markup is not None:
                pending += markup.flush()
                held = False
            yield from ready(split_sentences(pending))
            pending = ""
            continue
        if item is _EOF:
            if markup is not None:
                pending += markup.end()
            yield from ready(split_sentences(pending))
            return
        if isinstance(item, BaseException):
            raise InputError(f"cannot read the input stream: {item}") from item
        if markup is not None:
            item = markup.feed(item)
            held = True
        pending += item
        deadline = time.monotonic() + quiet
        complete, pending = _complete_sentences(pending, max_chars)
        yield from ready(complete)


def _complete_sentences(pending: str, max_chars: int) -> tuple[list[str], str]:
    """Split ``pending`` into the sentences that are certainly complete and the rest."""
    # The last word may still be arriving ("Dr" of "Dr."), and punkt's decision depends on it.
    last_space = max((i for i in (pending.rfind(c) for c in " \t\n") if i >= 0), default=-1)
    if last_space < 0:
        return [], pending
    stable = pending[: last_space + 1]
    spans = sentence_spans(stable)
    if not spans:
        return [], pending if pending.strip() else ""
    done = len(spans) - 1
    start, end = spans[-1]
    after = stable[end:]
    if after.count("\n") >= 2 or ("\n" in after and _FINAL.search(stable[start:end])):
        done = len(spans)
    cut = spans[done][0] if done < len(spans) else len(stable)
    if done == 0 and len(stable) - spans[0][0] > _RUNAWAY * max_chars:
        # No boundary in sight: let the text go at the last line break, or at the last space.
        newline = stable.rfind("\n")
        cut = newline + 1 if newline > spans[0][0] else len(stable)
        return split_sentences(stable[:cut]), pending[cut:]
    return [" ".join(stable[s:e].split()) for s, e in spans[:done]], pending[cut:]


def _pump(stream: TextIO, out: queue.Queue) -> None:
    """Reader thread: put text chunks as they arrive, then an exception if any, then _EOF."""
    try:
        read = _chunk_reader(stream)
        while True:
            chunk = read()
            if not chunk:
                break
            out.put(chunk)
    except (OSError, ValueError) as e:  # a closed or broken stream
        out.put(e)
    finally:
        out.put(_EOF)


def _chunk_reader(stream: TextIO) -> Callable[[], str]:
    """A function returning the text available now (blocking only until some arrives; "" at EOF).

    ``stream.read(n)`` would wait for n characters and ``readline`` for a newline, so the bytes
    underneath are read with one system call per chunk and decoded incrementally.
    """
    buffer = getattr(stream, "buffer", None)
    if buffer is not None and hasattr(buffer, "read1"):
        read_bytes = lambda: buffer.read1(_CHUNK)  # noqa: E731
    else:
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            # An in-memory or custom text stream: lines are the best unit it offers.
            return stream.readline
        read_bytes = lambda: os.read(fd, _CHUNK)  # noqa: E731

    # UTF-8 like every other narrate input; a BOM is dropped, bad bytes become U+FFFD.
    decoder = io.IncrementalNewlineDecoder(
        codecs.getincrementaldecoder("utf-8-sig")(errors="replace"), translate=True
    )

    def read() -> str:
        while True:
            data = read_bytes()
            text = decoder.decode(data, final=not data)
            if text or not data:
                return text

    return read
