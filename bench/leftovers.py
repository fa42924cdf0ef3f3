"""What a benchmark section left running: processes and Python threads it started that are
still alive when it returns (issue 21: a memory child died because an earlier section's work
was still going). The benchmark process becomes a child subreaper, so a grandchild whose
parent has exited (a narrate CLI's vocoder process, say) is reparented to it and seen here."""

from __future__ import annotations

import ctypes
import os
import threading

_PR_SET_CHILD_SUBREAPER = 36
# Threads libraries start once and keep by design (tqdm's monitor, started by the ASR's
# progress bars): not a section's leftovers.
LIBRARY_THREADS = {"tqdm_monitor"}


def become_subreaper() -> bool:
    """Orphaned descendants become our children (Linux); False where that is not possible."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def snapshot() -> set:
    """The threads alive now (compared after a section: the ones it started and left)."""
    return set(threading.enumerate())


def left_behind(threads_before: set, keep: set[int]) -> dict:
    """Processes descended from this one (except the pids in ``keep``: the benchmark's cached
    narrators' vocoder and decoder processes) and threads started since ``threads_before``,
    still alive. Exited orphans are reaped on the way."""
    import psutil

    procs = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.pid in keep:
                continue
            if p.status() == psutil.STATUS_ZOMBIE:
                _reap(p.pid)
                continue
            procs.append({"pid": p.pid, "cmd": " ".join(p.cmdline())[:200] or p.name()})
        except psutil.NoSuchProcess:
            continue
    threads = sorted(t.name for t in snapshot() - threads_before if t.is_alive() and t.name not in LIBRARY_THREADS)
    return {"processes": procs, "threads": threads}


def end(processes: list[dict], timeout: float = 5.0) -> None:
    """Kill the processes a section left (so they do not load the next sections) and reap them."""
    import psutil

    alive = []
    for p in processes:
        try:
            proc = psutil.Process(p["pid"])
            proc.kill()
            alive.append(proc)
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(alive, timeout=timeout)
    for proc in alive:
        _reap(proc.pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not ours to reap, or reaped already
        pass
