"""The model as decoding runs it: the same weights, laid out for one step at a time on a CPU.

At batch 1 a decoder step reads every weight once and does little arithmetic with it, so on a
CPU its time goes to memory traffic and per-operation overhead. ``for_decoding`` copies a model
for the engine:
  - the decoder's linear layers keep int8 weights with one scale per output row
    (``PackedLinear``: our kernel, in ``kernels``, where it is built, else torch's weight-only
    int8 kernel on bf16 activations), a quarter of the bytes of fp32 weights;
  - Mamba layers step with fewer, fused operations (ours where built) and their decay
    ``-exp(A_log)`` computed once (``SteppingMamba``).
The text encoder and the conditioning layers run once per chunk or stream and stay as they are.
(Not in bf16, though faster: oneDNN keeps state for every input length it sees, so the
process grows with every new sentence length; docs/performance.md.)
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

from narrate import kernels
from narrate.engine.mamba import Mamba, MambaState
from narrate.engine.model import NarrateModel

# the int8 kernel returns NaN or crashes for inner sizes below 16 (torch 2.13)
_INT8_MULTIPLE = 16


class PackedLinear(nn.Module):
    """A linear layer with int8 weights and a scale per output row (from bf16).

    Two kernels, chosen when the layer is made: ours (``narrate.kernels``: each row's
    activations quantized to int16 on their own, exact integer sums, weights in 8-output
    panels, the bias added inside), where it is built and the CPU has AVX2; else torch's
    weight-only int8 kernel on bf16 activations (weights [out, in]). Both give each stream the
    same result whatever its batch.

    Left aside (measured in docs/performance.md):
      - bf16 weights: twice the bytes, and slower;
      - fbgemm's dynamic int8 linear: it quantizes the whole batch's activations together, so a
        stream's output would depend on the streams beside it;
      - int8 x int8 (``torch._int_mm``) with each row quantized on its own: faster for a large
        layer alone, but slower within the step."""

    weight_panels: torch.Tensor  # (buffers: ours, or torch's layout)
    weight_int8: torch.Tensor
    scale: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, linear: nn.Linear, kernel: bool):
        super().__init__()
        w = linear.weight.detach().float()
        scale = (w.abs().amax(1) / 127).clamp_min(1e-12).to(torch.bfloat16)
        q = torch.round(w / scale.float()[:, None]).clamp(-127, 127).to(torch.int8)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.kernel = kernel
        if self.kernel:
            self.register_buffer("weight_panels", kernels.panels(q))  # [ceil(out / 16), in, 16]
            self.register_buffer("scale", scale.float())
        else:
            self.register_buffer("weight_int8", q)  # [out, in]
            self.register_buffer("scale", scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # as few operations as can be: a step calls this 46 times, and at batch 1 each operation's
        # overhead costs about what its arithmetic does
        if x.dim() != 2:
            return self.forward(x.reshape(-1, self.in_features)).view(*x.shape[:-1], self.out_features)
        if self.kernel:
            return torch.ops.narrate.int8_linear(x, self.weight_panels, self.scale, self.bias)
        y = torch._weight_int8pack_mm(x.to(torch.bfloat16), self.weight_int8, self.scale)
        return y.float() if self.bias is None else torch.add(self.bias, y)  # (bf16 + fp32: fp32, exact)

    def dequantized(self) -> torch.Tensor:
        """The weights as fp32 [out, in]."""
        q = kernels.unpanel(self.weight_panels, self.out_features) if self.kernel else self.weight_int8
        return q.float() * self.scale.float()[:, None]

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """The slow path: the dequantized weights in fp32."""
        return F.linear(x, self.dequantized(), self.bias)


@functools.lru_cache(maxsize=1)
def torch_int8_supported() -> bool:
    """Whether this torch build runs its int8 kernel and gets the right answer."""
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(64, 32)
    x = torch.randn(3, 64, generator=g)
    try:
        packed = PackedLinear(lin, kernel=False)
        return bool(torch.allclose(packed(x), packed.reference(x), rtol=0.05, atol=0.05))
    except (RuntimeError, AttributeError):  # the op is missing or has no kernel for this CPU
        return False


def _linear(layer: nn.Module, packed: bool, kernel: bool) -> nn.Module:
    """The layer with int8 weights where they run here (our kernel, or torch's), else itself."""
    if packed and isinstance(layer, nn.Linear) and layer.in_features % _INT8_MULTIPLE == 0 and (
            kernel or torch_int8_supported()):
        return PackedLinear(layer, kernel)
    return layer


def _pack_linears(module: nn.Module, packed: bool, kernel: bool) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, _linear(child, packed, kernel))
        else:
            _pack_linears(child, packed, kernel)


