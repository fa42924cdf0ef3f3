"""Decoder processes: several streams narrated by forked workers give the audio the parent
gives, keep to the width, survive a call abandoned half-way, and fail in one line."""

from __future__ import annotations

import numpy as np
import pytest

BOOKS = [["One short sentence.", "And a second one, a little longer."], ["Another stream entirely."],
         [], ["The fourth stream, which comes last.", "It has two sentences too."]]


@pytest.fixture(scope="module")
def narrators(tiny_model, voice_wav):
    import torch

    from narrate.runtime.narrator import NarrateSettings, Narrator

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    here = Narrator.load(str(tiny_model), str(voice_wav), NarrateSettings(seed=0))
    pooled = Narrator(here.loaded, here.voice, NarrateSettings(seed=0, decoder_processes=2))
    yield here, pooled
    pooled.close()
    here.close()
    torch.set_num_threads(threads)


def chunks(narrator, width=0, live=False, books=BOOKS):
    """Each stream's chunks, in order: (sentence, final, words, samples)."""
    out: dict[int, list] = {}
    for i, c in narrator.narrate_many((iter(b) for b in books), live=live, width=width):
        out.setdefault(i, []).append((c.sentence, c.final, [w.text for w in c.words], c.samples))
    return out


def same(a: dict, b: dict) -> bool:
    if sorted(a) != sorted(b):
        return False
    for i in a:
        if [x[:3] for x in a[i]] != [x[:3] for x in b[i]]:
            return False
        if not all(np.array_equal(x[3], y[3]) for x, y in zip(a[i], b[i])):
            return False
    return True


def test_streams_decoded_alone_in_workers_sound_as_decoded_alone_here(narrators):
    """width 2 over two workers: each worker holds one stream at a time, as width 1 does here:
    the same chunks, sample for sample, in file and live mode."""
    here, pooled = narrators
    for live in (False, True):
        got, ref = chunks(pooled, 2, live), chunks(here, 1, live)
        assert sorted(got) == [0, 1, 3]  # the empty stream says nothing
        assert sum(x[1] for c in got.values() for x in c) == 5  # every sentence ends once
        assert same(got, ref)


def test_all_streams_at_once_split_between_workers(narrators):
    """width 0: the streams are split between the workers, each a batch; a stream's audio does
    not depend on the streams beside it."""
    here, pooled = narrators
    assert same(chunks(pooled), chunks(here))


def test_never_more_streams_than_the_width(narrators):
    """The parent hands out at most ``width`` streams (its counts), and each worker's own batch,
    as it reports it with its audio, holds at most its share of them, and fills it."""
    _, pooled = narrators
    workers = pooled.decoders.workers
    books = [[f"Stream {k} says this."] * (1 + k % 3) for k in range(7)]
    held, batches = [], []
    for _ in pooled.narrate_many((iter(b) for b in books), width=3):
        held.append(sum(w.streams for w in workers))
        batches.append([w.batch for w in workers])
    assert max(held) == 3 and min(held) >= 1
    assert sorted(w.slots for w in workers) == [1, 2]  # the width, split between the two
    for k, w in enumerate(workers):
        assert 1 <= max(b[k] for b in batches) == w.slots  # never more than its share; full at times


def test_a_call_abandoned_half_way_leaves_the_next_one_clean(narrators):
    here, pooled = narrators
    first = pooled.narrate_many((iter(b) for b in BOOKS), width=0)
    next(first)
    first.close()  # its workers are still decoding: what they send now must not leak
    assert same(chunks(pooled, 2), chunks(here, 1))


def test_a_call_closed_half_way_has_stopped_its_text_threads(narrators):
    """(endless streams: their threads would send text to the workers for ever)"""
    import itertools
    import threading

    _, pooled = narrators
    before = set(threading.enumerate())
    call = pooled.narrate_many(itertools.cycle([b]) for b in ["One more sentence.", "And another."])
    next(call)
    assert len(set(threading.enumerate()) - before) == 2
    call.close()
    assert set(threading.enumerate()) - before == set()


def test_a_failing_text_source_raises_in_the_caller(narrators):
    _, pooled = narrators

    def broken():
        yield "A first sentence."
        raise ValueError("the text source broke")

    with pytest.raises(ValueError, match="text source broke"):
        list(pooled.narrate_many([iter(["Fine."]), broken()]))
    assert sorted(chunks(pooled, 2)) == [0, 1, 3]  # and the workers go on


def test_one_stream_is_decoded_here(narrators):
    """(with the vocoder process overlapping it: faster than a worker alone)"""
    here, pooled = narrators
    got = chunks(pooled, books=BOOKS[:1])
    assert all(w.streams == 0 for w in pooled.decoders.workers)
    assert same(got, chunks(here, books=BOOKS[:1]))


def test_a_dead_worker_is_a_one_line_error(narrators):
    from narrate.errors import NarrateError
    from narrate.runtime.narrator import NarrateSettings, Narrator

    here, _ = narrators
    n = Narrator(here.loaded, here.voice, NarrateSettings(seed=0, decoder_processes=2))
    n.decoders.workers[1].proc.kill()
    n.decoders.workers[1].proc.join()
    with pytest.raises(NarrateError, match="decoder process ended"):
        chunks(n)
    n.close()


def test_a_read_torn_by_a_signal_stops_that_worker_and_the_next_call_goes_on(narrators):
    """A signal landing while the parent reads a worker's message leaves the rest of the message
    in the pipe: read on, the next call would take its middle for a length (and fail, or wait
    for ever).
    That worker is stopped before the next call; the other decodes the streams alone."""
    import os
    import threading

    from narrate.runtime.narrator import NarrateSettings, Narrator

    here, _ = narrators
    n = Narrator(here.loaded, here.voice, NarrateSettings(seed=0, decoder_processes=2))
    torn = n.decoders.workers[0]

    def recv():  # the message's length read, then the signal (once)
        del torn.conn.recv
        os.read(torn.conn.fileno(), 4)
        raise KeyboardInterrupt

    torn.conn.recv = recv
    try:
        with pytest.raises(KeyboardInterrupt):
            chunks(n)
        got: dict = {}
        errors: list = []

        def next_call():
            try:
                got.update(chunks(n, 2))
            except BaseException as e:  # read from the middle of a message
                errors.append(e)

        later = threading.Thread(target=next_call, daemon=True)
        later.start()
        later.join(timeout=120)
        assert not later.is_alive() and not errors, errors or "waited for ever"
        assert torn not in n.decoders.workers and len(n.decoders.workers) == 1
        assert not torn.proc.is_alive()
        assert same(got, chunks(here, 1))
    finally:
        n.close()


def test_the_backend_chosen_by_the_narrator_reaches_its_engine_vocoder_and_workers(narrators):
    """NarrateSettings(kernels=False): torch's operations in the narrator's engine and vocoder and
    in its decoder processes, whose audio is then that of such a narrator here (and, where our
    kernels run, not that of the default backend: the choice did reach the workers)."""
    from narrate import kernels
    from narrate.runtime.narrator import NarrateSettings, Narrator

    here, _ = narrators
    plain = Narrator(here.loaded, here.voice, NarrateSettings(seed=0, kernels=False))
    pooled = Narrator(here.loaded, here.voice, NarrateSettings(seed=0, kernels=False, decoder_processes=2))
    try:
        assert plain.kernel is False and plain.engine.kernel is False and plain.vocoding.kernel is False
        ref = chunks(plain, 1)
        assert same(chunks(pooled, 2), ref)
        if kernels.available():
            assert here.kernel is True and not same(chunks(here, 1), ref)
    finally:
        pooled.close()
        plain.close()
