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
        "speaker_tokens": 2}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    prepare(PrepareConfig(out=out, n_train=4, n_heldout=1, workers=1, codebooks=2, codebook_size=16, embeds_per_voice=2))
    return out


def test_prepared_corpus_is_aligned(corpus):
    texts = json.loads((corpus / "texts.json").read_text())
    assert len(texts["train"]) == 4 and len(texts["heldout"]) == 1
    c = Corpus(corpus)
    import random

    ex = c.example([0, 1], "joe-deep", 3, random.Random(0))
    n0, n1 = len(c.utts[0].ids), len(c.utts[1].ids)
    assert ex.positions[0] == 0 and ex.positions[-1] >= n0  # both sentences, spoken in order
    assert (np.diff(ex.positions) >= 0).all() and ex.positions[-1] < n0 + n1
    assert ex.semantic[-1] == 4 and set(ex.semantic[:-1]) <= {0, 1, 2, 3}
    assert ex.codes.shape[1:] == (3, 2) and ex.feats.shape[1:] == (3, 80)
    # every frame of the teacher's audio has a token: durations add up to the frame count
    assert sum(c.utts[0].durations) == len(c.codes["joe"][0])


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
    from narrate.narrator import Narrator
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
    import os
    import subprocess
    import sys
    from pathlib import Path

    run = tmp_path / "ddp"
    script = Path(__file__).parent / "ddp_train.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29571",
                           str(script), str(corpus), str(run), json.dumps(TINY)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    steps = [int(r["step"]) for r in csv.DictReader((run / "log.csv").open()) if r["split"] == "train"]
    assert steps == [1, 2]  # rank 0 logs; both ranks stepped together
    assert (run / "checkpoint.pt").exists()
