"""The narrator: sentences in, audio out, through one carried decoder state per stream.

Chain: sentences -> phoneme chunks (appended to the stream's text window while it runs) ->
decoder steps -> codec frames -> streaming vocoder -> AudioChunk. Nothing holds the whole text.
"""

from __future__ import annotations

import functools
import itertools
import math
import queue
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Callable, Generator, Iterable, Iterator

import numpy as np
import torch

from narrate import kernels
from narrate.audio.stretch import SPEEDS, SentenceStretch
from narrate.runtime.cuts import SentenceCuts
from narrate.engine.generate import DecodeSettings, Engine, StreamState, VoiceState, WordTiming
from narrate.engine.guidance import GuidanceSettings
from narrate.engine.sampling import SamplingSettings
from narrate.errors import NarrateError
from narrate.runtime import heap
from narrate.runtime.feeding import Feeder
from narrate.runtime.pauses import SENTENCE_PAUSE, PauseShaper, split_sentence
from narrate.text.phonemes import Phonemizer
from narrate.voices import conditioning
from narrate.runtime.vocoding import VocodeJob, Vocoding


@dataclass
class NarrateSettings:
    speed: float = 1.0
    seed: int = 0
    temperature: float = 0.6
    top_k: int = 0
    top_p: float = 1.0
    guidance: float = 1.0
    emit: str = "mean"
    # of the expected frames (narrate.engine.stepping), < 1 sharper; None: the model's
    # (config.json's mean_temperature), decided when a Narrator is made
    mean_temperature: float | None = None
    # Decoding one stream is a chain of small steps: a second thread buys little, and two
    # OpenMP threads stall badly whenever another process holds one of the cores.
    threads: int = 1
    # The vocoder in a process of its own, so decoding goes on while earlier frames become audio
    # (the second core; see narrate.runtime.vocoding). False vocodes inline: the reference, same samples.
    vocoder_process: bool = True
    packed: bool = True            # int8 decoder weights (narrate.engine.packed)
    # The backend: our CPU kernels (True) or torch's operations (False), for decoding and
    # vocoding alike; None: ours where built (narrate.kernels.choose, made once per narrator).
    kernels: bool | None = None
    # Frames to audio: "neural" (the model's vocoder), "griffin-lim", or "auto" (neural when the
    # model has one). Read when the model is loaded (Narrator.load).
    vocoder: str = "auto"
    # Several streams at once (chapters) are narrated by this many forked processes, each a
    # batch of its share on a core of its own (narrate.runtime.decoders); 1: all in this process.
    decoder_processes: int = 1
    # Seconds of silence between sentences, at most (the model's own pause scaled to its teacher's
    # length, SENTENCE_SCALE; at least half of it); commas pause less, paragraphs as the text's Sentence items say (narrate.runtime.pauses).
    sentence_pause: float = SENTENCE_PAUSE
    shape_pauses: bool = True      # False: the model's pauses as they come (for comparison)

    def decode(self) -> DecodeSettings:
        return DecodeSettings(SamplingSettings(self.temperature, self.top_k, self.top_p),
                              GuidanceSettings(strength=self.guidance), emit=self.emit,
                              mean_temperature=1.0 if self.mean_temperature is None else self.mean_temperature,
                              packed=self.packed)


@dataclass
class AudioChunk:
    samples: np.ndarray            # float32 mono at the narrator's sample rate
    sentence: int                  # index of the sentence these samples belong to
    final: bool = False            # the last samples of that sentence
    # words whose place in the audio is now known: seconds from the stream's first sample, after
    # pause shaping; numbered within their sentence (narrate.audio.subtitles makes cues of them)
    words: list[WordTiming] = field(default_factory=list)


_EOF = object()
DIALOGUE = "\0dialogue"  # a stream's dialogue voice among its voices (no voice map key can hold a NUL)


