"""The training path end to end on a very small corpus: prepare -> train -> interrupt/resume
-> export -> the narrator loads the exported model and speaks."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from narrate.train.prepare import PrepareConfig, prepare
from narrate.train.loop import TrainConfig, train
from narrate.train.dataset import Corpus

TINY = {"d_model": 32, "n_layers": 2, "n_heads": 2, "enc_convs": 1, "enc_layers": 1, "codebook_groups": [1, 1],
        "speaker_tokens": 2, "prompt_tokens": 2}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    prepare(PrepareConfig(out=out, n_train=4, n_heldout=1, workers=1, codebooks=2, codebook_size=16, embed_every=2))
    return out


def test_prepared_corpus_is_aligned(corpus):
    texts = json.loads((corpus / "texts.json").read_text())
    assert len(texts["train"]) == 4 and len(texts["heldout"]) == 1
    c = Corpus(corpus)
    import random

    from narrate.train.prepare import TRACKS

    n0, n1 = len(c.utts[0].ids), len(c.utts[1].ids)
    for track in TRACKS:  # every voice of a training sentence: joe's, pseudo-speakers', another synthesizer's
        a, b = c.rendering(0, track), c.rendering(1, track)
        assert a.speaker >= 0 and b.speaker >= 0
        ex = c.example([a, b], 3, random.Random(0))
        assert ex.positions[0] == 0 and ex.positions[-1] >= n0  # both sentences, spoken in order
        assert (np.diff(ex.positions) >= 0).all() and ex.positions[-1] < n0 + n1
        assert ex.semantic[-1] == 4 and set(ex.semantic[:-1]) <= {0, 1, 2, 3}
        assert ex.codes.shape[1:] == (3, 2) and ex.feats.shape[1:] == (3, 80)
        # every frame of each reading has a token: durations add up to its frame count
        assert sum(c.durations[track][0]) == len(c.codes[track][0]) == len(c.feats[track][0])
    # pseudo-speakers keep joe's timing; the other synthesizer has timing of its own (piper's
    # timing varies from run to run, so one sentence's frame counts may agree by chance: not all four)
    assert (c.durations["world1"][0] == c.durations["joe"][0]).all()
    assert any(len(c.feats["real"][u]) != len(c.feats["joe"][u]) for u in c.train_ids())
    assert not all(np.array_equal(c.durations["real"][u], c.durations["joe"][u]) for u in c.train_ids())
    # held-out sentences are read by joe only, and nobody reads them in training
    h = c.heldout_ids()[0]
    assert c.reader["joe"][h] >= 0 and all(c.reader[t][h] == -1 for t in TRACKS if t != "joe")
    assert all(r.utt in c.train_ids() for rs in c.renderings_of.values() for r in rs)
    # a prompt is another sentence by the same speaker
    ex = c.example([c.rendering(0, "joe")], 3, random.Random(3))
    assert ex.prompt is None or (ex.prompt.shape[1] == 80 and len(ex.prompt) > 0)


def test_heldout_voices_never_train():
    from narrate.train.speakers import HELDOUT_FAMILY, HELDOUT_REAL, heldout_speakers, training_speakers

    train = training_speakers()
    assert not any(s.family == HELDOUT_FAMILY or s.base in HELDOUT_REAL for s in train)
    assert all(s.family == HELDOUT_FAMILY for s in heldout_speakers())
    assert len({s.name for s in train}) == len(train) > 200


def test_dtw_alignment_recovers_known_timing():
    """Two readings whose timing is known (one stretched): the mapped durations land near the
    true ones, far nearer than stretching them evenly."""
    from narrate.train.speakers import align_durations

    rng = np.random.default_rng(0)
    sounds = rng.normal(-4, 2, (6, 80))
    d_ref = np.array([5, 9, 3, 12, 6, 8])
    d_true = np.array([9, 7, 8, 10, 4, 14])
    ref = np.repeat(sounds, d_ref, axis=0) + rng.normal(0, 0.1, (d_ref.sum(), 80))
    other = np.repeat(sounds + 0.5, d_true, axis=0) + rng.normal(0, 0.1, (d_true.sum(), 80))
    est = align_durations(ref, other, d_ref)
    assert est.sum() == d_true.sum() and (est >= 0).all()
    even = np.round(np.cumsum(d_ref) * d_true.sum() / d_ref.sum())
    err = np.abs(np.cumsum(est) - np.cumsum(d_true)).mean()
    assert err <= 1.0 < np.abs(even - np.cumsum(d_true)).mean()


def test_train_resume_export_speak(corpus, tmp_path):
    run = tmp_path / "run"
    base = dict(corpus=str(corpus), run=str(run), max_steps_per_batch=400, eval_every=2, threads=1, model=TINY)
    train(TrainConfig(steps=3, **base))
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert [int(r["step"]) for r in rows if r["split"] == "train"] == [1, 2, 3]
    assert any(r["split"] == "heldout" for r in rows)
    assert (run / "checkpoint.pt").exists() and (run / "loss.png").exists()
    train(TrainConfig(steps=5, **base))  # a second run continues at step 4
    steps = [int(r["step"]) for r in csv.DictReader((run / "log.csv").open()) if r["split"] == "train"]
    assert steps == [1, 2, 3, 4, 5]

    from narrate.hub import from_pretrained
    from narrate.runtime.narrator import Narrator
    from narrate.train.export import export
    from narrate.voices import Voice

    out = export(run, tmp_path / "model")
    assert "5 steps" in (out / "README.md").read_text()
    loaded = from_pretrained(str(out))
    n = Narrator(loaded, Voice("x", None, np.ones(256, np.float32) / 16))
    n.engine.settings.guidance.max_stall = 3  # an untrained progress head: keep the run short
    audio = np.concatenate([c.samples for c in n.narrate(["Hi there."])])
    assert len(audio) > 0 and np.isfinite(audio).all()


def test_train_under_torchrun_ddp(corpus, tmp_path):
    """Two ranks under torchrun, each on its own share of the batches: both step together, and
    their gradients are averaged, so they end with the same weights (which moved)."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    import torch

    run = tmp_path / "ddp"
    script = Path(__file__).parent / "ddp_train.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with socket.socket() as s:  # a free port (a fixed one may be taken by another run)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", str(port),
                           str(script), str(corpus), str(run), json.dumps(TINY)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    steps = [int(r["step"]) for r in csv.DictReader((run / "log.csv").open()) if r["split"] == "train"]
    assert steps == [1, 2]  # rank 0 logs
    assert (run / "checkpoint.pt").exists()
    ranks = [torch.load(run / f"params-rank{r}.pt") for r in (0, 1)]
    for p0, p1 in zip(ranks[0]["first"], ranks[1]["first"]):
        assert torch.equal(p0, p1)  # the same start
    for p0, p1 in zip(ranks[0]["last"], ranks[1]["last"]):
        assert torch.equal(p0, p1)  # synchronised: the same weights after two steps on different batches
    assert any(not torch.equal(a, b) for a, b in zip(ranks[0]["first"], ranks[0]["last"]))  # and they moved


