"""Keeping a long run's heap from growing: glibc malloc's mmap threshold, fixed at start.

glibc serves a large allocation from its own mmap (given back to the system when freed) only
above a threshold, and each time such a block is freed it raises the threshold to that block's
size (up to 32 MiB). After the first large tensors come and go, a sentence's tensors of every
size are carved from the heap instead, and the holes they leave, of ever new sizes, keep the heap
growing although what is in use does not. Measured over the soak's hostile passages, three
rounds in one process (glibc's mallinfo2): in use flat at ~190 MB, free-but-kept 68 -> 132 MB
and RSS 468 -> 529 MB; with the threshold fixed at 128 KiB, free stays 1-2 MB and RSS 402-412 MB.

The cost is system time: each larger block is mapped and faulted in anew. Rendering
examples/lighthouse.md (40.6 s of audio), 3 runs each: 0.90-1.04 s of system time as glibc
leaves it, 1.66-1.84 s at 128 KiB, 1.02-1.13 s at 1 MiB, with user time 9.5-11.2 s in all. A
1 MiB threshold kept RSS at 413-432 MB over the same three rounds (free 13-21 MB); 128 KiB is
the one the 2-hour soak measured.

Setting the threshold (mallopt M_MMAP_THRESHOLD) also stops its raising. Forked children (the
vocoder and decoder processes) inherit it. Nothing is changed where malloc is not glibc's, or
where the user set ``MALLOC_MMAP_THRESHOLD_`` themselves.
"""

from __future__ import annotations

import ctypes
import functools
import os

MMAP_THRESHOLD = 128 * 1024  # bytes: glibc's own starting value, kept instead of raised
_M_MMAP_THRESHOLD = -3       # mallopt's parameter number (malloc.h)


@functools.lru_cache(maxsize=1)
def _glibc() -> ctypes.CDLL | None:
    """This process's own C library (the malloc in use), when it is glibc's (has mallopt and
    gnu_get_libc_version)."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    if not (hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version")):
        return None
    return libc


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold for this process (and the children it forks from now on).
    True when it was set; False where malloc is not glibc's or the environment already sets it."""
    if os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        return False
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, threshold) == 1)
