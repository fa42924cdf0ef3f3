"""Training losses: codebook cross-entropy with LiveSpeech 1's adaptive codebook weights,
L1 on the expected frame, and the semantic (progress) cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def adaptive_codebook_weights(p_true: torch.Tensor, lam: float = 0.1, p_max: float = 0.5) -> torch.Tensor:
    """p_true [..., K]: the model's probability of the correct code per codebook (no gradient).
    Weight of codebook 1 is 1; of codebook q, (prod_{q'<q} p_true[q'])^lam; codebooks q > 1
    already predicted with p > p_max weigh 0; rescaled so the largest weight per frame is 1."""
    p = p_true.detach().clamp_min(1e-12)
    prefix = torch.cumprod(torch.cat([torch.ones_like(p[..., :1]), p[..., :-1]], dim=-1), dim=-1)
    w = prefix.pow(lam)
    easy = p > p_max
    easy[..., 0] = False
    w = w.masked_fill(easy, 0.0)
    return w / w.amax(dim=-1, keepdim=True).clamp_min(1e-12)


def reference_adaptive_weights(p_true: torch.Tensor, lam: float = 0.1, p_max: float = 0.5) -> torch.Tensor:
    """Slow reference for one frame [K] (tests compare the vectorized version to this)."""
    K = p_true.shape[0]
    w = []
    for q in range(K):
        prod = 1.0
        for j in range(q):
            prod *= float(p_true[j])
        wq = prod**lam
        if q > 0 and float(p_true[q]) > p_max:
            wq = 0.0
        w.append(wq)
    m = max(w)
    return torch.tensor([x / m for x in w])


def codebook_loss(logits: list[torch.Tensor], codes: torch.Tensor, mask: torch.Tensor, lam: float = 0.1):
    """logits per group [B, S, r, K_g, C]; codes [B, S, r, K]; mask [B, S].
    Returns (weighted CE averaged over frames, accuracy of codebook 1)."""
    lg = torch.cat(logits, dim=-2)  # [B, S, r, K, C]
    logp = lg.log_softmax(-1)
    nll = -logp.gather(-1, codes.unsqueeze(-1)).squeeze(-1)  # [B, S, r, K]
    w = adaptive_codebook_weights((-nll).exp(), lam)
    m = mask.unsqueeze(-1).unsqueeze(-1).to(nll.dtype)
    loss = (nll * w * m).sum() / (m.sum() * codes.shape[2]).clamp_min(1)
    acc = ((lg[..., 0, :].argmax(-1) == codes[..., 0]).float() * m[..., 0]).sum() / (m.sum() * codes.shape[2]).clamp_min(1)
    return loss, acc


def feature_loss(expected: torch.Tensor, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L1 between expected frames [B, S, r, F] and the true frames."""
    m = mask.unsqueeze(-1).unsqueeze(-1).to(feats.dtype)
    return ((expected - feats).abs() * m).sum() / (m.sum() * feats.shape[2] * feats.shape[3]).clamp_min(1)


def semantic_loss(logits: torch.Tensor, target: torch.Tensor):
    """logits [B, S, classes]; target [B, S] with -100 for padding -> (CE, accuracy)."""
    loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=-100)
    ok = target != -100
    acc = ((logits.argmax(-1) == target) & ok).sum() / ok.sum().clamp_min(1)
    return loss, acc
