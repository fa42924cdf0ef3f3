"""One decoder step of a batch of streams as a single tensor function, and that function
recorded as a TorchScript graph.

At batch 1 a step is hundreds of small tensor operations, and on a CPU much of its time goes to
Python calling them one by one (mostly dispatch). The step has no data-dependent control
flow, so ``StepGraphs`` records ``StepFunction`` once per batch size with ``torch.jit.trace`` and
replays the recorded operations without Python: the same operations in the same order, so the
same result to the last bit (the tests hold it), in about half the time; recording costs a
fraction of a second, once per batch size (figures: docs/performance.md).
``StepFunction`` run directly is the reference, and the fallback where tracing is missing
(torch marks ``torch.jit.trace`` deprecated from 2.x; it runs in 2.13).

What stays outside: choosing each stream's text band (plain indexing per stream), drawing the
uniform numbers of sampling from each stream's own generator (``sampling.draws``), and guidance
(plain Python on the semantic probabilities).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn

from narrate.engine.mamba import MambaState
from narrate.engine.model import Conditioning, DecoderState, NarrateModel
from narrate.engine.sampling import SamplingSettings, pick


class StepFunction(nn.Module):
    """A step from tensors to tensors. Inputs: band_kv [B, W, X, 2, H, dh] and valid [B, W] (each
    stream's text band), the stacked conditioning and decoder state of the batch (``StepBatch``),
    and the sampling draws [B, r, K], one uniform number per code (unused when sampling is
    greedy). Writes the new layer states and the emitted features (``prev_feats``) in place.
    Returns (semantic probabilities [B, classes], codes [B, K, r], frames [B, r, F])."""

    def __init__(self, model: NarrateModel, sampling: SamplingSettings, emit: str, kernel: bool,
                 mean_temperature: float = 1.0):
        super().__init__()
        self.model, self.sampling, self.emit = model, sampling, emit
        self.mean_temperature = mean_temperature  # < 1: the expected frame leans to the likeliest codes (less blur)
        self.kernel = kernel  # our rowwise_mm and band_attention (the backend: narrate.kernels.choose)

    def forward(self, band_kv, valid, input_bias, speaker_kv, prev_feats, convs: list[torch.Tensor],
                ssms: list[torch.Tensor], draws: torch.Tensor):
        state = DecoderState([MambaState(c, h) for c, h in zip(convs, ssms)], prev_feats)
        hidden, _ = self.model.decode_step(band_kv, valid, Conditioning(input_bias, speaker_kv), state, self.kernel)
        codes, feats = self.codes(hidden, draws)
        prev_feats.copy_(feats.flatten(1))
        return self.model.semantic_head(hidden).softmax(-1), codes, feats

    def codes(self, h: torch.Tensor, draws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h [B, d] -> (codes [B, K, r], frames [B, r, F]) group by group (a group sees the codes
        sampled in the groups before it)."""
        heads, books = self.model.codebook_heads, self.model.codebooks
        C = self.model.cfg.codebook_size
        chosen = []
        sampled_feats: torch.Tensor | None = None
        mean_feats: torch.Tensor | int = 0
        for gi, k in enumerate(self.model.cfg.codebook_groups):
            logits = heads.group_logits(gi, h, sampled_feats)  # [B, r, k, C]
            s = heads.starts[gi]
            idx = pick(logits, self.sampling, draws[..., s : s + k])  # [B, r, k]
            flat_books = books[s : s + k].reshape(k * C, -1)  # [k * C, F]
            part = flat_books[idx + torch.arange(k) * C].sum(-2)  # [B, r, F]
            sampled_feats = part if sampled_feats is None else sampled_feats + part
            probs = (logits if self.mean_temperature == 1.0 else logits / self.mean_temperature).softmax(-1).flatten(-2)  # [B, r, k * C]
            mean_feats = mean_feats + self.mix(probs, flat_books)  # [B, r, F]
            chosen.append(idx)
        codes = torch.cat(chosen, dim=-1).transpose(1, 2)  # [B, K, r]
        feats = mean_feats if self.emit == "mean" else sampled_feats
        assert isinstance(feats, torch.Tensor)  # (a model has at least one group of codebooks)
        return codes, feats

    def mix(self, probs: torch.Tensor, books: torch.Tensor) -> torch.Tensor:
        """probs [B, r, n] @ books [n, F], each stream's rows on their own, not one product over
        the batch: a matmul's rounding depends on its number of rows, so a stream's features (fed
        back next step) would depend on its batch. Ours where built (several times faster: see
        docs/performance.md), else a bmm, a product per stream (not einsum, which copies the
        codebooks on every call)."""
        if self.kernel:
            return torch.ops.narrate.rowwise_mm(probs.reshape(-1, probs.shape[-1]), books).view(*probs.shape[:-1], -1)
        return torch.bmm(probs, books.expand(len(probs), -1, -1))


class StepGraphs:
    """``StepFunction`` recorded per batch size (the recording fixes shapes, and the sampling
    settings and model as they were then), made on first use: at most one per batch width the
    caller uses. ``record=False``, or a torch that cannot trace, runs the function directly."""

    def __init__(self, fn: StepFunction, record: bool = True):
        self.fn = fn
        self.record = record and hasattr(torch.jit, "trace")
        self.graphs: dict[int, torch.jit.ScriptModule] = {}

    def __call__(self, *inputs):
        if not self.record:
            return self.fn(*inputs)
        batch = inputs[0].shape[0]
        graph = self.graphs.get(batch)
        if graph is None:
            try:
                graph = self.graphs[batch] = self._trace(inputs)
            except RuntimeError:  # an operation this torch cannot record: run the function
                self.record = False
                return self.fn(*inputs)
        # no graph optimization: the recorded operations as they are (no fusion, no profiling runs)
        with torch.jit.optimized_execution(False):
            return graph(*inputs)

    def _trace(self, inputs):
        # tracing runs the step once, which would write the state; it runs on copies
        copies = tuple([t.clone() for t in x] if isinstance(x, list) else x.clone() for x in inputs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its deprecation notice, and notes on shapes it fixes
            # a function, not the module: one flat graph, the weights its constants (a traced module
            # keeps a method call per submodule, thousands per step)
            return torch.jit.trace(lambda *x: self.fn(*x), copies, check_trace=False)