def test_extending_corpus_shares_codec_and_skips_its_sentences(corpus, tmp_path):
    more = tmp_path / "more"
    prepare(PrepareConfig(out=more, n_train=2, n_heldout=1, workers=1, codebooks=2, codebook_size=16,
                          embed_every=2, extends=(corpus,)))
    first, second = (json.loads((c / "texts.json").read_text()) for c in (corpus, more))
    assert not set(first["train"]) & set(second["train"])
    assert (more / "codec.safetensors").read_bytes() == (corpus / "codec.safetensors").read_bytes()
    both = Corpus([corpus, more])
    assert both.train_ids() == [0, 1, 2, 3] + [4 + 1 + 10, 4 + 1 + 10 + 1]  # after the first's held-out + everyday
    assert both.heldout_ids() == [4]
    assert len(both.utts) == len(Corpus(corpus).utts) + len(Corpus(more).utts)
    ex = both.example([both.rendering(both.train_ids()[-1], "real")], 3, __import__("random").Random(0))
    assert ex.codes.shape[0] == len(ex.positions)


def test_new_run_starts_from_given_weights(corpus, tmp_path):
    import torch

    first = tmp_path / "first"
    base = dict(corpus=str(corpus), max_steps_per_batch=400, eval_every=100, threads=1, model=TINY)
    train(TrainConfig(run=str(first), steps=2, **base))
    start = torch.load(first / "checkpoint.pt", weights_only=False)["model"]
    # learning rate 0: the new run's weights stay exactly the ones it started from
    second = tmp_path / "second"
    train(TrainConfig(run=str(second), steps=1, lr=0.0, lr_min=0.0, init=str(first / "checkpoint.pt"),
                      **{**base, "model": {}}))
    after = torch.load(second / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(start[k], after[k]) for k in start)
    # a fresh run (no init) starts elsewhere
    train(TrainConfig(run=str(tmp_path / "fresh"), steps=1, lr=0.0, lr_min=0.0, **base))
    fresh = torch.load(tmp_path / "fresh" / "checkpoint.pt", weights_only=False)["model"]
    assert not all(torch.equal(start[k], fresh[k]) for k in start)
    # weights made with another codec (here: the corpus's codebooks in another order) start the
    # run with each code's head rows carried to the code that now has its vector
    from narrate.engine.config import ModelConfig
    from narrate.engine.model import NarrateModel
    from narrate.errors import NarrateError
    from narrate.train.loop import transfer_codec

    books = start["codebooks"]
    g = torch.Generator().manual_seed(0)
    perm = torch.stack([torch.randperm(books.shape[1], generator=g) for _ in range(books.shape[0])])
    other = torch.load(first / "checkpoint.pt", weights_only=False)
    other["model"]["codebooks"] = torch.stack([books[k][perm[k].argsort()] for k in range(len(books))])
    (tmp_path / "other").mkdir()
    torch.save(other, tmp_path / "other" / "checkpoint.pt")
    (tmp_path / "other" / "config.json").write_text((first / "config.json").read_text())
    train(TrainConfig(run=str(tmp_path / "third"), steps=1, lr=0.0, lr_min=0.0,
                      init=str(tmp_path / "other" / "checkpoint.pt"), **{**base, "model": {}}))
    third = torch.load(tmp_path / "third" / "checkpoint.pt", weights_only=False)["model"]
    assert torch.equal(third["codebooks"], books)
    mcfg = ModelConfig(**json.loads((first / "config.json").read_text())["model"])
    was, now = NarrateModel(mcfg), NarrateModel(mcfg)
    was.load_state_dict(other["model"])
    now.load_state_dict(third)
    h = torch.randn(3, mcfg.d_model, generator=g)
    heads_was, heads_now = was.codebook_heads, now.codebook_heads
    for group, k in enumerate(mcfg.codebook_groups):
        s = heads_now.starts[group]
        a = heads_was.heads[group](h).unflatten(-1, (mcfg.reduction, k, mcfg.codebook_size))
        b = heads_now.heads[group](h).unflatten(-1, (mcfg.reduction, k, mcfg.codebook_size))
        for j in range(k):  # old code of vector v: perm.argsort()[v]'s position; new code c has vector c
            old_code = perm[s + j]
            assert torch.allclose(b[:, :, j], a[:, :, j][..., old_code], atol=1e-6)
    # a codec of another shape cannot be carried over: a one-line error
    with pytest.raises(NarrateError, match="another shape"):
        transfer_codec(other["model"], books[:, :-1], mcfg)


