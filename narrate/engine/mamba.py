"""Mamba-1 block in pure PyTorch with mamba-ssm's parameter names and shapes
(in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj), so one state_dict runs everywhere.

Three ways to run it, all from an explicit state (conv window + SSM state):
  forward(x, state)  a chunk of T steps (training, and prefill on top of a carried state)
  step(x, state)     one step (decoding)
  reference_forward  the slow, obviously-correct loop the other two are tested against
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

@dataclass
class MambaState:
    """conv: [B, d_inner, d_conv - 1] last inputs of the causal conv; ssm: [B, d_inner, d_state]."""

    conv: torch.Tensor
    ssm: torch.Tensor

    def select(self, index: torch.Tensor | slice) -> "MambaState":
        return MambaState(self.conv[index], self.ssm[index])

    @staticmethod
    def zeros(batch: int, d_inner: int, d_conv: int, d_state: int, device=None, dtype=torch.float32) -> "MambaState":
        """The state before the first step."""
        return MambaState(torch.zeros(batch, d_inner, d_conv - 1, device=device, dtype=dtype),
                          torch.zeros(batch, d_inner, d_state, device=device, dtype=dtype))


class Mamba(nn.Module):
    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2, dt_rank: int | None = None):
        super().__init__()
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = expand * d_model
        self.dt_rank = dt_rank or math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1, bias=True)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        # dt initialised in [1e-3, 1e-1] as in the reference implementation
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def init_state(self, batch: int, device=None, dtype=torch.float32) -> MambaState:
        return MambaState.zeros(batch, self.d_inner, self.d_conv, self.d_state, device, dtype)

    def _ssm_inputs(self, xc: torch.Tensor):
        """xc [B, T, d_inner] (after conv + SiLU) -> dt [B,T,d_inner], Bm, Cm [B,T,d_state]."""
        dbc = self.x_proj(xc)
        dt, Bm, Cm = dbc.split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        return F.softplus(self.dt_proj(dt)), Bm, Cm

    def forward(self, x: torch.Tensor, state: MambaState | None = None) -> tuple[torch.Tensor, MambaState]:
        """x [B, T, d_model] -> y [B, T, d_model] and the state after the last step."""
        B, T, _ = x.shape
        if state is None:
            state = self.init_state(B, x.device, x.dtype)
        xz = self.in_proj(x)
        xi, z = xz.chunk(2, dim=-1)  # [B, T, d_inner]
        # causal depthwise conv continuing from the carried window
        xpad = torch.cat([state.conv, xi.transpose(1, 2)], dim=2)  # [B, d_inner, d_conv-1+T]
        conv = F.conv1d(xpad, self.conv1d.weight, self.conv1d.bias, groups=self.d_inner)  # [B, d_inner, T]
        new_conv = xpad[:, :, -(self.d_conv - 1):]
        xc = F.silu(conv.transpose(1, 2))
        dt, Bm, Cm = self._ssm_inputs(xc)
        A = -torch.exp(self.A_log.float())  # [d_inner, d_state]
        u = dt * xc
        h = state.ssm
        ys = []
        # A plain loop over time is the fastest scan on 2 CPU cores. The [B, d_inner, d_state]
        # terms are formed per step (cache-resident) rather than for all T at once (faster forward
        # and backward), and unbind (not a[:, t]) keeps the backward pass cheap.
        for dt_t, u_t, B_t, C_t in zip(dt.unbind(1), u.unbind(1), Bm.unbind(1), Cm.unbind(1)):
            h = torch.addcmul(torch.exp(dt_t.unsqueeze(-1) * A) * h, u_t.unsqueeze(-1), B_t.unsqueeze(1))
            ys.append(torch.bmm(h, C_t.unsqueeze(-1)).squeeze(-1))
        y = torch.stack(ys, dim=1) + xc * self.D
        y = y * F.silu(z)
        return self.out_proj(y), MambaState(new_conv, h)

    def step(self, x: torch.Tensor, state: MambaState) -> tuple[torch.Tensor, MambaState]:
        """x [B, d_model] -> y [B, d_model]; one recurrent step."""
        xi, z = self.in_proj(x).chunk(2, dim=-1)
        window = torch.cat([state.conv, xi.unsqueeze(-1)], dim=2)  # [B, d_inner, d_conv]
        assert self.conv1d.bias is not None  # (made with one)
        conv = (window * self.conv1d.weight.squeeze(1)).sum(-1) + self.conv1d.bias
        xc = F.silu(conv)
        dt, Bm, Cm = self._ssm_inputs(xc)
        A = -torch.exp(self.A_log.float())
        h = torch.exp(dt.unsqueeze(-1) * A) * state.ssm + (dt * xc).unsqueeze(-1) * Bm.unsqueeze(1)
        y = (h @ Cm.unsqueeze(-1)).squeeze(-1) + xc * self.D
        y = y * F.silu(z)
        return self.out_proj(y), MambaState(window[:, :, 1:], h)

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The slow reference: the whole-sequence formulation (padded conv, explicit scan)."""
        B, T, _ = x.shape
        xi, z = self.in_proj(x).chunk(2, dim=-1)
        xc = F.silu(self.conv1d(xi.transpose(1, 2))[..., :T].transpose(1, 2))
        dt, Bm, Cm = self._ssm_inputs(xc)
        A = -torch.exp(self.A_log.float())
        h = torch.zeros(B, self.d_inner, self.d_state, dtype=x.dtype)
        y = torch.empty_like(xc)
        for t in range(T):
            h = torch.exp(dt[:, t, :, None] * A) * h + dt[:, t, :, None] * Bm[:, t, None, :] * xc[:, t, :, None]
            y[:, t] = torch.einsum("bds,bs->bd", h, Cm[:, t]) + self.D * xc[:, t]
        return self.out_proj(y * F.silu(z))
