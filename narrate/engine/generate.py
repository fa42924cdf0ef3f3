"""Decoding: an explicit per-stream state that the caller owns, text chunks appended while it
runs, one decoder step at a time for one or many streams (batched), constant memory.

A stream's text window is a list of encoded chunks; chunks the spoken position has left
behind are dropped (keeping ``window_past`` of them), so memory does not grow with the text.
Each chunk keeps its tokens' cross-attention keys/values and each stream its speaker terms,
computed once (``NarrateModel.decode_step``), so a step does only per-step work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator

import torch

from narrate import kernels
from narrate.engine.guidance import GuidanceSettings, allowed_moves, guide
from narrate.engine.mamba import MambaState
from narrate.engine.model import Conditioning, DecoderState, NarrateModel
from narrate.engine.packed import for_decoding
from narrate.engine.sampling import SamplingSettings
from narrate.engine.stepping import StepFunction, StepGraphs


DRAW_AHEAD = 64  # decoder steps whose sampling draws a stream makes at once


@dataclass
class DecodeSettings:
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    guidance: GuidanceSettings = field(default_factory=GuidanceSettings)
    semantic_temperature: float = 0.0  # 0: the most likely (guided) move
    emit: str = "mean"                 # "mean": expected code vectors; "codes": the sampled codes
    mean_temperature: float = 1.0      # softmax temperature of the expected code vectors (< 1: sharper frames)
    window_past: int = 1               # chunks kept behind the one being spoken
    packed: bool = True                # int8 decoder weights (narrate.engine.packed) where they run here
    traced: bool = True                # steps replayed from recorded graphs (narrate.engine.stepping); False: run directly


@dataclass
class TextChunk:
    start: int                # global index of its first token
    ids: torch.Tensor         # [n]
    words: list[int]          # global word number per token (-1: none)
    kv: torch.Tensor          # [n, X, 2, H, dh] its tokens' keys/values in every cross layer
    first_word: int = 0       # global number of its first word
    n_words: int = 0
    end: int = field(init=False)  # global index after its last token (kept: a step reads it often)

    def __post_init__(self):
        self.end = self.start + len(self.ids)


@dataclass
class WordTiming:
    index: int     # global word number in the stream (the narrator's: number in its sentence)
    text: str
    start: float   # seconds from the start of the stream (the narrator's: of its audio)
    end: float
    sentence: int = -1  # its sentence in the stream (set by the narrator)


@dataclass
class VoiceState:
    """One voice of a stream: its conditioning, and the decoder state it stopped speaking in,
    which it takes up again when it next speaks (``Engine.speak``). A stream holds one per voice
    it has spoken in, however often the voices alternate."""

    cond: Conditioning
    decoder: DecoderState | None = None  # None: speaking now (the stream holds it), or not spoken yet
    pitch: float = math.nan  # its median pitch (Hz), for a vocoder that follows one (narrate.codec.pitched)


@dataclass
class StreamState:
    decoder: DecoderState
    cond: Conditioning             # speaker voice and speaking rate, as the decoder uses them
    generator: torch.Generator
    voice: VoiceState | None = None  # the voice speaking now (its cond is ``cond``); set by ``new_stream``
    draws: torch.Tensor | None = None  # sampling's uniform numbers for the next steps [n, r, K] (``Engine._draws``)
    drawn: int = 0                 # rows of ``draws`` used
    chunks: list[TextChunk] = field(default_factory=list)
    window: torch.Tensor | None = None  # the chunks' kv end to end (rebuilt when chunks change)
    word_text: dict[int, str] = field(default_factory=dict)
    n_tokens: int = 0
    n_words: int = 0
    position: int = 0
    closed: bool = False
    paused: bool = False           # STOP at the end of text that may still grow
    done: bool = False
    steps: int = 0
    stall: int = 0
    current_word: int = -1
    word_start: float = 0.0

    @property
    def active(self) -> bool:
        return not self.done and not self.paused and self.n_tokens > 0


@dataclass
class StepOutput:
    codes: torch.Tensor    # [K, r]
    feats: torch.Tensor    # [r, F] frames to vocode
    position: int
    words: list[WordTiming]  # words that ended at this step
    stopped: bool


class Engine:
    """kernel: the backend its layers run on (``narrate.kernels.choose``; None: chosen here)."""

    def __init__(self, model: NarrateModel, frame_rate: float, settings: DecodeSettings | None = None,
                 kernel: bool | None = None):
        self.settings = settings or DecodeSettings()
        self.kernel = kernels.choose(kernel)
        self.model = for_decoding(model, self.settings.packed, self.kernel)  # decoding's copy (the caller's is untouched)
        self.cfg = model.cfg
        self.step_seconds = self.cfg.reduction / frame_rate
        s = self.settings
        self._step = StepGraphs(StepFunction(self.model, s.sampling, s.emit, self.kernel, s.mean_temperature), s.traced)
        self._batch: StepBatch | None = None  # the streams of the last step (they hold it till the next)
        self._whole_band = torch.ones(self.cfg.band_back + self.cfg.band_ahead + 1, dtype=torch.bool)

    # --- stream lifecycle ------------------------------------------------------------------
    def new_stream(self, speaker: torch.Tensor, speed: float = 1.0, seed: int = 0,
                   prompt: torch.Tensor | None = None) -> StreamState:
        """speaker: the voice's speaker vector (``NarrateModel.speaker_vector``); prompt [T, F] the
        voice prompt's frames (models with a prompt encoder)."""
        g = torch.Generator().manual_seed(seed)
        cond = self.condition(speaker, speed, prompt)
        return StreamState(self.model.init_state(1), cond, g, VoiceState(cond))

    @torch.no_grad()
    def condition(self, speaker: torch.Tensor, speed: float = 1.0, prompt: torch.Tensor | None = None) -> Conditioning:
        """A voice's conditioning (see ``new_stream``); ``speak`` gives a stream another voice."""
        return self.model.condition(speaker.float().view(1, -1), torch.tensor([math.log(1.0 / speed)]),
                                    None if prompt is None else prompt.float().unsqueeze(0))

    @torch.no_grad()
    def encode(self, ids: list[int]) -> torch.Tensor:
        """A chunk's text keys/values [n, X, 2, H, dh]: the costly part of ``append``, which a
        caller may run ahead on another thread (it touches no stream)."""
        return self.model.text_kv(self.model.encoder(torch.tensor(ids, dtype=torch.long).unsqueeze(0))[0])

    @torch.no_grad()
    def append(self, state: StreamState, ids: list[int], words: list[int], word_texts: list[str],
               kv: torch.Tensor | None = None) -> None:
        """Add a chunk of text tokens (words: word number within this chunk per token, -1 none);
        kv: its ``encode``, if made already."""
        t = torch.tensor(ids, dtype=torch.long)
        kv = self.encode(ids) if kv is None else kv
        gw = [w + state.n_words if w >= 0 else -1 for w in words]
        n_words = max(len(word_texts), max(words, default=-1) + 1)
        state.chunks.append(TextChunk(state.n_tokens, t, gw, kv, state.n_words, n_words))
        state.window = torch.cat([c.kv for c in state.chunks])
        for i, w in enumerate(word_texts):
            state.word_text[state.n_words + i] = w
        state.n_tokens += len(ids)
        state.n_words += n_words
        state.paused = False

    def speak(self, state: StreamState, voice: VoiceState) -> None:
        """Give the stream another voice between steps (e.g. for quoted speech). The voice
        speaking until now keeps its decoder state, and ``voice`` takes up its own where it
        stopped (a new one if it has not spoken yet): each voice goes on from its own last
        frame and memory, never from another voice's, as if its segments were one utterance.
        The sampling draws and the text stay the stream's."""
        current = state.voice
        if voice is current:
            return
        if current is not None:
            current.decoder = state.decoder.copy()  # (the stream's decoder may be a view of a batch)
        state.decoder = voice.decoder if voice.decoder is not None else self.model.init_state(1)
        voice.decoder = None
        state.cond, state.voice = voice.cond, voice

    def close(self, state: StreamState) -> None:
        """No more text will come: the stream may now STOP at its end."""
        state.closed = True
        state.paused = False

    # --- stepping ----------------------------------------------------------------------------
    def frames(self, state: StreamState) -> Iterator[StepOutput]:
        """One stream's steps as an iterator; it ends when the stream is done or paused for
        text (append more, then iterate again). Text may be appended between items."""
        while state.active:
            yield self.step([state])[0]

    @torch.no_grad()
    def step(self, states: list[StreamState]) -> list[StepOutput]:
        """One decoder step for every active stream in ``states`` (batched)."""
        batch = self._batch
        if batch is None or not batch.holds(states):
            batch = self._batch = StepBatch.of(states)
        bands, valids = zip(*(self._band(s) for s in states))
        dec, cond = batch.decoder, batch.cond
        # (the step writes the new decoder state into batch.decoder, whose rows are the streams')
        sem, codes, feats = self._step(torch.stack(bands), torch.stack(valids), cond.input_bias, cond.speaker_kv,
                                       dec.prev_feats, [layer.conv for layer in dec.layers], [layer.ssm for layer in dec.layers],
                                       self._draws(states))
        sem = sem.tolist()  # [B][classes]: guidance is plain Python
        return [self._advance(s, sem[b], codes[b], feats[b]) for b, s in enumerate(states)]

    def _band(self, s: StreamState) -> tuple[torch.Tensor, torch.Tensor]:
        """The text keys/values around the stream's position: [W, X, 2, H, dh] and valid [W]."""
        assert s.window is not None  # (a stream steps only with text: active)
        n = s.window.shape[0]
        lo = s.position - s.chunks[0].start - self.cfg.band_back
        hi = lo + self.cfg.band_back + self.cfg.band_ahead + 1
        if lo >= 0 and hi <= n:  # (the step stacks the bands: the all-valid mask can be shared)
            return s.window[lo:hi], self._whole_band
        idx = torch.arange(lo, hi)
        return s.window[idx.clamp(0, n - 1)], (idx >= 0) & (idx < n)

    def _draws(self, states: list[StreamState]) -> torch.Tensor:
        """Sampling's uniform numbers for the step, [B, r, K], each stream's from its own generator
        (so its codes do not depend on its batch); none drawn when sampling is greedy. A stream
        draws ``DRAW_AHEAD`` steps' numbers at once: the same numbers as drawing step by step
        (``sampling.draws``, the reference; the tests hold them equal), unless semantic sampling
        draws from the generator too (then in another order)."""
        shape = (self.cfg.reduction, self.cfg.n_codebooks)
        if self.settings.sampling.temperature <= 0:
            return torch.zeros(len(states), *shape)
        rows = []
        for s in states:
            if s.draws is None or s.drawn == len(s.draws):
                s.draws, s.drawn = torch.rand((DRAW_AHEAD, *shape), generator=s.generator), 0
            rows.append(s.draws[s.drawn])
            s.drawn += 1
        return torch.stack(rows)

    def _advance(self, s: StreamState, sem_probs: list[float], codes, feats) -> StepOutput:
        gs = self.settings.guidance
        n_classes = self.cfg.semantic_classes
        ok = allowed_moves(s.position, s.n_tokens, n_classes, gs)
        probs = guide(sem_probs, ok, gs.strength)
        if self.settings.semantic_temperature > 0:
            p = torch.tensor(probs).pow(1.0 / self.settings.semantic_temperature)
            choice = int(torch.multinomial(p / p.sum(), 1, generator=s.generator))
        else:
            choice = max(range(n_classes), key=probs.__getitem__)
        stop = choice == n_classes - 1
        move = 0 if stop else choice
        s.stall = s.stall + 1 if move == 0 else 0
        if s.stall > gs.max_stall and not stop:
            if s.position < s.n_tokens - 1:
                move, s.stall = 1, 0
            elif s.closed:  # stuck at the very end of the text: finish
                stop = True
        s.steps += 1
        t = s.steps * self.step_seconds
        # (the word under the position changes only when it moves)
        ended = self._track_words(s, s.position + move, t) if move or s.steps == 1 else []
        s.position += move
        if stop:
            ended += self._track_words(s, None, t)
            if s.closed:
                s.done = True
            else:
                s.paused = True
        if move:  # (what lies behind changes only when the position moves)
            self._slide(s)
        return StepOutput(codes, feats, s.position, ended, stop)

    def _track_words(self, s: StreamState, new_pos: int | None, t: float) -> list[WordTiming]:
        """Word boundaries crossed by moving to new_pos (None: end of speech) at time t."""
        ended = []
        word = -1 if new_pos is None else self._word_at(s, new_pos)
        if word != s.current_word:
            if s.current_word >= 0:
                ended.append(WordTiming(s.current_word, s.word_text.pop(s.current_word, ""), s.word_start, t))
            s.current_word, s.word_start = word, t
        return ended

    @staticmethod
    def _word_at(s: StreamState, pos: int) -> int:
        for c in s.chunks:
            if c.start <= pos < c.end:
                return c.words[pos - c.start]
        return -1

    def _slide(self, s: StreamState) -> None:
        """Drop chunks the position has left behind, keeping ``window_past`` of them."""
        behind, limit = 0, s.position - self.cfg.band_back
        for c in s.chunks:  # in text order: those behind come first
            if c.end > limit:
                break
            behind += 1
        if behind <= self.settings.window_past:
            return
        gone = s.chunks[: behind - self.settings.window_past]
        del s.chunks[: len(gone)]
        for c in gone:
            for w in range(c.first_word, c.first_word + c.n_words):
                if w != s.current_word:
                    s.word_text.pop(w, None)
        # the chunks left are the window's last rows: a view of them, no copy (the next append
        # makes a window of its own again, and the dropped chunks' memory goes then)
        if s.window is not None:
            s.window = s.window[s.chunks[0].start - gone[0].start :]


