"""The model as decoding runs it: the same weights, laid out for one step at a time on a CPU.

At batch 1 a decoder step reads every weight once and does little arithmetic with it, so on a
CPU its time goes to memory traffic and per-operation overhead. ``for_decoding`` copies a model
for the engine:
  - the decoder's linear layers keep int8 weights with one scale per output row
    (``PackedLinear``: torch's weight-only int8 kernel on bf16 activations), a quarter of the
    bytes of fp32 weights;
  - Mamba layers step with fewer, fused operations and their decay ``-exp(A_log)`` computed
    once (``SteppingMamba``).
The text encoder and the conditioning layers run once per chunk or stream and stay as they are.
Training and the reference path (``NarrateModel.step``, ``Mamba.step``) use the fp32 modules;
the tests hold the copy to them.
"""

from __future__ import annotations

import copy
import functools
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from narrate.engine.mamba import Mamba, MambaState

# the int8 kernel returns NaN or crashes for inner sizes below 16 (measured on torch 2.13)
_INT8_MULTIPLE = 16


class PackedLinear(nn.Module):
    """A linear layer with int8 weights [out, in] and a bf16 scale per output row."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        w = linear.weight.detach().float()
        scale = (w.abs().amax(1) / 127).clamp_min(1e-12).to(torch.bfloat16)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight_int8", torch.round(w / scale.float()[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(torch.bfloat16)
        y = torch._weight_int8pack_mm(flat, self.weight_int8, self.scale).float()
        y = y.view(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """The slow path: the dequantized weights in fp32."""
        return F.linear(x, self.weight_int8.float() * self.scale.float()[:, None], self.bias)


@functools.lru_cache(maxsize=1)
def int8_supported() -> bool:
    """Whether this torch build runs the int8 kernel and gets the right answer."""
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(64, 32)
    x = torch.randn(3, 64, generator=g)
    try:
        packed = PackedLinear(lin)
        return bool(torch.allclose(packed(x), packed.reference(x), rtol=0.05, atol=0.05))
    except (RuntimeError, AttributeError):  # the op is missing or has no kernel for this CPU
        return False


def _linear(layer: nn.Module, int8: bool) -> nn.Module:
    if int8 and isinstance(layer, nn.Linear) and layer.in_features % _INT8_MULTIPLE == 0:
        return PackedLinear(layer)
    return layer


def _pack_linears(module: nn.Module, int8: bool) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, _linear(child, int8))
        else:
            _pack_linears(child, int8)


class SteppingMamba(nn.Module):
    """A Mamba layer that only steps: ``Mamba.step`` with fewer operations (the same result)."""

    def __init__(self, m: Mamba, int8: bool):
        super().__init__()
        self.d_inner, self.d_state, self.d_conv, self.dt_rank = m.d_inner, m.d_state, m.d_conv, m.dt_rank
        self.in_proj = _linear(m.in_proj, int8)
        self.x_proj = _linear(m.x_proj, int8)
        self.dt_proj = _linear(m.dt_proj, int8)
        self.out_proj = _linear(m.out_proj, int8)
        self.register_buffer("conv_weight", m.conv1d.weight.detach()[:, 0].clone())  # [d_inner, d_conv]
        self.register_buffer("conv_bias", m.conv1d.bias.detach().clone())
        # the decay exp(dt * A) as exp2(dt * A * log2(e)): torch's exp2 is ~4x faster than exp here
        self.register_buffer("A2", -torch.exp(m.A_log.detach().float()) * math.log2(math.e))  # [d_inner, d_state]
        self.register_buffer("D", m.D.detach().clone())

    def init_state(self, batch: int, device=None, dtype=torch.float32) -> MambaState:
        return MambaState.zeros(batch, self.d_inner, self.d_conv, self.d_state, device, dtype)

    def step(self, x: torch.Tensor, state: MambaState) -> tuple[torch.Tensor, MambaState]:
        """``Mamba.step``, writing the new state into ``state`` (returned): the engine keeps a
        batch's states stacked, each stream's a view of them (see ``generate.StepBatch``)."""
        xi, z = self.in_proj(x).split(self.d_inner, dim=-1)
        window = torch.cat([state.conv, xi.unsqueeze(-1)], dim=2)  # [B, d_inner, d_conv]
        xc = F.silu((window * self.conv_weight).sum(-1) + self.conv_bias)
        dt, Bm, Cm = self.x_proj(xc).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(self.dt_proj(dt))
        h = torch.addcmul(torch.exp2(dt.unsqueeze(-1) * self.A2) * state.ssm, (dt * xc).unsqueeze(-1), Bm.unsqueeze(1),
                          out=state.ssm)
        state.conv.copy_(window[:, :, 1:])
        # h . C: a batched matmul of 1-column matrices is fast alone but ~2x a product and sum in a batch
        hc = torch.bmm(h, Cm.unsqueeze(-1)).squeeze(-1) if h.shape[0] == 1 else (h * Cm.unsqueeze(1)).sum(-1)
        y = torch.addcmul(hc, xc, self.D) * F.silu(z)
        return self.out_proj(y), state


def for_decoding(model: nn.Module, int8: bool = True) -> nn.Module:
    """A copy of ``model`` for the engine (see the module text); int8 only where supported."""
    int8 = int8 and int8_supported()
    m = copy.deepcopy(model).eval()
    m.mambas = nn.ModuleList(SteppingMamba(layer, int8) for layer in m.mambas)
    for c in m.cross:  # (text and speaker keys/values are computed once per chunk / stream)
        c.q, c.out = _linear(c.q, int8), _linear(c.out, int8)
    for part in (m.prenet, m.codebook_heads):
        _pack_linears(part, int8)
    m.semantic_head = _linear(m.semantic_head, int8)
    return m
