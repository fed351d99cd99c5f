"""The model's shape, declared once: :class:`ModelConfig`, the named presets, parameter and FLOP counts.

No torch here, so configs that name a shape (``[model]`` in a training config) load instantly;
:mod:`murmur.model` builds the network from a ModelConfig and re-exports everything here. A config
section that overrides a preset field by field is derived from ModelConfig itself
(:func:`murmur.config.optional_section`), so the fields, types and help are written only here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from murmur.config import knob
from murmur.errors import ConfigError


@dataclass(frozen=True)
class ModelConfig:
    """The shape of a model. ``preset`` picks a named shape; explicit fields override it."""

    vocab_size: int = knob(8192, "Vocabulary size (set from the tokenizer by the trainer).")
    dim: int = knob(256, "Hidden size.")
    n_layers: int = knob(4, "Number of transformer blocks.")
    n_heads: int = knob(4, "Attention (query) heads.")
    n_kv_heads: int = knob(0, "Key/value heads for grouped-query attention (0 = n_heads).")
    head_dim: int = knob(0, "Size of one head (0 = dim // n_heads).")
    ffn_dim: int = knob(0, "SwiGLU hidden size (0 = 8/3 * dim rounded up to a multiple of 64).")
    max_seq_len: int = knob(256, "Longest context the model is built for (RoPE table size).")
    rope_theta: float = knob(10000.0, "RoPE base frequency.")
    norm_eps: float = knob(1e-5, "RMSNorm epsilon.")
    tie_embeddings: bool = knob(True, "Share the input embedding and output projection weights.")
    init_std: float = knob(0.02, "Std of the normal init; residual projections get std / sqrt(2 * n_layers).")

    def resolved(self) -> ModelConfig:
        """The config with every derived field (0 = auto) filled in, after checking it is consistent."""
        n_kv = self.n_kv_heads or self.n_heads
        head_dim = self.head_dim or self.dim // self.n_heads
        ffn = self.ffn_dim or 64 * math.ceil(8 * self.dim / 3 / 64)
        if self.n_heads % n_kv:
            raise ConfigError(f"model.n_heads ({self.n_heads}) must be a multiple of model.n_kv_heads ({n_kv})")
        if head_dim % 2:
            raise ConfigError(f"model head_dim ({head_dim}) must be even for RoPE")
        if not self.head_dim and self.dim % self.n_heads:
            raise ConfigError(f"model.dim ({self.dim}) must be divisible by model.n_heads ({self.n_heads})")
        return replace(self, n_kv_heads=n_kv, head_dim=head_dim, ffn_dim=ffn)


# Named shapes, from CPU tests to cluster plans. vocab_size is replaced by the tokenizer's at train time.
PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(dim=256, n_layers=4, n_heads=4, n_kv_heads=4, ffn_dim=704, max_seq_len=256),
    "20m": ModelConfig(dim=512, n_layers=6, n_heads=8, n_kv_heads=4, ffn_dim=1408, max_seq_len=512),
    "124m": ModelConfig(vocab_size=50304, dim=768, n_layers=12, n_heads=12, n_kv_heads=12, ffn_dim=2048,
                        max_seq_len=1024),
    "350m": ModelConfig(vocab_size=50304, dim=1024, n_layers=24, n_heads=16, n_kv_heads=16, ffn_dim=2816,
                        max_seq_len=2048),
    "1b": ModelConfig(vocab_size=128256, dim=2048, n_layers=16, n_heads=32, n_kv_heads=8, ffn_dim=8192,
                      max_seq_len=2048, rope_theta=500000.0),
    "8b": ModelConfig(vocab_size=128256, dim=4096, n_layers=32, n_heads=32, n_kv_heads=8, ffn_dim=14336,
                      max_seq_len=8192, rope_theta=500000.0, tie_embeddings=False),
    "70b": ModelConfig(vocab_size=128256, dim=8192, n_layers=80, n_heads=64, n_kv_heads=8, ffn_dim=28672,
                       max_seq_len=8192, rope_theta=500000.0, tie_embeddings=False),
}


def preset(name: str, **overrides: object) -> ModelConfig:
    """A named shape with field overrides, e.g. ``preset("tiny", vocab_size=4096)``."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r} (choose from {', '.join(PRESETS)})")
    return replace(PRESETS[name], **overrides).resolved()  # type: ignore[arg-type]


def num_params(cfg: ModelConfig, include_embedding: bool = True) -> int:
    """Exact parameter count of ``Transformer(cfg)`` (tied weights counted once)."""
    c = cfg.resolved()
    attn = c.dim * c.n_heads * c.head_dim * 2 + c.dim * c.n_kv_heads * c.head_dim * 2
    ffn = 3 * c.dim * c.ffn_dim
    block = attn + ffn + 2 * c.dim
    emb = c.vocab_size * c.dim
    out = 0 if c.tie_embeddings else c.vocab_size * c.dim
    total = c.n_layers * block + c.dim + emb + out
    return total if include_embedding else total - emb - out


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Training FLOPs per token: 6 N + 12 L H D T (PaLM appendix B).

    N counts every weight used in a matmul: all parameters but the embedding lookup table, plus
    the output projection (which is the embedding matrix when tied).
    """
    c = cfg.resolved()
    n_matmul = num_params(c, include_embedding=False) + c.vocab_size * c.dim
    return 6 * n_matmul + 12 * c.n_layers * c.n_heads * c.head_dim * seq_len
