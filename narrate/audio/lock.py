"""An exclusive lock on an output for the length of a run, so that two runs never write the same
file, its temporary file or its resume record at once.

The lock is ``flock`` on a small file beside the output (".book.wav.lock"), which holds the pid
of the run that has it. The kernel drops the lock when that process dies, however it dies, so a
crashed run never blocks the next one; the file is removed when the run releases it.
"""

from __future__ import annotations

import atexit
import fcntl
import os
from pathlib import Path

from narrate.errors import OutputError


def lock_path(output: Path) -> Path:
    """The lock file of ``output`` (a file or a chapter folder), beside it."""
    output = Path(output)
    return output.with_name(f".{output.name}.lock")


class OutputLock:
    """Held from acquire() to release(); release() is safe to call more than once.

    Within one process the lock is shared: a second plan on the same output (a test, a retry)
    shares the first one's lock, and the file is released when the last of them is.
    """

    def __init__(self, output: Path):
        self.output = Path(output)
        self.path = lock_path(self.output)
        self._held = False

    def acquire(self) -> "OutputLock":
        """Take the lock at once, or OutputError naming the run that holds it."""
        key = os.path.abspath(self.path)
        if key in _HELD and _HELD[key][2] == os.getpid():
            _HELD[key][1] += 1
        else:
            _HELD[key] = [_take(self.path, self.output), 1, os.getpid()]
        self._held = True
        return self

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        key = os.path.abspath(self.path)
        entry = _HELD.get(key)
        if entry is None or entry[2] != os.getpid():  # a forked child: the lock is its parent's
            return
        entry[1] -= 1
        if entry[1] == 0:
            del _HELD[key]
            _drop(self.path, entry[0])


# lock file -> [fd, holders in this process, pid that took it]
_HELD: dict[str, list[int]] = {}


def _take(path: Path, output: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create folder {path.parent}: {e.strerror or e}") from None
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            raise OutputError(f"cannot lock {output} ({path}): {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "another process"
            raise OutputError(f"{output} is being written by another narrate run ({who}); "
                              f"wait for it to end or choose another output") from None
        except OSError as e:
            os.close(fd)
            raise OutputError(f"cannot lock {output} ({path}): {e.strerror or e}") from None
        # The holder before us may have removed the file between our open and our lock:
        # a lock on a file no longer under that name protects nothing, so take it again.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _drop(path: Path, fd: int) -> None:
    try:
        path.unlink(missing_ok=True)  # while still held, so no one locks a removed file
    except OSError:
        pass
    os.close(fd)  # drops the flock


@atexit.register
def _release_all() -> None:
    for key, (fd, _, pid) in list(_HELD.items()):
        if pid == os.getpid():
            del _HELD[key]
            _drop(Path(key), fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
