"""Streaming tests' common step: frames pushed to a stream in chunks of the given sizes, in turn,
then a flush; everything it gave, joined."""

from __future__ import annotations

import numpy as np


def push_in_chunks(stream, frames, sizes: list[int]) -> np.ndarray:
    out, i, k = [], 0, 0
    while i < len(frames):
        n = sizes[k % len(sizes)]
        out.append(stream.push(frames[i:i + n]))
        i, k = i + n, k + 1
    out.append(stream.flush())
    return np.concatenate(out)
