"""The TTS model: text encoder, Mamba decoder with text/prompt cross-attention, grouped
codebook heads and the semantic (progress) head.

One decoder step emits ``reduction`` codec frames. Shapes: B batch, S decoder steps,
N text tokens, r frames per step, K codebooks, C codes per codebook, F feature dim.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from narrate.engine.attention import TextCrossAttention, band_index, decode_keys, gather_band, rope_tables
from narrate.engine.config import ModelConfig
from narrate.engine.mamba import Mamba, MambaState


LENGTH_BUCKET = 64  # sequence lengths the encoders' convolutions see: multiples of this


def bucketed_conv(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for x [B, C, N], computed over x zero-padded on the right to a multiple of
    LENGTH_BUCKET. The same numbers (a "same" convolution pads with zeros anyway), but oneDNN
    keeps a compiled primitive, with its buffers, for every input shape it meets: the text
    encoder over every length from 1 to 300 tokens grew the process by 170 MB before this, and
    by 10 MB with it."""
    n = x.shape[-1]
    padded = -n % LENGTH_BUCKET
    return conv(F.pad(x, (0, padded)))[..., :n] if padded else conv(x)


class TextEncoder(nn.Module):
    """Token ids of one chunk -> [B, N, d]. Chunks are encoded independently (bounded cost)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_model
        self.embed = nn.Embedding(cfg.vocab_size, d)
        self.convs = nn.ModuleList(nn.Conv1d(d, d, 5, padding=2) for _ in range(cfg.enc_convs))
        self.conv_norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(cfg.enc_convs))
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d, cfg.n_heads, 4 * d, dropout=0.1, batch_first=True, norm_first=True)
            for _ in range(cfg.enc_layers))
        self.norm = nn.LayerNorm(d)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """ids [B, N]; mask [B, N] True for real tokens."""
        x = self.embed(ids)
        keep = None if mask is None else mask.unsqueeze(-1).to(x.dtype)
        for conv, norm in zip(self.convs, self.conv_norms):
            h = x if keep is None else x * keep
            x = x + F.gelu(bucketed_conv(conv, norm(h).transpose(1, 2)).transpose(1, 2))
        pad = None if mask is None else ~mask
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=pad)
        return self.norm(x)


class PromptEncoder(nn.Module):
    """A voice prompt's log-mel frames -> ``prompt_tokens`` vectors that the decoder attends to
    without positions (LiveSpeech's prompt encoder): convolutions over the frames, then learned
    queries attending over all of them, so any prompt length gives the same number of tokens.
    No prompt is one silent frame (training drops prompts now and then to teach it, and every
    parameter takes part in every step, as data-parallel training needs)."""

    SILENCE = -11.5  # log of the mel floor (1e-5)

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_model
        self.n_heads = cfg.n_heads
        self.inp = nn.Linear(cfg.feature_dim, d)
        self.convs = nn.ModuleList(nn.Conv1d(d, d, 5, padding=2) for _ in range(2))
        self.conv_norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(2))
        self.queries = nn.Parameter(torch.randn(cfg.prompt_tokens, d) * 0.02)
        self.kv = nn.Linear(d, 2 * d)
        self.norm = nn.LayerNorm(d)

    def forward(self, frames: torch.Tensor | None, mask: torch.Tensor | None = None, batch: int = 1) -> torch.Tensor:
        """frames [B, T, F] (log-mel), mask [B, T] True for real frames -> [B, Np, d]."""
        if frames is None:
            frames, mask = self.queries.new_full((batch, 1, self.inp.in_features), self.SILENCE), None
        B, T, _ = frames.shape
        keep = None if mask is None else mask.unsqueeze(-1).to(frames.dtype)
        x = self.inp((frames + 5.0) / 3.0)  # log-mel is ~[-11.5, 2]: centre it
        for conv, norm in zip(self.convs, self.conv_norms):
            h = x if keep is None else x * keep
            x = x + F.gelu(bucketed_conv(conv, norm(h).transpose(1, 2)).transpose(1, 2))
        k, v = self.kv(x).view(B, T, 2, self.n_heads, -1).permute(2, 0, 3, 1, 4)  # 2 x [B, H, T, dh]
        q = self.queries.view(1, -1, self.n_heads, k.shape[-1]).transpose(1, 2).expand(B, -1, -1, -1)
        attn_mask = None if mask is None else mask.view(B, 1, 1, T)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # [B, H, Np, dh]
        return self.norm(self.queries + out.transpose(1, 2).flatten(2))


def prompt_spectrum(frames: torch.Tensor | None, mask: torch.Tensor | None, like: torch.Tensor, feature_dim: int) -> torch.Tensor:
    """The long-term average spectrum of a prompt's speech: the mean log-mel [B, F] of its frames
    within 40 dB of its loudest (pauses left out), centred like the prompt encoder's input. No
    prompt: silence. like: a [B, ...] tensor of the batch size, dtype and device wanted."""
    if frames is None:
        return like.new_full((like.shape[0], feature_dim), (PromptEncoder.SILENCE + 5.0) / 3.0)
    valid = torch.ones(frames.shape[:2], dtype=torch.bool) if mask is None else mask
    level = frames.mean(-1).masked_fill(~valid, -1e9)                      # [B, T]
    speech = (level >= level.max(dim=1, keepdim=True).values - 4.6) & valid  # 40 dB of magnitude: ln(100)
    w = speech.to(frames.dtype).unsqueeze(-1)
    return ((frames * w).sum(1) / w.sum(1).clamp(min=1.0) + 5.0) / 3.0


class CodebookHeads(nn.Module):
    """Logits of all codebooks of a step's r frames, group by group: group g sees the
    features of the codes chosen in groups < g (teacher-forced in training)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        r, C, Fd = cfg.reduction, cfg.codebook_size, cfg.feature_dim
        self.heads = nn.ModuleList(nn.Linear(cfg.d_model, r * k * C) for k in cfg.codebook_groups)
        self.conds = nn.ModuleList(nn.Linear(r * Fd, cfg.d_model) for _ in cfg.codebook_groups[1:])
        self.starts = [sum(cfg.codebook_groups[:g]) for g in range(len(cfg.codebook_groups))]

    def group_logits(self, g: int, h: torch.Tensor, prev_feats: torch.Tensor | None) -> torch.Tensor:
        """h [..., d]; prev_feats [..., r, F] (sum of code vectors of groups < g) -> [..., r, K_g, C]."""
        if g > 0:
            assert prev_feats is not None  # (groups after the first see the codes before them)
            h = h + self.conds[g - 1](prev_feats.flatten(-2))
        k = self.cfg.codebook_groups[g]
        return self.heads[g](F.gelu(h) if g > 0 else h).unflatten(-1, (self.cfg.reduction, k, self.cfg.codebook_size))

    def teacher_forced(self, h: torch.Tensor, codes: torch.Tensor, codebooks: torch.Tensor) -> list[torch.Tensor]:
        """h [B, S, d], true codes [B, S, r, K] -> logits per group."""
        out: list[torch.Tensor] = []
        feats: torch.Tensor | None = None
        for g, k in enumerate(self.cfg.codebook_groups):
            out.append(self.group_logits(g, h, feats))
            s = self.starts[g]
            part = cast(torch.Tensor, sum(codebooks[s + j][codes[..., s + j]] for j in range(k)))  # [B, S, r, F]
            feats = part if feats is None else feats + part
        return out


@dataclass
class DecoderState:
    """Everything the decoder carries from one step to the next (per stream in the batch)."""

    layers: list[MambaState]
    prev_feats: torch.Tensor  # [B, r * F] features emitted by the previous step

    def select(self, index: torch.Tensor | slice) -> "DecoderState":
        """The streams ``index`` of the batch."""
        return DecoderState([s.select(index) for s in self.layers], self.prev_feats[index])

    def copy(self) -> "DecoderState":
        """A copy owning its memory (not a view of a batch's rows, which a step overwrites)."""
        return DecoderState([MambaState(s.conv.clone(), s.ssm.clone()) for s in self.layers], self.prev_feats.clone())


@dataclass
class Conditioning:
    """What decoding computes once per stream instead of every step (see ``decode_step``)."""

    input_bias: torch.Tensor  # [B, d] speaker and rate terms of the decoder input
    speaker_kv: torch.Tensor  # [B, X, 2, Ns, H, dh] speaker-token keys/values per cross layer


class StepLayer(Protocol):
    """A decoder layer that steps: ``Mamba``, or ``SteppingMamba`` in decoding's copy."""

    def init_state(self, batch: int) -> MambaState: ...

    def step(self, x: torch.Tensor, state: MambaState) -> tuple[torch.Tensor, MambaState]: ...


class NarrateModel(nn.Module):
    codebooks: torch.Tensor  # (buffers)
    band_cos: torch.Tensor
    band_sin: torch.Tensor
    semantic_head: nn.Module  # nn.Linear; int8 (narrate.engine.packed) in decoding's copy

    def __init__(self, cfg: ModelConfig, codebooks: torch.Tensor | None = None):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.encoder = TextEncoder(cfg)
        self.prenet = nn.Sequential(nn.Linear(cfg.reduction * cfg.feature_dim, d), nn.ReLU(), nn.Dropout(cfg.prenet_dropout),
                                    nn.Linear(d, d), nn.ReLU(), nn.Dropout(cfg.prenet_dropout))
        self.speaker_in = nn.Linear(cfg.speaker_dim, d)
        self.speaker_tokens = nn.Linear(cfg.speaker_dim, cfg.speaker_tokens * d)
        if cfg.prompt_tokens:
            self.prompt_encoder = PromptEncoder(cfg)
            self.prompt_in = nn.Linear(d, d)
            nn.init.zeros_(self.prompt_in.weight)  # a model fine-tuned to use prompts starts as it was
            nn.init.zeros_(self.prompt_in.bias)
        if cfg.voice_stats:  # pitch + average spectrum -> the decoder input and the speaker tokens
            self.stats_in = nn.Linear(1 + cfg.feature_dim, d)
            self.stats_tokens = nn.Linear(1 + cfg.feature_dim, cfg.speaker_tokens * d)
            for layer in (self.stats_in, self.stats_tokens):  # a model fine-tuned to use them starts as it was
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        self.rate_in = nn.Linear(1, d)
        self.mambas = nn.ModuleList(Mamba(d, cfg.d_state, cfg.d_conv, cfg.expand) for _ in range(cfg.n_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(cfg.n_layers))
        self.cross = nn.ModuleList(TextCrossAttention(d, cfg.n_heads, cfg.rope_base)
                                   for _ in range(cfg.n_layers // cfg.cross_every))
        self.final_norm = nn.LayerNorm(d)
        self.codebook_heads = CodebookHeads(cfg)
        self.semantic_head = nn.Linear(d, cfg.semantic_classes)
        if codebooks is None:
            codebooks = torch.randn(cfg.n_codebooks, cfg.codebook_size, cfg.feature_dim) * 0.1
        self.register_buffer("codebooks", codebooks.float().clone())  # [K, C, F] the codec's vectors
        cos, sin = rope_tables(torch.arange(-cfg.band_back, cfg.band_ahead + 1), d // cfg.n_heads, cfg.rope_base)
        self.register_buffer("band_cos", cos, persistent=False)  # [W, 1, dh/2]
        self.register_buffer("band_sin", sin, persistent=False)

    # --- conditioning -----------------------------------------------------------------------
    def speaker_vector(self, embedding: torch.Tensor, pitch: torch.Tensor) -> torch.Tensor:
        """embedding [B, speaker_dim], pitch [B] (narrate.pitch.pitch_feature of the voice) -> the
        speaker input of this model (the pitch is appended where cfg.voice_stats asks for it)."""
        if not self.cfg.voice_stats:
            return embedding
        return torch.cat([embedding, pitch.reshape(-1, 1).to(embedding.dtype)], dim=1)

    def voice_terms(self, speaker: torch.Tensor, rate: torch.Tensor, prompt: torch.Tensor | None = None,
                    prompt_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """speaker [B, speaker_dim] (embedding; with cfg.voice_stats [B, speaker_dim + 1], the
        voice's pitch_feature last), rate [B] (log length scale), prompt [B, T, F] (the prompt's
        log-mel frames; None: none) -> (decoder input bias [B, d], the voice's cross-attention
        tokens [B, Ns, d]: the embedding's, then the prompt encoder's).

        With cfg.voice_stats, the pitch and the prompt's average spectrum (``prompt_spectrum``)
        shift both: two numbers every voice has, measured the same way on any recording, so
        their effect carries over to voices training never heard."""
        B, D = speaker.shape[0], self.cfg.speaker_dim
        if speaker.shape[1] != D + self.cfg.voice_stats:
            raise ValueError(f"speaker vector of {speaker.shape[1]} values, the model takes {D + self.cfg.voice_stats} "
                             f"(see speaker_vector)")
        embedding = speaker[:, :D]
        bias = self.speaker_in(embedding) + self.rate_in(rate.unsqueeze(-1))
        tokens = self.speaker_tokens(embedding).view(B, self.cfg.speaker_tokens, -1)
        if self.cfg.voice_stats:
            stats = torch.cat([speaker[:, D : D + 1], prompt_spectrum(prompt, prompt_mask, speaker, self.cfg.feature_dim)], -1)
            bias = bias + self.stats_in(stats)
            tokens = tokens + self.stats_tokens(stats).view(B, self.cfg.speaker_tokens, -1)
        if self.cfg.prompt_tokens:
            ptok = self.prompt_encoder(prompt, prompt_mask, B)
            bias = bias + self.prompt_in(ptok.mean(1))
            tokens = torch.cat([tokens, ptok], dim=1)
        return bias, tokens

    # --- training / prefill -----------------------------------------------------------------
    def forward(self, memory, mem_len, positions, prev_feats, speaker, rate, states: list[MambaState] | None = None,
                prompt=None, prompt_mask=None):
        """A chunk of S steps from the given layer states (None: from the start).
        memory [B, N, d]; mem_len [B]; positions [B, S] tracked text position per step;
        prev_feats [B, S, r*F]; prompt [B, T, F] / prompt_mask [B, T] (see ``voice_terms``).
        Returns (hidden [B, S, d], new layer states)."""
        bias, spk = self.voice_terms(speaker, rate, prompt, prompt_mask)
        x = self.prenet(prev_feats) + bias.unsqueeze(1)
        idx, rel, valid = band_index(positions, self.cfg.band_back, self.cfg.band_ahead, mem_len)
        band = gather_band(memory, idx)
        new_states = []
        for i, (mamba, norm) in enumerate(zip(self.mambas, self.norms)):
            y, st = mamba(norm(x), None if states is None else states[i])
            x = x + y
            new_states.append(st)
            if (i + 1) % self.cfg.cross_every == 0:
                x = x + self.cross[i // self.cfg.cross_every](x, band, rel, valid, spk)
        return self.final_norm(x), new_states

    # --- decoding -------------------------------------------------------------------------------
    def init_state(self, batch: int) -> DecoderState:
        layers = [m.init_state(batch) for m in self._steppers()]
        return DecoderState(layers, torch.zeros(batch, self.cfg.reduction * self.cfg.feature_dim))

    def step(self, memory, mem_len, position, speaker, rate, state: DecoderState, prompt=None):
        """One step for B streams. memory [B, N, d] (each stream's text window), position [B]
        relative to that window. Returns (hidden [B, d], layer states)."""
        bias, spk = self.voice_terms(speaker, rate, prompt)
        x = self.prenet(state.prev_feats) + bias
        idx, rel, valid = band_index(position.unsqueeze(1), self.cfg.band_back, self.cfg.band_ahead, mem_len)
        band = gather_band(memory, idx)
        return self._step_layers(x, state, lambda j, x: self.cross[j](x.unsqueeze(1), band, rel, valid, spk).squeeze(1))

    def _step_layers(self, x, state: DecoderState, cross):
        """The decoder stack for one step; cross(j, x) is cross-attention layer j's update."""
        new = []
        for i, (mamba, norm) in enumerate(zip(self._steppers(), self.norms)):
            y, st = mamba.step(norm(x), state.layers[i])
            x = x + y
            new.append(st)
            if (i + 1) % self.cfg.cross_every == 0:
                x = x + cross(i // self.cfg.cross_every, x)
        return self.final_norm(x), new

    # --- decoding from caches (the fast path; ``step`` is its reference) -------------------------
    def condition(self, speaker: torch.Tensor, rate: torch.Tensor, prompt: torch.Tensor | None = None) -> Conditioning:
        """speaker [B, D], rate [B], prompt [B, T, F] or None -> the per-stream terms of every step."""
        bias, spk = self.voice_terms(speaker, rate, prompt)
        kv = torch.stack([c.speaker_kv(spk) for c in self._crosses()], dim=1)
        return Conditioning(bias, kv)

    def text_kv(self, memory: torch.Tensor) -> torch.Tensor:
        """Encoded text [..., n, d] -> keys/values of every cross layer [..., n, X, 2, H, dh], once per chunk."""
        return torch.stack([c.text_kv(memory) for c in self._crosses()], dim=-4)

    def decode_step(self, band_kv: torch.Tensor, valid: torch.Tensor, cond: Conditioning, state: DecoderState,
                    kernel: bool = False):
        """``step`` from caches: band_kv [B, W, X, 2, H, dh] the text keys/values of each stream's
        band [position - band_back, position + band_ahead], valid [B, W]. Returns (hidden, layers).
        kernel: cross-attention through our operation (``TextCrossAttention.attend_band``; where
        ``narrate.kernels`` is built), else the keys made once for all layers (``decode_keys``)."""
        x = self.prenet(state.prev_feats) + cond.input_bias
        cross = self._crosses()
        if kernel:
            return self._step_layers(x, state, lambda j, x: cross[j].attend_band(
                x, band_kv, valid, cond.speaker_kv, self.band_cos, self.band_sin, j))
        keys, values, mask = decode_keys(band_kv, valid, cond.speaker_kv, self.band_cos, self.band_sin)
        return self._step_layers(x, state, lambda j, x: cross[j].attend(x, keys[:, j], values[:, j], mask))

    def _steppers(self) -> list[StepLayer]:
        return cast("list[StepLayer]", list(self.mambas))

    def _crosses(self) -> list[TextCrossAttention]:
        return cast("list[TextCrossAttention]", list(self.cross))

    def expected_features(self, logits: list[torch.Tensor]) -> torch.Tensor:
        """Per-group logits [..., r, K_g, C] -> expected code-vector sum [..., r, F]."""
        out = torch.zeros(())
        for g, lg in enumerate(logits):
            s = self.codebook_heads.starts[g]
            books = self.codebooks[s : s + lg.shape[-2]]  # [K_g, C, F]
            out = out + lg.softmax(-1).flatten(-2) @ books.flatten(0, 1)  # einsum would copy the books
        return out
