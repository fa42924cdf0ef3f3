"""Where each sentence's audio ends in its stream: at the quietest frame of the sentence's tail.

The decoder's text position reaches the next sentence as that sentence's first sound starts
(the pause between them is spoken on the last tokens of the one before), so ending a sentence
where the position reaches the next would leave the next one's onset in it: a resumed run,
which starts at a sentence, would then say that onset twice, and sentence spans (chapters,
timestamps) would be late. The end goes instead at the quietest frame from the sentence's last
phoneme on: piper's tokens end "phoneme _ $", the last ``TAIL_TOKENS``. It is decided when the
position reaches the next sentence, which is before the vocoder has emitted those frames
(it holds back a block); where they are already out, the sentence ends at once (see
``narrate.vocoding.run_job``). The samples are the same either way: only where they split moves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

TAIL_TOKENS = 3


@dataclass
class SentenceCuts:
    ends: list[int] = field(default_factory=list)  # the token count at the end of each appended sentence
    sentence: int = 0                               # the sentence being spoken
    frames: int = 0                                 # frames of the stream so far
    quiet: tuple[float, int] | None = None          # (loudness, frame) quietest of the sentence's tail so far

    def step(self, feats: torch.Tensor, position: int, done: bool, paused: bool) -> list[int]:
        """A decoder step's frames [r, F] (log-mel) and its text position: the frame count at
        which each sentence ending now ends. A stream that stops (done, or paused at the end of
        the text it has) ends its sentences after the step's frames."""
        first = self.frames
        self.frames += feats.shape[0]
        if self.sentence < len(self.ends) and position >= self.ends[self.sentence] - TAIL_TOKENS:
            loudness = torch.logsumexp(feats.float(), dim=1)  # of each frame's mel bands
            i = int(loudness.argmin())
            if self.quiet is None or float(loudness[i]) < self.quiet[0]:
                self.quiet = (float(loudness[i]), first + i)
        cuts = []
        while self.sentence < len(self.ends) and (position >= self.ends[self.sentence] or done or
                                                  (paused and self.sentence == len(self.ends) - 1)):
            stops = done or paused
            cuts.append(self.quiet[1] + 1 if self.quiet is not None and not stops else self.frames)
            self.quiet = None
            self.sentence += 1
        return cuts
