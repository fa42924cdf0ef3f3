"""The source-filter vocoder: frames -> the pitch track's voicing and relative F0 -> the voice's
F0 -> the source filter (``--vocoder source-filter``).

The model's frames carry an envelope but hardly any harmonics, so a vocoder that reads pitch
off them invents one (the neural vocoder's output is mostly aperiodic, and its pitch ignores the
voice prompt). Here the pitch is explicit: ``narrate.codec.pitch_track`` predicts each frame's
voicing and its F0 relative to the speaker's median, in octaves; the voice speaking sets the
median (its prompt's, ``narrate.pitch.median_pitch``), so a prompt's pitch is the output's; the
post-net, where the model has one (``narrate.codec.post_net``), makes the frames sharper; and
``narrate.codec.source_filter`` makes a periodic excitation at that F0 shaped by the frames'
envelope. The track reads the frames as the model gives them (what it was trained on).

Each push goes to the pitch track at once (its numpy streaming costs an RTF of ~0.003 in the
decoder's 3-frame pushes), which answers a frame ``lookahead`` frames after it arrives, so frames
wait here for their F0 (the post-net answers as soon or sooner: its lookahead is at most the
track's, so it adds no delay); the filter computes what it is given in blocks (``block``, 24: its own
``block``, as a push of 3 frames would cost it more in per-call overhead than in arithmetic).
Audio comes out up to about 32 frames (0.37 s of audio) after its frames. A voice change between
pushes applies to the frames pushed after it. ``flush`` ends the stream (pause or end): the track
answers its last frames as if silence followed, the filter emits every sample; frames pushed
after it start afresh. ``PitchedVocoder.vocode`` is the one-pass reference: the same samples
(to float rounding) for one voice, however the frames are pushed.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import torch

from narrate.codec.frame_net import take_rows
from narrate.codec.mel import MelConfig
from narrate.codec.pitch_track import PitchTrack, PitchTrackStream, to_hz
from narrate.codec.post_net import PostNet, PostNetStream
from narrate.codec.source_filter import SourceFilter

DEFAULT_PITCH = 100.0  # Hz: a voice with no recording to measure (an embedding-only voice)
# The track's voicing logit above which a frame is voiced: see narrate.codec.source_filter.WINDOW
# for what it measured.
VOICED = -2.0


def _usable(pitch: float) -> float:
    return float(pitch) if math.isfinite(pitch) and pitch > 0 else DEFAULT_PITCH


class PitchedVocoder:
    """One stream: log-mel frames [T, M] in (``push``), samples out. ``pitch`` (Hz): the median
    pitch of the voice whose frames are pushed next."""

    def __init__(self, track: PitchTrack, mel_cfg: MelConfig, pitch: float = DEFAULT_PITCH, block: int = 24,
                 post_net: PostNet | None = None):
        if post_net is not None and post_net.cfg.lookahead > track.cfg.lookahead:
            raise ValueError(f"the post-net looks {post_net.cfg.lookahead} frames ahead, the pitch track only "
                             f"{track.cfg.lookahead}: the post-net would delay the audio")
        self.model, self.post_net = track, post_net
        self.track = PitchTrackStream(track)
        self.post = None if post_net is None else PostNetStream(post_net)
        self.filter = SourceFilter(mel_cfg, block=block)  # (it computes frames in blocks: per-call costs)
        self.waiting: deque = deque()  # (frames [n, M], their voice's pitch) pushed, awaiting their F0
        self.sharp: deque = deque()  # the post-net's frames, in step with ``waiting``'s (with a post-net)
        self.pitch = _usable(pitch)

    def speak_at(self, pitch: float) -> None:
        """The frames pushed from now on are a voice of this median pitch (Hz; NaN or <= 0: the
        default)."""
        self.pitch = _usable(pitch)

    def push(self, frames: torch.Tensor) -> np.ndarray:
        mel = np.asarray(frames.detach().float().numpy(), np.float32)
        if not len(mel):
            return np.zeros(0, np.float32)
        self.waiting.append((mel, np.full(len(mel), self.pitch)))
        if self.post is not None:
            self._sharpened(self.post.push(mel))
        return self._synthesize(*self.track.push(mel))

    def flush(self) -> np.ndarray:
        if self.post is not None:
            self._sharpened(self.post.flush())
        head = self._synthesize(*self.track.flush())
        assert not self.waiting and not self.sharp  # (the track and the post-net have answered every frame)
        return np.concatenate([head, self.filter.flush()])

    def _sharpened(self, frames: np.ndarray) -> None:
        if len(frames):
            self.sharp.append((frames,))

    def _synthesize(self, voicing_logit: np.ndarray, rel: np.ndarray) -> np.ndarray:
        """The waiting frames the track has now answered, through the filter."""
        n = len(rel)
        if n == 0:
            return np.zeros(0, np.float32)
        mel, median = take_rows(self.waiting, n)
        if self.post is not None:
            (mel,) = take_rows(self.sharp, n)
        return self.filter.push(mel, *excitation(voicing_logit, rel, median))

    @torch.no_grad()
    def vocode(self, logmel: torch.Tensor) -> np.ndarray:
        """The reference: one whole utterance in the current voice, the track run over all of it
        at once (``PitchTrack.forward``) and the filter in one pass: [T * hop] float32."""
        voicing_logit, rel = (x[0].numpy() for x in self.model(logmel.float()[None]))
        median = np.full(len(rel), self.pitch)
        frames = logmel.float() if self.post_net is None else self.post_net(logmel.float()[None])[0]
        return self.filter.synthesize(frames.numpy(), *excitation(voicing_logit, rel, median))


def excitation(voicing_logit: np.ndarray, rel: np.ndarray, median: np.ndarray) -> tuple[np.ndarray, None]:
    """The filter's F0 (Hz; 0 where unvoiced) from the track's outputs and each frame's voice
    median (Hz), and its voicing: hard (None: pulses wherever F0 > 0). Hard voicing was chosen on
    held-out sentences 0-19 of 40 (``python -m bench.pitch_track_eval``): the track's soft voicing
    as the mix scored DNSMOS OVRL 2.43 against 2.89 hard."""
    return to_hz(voicing_logit, rel, median, VOICED), None
