"""Vocoding jobs: sentence ends cut the audio at exact sample positions without breaking it,
and the vocoder process gives what vocoding inline gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from narrate import kernels
from narrate.codec.mel import MelConfig, MelSpec
from narrate.codec.mel_rvq import MelRVQCodec
from narrate.runtime.vocoding import VocodeJob, Vocoding, run_job
from tests.test_codec import speechy

KERNEL = kernels.choose()  # the backend narrate chooses here


def _codec_and_steps(n_steps=40, r=3):
    codec = MelRVQCodec(MelConfig(gl_iters=4), torch.randn(2, 8, 80))
    mel = MelSpec(MelConfig()).features(speechy(2.0)).numpy()
    return codec, [mel[i * r : (i + 1) * r] for i in range(n_steps)]


def _jobs(steps, ends_at: dict, flush_at: set, stream=0):
    """ends_at: {step: sentences ending with its frames (at its last frame)}"""
    ends = [[sum(len(f) for f in steps[: i + 1])] * ends_at.get(i, 0) for i in range(len(steps))]
    return [VocodeJob(stream, f, "features", e, i in flush_at) for i, (f, e) in enumerate(zip(steps, ends))]


def _sentences(parts: list[list[np.ndarray]]) -> tuple[list[np.ndarray], np.ndarray]:
    """Jobs' parts (see run_job) as the audio of each sentence ended, and what follows the last."""
    sentences, current = [], []
    for ps in parts:
        for k, p in enumerate(ps):
            current.append(p)
            if k < len(ps) - 1:
                sentences.append(np.concatenate(current))
                current = []
    return sentences, np.concatenate(current) if current else np.zeros(0, np.float32)


def test_sentence_ends_cut_the_audio_exactly_and_change_none_of_it():
    codec, steps = _codec_and_steps()
    last = len(steps) - 1
    plain, cut = {}, {}
    whole = [p for j in _jobs(steps, {last: 1}, {last}) for p in run_job(codec, KERNEL, plain, j)]
    parts = [run_job(codec, KERNEL, cut, j) for j in _jobs(steps, {9: 1, 20: 2, last: 1}, {last})]
    # the same samples: a sentence end inside the stream is a mark, not a restart of the vocoder
    assert np.array_equal(np.concatenate(whole), np.concatenate([p for ps in parts for p in ps]))
    # each end is exactly where its step's frames end
    sentences, rest = _sentences(parts)
    assert [len(s) for s in sentences] == [10 * 3 * 256, 11 * 3 * 256, 0, (last - 20) * 3 * 256]
    assert len(rest) == 0  # the flush left nothing behind


def test_an_end_before_its_job_cuts_there_or_at_once_where_the_audio_is_out():
    """Sentence ends are frame counts, and may lie before the job's own frames (the pause before
    the next sentence, see narrate.runtime.cuts). The vocoder holds back a block: by job 30 (frames up
    to 93) it has emitted 72 frames. An end at frame 60 comes at once (at 72); one at 85 exactly."""
    codec, steps = _codec_and_steps()
    jobs = _jobs(steps, {}, {len(steps) - 1})
    jobs[30].ends = [60, 85]
    plain, cut = {}, {}
    whole = np.concatenate([p for j in _jobs(steps, {}, {len(steps) - 1}) for p in run_job(codec, KERNEL, plain, j)])
    parts = [run_job(codec, KERNEL, cut, j) for j in jobs]
    assert [len(ps) for ps in parts].count(2) == 2  # two jobs each end one sentence
    sentences, rest = _sentences(parts)
    assert [len(s) for s in sentences] == [72 * 256, (85 - 72) * 256]
    assert np.array_equal(whole, np.concatenate(sentences + [rest]))


def test_vocoder_process_answers_each_owner_in_order_like_inline():
    codec, steps = _codec_and_steps(20)
    inline, child = Vocoding(codec, KERNEL, process=False), Vocoding(codec, KERNEL, process=True)
    try:
        assert child.in_process and not inline.in_process
        a, b = object(), object()  # two callers; b's jobs must not come back to a
        got = {}
        for v in (inline, child):
            for i, job in enumerate(_jobs(steps, {5: 1, 19: 1}, {19})):
                v.send(a, [(("a", i), job)])
                v.send(b, [(("b", i), VocodeJob(1, job.frames, "features", job.ends, job.flush))])
            got[v] = list(v.results(a, wait=True))
            v.discard(b)
            assert not list(v.results(b, wait=True))
        assert [t for t, _ in got[child]] == [("a", i) for i in range(20)]
        assert all(len(x) == len(y) and all(np.array_equal(p, q) for p, q in zip(x, y))
                   for (_, x), (_, y) in zip(got[inline], got[child]))
        assert child.seconds > 0
    finally:
        child.close()