@dataclass
class StepBatch:
    """Streams stepping together: their decoder states stacked once, and each stream's decoder
    a view of that stack, which every step updates in place. A stream's state is thus always its
    own, and stacking and splitting happen only when the set of streams changes (a stream joins,
    pauses or ends), not on every step."""

    streams: list[StreamState]
    decoder: DecoderState          # [B, ...]
    cond: Conditioning             # [B, ...]
    views: list[DecoderState]      # each stream's decoder: its row of ``decoder``
    conds: list[Conditioning]      # each stream's conditioning, as stacked in ``cond``

    @staticmethod
    def of(states: list[StreamState]) -> "StepBatch":
        if len(states) == 1:  # its own tensors are the stack
            s = states[0]
            return StepBatch([s], s.decoder, s.cond, [s.decoder], [s.cond])
        decs = [s.decoder for s in states]
        layers = [MambaState(torch.cat([d.layers[i].conv for d in decs]), torch.cat([d.layers[i].ssm for d in decs]))
                  for i in range(len(decs[0].layers))]
        stacked = DecoderState(layers, torch.cat([d.prev_feats for d in decs]))
        for b, s in enumerate(states):
            s.decoder = stacked.select(slice(b, b + 1))
        cond = Conditioning(torch.cat([s.cond.input_bias for s in states]),
                            torch.cat([s.cond.speaker_kv for s in states]))
        return StepBatch(list(states), stacked, cond, [s.decoder for s in states], [s.cond for s in states])

    def holds(self, states: list[StreamState]) -> bool:
        """Whether these are its streams, in its order, each still on its view and its conditioning."""
        return len(states) == len(self.streams) and all(
            a is b and a.decoder is v and a.cond is c for a, b, v, c in zip(states, self.streams, self.views, self.conds))