class _Run:
    """Bookkeeping of one stream: its sentence feed, engine state and vocoder stream."""

    def __init__(self, narrator: "Narrator", sentences: Iterable[str], lookahead: bool, seed: int, key: int,
                 index: int = 0):
        self.n = narrator
        self.index = index              # its place among the call's streams
        self.state: StreamState = narrator.engine.new_stream(narrator.speaker, narrator.model_speed, seed,
                                                                   narrator.prompt)
        self.key = key                  # its decoder's key in narrator.vocoding
        # the stream's voices, each with its own decoder state (narrate.engine.generate.VoiceState),
        # by what a sentence names: None its own (narration), DIALOGUE the narrator's dialogue
        # voice (quoted speech), else a key of the narrator's voices; made as they first speak
        assert self.state.voice is not None
        self.state.voice.pitch = narrator.pitches.get(None, math.nan)
        self.voices: dict[str | None, VoiceState] = {None: self.state.voice}
        self.voice = self.state.voice  # the voice of the last sentence appended
        self.changes: deque = deque()  # voice changes to come: (text position from which it speaks, VoiceState)
        self.lookahead = lookahead
        self.queue: queue.Queue = queue.Queue(maxsize=4)
        self.cuts = SentenceCuts()      # where its sentences end (it holds the sentence being spoken)
        # beyond the model's trained rates: each sentence time-scaled as it ends
        self.stretch = SentenceStretch(narrator.tempo, narrator.sample_rate) if narrator.tempo != 1 else None
        s = narrator.settings
        self.pauses = PauseShaper(narrator.codec.frame_rate, s.sentence_pause) if s.shape_pauses else None
        self.vocoded = 0                # sentence whose audio is coming out of the vocoder
        self.first_words: deque = deque()  # (sentence, its first word number), from the oldest a word may still be in
        self.words: list[WordTiming] = []  # ended words whose place in the shaped frames is not decided yet
        self.seconds_per_frame = round(narrator.sample_rate / narrator.codec.frame_rate) / narrator.sample_rate
        self.appended = 0
        self.finished = False
        self.error: BaseException | None = None
        # sentences are read, phonemized and encoded ahead on a thread of their own: the
        # encoder's few large operations leave the interpreter to the decoding thread and run
        # on another core
        self.feeder = Feeder(sentences, self._encode, self._end, self._drop, "narrate-text")
        self.feeder.start()

    def _encode(self, item) -> None:
        text, pause = split_sentence(item)  # a str or a narrate.runtime.pauses.Sentence
        ph = self.n.phonemizer.encode(text)
        self.queue.put((ph, self.n.engine.encode(ph.ids), pause, getattr(item, "dialogue", False),
                        getattr(item, "voice", None)))

    def _end(self, error: BaseException | None) -> None:
        self.error = error  # surfaced to the caller by _take
        self.queue.put(_EOF)

    def _drop(self) -> None:
        try:
            self.queue.get_nowait()
        except queue.Empty:
            pass

    def stop(self) -> None:
        """End the feeding thread (the text not yet spoken is dropped)."""
        self.feeder.stop()

    def _take(self, block: bool) -> bool:
        """Append the next sentence (False if none available / end of text)."""
        try:
            item = self.queue.get(block=block)
        except queue.Empty:
            return False
        if self.error is not None and item is _EOF:
            raise self.error
        if item is _EOF:
            self.n.engine.close(self.state)
            return False
        ph, kv, pause, dialogue, voice = item
        self._voice_from(self.state.n_tokens, dialogue, voice)
        self.first_words.append((self.appended, self.state.n_words))
        self.n.engine.append(self.state, ph.ids, ph.words, ph.text_words, kv)
        self.cuts.ends.append(self.state.n_tokens)
        if self.pauses is not None:
            self.pauses.add_sentence(pause)
        self.appended += 1
        self.change_voice()
        return True

    def _voice_from(self, start: int, dialogue: bool, voice: str | None = None) -> None:
        """The sentence appended at token ``start`` speaks in the voice it names (a key of the
        narrator's ``voices``), else in the dialogue voice (quoted speech) or the stream's own:
        the change is made as the position reaches the end token of the sentence before (in the
        pause between them), or at once for the first."""
        if voice is None and dialogue and self.n.dialogue_cond is not None:
            voice = DIALOGUE
        if voice not in self.voices:
            cond = self.n.dialogue_cond if voice == DIALOGUE else self.n.voice_conds[voice]
            assert cond is not None
            self.voices[voice] = VoiceState(cond, pitch=self.n.pitches.get(voice, math.nan))
        chosen = self.voices[voice]
        if chosen is not self.voice:
            self.changes.append((max(0, start - 1), chosen))
            self.voice = chosen

    def change_voice(self) -> None:
        """Give the stream the voice its text position has reached (between decoder steps)."""
        while self.changes and self.state.position >= self.changes[0][0]:
            self.n.engine.speak(self.state, self.changes.popleft()[1])

    def feed_text(self) -> None:
        """Keep one sentence ahead of the one being spoken (file mode), or take what has
        arrived (live mode); wait only when there is nothing left to say."""
        st = self.state
        while not st.closed:
            ahead = self.appended - self.cuts.sentence
            need = st.n_tokens == 0 or st.paused or (self.lookahead and ahead < 2)
            if not need and self.lookahead:
                return
            if not self._take(block=need):
                if need and not st.closed and (st.n_tokens == 0 or st.paused):
                    continue
                return

    def consume(self, out) -> tuple[VocodeJob, list[WordTiming]]:
        """Decide now which sentences end at this step: the vocoding job of its frames (with
        the step's words, which ride on the audio the job yields)."""
        st = self.state
        pitch = st.voice.pitch if st.voice is not None else math.nan  # (the voice that spoke this step)
        self.change_voice()
        first = self.cuts.sentence
        ends = self.cuts.step(out.feats, st.position, st.done, st.paused)
        if st.done:
            self.finished = True
        mean = self.n.settings.emit == "mean"
        frames = (out.feats if mean else out.codes.T).numpy()  # [r, F] or [r, K]
        flush = st.paused or st.done
        if self.pauses is not None:
            loudness = torch.logsumexp(out.feats.float(), dim=1).tolist()
            held = self.cuts.frames - len(self.cuts.tail)  # a tail waiting for its sentence's end
            frames, ends = self.pauses.push(frames, loudness, [(e, first + i) for i, e in enumerate(ends)],
                                            held, flush)
        if not mean:
            frames = np.ascontiguousarray(frames.T)  # [K, r]
        job = VocodeJob(self.key, frames, "features" if mean else "codes", ends, flush, pitch)
        return job, self._timed(out.words)

    def _timed(self, ended: list[WordTiming]) -> list[WordTiming]:
        """The words (ended now or before) whose place in the output is decided, timed in the
        stream's audio and numbered within their sentence, in order."""
        self.words.extend(ended)
        timed = []
        while self.words:
            w = self.words[0]
            end = self._out_frame(w.end, sound=True)  # (the position leaves a word in the pause after it)
            if end is None:  # held by the pause shaper: later
                break
            start = self._out_frame(w.start)
            assert start is not None  # (placed before its end was)
            end = max(end, start)
            while len(self.first_words) > 1 and self.first_words[1][1] <= w.index:
                self.first_words.popleft()  # (words only move forward)
            sentence, first = self.first_words[0]
            timed.append(WordTiming(w.index - first, w.text, start * self.seconds_per_frame,
                                    end * self.seconds_per_frame, sentence))
            self.words.pop(0)
        return timed

    def _out_frame(self, seconds: float, sound: bool = False) -> int | None:
        frame = round(seconds * self.n.codec.frame_rate)
        return frame if self.pauses is None else self.pauses.position(frame, sound)

    def chunks(self, parts: list[np.ndarray], words: list[WordTiming]) -> list[AudioChunk]:
        """A job's audio (see ``run_job``) as AudioChunks, in order; each word goes with the
        chunk of its sentence in the job (the first or the last when its sentence is not in it)."""
        chunks = []
        last = len(parts) - 1
        for i, samples in enumerate(parts):
            sentence = self.vocoded + i
            mine = [w for w in words if min(max(w.sentence - self.vocoded, 0), last) == i]
            if i < last:
                chunks.append(AudioChunk(samples, sentence, True, mine))
            elif len(samples) or mine:
                chunks.append(AudioChunk(samples, sentence, False, mine))
        self.vocoded += len(parts) - 1
        if self.stretch is not None:
            return [scaled for chunk in chunks for scaled in self.stretch.add(chunk)]
        return chunks


