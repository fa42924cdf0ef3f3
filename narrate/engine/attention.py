"""Cross-attention from the decoder to a band of text tokens (rotary positions) and to the
voice prompt's speaker tokens (no positions).

Rotary positions depend only on differences, so the query sits at 0 and each text key is
rotated by (its index - the tracked position): identical to rotating both by their absolute
positions, and exact however long the text grows.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def rope(x: torch.Tensor, pos: torch.Tensor, base: float) -> torch.Tensor:
    """x [..., H, dh] rotated by pos [...] (broadcast over heads)."""
    half = x.shape[-1] // 2
    inv = base ** (-torch.arange(half, dtype=torch.float32, device=x.device) / half)
    ang = pos.float().unsqueeze(-1).unsqueeze(-1) * inv  # [..., 1, half]
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def rope_tables(offsets: torch.Tensor, dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [W, 1, dim/2] of the rotation by each relative offset: the band's offsets are
    fixed, so decoding computes them once (``rope`` recomputes them per call)."""
    half = dim // 2
    inv = base ** (-torch.arange(half, dtype=torch.float32) / half)
    ang = offsets.float().view(-1, 1, 1) * inv
    return ang.cos(), ang.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [..., W, H, dh] rotated with the tables of ``rope_tables`` (same result as ``rope``)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def decode_keys(band_kv, valid, speaker_kv, cos, sin):
    """Keys, values and mask of every cross layer for one decoding step, made once per step.
    band_kv [B, W, X, 2, H, dh] the band's cached text keys/values; valid [B, W]; speaker_kv
    [B, X, 2, Ns, H, dh]; cos/sin the band offsets' rope tables. Returns keys, values
    [B, X, H, W + Ns, dh] (text keys rotated by their offset, speaker keys unrotated) and the
    mask [B, 1, 1, W + Ns]."""
    band = band_kv.transpose(1, 2)  # [B, X, W, 2, H, dh]
    keys = torch.cat([rotate(band[:, :, :, 0], cos, sin), speaker_kv[:, :, 0]], dim=2).transpose(2, 3)
    values = torch.cat([band[:, :, :, 1], speaker_kv[:, :, 1]], dim=2).transpose(2, 3)
    mask = torch.cat([valid, valid.new_ones(valid.shape[0], speaker_kv.shape[3])], dim=1)
    return keys, values, mask.view(mask.shape[0], 1, 1, -1)


