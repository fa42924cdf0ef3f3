"""narrate.runtime.heap: a fixed mmap threshold gives large blocks back, whatever came before."""

import os
import subprocess
import sys

import pytest

from narrate.runtime import heap

# In a fresh interpreter: free a 4 MiB block (glibc then raises its threshold to 4 MiB unless it
# is fixed), then report how much of a 1 MiB block came from mmap.
PROBE = """
import ctypes, sys
from narrate.runtime import heap
if sys.argv[1] == "fix":
    assert heap.fix_mmap_threshold()
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = heap._glibc()
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = Info
libc.free(libc.malloc(4 << 20))
before = libc.mallinfo2().hblkhd
block = libc.malloc(1 << 20)
print(libc.mallinfo2().hblkhd - before)
libc.free(block)
"""


def mmapped(mode: str) -> int:
    env_free = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         env=env_free, check=True)
    return int(out.stdout)


@pytest.mark.skipif(heap._glibc() is None or not hasattr(heap._glibc(), "mallinfo2"),
                    reason="glibc with mallinfo2 only")
def test_a_fixed_threshold_keeps_large_blocks_out_of_the_heap():
    assert mmapped("default") == 0          # glibc's raised threshold: from the heap, kept there
    assert mmapped("fix") >= 1 << 20        # fixed: its own mapping, given back when freed


def test_the_users_own_setting_is_left_alone(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert heap.fix_mmap_threshold() is False
