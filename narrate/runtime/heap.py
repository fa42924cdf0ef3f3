"""Keeping a long run's heap from growing: glibc malloc's mmap threshold, fixed at start.

glibc serves a large allocation from its own mmap (given back to the system when freed) only
above a threshold, and each time such a block is freed it raises the threshold to that block's
size (up to 32 MiB). After the first large tensors come and go, a sentence's tensors of every
size are carved from the heap instead, and the holes they leave, of ever new sizes, keep the heap
growing although what is in use does not. Measured over the soak's hostile passages, three
rounds in one process (glibc's mallinfo2): in use flat at ~190 MB, free-but-kept 68 -> 132 MB
and RSS 468 -> 529 MB; with the threshold fixed at 128 KiB, free stays 1-2 MB and RSS 402-412 MB.

Setting the threshold (mallopt M_MMAP_THRESHOLD) also stops its raising. Forked children (the
vocoder and decoder processes) inherit it. Nothing is changed where malloc is not glibc's, or
where the user set ``MALLOC_MMAP_THRESHOLD_`` themselves.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

MMAP_THRESHOLD = 128 * 1024  # bytes: glibc's own starting value, kept instead of raised
_M_MMAP_THRESHOLD = -3       # mallopt's parameter number (malloc.h)


def _glibc() -> ctypes.CDLL | None:
    """The C library, when it is glibc (has mallopt and gnu_get_libc_version)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
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
