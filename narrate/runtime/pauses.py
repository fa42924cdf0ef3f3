"""Pauses as a listener expects them, made in the frame domain before vocoding.

The model lingers on punctuation: its position rests on a comma's or a sentence end's pause
token for up to a second and a half of silent frames. Each stream's frames pass through a
``PauseShaper`` between the decoder and the vocoder, which gives every run of silent frames
(``SILENT`` below the stream's loudest) the length its kind of break asks for:

- inside a sentence (a comma): at most ``INNER`` seconds (the sentence pause if shorter);
- where a sentence ends: between half the sentence pause and the sentence pause (the model's
  own length times ``SENTENCE_SCALE`` when that falls there);
- where the text asks for a pause (paragraph, chapter, ``[pause 2s]``): exactly that long.

A run is shortened in its middle: its first frames (the speech dying away) and its last ones
(the lead into the next sound, and the sentence end ``narrate.runtime.cuts`` put there) are kept. A
pause is lengthened by repeating the run's quietest frame at the sentence end; where a
sentence runs into the next without any silent frame, the stream's quietest frame so far is
repeated there. To know a run's length and which sentence end falls in it, frames are held back
while a silent run goes on and while a sentence's tail waits for its end to be decided
(``SentenceCuts.tail``): a few hundred frames at most, so memory stays flat, and the decisions
depend only on the stream's own frames, so a stream's samples are the same however it is run.

Word timings are made in the decoder's frames; ``PauseShaper.position`` says where a frame
boundary went in the shaped output, so that they can be moved with the pauses.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

SENTENCE_PAUSE = 0.4   # seconds, defaults of the --sentence-pause, --paragraph-pause and --chapter-pause options
PARAGRAPH_PAUSE = 0.9
CHAPTER_PAUSE = 2.0

# A frame is silent ~40 dB (3.6 in the natural log of summed mel magnitudes that cuts.py uses as
# loudness) under the loudest frame of its stream so far: the level at which a listener (and the
# benchmark) hears a pause, whatever the voice's loudness.
SILENT = 3.6
INNER = 0.25     # seconds: the longest pause inside a sentence
# The model lingers where a sentence ends: on the benchmark's held-out text its sentence pauses
# measured a median 0.31 s against its teacher's (piper joe) 0.24 s, and twice as many of them
# lasted 0.3 s or more. A sentence end's silent run is scaled by this before it is held within the sentence
# pause's range, so the pauses keep the model's variety at about the teacher's length. (Pauses
# the text asks for are exactly as long as asked.)
SENTENCE_SCALE = 0.75
KEEP_LEAD = 6    # frames at the end of a shortened run kept: the lead into the next sound
MAX_LEAD = 12    # a sentence end this close to its run's end keeps all the frames after it
MAX_HEAD = 256   # frames of a run held for its output (~3 s) besides its last MAX_LEAD; the others are dropped
HISTORY = 8192   # input frames whose output position is remembered (~90 s), for word timings


@dataclass(frozen=True)
class Sentence:
    """A sentence to speak and the pause after it (seconds; None: the narrator's sentence pause)."""

    text: str
    pause: float | None = None
    dialogue: bool = False  # quoted speech, read in the dialogue voice if there is one (narrate.text.dialogue)
    # the voice that reads it, a key of the narrator's ``voices`` (narrate.jobs.voice_map); None:
    # the stream's own voice, or the dialogue voice for quoted speech
    voice: str | None = None


def split_sentence(item: "str | Sentence") -> tuple[str, float | None]:
    """(text, pause) of an item of a narrator's sentence feed: a plain str or a Sentence."""
    return (item.text, item.pause) if isinstance(item, Sentence) else (item, None)


class PauseShaper:
    """One stream's pauses: frames in as the decoder makes them, frames out as the vocoder takes
    them, with each sentence end moved to where its frame went."""

    def __init__(self, frame_rate: float, sentence_pause: float):
        self.frame_rate = frame_rate
        self.sentence_pause = sentence_pause
        self.inner = self._frames(min(INNER, sentence_pause))
        # (shortest, longest, scale of the model's own) pause in frames of each appended sentence
        # from ``first_pause`` on; those before the last sentence end shaped are dropped, so a
        # book's worth is never held
        self.pauses: deque = deque()
        self.first_pause = 0
        self.buf: deque = deque()         # (frame, loudness) received and not yet shaped
        self.shaped = 0                   # frames of the stream shaped so far (received - len(buf))
        self.out = 0                      # frames given out
        self.ends: deque = deque()        # (frame count, sentence) decided and not yet shaped
        self.run: list = []               # the silent run being shaped: its first MAX_HEAD frames + last MAX_LEAD
        self.run_loud: list[float] = []
        self.run_n = 0                    # its length in frames
        self.run_ends: list[tuple[int, int]] = []  # (frames of the run before it, sentence) of ends in it
        self.quietest: np.ndarray | None = None
        self.quietest_loud = np.inf
        self.loudest = -np.inf            # loudness of the stream's loudest frame shaped so far
        # (output position, output position after the last sounding frame before it) of each of
        # the last HISTORY frames placed
        self.where: deque = deque()
        self.sound_end = 0                # output frames up to the end of the last sounding one
        self.placed = 0                   # input frames whose output position is known
        self.flushed = False              # the last push gave out everything it had

    def _frames(self, seconds: float) -> int:
        return max(0, int(round(seconds * self.frame_rate)))

    def add_sentence(self, pause: float | None) -> None:
        """The next appended sentence's pause (None: the sentence pause)."""
        if pause is None:
            self.pauses.append((self._frames(self.sentence_pause / 2), self._frames(self.sentence_pause), SENTENCE_SCALE))
        else:
            self.pauses.append((self._frames(pause), self._frames(pause), 1.0))

    def _pause(self, sentence: int) -> tuple[int, int, float] | None:
        """(shortest, longest, scale of the model's own) pause after the sentence; None if it was
        never appended."""
        i = sentence - self.first_pause
        return self.pauses[i] if 0 <= i < len(self.pauses) else None

    def _shaped_to(self, sentence: int) -> None:
        """The sentence's end is shaped: its pause and those before it are needed no more (but
        for ends still waiting in the silent run)."""
        if self.run_ends:
            sentence = min(sentence, self.run_ends[0][1] - 1)
        while self.pauses and self.first_pause <= sentence:
            self.pauses.popleft()
            self.first_pause += 1

    def push(self, frames: np.ndarray, loudness: list[float], ends: list[tuple[int, int]], hold_from: int,
             flush: bool) -> tuple[np.ndarray, list[int]]:
        """A decoder step's frames [r, C] with their loudness, the (frame count, sentence) of each
        sentence end now decided, and the first frame still to hold (a sentence tail's start);
        flush: the stream stops for now, give out everything. Returns the frames [n, C] now
        shaped and the frame counts of the output at which sentence ends fall."""
        for f, loud in zip(frames, loudness):
            self.buf.append((f, float(loud)))
        self.ends.extend(ends)
        received = self.shaped + len(self.buf)
        limit = received if flush else min(hold_from, received)
        out: list[np.ndarray] = []
        out_ends: list[int] = []
        while self.shaped < limit:
            self._ends_at(self.shaped, out, out_ends, next_loud=self.buf[0][1])
            f, loud = self.buf.popleft()
            self.shaped += 1
            self.loudest = max(self.loudest, loud)
            if self._silent(loud):
                self._hold(f, loud)
            else:
                self._close_run(out, out_ends)
                self._place([(self.out, self.sound_end)])
                self._emit(out, f)
                self.sound_end = self.out
            if loud < self.quietest_loud:
                self.quietest, self.quietest_loud = f, loud
        if flush:
            self._ends_at(self.shaped, out, out_ends, next_loud=None)
            self._close_run(out, out_ends)
        self.flushed = flush
        width = frames.shape[1] if frames.ndim == 2 else 0
        return (np.stack(out) if out else np.zeros((0, width), frames.dtype)), out_ends

    def position(self, frame: int, sound: bool = False) -> int | None:
        """Where the boundary before input frame ``frame`` (a frame count) is in the output, in
        frames (sound: where the last sound before it ends, which a word ending in a pause
        needs); None while that is not decided (the frame is held). Boundaries older than the
        last HISTORY frames placed answer the oldest remembered position."""
        if frame < self.placed:
            return self.where[max(0, frame - (self.placed - len(self.where)))][sound]
        if frame >= self.shaped and self.flushed:  # nothing held: the next frame goes out here
            return self.sound_end if sound else self.out
        return None

    # --- shaping -------------------------------------------------------------------------------

    def _silent(self, loud: float) -> bool:
        return loud < self.loudest - SILENT

    def _emit(self, out: list, frame: np.ndarray, count: int = 1) -> None:
        out.extend([frame] * count)
        self.out += count

    def _ends_at(self, at: int, out: list, out_ends: list, next_loud: float | None) -> None:
        """Sentence ends that fall before the frame ``at``: into the run going on or starting
        there; else a pause is made where there was none."""
        while self.ends and self.ends[0][0] <= at:
            _, sentence = self.ends.popleft()
            # (the next frame is silent by the loudest as it will be when that frame is shaped)
            if self.run_n or (next_loud is not None and next_loud < max(self.loudest, next_loud) - SILENT):
                self.run_ends.append((self.run_n, sentence))
                continue
            shortest = (self._pause(sentence) or (0, 0, 1.0))[0]
            self._shaped_to(sentence)
            if shortest and self.quietest is not None:
                self._emit(out, self.quietest, shortest)
            out_ends.append(self.out)

    def _place(self, positions) -> None:
        self.where.extend(positions)
        self.placed += len(positions)
        for _ in range(len(self.where) - HISTORY):
            self.where.popleft()

    def _hold(self, frame: np.ndarray, loud: float) -> None:
        if len(self.run) >= MAX_HEAD + MAX_LEAD:  # drop the oldest of the last MAX_LEAD
            del self.run[MAX_HEAD]
            del self.run_loud[MAX_HEAD]
        self.run.append(frame)
        self.run_loud.append(loud)
        self.run_n += 1

    def _close_run(self, out: list, out_ends: list) -> None:
        """Give out the silent run (if any) at the length its kind of break asks for."""
        n = self.run_n
        if n == 0 and not self.run_ends:
            return
        if self.run_ends:
            # The break of the last sentence ending here decides (several end here only when
            # some sentence had no sound of its own).
            c, sentence = self.run_ends[-1]
            shortest, longest, scale = self._pause(sentence) or (0, self.inner, 1.0)
            self._shaped_to(sentence)
            length = min(max(round(n * scale), shortest), longest)
            lead = n - c if n - c <= MAX_LEAD else min(KEEP_LEAD, n)
        else:
            length = min(n, self.inner)
            lead = min(KEEP_LEAD, n)
        lead = min(lead, length)
        stored_head = min(n - lead, MAX_HEAD)
        head = min(length - lead, stored_head)
        pad = length - lead - head
        quiet = self.run[int(np.argmin(self.run_loud))] if self.run else self.quietest
        start = self.out
        for f in self.run[:head]:
            self._emit(out, f)
        if pad and quiet is not None:
            self._emit(out, quiet, pad)
        elif pad:
            length -= pad
            pad = 0
        if lead:
            for f in self.run[len(self.run) - lead:]:
                self._emit(out, f)
        def moved(c: int) -> int:  # where the boundary c frames into the run went
            if c < head:
                return start + c
            if c >= n - lead:
                return start + head + pad + c - (n - lead)
            return start + head + pad

        out_ends.extend(moved(c) for c, _ in self.run_ends)
        self._place([(moved(c), self.sound_end) for c in range(n)])
        self.run, self.run_loud, self.run_n, self.run_ends = [], [], 0, []
