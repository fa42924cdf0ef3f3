"""The model's architecture, saved beside its weights as config.json."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass
class ModelConfig:
    vocab_size: int = 256          # text (phoneme) token ids
    d_model: int = 256
    n_layers: int = 8              # Mamba layers
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    cross_every: int = 2           # a cross-attention layer after every n-th Mamba layer
    n_heads: int = 4
    enc_convs: int = 2
    enc_layers: int = 2
    reduction: int = 3             # codec frames emitted per decoder step
    n_codebooks: int = 8
    codebook_size: int = 256
    feature_dim: int = 80          # dimension of a codec frame's code vectors (log-mel bins)
    codebook_groups: list[int] = field(default_factory=lambda: [2, 6])  # codebooks per group, in order
    speaker_dim: int = 256         # speaker embedding (resemblyzer d-vector)
    speaker_tokens: int = 4        # speaker-embedding keys of the cross-attention (no rotary position)
    prompt_tokens: int = 0         # prompt-encoder keys (0: no prompt encoder), beside the speaker's
    voice_stats: bool = False      # the voice's pitch (the speaker vector's last entry) and its prompt's
                                   # average spectrum enter as global terms (see NarrateModel.voice_terms)
    band_back: int = 2             # text tokens visible behind the tracked position
    band_ahead: int = 3            # ... and ahead of it
    semantic_classes: int = 5      # progress per step: move 0, 1, 2, 3+ tokens, or STOP
    rope_base: float = 10000.0
    prenet_dropout: float = 0.5

    def __post_init__(self):
        if sum(self.codebook_groups) != self.n_codebooks:
            raise ValueError("codebook_groups must add up to n_codebooks")
        if self.d_model % self.n_heads:
            raise ValueError("d_model must be divisible by n_heads")

    @property
    def stop_class(self) -> int:
        return self.semantic_classes - 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**d)
