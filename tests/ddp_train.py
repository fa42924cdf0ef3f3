"""Run by tests/test_train.py under torchrun: train the tiny architecture with DDP (gloo)."""

import json
import sys

from narrate.train.loop import TrainConfig, train

corpus, run, model = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
train(TrainConfig(corpus=corpus, run=run, steps=2, max_steps_per_batch=400, eval_every=2, threads=1, model=model))