def test_ctrl_c_saves_a_checkpoint_to_continue_from(corpus, tmp_path, monkeypatch):
    import torch

    from narrate.train import loop

    real, calls = loop.compute_losses, []

    def interrupted_at_third_step(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(loop, "compute_losses", interrupted_at_third_step)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(corpus=str(corpus), run=str(run), steps=10, max_steps_per_batch=400, eval_every=100,
                          ckpt_minutes=60.0, threads=1, model=TINY))
    assert torch.load(run / "checkpoint.pt", weights_only=False)["step"] == 2  # not lost to the 60-min interval


def test_speaker_pitch_follows_the_pseudo_speakers_f0_scale(corpus):
    """Each speaker's pitch is measured on its readings (made audible again from their frames)
    the way a voice prompt's is at run time, and kept beside the corpus: among joe's
    pseudo-speakers it rises with the F0 scale WORLD gave them."""
    from scipy.stats import spearmanr

    c = Corpus(corpus)
    pitch = c.pitch
    assert (corpus / "pitch.json").exists() and set(pitch) == set(c.renderings_of)
    pseudo = [(c.speakers[s]["f0"], hz) for s, hz in pitch.items()
              if c.speakers[s]["base"] == "joe" and c.speakers[s]["family"] and np.isfinite(hz)]
    assert len(pseudo) >= 4
    assert spearmanr(*zip(*pseudo)).statistic > 0.8
    assert Corpus(corpus).pitch == pitch  # read back, not measured again


def test_a_run_gains_voice_stats_and_the_narrator_feeds_them(corpus, tmp_path):
    import torch

    from narrate.hub import from_pretrained
    from narrate.pitch import pitch_feature
    from narrate.runtime.narrator import Narrator
    from narrate.train.export import export
    from narrate.voices import load_voice

    base = dict(corpus=str(corpus), max_steps_per_batch=400, eval_every=100, threads=1)
    train(TrainConfig(run=str(tmp_path / "first"), steps=1, model=TINY, **base))
    train(TrainConfig(run=str(tmp_path / "stats"), steps=3, init=str(tmp_path / "first" / "checkpoint.pt"),
                      model={"voice_stats": True}, **base))
    state = torch.load(tmp_path / "stats" / "checkpoint.pt", weights_only=False)["model"]
    assert state["stats_in.weight"].abs().sum() > 0  # zero at the start: trained since
    loaded = from_pretrained(str(export(tmp_path / "stats", tmp_path / "model")))
    assert loaded.config.model.voice_stats
    voice = load_voice("joe", "joe")
    n = Narrator(loaded, voice)
    assert n.speaker.shape == (257,) and n.speaker[-1].item() == pytest.approx(pitch_feature(voice.pitch()))
    assert 60 < voice.pitch() < 500
    n.engine.settings.guidance.max_stall = 3  # an untrained progress head: keep the run short
    audio = np.concatenate([chunk.samples for chunk in n.narrate(["Hi there."])])
    assert len(audio) > 0 and np.isfinite(audio).all()
