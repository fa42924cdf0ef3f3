"""Semantic guidance: the progress head says how far the spoken position moves each step
(0, 1, 2, 3+ tokens, or STOP). Decoding boosts the two moves that keep speech on the
transcript (stay on the current token, advance to the next) by (1 + lambda), forbids moves
that are impossible (past the text, STOP before its end), and never forces a choice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass
class GuidanceSettings:
    strength: float = 1.0      # lambda; 0 turns guidance off
    max_move: int = 2          # tokens the position may advance in one step
    stop_margin: int = 2       # STOP only within this many tokens of the end of the text
    # steps on one token before the position is pushed on: the teacher never holds a token longer
    # than 54 frames (18 steps at 3 frames per step), so longer is a stall, heard as a gap
    max_stall: int = 20


def allowed_moves(position: int, n_tokens: int, n_classes: int, s: GuidanceSettings) -> list[bool]:
    """Which progress classes are possible for one stream: moves that stay on the text, and STOP
    within ``stop_margin`` tokens of its end. The same whether more text may come or not: on a
    stream still open, STOP pauses it until text is appended (``Engine._advance``). (Plain
    Python: five numbers per stream per step cost far less than the tensor operations they
    would take.)"""
    stop = n_classes - 1
    ok = [False] * n_classes
    for move in range(min(stop, s.max_move + 1)):
        ok[move] = position + move <= n_tokens - 1
    ok[stop] = position >= n_tokens - 1 - s.stop_margin
    return ok


def guide(probs: Sequence[float], allowed: Sequence[bool], strength: float) -> list[float]:
    """Progress probabilities -> guided, renormalized ones: moves 0 and 1 times (1 + strength),
    disallowed classes zero. Classes the model gives probability keep some (never forced)."""
    p = [(q * (1.0 + strength) if i < 2 else q) if ok else 0.0 for i, (q, ok) in enumerate(zip(probs, allowed))]
    total = sum(p)
    if total <= 0:  # the model put all its mass on impossible moves: fall back to uniform over allowed
        p = [float(ok) for ok in allowed]
        total = sum(p)
    return [q / total for q in p]