def test_large_jobs_do_not_fill_the_pipes_both_ways():
    """Jobs and answers larger than a pipe's buffer: the child answers from a thread of its own
    and keeps reading (else the parent blocks sending while the child blocks answering)."""
    import threading

    codec, _ = _codec_and_steps(1)
    mel = MelSpec(MelConfig()).features(np.tile(speechy(5.0), 5)).numpy()  # ~2150 frames
    # 64 kB in and 205 kB out each: a socket pair's buffers (~200 kB) hold a few of them at most
    jobs = [VocodeJob(0, mel[i * 200 : (i + 1) * 200], "features", [], i == 9) for i in range(10)]
    child = Vocoding(codec, KERNEL, process=True)
    got: list = []
    worker = threading.Thread(target=lambda: (
        [child.send("me", [(i, j)]) for i, j in enumerate(jobs)], got.extend(child.results("me", wait=True))), daemon=True)
    try:
        worker.start()
        worker.join(timeout=60)
        assert not worker.is_alive(), "deadlocked"
        assert [t for t, _ in got] == list(range(10))
        assert sum(len(p) for _, parts in got for p in parts) == 2000 * 256
    finally:
        if not worker.is_alive():
            child.close()


def _read_then_interrupted(conn):
    """conn.recv as it goes when a signal lands just after an answer is read."""
    real = conn.recv

    def recv():
        real()
        raise KeyboardInterrupt

    return recv


def _interrupted_mid_message(conn):
    """conn.send as it goes when a signal lands half-way through writing a message: the child
    has the length of a message and part of it, and waits for the rest."""
    import os
    import struct

    def send(obj):
        os.write(conn.fileno(), struct.pack("!i", 10000) + bytes(100))
        raise KeyboardInterrupt

    return send


@pytest.mark.parametrize("tear", ["answer", "message"])
def test_an_interrupt_mid_pipe_stops_the_child_and_vocoding_goes_on_inline(tear):
    """A signal can land between the bytes of a message and their accounting. Waiting for the
    call's answers would then hang for ever (it did, in CI, on Ctrl-C): the child is stopped
    instead, and later jobs are vocoded inline, with the samples the child would give."""
    import threading

    codec, steps = _codec_and_steps(12)
    child, inline = Vocoding(codec, KERNEL, process=True), Vocoding(codec, KERNEL, process=False)
    proc = child.process.proc
    try:
        for i, job in enumerate(_jobs(steps[:4], {}, set())):
            child.send("call", [(i, job)])
        if tear == "answer":
            child.process.conn.recv = _read_then_interrupted(child.process.conn)
            with pytest.raises(KeyboardInterrupt):
                list(child.results("call", wait=True))
        else:
            child.process.conn.send = _interrupted_mid_message(child.process.conn)
            with pytest.raises(KeyboardInterrupt):
                child.send("call", [(4, _jobs(steps[4:5], {}, set())[0])])
        assert child.torn
        stopper = threading.Thread(target=child.discard, args=("call",), daemon=True)
        stopper.start()
        stopper.join(timeout=60)
        assert not stopper.is_alive(), "waited for an answer that never comes"
        assert not child.in_process and not proc.is_alive() and not child.torn
        later = _jobs(steps, {11: 1}, {11}, stream=1)
        for v in (child, inline):
            for i, job in enumerate(later):
                v.send("next", [(i, job)])
        got, expected = list(child.results("next", wait=True)), list(inline.results("next", wait=True))
        assert [t for t, _ in got] == list(range(12))
        assert all(np.array_equal(p, q) for (_, x), (_, y) in zip(got, expected) for p, q in zip(x, y))
    finally:
        child.close()
        if proc.is_alive():
            proc.kill()


@pytest.mark.parametrize("kernel", [pytest.param(True, marks=pytest.mark.skipif(not kernels.cpu_supported(),
                                                                                 reason="no AVX2 here")), False])
def test_the_vocoder_runs_on_the_backend_it_is_given(kernel):
    """The narrator's one backend choice reaches each stream's Griffin-Lim, whatever the codec's
    own default: the audio is the codec's when that backend is its default, to the last bit."""
    codec, steps = _codec_and_steps(12)
    jobs = _jobs(steps, {11: 1}, {11})
    codec.spec.kernel = not kernel  # (the codec's default, which the vocoder must not follow)
    v = Vocoding(codec, kernel, process=False)
    for i, job in enumerate(jobs):
        v.send("me", [(i, job)])
    assert v.streams[0].decoder.vocoder.kernel is kernel
    got = np.concatenate([p for _, parts in v.results("me", wait=True) for p in parts])
    codec.spec.kernel = kernel
    decoder = codec.stream_decoder()  # the codec's default backend
    ref = np.concatenate([decoder.push_features(torch.from_numpy(f)) for f in steps] + [decoder.flush()])
    assert len(got) == 12 * 3 * 256 and np.array_equal(got, ref)