def band_index(p: torch.Tensor, back: int, ahead: int, length: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tracked positions p [B, S] -> (index [B, S, W] clamped into range, relative position
    [B, S, W], valid mask [B, S, W]) for the band [p - back, p + ahead]."""
    offs = torch.arange(-back, ahead + 1, device=p.device)
    idx = p.unsqueeze(-1) + offs
    valid = (idx >= 0) & (idx < length.view(-1, 1, 1))
    return idx.clamp(min=0).minimum((length - 1).clamp(min=0).view(-1, 1, 1)), offs.expand_as(idx), valid


def gather_band(memory: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """memory [B, N, d], idx [B, S, W] -> [B, S, W, d]."""
    B, S, W = idx.shape
    flat = torch.gather(memory, 1, idx.reshape(B, S * W, 1).expand(-1, -1, memory.shape[-1]))
    return flat.view(B, S, W, -1)


class TextCrossAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, rope_base: float):
        super().__init__()
        self.h, self.dh, self.base = n_heads, d_model // n_heads, rope_base
        self.norm = nn.LayerNorm(d_model)
        self.q = nn.Linear(d_model, d_model, bias=False)
        self.kv = nn.Linear(d_model, 2 * d_model, bias=False)
        self.kv_speaker = nn.Linear(d_model, 2 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x, band, rel, valid, speaker):
        """x [B, S, d]; band [B, S, W, d] text memory around each step's tracked position with
        rel [B, S, W] positions relative to it and valid [B, S, W]; speaker [B, Ns, d].
        Returns the residual update [B, S, d]."""
        B, S, _ = x.shape
        q = self.q(self.norm(x)).view(B, S, self.h, self.dh)
        k, v = self.kv(band).view(B, S, band.shape[2], 2, self.h, self.dh).unbind(3)
        k = rope(k, rel, self.base)
        ks, vs = self.kv_speaker(speaker).view(B, 1, speaker.shape[1], 2, self.h, self.dh).unbind(3)
        ks, vs = ks.expand(B, S, -1, -1, -1), vs.expand(B, S, -1, -1, -1)
        keys = torch.cat([k, ks], dim=2)  # [B, S, W+Ns, H, dh]
        vals = torch.cat([v, vs], dim=2)
        mask = torch.cat([valid, valid.new_ones(B, S, speaker.shape[1])], dim=2)
        logits = torch.einsum("bshd,bswhd->bshw", q, keys) / self.dh**0.5
        logits = logits.masked_fill(~mask.unsqueeze(2), float("-inf"))
        att = logits.softmax(-1)
        y = torch.einsum("bshw,bswhd->bshd", att, vals).reshape(B, S, -1)
        return self.out(y)

    def text_kv(self, memory: torch.Tensor) -> torch.Tensor:
        """Keys and values of text tokens, computed once per token for decoding: [..., 2, H, dh]."""
        return self.kv(memory).unflatten(-1, (2, self.h, self.dh))

    def speaker_kv(self, speaker: torch.Tensor) -> torch.Tensor:
        """[B, Ns, d] -> [B, 2, Ns, H, dh], computed once per stream for decoding."""
        return self.kv_speaker(speaker).unflatten(-1, (2, self.h, self.dh)).transpose(1, 2)

    def attend(self, x, keys, values, mask):
        """One decoding step from prepared keys/values (the same result as ``forward``; see
        ``decode_keys``). x [B, d]; keys, values [B, H, W', dh]; mask [B, 1, 1, W'] True = attend."""
        B = x.shape[0]
        q = self.q(self.norm(x)).view(B, self.h, 1, self.dh)
        return self.out(F.scaled_dot_product_attention(q, keys, values, attn_mask=mask).reshape(B, -1))

    def attend_band(self, x, band_kv, valid, speaker_kv, cos, sin, layer: int):
        """``attend`` from the cached band and speaker keys/values as they are (see ``decode_keys``
        for the arguments; this is cross layer ``layer``), in one operation of ours
        (``narrate.kernels``: ``band_attention.cpp``)."""
        q = self.q(self.norm(x))
        return self.out(torch.ops.narrate.band_attention(q, band_kv, valid, speaker_kv, cos, sin, layer))

    def reference(self, x, memory, length, p, back, ahead, speaker):
        """Slow reference: attention over the whole memory, band applied as a mask."""
        B, S, _ = x.shape
        N = memory.shape[1]
        q = self.q(self.norm(x)).view(B, S, self.h, self.dh)
        k, v = self.kv(memory).view(B, N, 2, self.h, self.dh).unbind(2)
        ks, vs = self.kv_speaker(speaker).view(B, -1, 2, self.h, self.dh).unbind(2)
        out = torch.zeros(B, S, self.h, self.dh)
        for b in range(B):
            for s in range(S):
                rel = torch.arange(N) - p[b, s]
                kk = torch.cat([rope(k[b], rel, self.base), ks[b]])
                vv = torch.cat([v[b], vs[b]])
                ok = torch.cat([(rel >= -back) & (rel <= ahead) & (torch.arange(N) < length[b]),
                                torch.ones(ks.shape[1], dtype=torch.bool)])
                lg = torch.einsum("hd,nhd->hn", q[b, s], kk) / self.dh**0.5
                att = lg.masked_fill(~ok, float("-inf")).softmax(-1)
                out[b, s] = torch.einsum("hn,nhd->hd", att, vv)
        return self.out(out.reshape(B, S, -1))
