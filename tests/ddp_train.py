"""Run by tests/test_train.py under torchrun: train the tiny architecture with DDP (gloo), then
write this rank's parameters (before and after) beside the run, so the test can see that the
ranks, each on its own share of the batches, ended with the same weights."""

import json
import os
import sys
from pathlib import Path

import torch

from narrate.train.loop import TrainConfig, train

corpus, run, model = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
seen: dict = {}
clip = torch.nn.utils.clip_grad_norm_


def clip_and_watch(parameters, *args, **kwargs):
    """The training step's gradient clipping, also keeping the model's parameters (the same
    tensors, updated in place) and their first values."""
    parameters = list(parameters)
    seen.setdefault("first", [p.detach().clone() for p in parameters])
    seen["params"] = parameters
    return clip(parameters, *args, **kwargs)


torch.nn.utils.clip_grad_norm_ = clip_and_watch
train(TrainConfig(corpus=corpus, run=run, steps=2, max_steps_per_batch=400, eval_every=2, threads=1, model=model))
rank = os.environ["RANK"]
torch.save({"first": seen["first"], "last": [p.detach().clone() for p in seen["params"]]},
           Path(run) / f"params-rank{rank}.pt")