class SteppingMamba(nn.Module):
    """A Mamba layer that only steps: ``Mamba.step`` with fewer operations (the same result up
    to float rounding). Its state is laid out transposed: conv [B, d_conv - 1, d_inner], ssm
    [B, d_state, d_inner], so the step's products and sums run along the long, contiguous d_inner
    axis (faster: docs/performance.md); ``reference_layout``
    gives ``Mamba``'s. With our kernels (``kernel``, and a d_inner they take: a multiple of 8)
    the convolution and the scan each run as one operation of ours (``mamba_step.cpp``);
    ``ops_step``, torch's operations, is the fallback and their reference."""

    conv_weight: torch.Tensor  # (buffers)
    conv_bias: torch.Tensor
    A2: torch.Tensor
    D: torch.Tensor

    def __init__(self, m: Mamba, packed: bool, kernel: bool):
        super().__init__()
        self.kernel = kernel and m.d_inner % 8 == 0
        self.d_inner, self.d_state, self.d_conv, self.dt_rank = m.d_inner, m.d_state, m.d_conv, m.dt_rank
        self.in_proj = _linear(m.in_proj, packed, kernel)
        self.x_proj = _linear(m.x_proj, packed, kernel)
        self.dt_proj = _linear(m.dt_proj, packed, kernel)
        self.out_proj = _linear(m.out_proj, packed, kernel)
        self.register_buffer("conv_weight", m.conv1d.weight.detach()[:, 0].t().contiguous())  # [d_conv, d_inner]
        assert m.conv1d.bias is not None  # (Mamba's convolution has one)
        self.register_buffer("conv_bias", m.conv1d.bias.detach().clone())
        # the decay exp(dt * A) as exp2(dt * A * log2(e)): torch's exp2 is the faster of the two on CPU
        A = -torch.exp(m.A_log.detach().float())  # [d_inner, d_state]
        self.register_buffer("A2", (A * math.log2(math.e)).t().contiguous())  # [d_state, d_inner]
        self.register_buffer("D", m.D.detach().clone())

    def init_state(self, batch: int, device=None, dtype=torch.float32) -> MambaState:
        return MambaState(torch.zeros(batch, self.d_conv - 1, self.d_inner, device=device, dtype=dtype),
                          torch.zeros(batch, self.d_state, self.d_inner, device=device, dtype=dtype))

    @staticmethod
    def reference_layout(state: MambaState) -> MambaState:
        """The state as ``Mamba`` lays it out."""
        return MambaState(state.conv.transpose(1, 2), state.ssm.transpose(1, 2))

    def step(self, x: torch.Tensor, state: MambaState) -> tuple[torch.Tensor, MambaState]:
        """``Mamba.step``, writing the new state into ``state`` (returned): the engine keeps a
        batch's states stacked, each stream's a view of them (see ``generate.StepBatch``)."""
        if not self.kernel:
            return self.ops_step(x, state)
        xz = self.in_proj(x)  # [B, 2 * d_inner]: x, then the gate z
        xc = torch.ops.narrate.conv_step(xz, state.conv, self.conv_weight, self.conv_bias)
        dbc = self.x_proj(xc)  # [B, dt_rank + 2 * d_state]
        dt = F.softplus(self.dt_proj(dbc[:, : self.dt_rank]))
        y = torch.ops.narrate.ssm_step(dt, xc, dbc[:, self.dt_rank :], xz[:, self.d_inner :], self.A2, self.D, state.ssm)
        return self.out_proj(y), state

    def ops_step(self, x: torch.Tensor, state: MambaState) -> tuple[torch.Tensor, MambaState]:
        """``step`` in torch's operations."""
        xi, z = self.in_proj(x).split(self.d_inner, dim=-1)
        window = torch.cat([state.conv, xi.unsqueeze(1)], dim=1)  # [B, d_conv, d_inner]
        xc = F.silu((window * self.conv_weight).sum(1) + self.conv_bias)
        dt, Bm, Cm = self.x_proj(xc).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(self.dt_proj(dt))
        h = torch.addcmul(torch.exp2(dt.unsqueeze(1) * self.A2) * state.ssm, Bm.unsqueeze(-1), (dt * xc).unsqueeze(1),
                          out=state.ssm)
        state.conv.copy_(window[:, 1:])
        y = torch.addcmul(torch.bmm(Cm.unsqueeze(1), h).squeeze(1), xc, self.D) * F.silu(z)
        return self.out_proj(y), state


def for_decoding(model: NarrateModel, packed: bool, kernel: bool) -> NarrateModel:
    """A copy of ``model`` for the engine (see the module text), its layers on the backend
    ``kernel`` (``narrate.kernels.choose``); int8 weights only where they run here."""
    m = copy.deepcopy(model).eval().requires_grad_(False)
    m.mambas = nn.ModuleList(SteppingMamba(_mamba(layer), packed, kernel) for layer in m.mambas)
    for c in m.cross:  # (text and speaker keys/values are computed once per chunk / stream)
        assert isinstance(c.q, nn.Module) and isinstance(c.out, nn.Module)
        c.q, c.out = _linear(c.q, packed, kernel), _linear(c.out, packed, kernel)
    for part in (m.prenet, m.codebook_heads):
        _pack_linears(part, packed, kernel)
    m.semantic_head = _linear(m.semantic_head, packed, kernel)
    return m


def _mamba(layer: nn.Module) -> Mamba:
    if not isinstance(layer, Mamba):
        raise TypeError(f"a model for decoding has Mamba layers, not {type(layer).__name__}")
    return layer
