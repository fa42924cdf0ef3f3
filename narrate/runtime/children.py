"""Forked child processes that talk to their parent over a pipe: the vocoder process
(narrate.runtime.vocoding) and the decoder processes (narrate.runtime.decoders).

Children are forked, not spawned: they start at once with the model already in memory.
Fork them before the parent starts threads (a lock another thread holds at the fork stays
held in the child)."""

from __future__ import annotations

import multiprocessing
import pickle
import signal
from typing import Callable

from narrate.errors import NarrateError


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def fork_child(target: Callable, args: tuple, name: str):
    """Start ``target(*args, conn)`` in a forked daemon process; returns (process, the parent's
    end of the pipe)."""
    ctx = multiprocessing.get_context("fork")
    conn, child = ctx.Pipe()
    proc = ctx.Process(target=_child_main, args=(target, args, conn, child), daemon=True, name=name)
    proc.start()
    child.close()
    return proc, conn


def _child_main(target: Callable, args: tuple, parent_end, child_end) -> None:
    # The fork copied the parent's end of the pipe too: closed here, so that the child reads
    # EOF and ends when the parent dies without a word (SIGKILL), instead of living on.
    parent_end.close()
    target(*args, child_end)


def child_signals() -> None:
    """In the child, first: Ctrl-C is the parent's to handle, and SIGTERM just ends the child
    (not the parent's handler, which it inherited)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def sendable(e: BaseException) -> BaseException:
    """An exception the child can send to the parent: itself if it survives pickling (some
    exception classes do not), else a NarrateError with its text."""
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:
        return NarrateError(f"{type(e).__name__}: {e}")


def stop_child(proc, conn, timeout: float = 5.0) -> None:
    """Ask the child to end (None on the pipe), wait for it, and kill it if it has not ended."""
    try:
        conn.send(None)
        conn.close()
    except OSError:  # it is gone already
        pass
    proc.join(timeout=timeout)
    if proc.is_alive():
        proc.kill()


def kill_child(proc, conn) -> None:
    """End the child now, without a word on the pipe (it may be out of step: see
    narrate.runtime.vocoding), and close the parent's end."""
    proc.kill()
    proc.join()
    conn.close()