class Narrator:
    def __init__(self, loaded, voice, settings: NarrateSettings | None = None, dialogue=None,
                 voices: dict | None = None):
        """dialogue: a second Voice, for sentences marked as quoted speech (narrate.text.dialogue).
        voices: more Voices by key, for sentences that name one (``Sentence.voice``; a voice map)."""
        heap.fix_mmap_threshold()  # a long run's heap stays flat (narrate.runtime.heap); before the forks
        self.loaded = loaded
        self.settings = settings or NarrateSettings()
        if self.settings.mean_temperature is None:
            self.settings = replace(self.settings, mean_temperature=loaded.config.mean_temperature)
        torch.set_num_threads(max(1, self.settings.threads))  # however it was made (the benchmark makes it directly)
        self.codec = loaded.codec
        self.sample_rate = self.codec.sample_rate
        # The rate the model is asked for (within what it was trained on) and the time-scaling
        # of its audio that makes up the rest of settings.speed.
        self.model_speed, self.tempo = split_speed(self.settings.speed, loaded.config.speed_range)
        text = loaded.config.text
        self.phonemizer = Phonemizer({k: list(v) for k, v in text.id_map.items()}, text.espeak_voice)
        self.voice = voice
        mel_spec = getattr(self.codec, "spec", None)  # a codec without one: no prompt frames
        self.speaker, self.prompt = conditioning(self.loaded.model, voice, mel_spec)
        self.dialogue = dialogue
        self.voices = dict(voices or {})
        self.kernel = kernels.choose(self.settings.kernels)  # the backend, passed down from here
        self.decoders = None  # forked first, before anything starts threads
        if self.settings.decoder_processes > 1:
            from narrate.runtime.decoders import DecoderProcesses

            alone = replace(self.settings, vocoder_process=False, decoder_processes=1, kernels=self.kernel)
            self.decoders = DecoderProcesses(functools.partial(Narrator, loaded, voice, alone, dialogue, self.voices),
                                             self.settings.decoder_processes)
        self.engine = Engine(loaded.model, self.codec.frame_rate, self.settings.decode(), self.kernel)
        if dialogue is None:
            self.dialogue_cond = None
        else:
            speaker, prompt = conditioning(self.loaded.model, dialogue, mel_spec)
            self.dialogue_cond = self.engine.condition(speaker, self.model_speed, prompt)
        self.voice_conds = {}  # each of voices' conditioning, by its key
        for key, v in self.voices.items():
            speaker, prompt = conditioning(self.loaded.model, v, mel_spec)
            self.voice_conds[key] = self.engine.condition(speaker, self.model_speed, prompt)
        # each voice's median pitch, by its key in a stream's voices, where the vocoder follows one
        self.pitches: dict[str | None, float] = {}
        if getattr(self.codec, "vocoder_name", None) == "source-filter":
            self.pitches = {None: voice.pitch(), **{k: v.pitch() for k, v in self.voices.items()}}
            if dialogue is not None:
                self.pitches[DIALOGUE] = dialogue.pitch()
        self.vocoding = Vocoding(self.codec, self.kernel, self.settings.vocoder_process)  # forks now, before any run's threads
        self._keys = itertools.count()

    def close(self) -> None:
        """Stop the vocoder and decoder processes (they also end with this process)."""
        self.vocoding.close()
        if self.decoders is not None:
            self.decoders.close()

    @classmethod
    def load(cls, model: str | None = None, voice: str | None = None, settings: NarrateSettings | None = None,
             revision: str | None = None, dialogue_voice: str | None = None,
             voices: Iterable[str] = ()) -> "Narrator":
        """dialogue_voice: a voice name or recording for quoted speech (sentences so marked).
        voices: more voice names or recordings, each its own key (``Sentence.voice``)."""
        settings = settings or NarrateSettings()
        torch.set_num_threads(max(1, settings.threads))  # before loading, too
        loaded, main = load_model_and_voice(model, voice, settings.speed, revision, settings.vocoder)
        from narrate.voices import load_voice

        dialogue = None if dialogue_voice is None else load_voice(dialogue_voice, loaded.config.default_voice)
        more = {key: load_voice(key, loaded.config.default_voice) for key in voices}
        return cls(loaded, main, settings, dialogue, more)

    def narrate(self, sentences: Iterable[str], live: bool = False) -> Iterator[AudioChunk]:
        """Audio for the sentences, in order, as it is made. live=True speaks each sentence as
        soon as it arrives instead of waiting to see the next one."""
        streams = self.decode_streams(iter([(0, sentences)]), live)  # (a generator: closed below)
        try:
            for _, chunk in streams:
                yield chunk
        finally:  # closed or dropped by the caller: stop decoding now, not whenever it is collected
            streams.close()

    def narrate_many(self, streams: Iterable[Iterable[str]], live: bool = False,
                     width: int = 0) -> Iterator[tuple[int, AudioChunk]]:
        """Several independent streams decoded together (one batched step for all), each chunk
        with its stream's index in ``streams``. width > 0: at most that many at once, the next
        stream joining as soon as one ends, so a batch stays full however the lengths differ.
        With decoder processes, two streams or more go to them (one alone decodes here, where
        the vocoder process overlaps it; so do all when no worker is left)."""
        numbered = enumerate(streams)
        first = list(itertools.islice(numbered, 2))
        pending = itertools.chain(first, numbered)
        if self.decoders is not None and len(first) > 1 and width != 1 and self.decoders.mend():
            return self.decoders.narrate_many(pending, live, width)
        return self.decode_streams(pending, live, width)

    def decode_streams(self, pending: Iterator[tuple[int, Iterable[str]]], live: bool = False, width: int = 0,
                       on_end: Callable[[int], None] | None = None,
                       offset_seeds: bool = True) -> Generator[tuple[int, AudioChunk], None, None]:
        """``narrate_many`` in this process over (number, sentences) streams: a stream's number
        is its index in the output and its seed's offset (offset_seeds=False: every stream starts
        from the seed, as each chapter of a one-file narration does). on_end(number) is called as
        a stream ends; with inline vocoding its audio has all been yielded by then (decoder
        processes and narrate.jobs.cluster rely on this)."""
        runs: list[_Run] = []
        owner = object()  # this call's jobs in the vocoder
        vocoding = self.vocoding

        def join() -> None:
            for i, s in itertools.islice(pending, max(0, width - len(runs)) if width else None):
                runs.append(_Run(self, s, not live, self.settings.seed + (i if offset_seeds else 0), next(self._keys), i))

        try:
            join()
            while runs:
                for r in runs:
                    if not r.finished:
                        if r.state.n_tokens == 0 or r.state.paused:  # may wait for text: hand over the audio first
                            yield from self._ready(vocoding.results(owner, wait=True))
                        r.feed_text()
                        if r.state.closed and r.state.n_tokens == 0:
                            r.finished = True
                ended = [r for r in runs if r.finished]
                if ended:  # their audio is still coming out of the vocoder (in order); others take their place
                    for r in ended:
                        r.stop()
                        vocoding.end_stream(r.key)
                        if on_end is not None:
                            on_end(r.index)
                    runs = [r for r in runs if not r.finished]
                    join()
                    continue
                active = [r for r in runs if r.state.active]
                if not active:
                    continue
                outs = self.engine.step([r.state for r in active])
                tagged = []
                for r, out in zip(active, outs):
                    job, words = r.consume(out)
                    tagged.append(((r, words), job))
                vocoding.send(owner, tagged)  # one message for the step's jobs
                yield from self._ready(vocoding.results(owner))
            yield from self._ready(vocoding.results(owner, wait=True))
        finally:
            for r in runs:
                r.stop()
                vocoding.end_stream(r.key)
            vocoding.discard(owner)  # stopped early: this call's audio still in flight goes

    @staticmethod
    def _ready(results) -> Iterator[tuple[int, AudioChunk]]:
        for (run, words), parts in results:
            for chunk in run.chunks(parts, words):
                yield run.index, chunk


def split_speed(speed: float, trained: tuple[float, float]) -> tuple[float, float]:
    """(the rate to ask the model for, the tempo to scale its audio by): the model speaks
    ``speed`` itself within its ``trained`` range, else the nearest rate it knows, and the audio
    is time-scaled by the rest (speed = model rate x tempo)."""
    low, high = trained
    model = min(max(speed, low), high)
    return model, speed / model


def load_model_and_voice(model: str | None, voice: str | None, speed: float = 1.0,
                         revision: str | None = None, vocoder: str = "auto"):
    """(LoadedModel, Voice) for a Narrator: the model's weights and the voice's embedding, after
    checking that ``speed`` is one narrate offers. NarrateError if anything is unusable."""
    from narrate.hub import from_pretrained
    from narrate.voices import load_voice

    if not SPEEDS[0] <= speed <= SPEEDS[1]:
        raise NarrateError(f"--speed {speed:g} is outside {SPEEDS[0]:g}-{SPEEDS[1]:g}")
    loaded = from_pretrained(model, revision, vocoder)
    return loaded, load_voice(voice, loaded.config.default_voice)
