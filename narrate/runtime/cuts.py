"""Where each sentence's audio ends in its stream: in the pause before the next sentence.

The decoder's text position reaches the next sentence as that sentence's first sound starts
(the pause between them is spoken on the last tokens of the one before), so ending a sentence
where the position reaches the next would leave the next one's onset in it: a resumed run,
which starts at a sentence, would then say that onset twice, and sentence spans (chapters,
timestamps) would be late. The end goes in the pause instead: the frames from the sentence's
last phoneme on (piper's tokens end "phoneme _ $", the last ``TAIL_TOKENS``) make its tail, and
the longest run of them within ``QUIET_MARGIN`` of the quietest is the pause. The sentence
keeps the pause but its last ``LEAD_FRAMES`` (its first half at least), so the next one starts
just before its first sound, as a sentence rendered alone does. (Ending at the quietest frame,
often the first after the speech dies away, cut sentences off abruptly: a speech recognizer
then misread their last words; on the bench sentences, four seeds, the WER of the sentences
cut this way is that of the old cut at the onset, 0.123 against 0.121.) It is decided when the
position reaches the next sentence, which is before the vocoder has emitted those frames
(it holds back a block); where they are already out, the sentence ends at once (see
``narrate.runtime.vocoding.run_job``). The samples are the same either way: only where they split
moves.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import torch

TAIL_TOKENS = 3
QUIET_MARGIN = 1.15  # natural log of mel magnitudes: 10 dB
LEAD_FRAMES = 3      # of the pause, the next sentence starts with this much (its middle at most)
MAX_TAIL = 512       # frames of a tail kept (~6 s): the pause is at its end


@dataclass
class SentenceCuts:
    # the token count at the end of each appended sentence not ended yet, oldest (the one being
    # spoken) first: a book's worth of sentences is never held
    ends: deque = field(default_factory=deque)
    sentence: int = 0                               # the sentence being spoken (counting from the stream's first)
    frames: int = 0                                 # frames of the stream so far
    tail: list[float] = field(default_factory=list)  # loudness of the sentence's tail frames, up to the last

    def __post_init__(self):
        self.ends = deque(self.ends)

    def step(self, feats: torch.Tensor, position: int, done: bool, paused: bool) -> list[int]:
        """A decoder step's frames [r, F] (log-mel) and its text position: the frame count at
        which each sentence ending now ends. A stream that stops (done, or paused at the end of
        the text it has) ends its sentences after the step's frames."""
        self.frames += feats.shape[0]
        if self.tail or (self.ends and position >= self.ends[0] - TAIL_TOKENS):
            self.tail.extend(torch.logsumexp(feats.float(), dim=1).tolist())  # of each frame's mel bands
            del self.tail[:-MAX_TAIL]
        cuts = []
        while self.ends and (position >= self.ends[0] or done or (paused and len(self.ends) == 1)):
            cuts.append(self.frames if done or paused or not self.tail else self._in_pause())
            self.tail = []
            self.ends.popleft()
            self.sentence += 1
        return cuts

    def _in_pause(self) -> int:
        """The frame count LEAD_FRAMES before the end of the longest run of the tail's quiet
        frames (at its middle if it is shorter than twice that)."""
        floor = min(self.tail) + QUIET_MARGIN
        best, run_start, best_len = 0, 0, 0
        for i, loud in enumerate([*self.tail, math.inf]):
            if loud > floor:
                if i - run_start > best_len:
                    best, best_len = run_start, i - run_start
                run_start = i + 1
        return self.frames - len(self.tail) + best + max((best_len + 1) // 2, best_len - LEAD_FRAMES)
