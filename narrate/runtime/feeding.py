"""The thread that reads a stream's sentences from the caller and hands each one on (to the
narrator's queue, or to a decoder process), and how it is stopped.

A narration generator the caller breaks out of, closes or drops must not leave this thread
running. A thread still inside native code (espeak-ng's phonemizer, torch) when the interpreter
exits is killed as it takes the interpreter lock back, and in C++ code that unwinding calls
``std::terminate``: the program dies with "terminate called without an active exception"
after the caller has finished (issue 21). So ``stop`` ends the thread and waits for it; and
threads still running when the interpreter begins to exit are stopped then, before it is too
late (an ``atexit`` hook: a generator left suspended is finalized only after that point).

The one wait ``stop`` does not sit out is the caller's own iterator (live text waiting for a
line that may never come): the thread then ends as soon as the next sentence arrives, without
touching it.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from typing import Callable, Iterable

_END = object()
_RUNNING: "weakref.WeakSet[Feeder]" = weakref.WeakSet()


class Feeder:
    """Once started: ``each(sentence)`` for each of the caller's sentences on a thread of its
    own, then ``end(error)`` (the exception that stopped it, or None), unless stopped first.
    ``unblock()`` frees the thread from a wait in ``each`` (a full queue, an empty credit)."""

    def __init__(self, sentences: Iterable[str], each: Callable[[str], None],
                 end: Callable[[BaseException | None], None], unblock: Callable[[], None], name: str):
        self.stopping = threading.Event()
        self.unblock = unblock
        self.waiting = False  # in the caller's iterator: no native code of ours running
        self.thread = threading.Thread(target=self._run, args=(iter(sentences), each, end), name=name, daemon=True)

    def start(self) -> None:
        _RUNNING.add(self)
        self.thread.start()

    def _next(self, it):
        self.waiting = True
        try:
            return next(it, _END)
        finally:
            self.waiting = False

    def _run(self, it, each, end) -> None:
        error = None
        try:
            while (s := self._next(it)) is not _END and not self.stopping.is_set():
                each(s)
        except BaseException as e:  # the caller's to raise
            error = e
        if not self.stopping.is_set():
            end(error)

    def stop(self, poll: float = 0.01) -> None:
        """Stop the thread and wait until it has ended, or is waiting on the caller's iterator
        (it ends as that yields, checking ``stopping`` first)."""
        self.stopping.set()
        while self.thread.is_alive() and not self.waiting:
            self.unblock()
            self.thread.join(poll)
        _RUNNING.discard(self)
        # unblock is usually a method of the feeder's owner, which holds the feeder: a cycle
        # that only the cycle collector would free, with the owner's stream state (its text
        # window: megabytes) in it, long after the stream ended
        self.unblock = _stopped


def _stopped() -> None:
    """A stopped feeder's ``unblock``: its thread waits on nothing of its owner's any more."""


@atexit.register
def _stop_all() -> None:
    for feeder in list(_RUNNING):
        feeder.stop()
