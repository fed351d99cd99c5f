"""The murmur language model: a Llama-architecture decoder in one readable file.

It computes exactly what Hugging Face's ``LlamaForCausalLM`` computes (RMSNorm in fp32, RoPE in the
rotate-half layout, SwiGLU MLP, grouped-query attention, optional tied embeddings, no biases), so an
exported murmur model runs unchanged in transformers, vLLM and llama.cpp.

Nothing here knows about distribution: data, tensor and pipeline parallelism are applied from
outside (``murmur.train.parallel``), as torchtitan does. Module names follow torchtitan
(``tok_embeddings``, ``layers.{i}.attention.wq`` ...); ``murmur.export`` maps them to HF names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

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


class RMSNorm(nn.Module):
    """Root-mean-square norm computed in fp32 and cast back, as HF's LlamaRMSNorm."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dtype)


def rope_tables(head_dim: int, max_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables [max_len, head_dim] for the rotate-half layout (fp32)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    t = torch.arange(max_len, dtype=torch.int64).float()
    freqs = torch.outer(t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate q, k [B, H, T, D] by position tables cos, sin [B or 1, T, D]."""
    cos, sin = cos.unsqueeze(1).to(q.dtype), sin.unsqueeze(1).to(q.dtype)
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


class KVCache:
    """A preallocated key/value cache for ``batch`` sequences of up to ``max_len`` tokens.

    Row ``b`` holds one sequence; the model writes each new token's keys and values at its
    position, so sequences in one batch may sit at different positions (continuous batching).
    """

    def __init__(self, cfg: ModelConfig, batch: int, max_len: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32):
        cfg = cfg.resolved()
        shape = (cfg.n_layers, batch, cfg.n_kv_heads, max_len, cfg.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.max_len = max_len

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor,
               rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Store k, v [B, H, T, D] at ``positions`` [B, T] of cache ``rows`` [B] (default 0..B-1).

        Returns the keys, values and boolean attention mask [B, 1, T, S] over the first S slots,
        where S is one past the largest position written.
        """
        B, _, T, _ = k.shape
        if rows is None:
            rows = torch.arange(B, device=k.device)
        if int(positions.max()) >= self.max_len:
            raise ValueError(f"position {int(positions.max())} is past the cache length {self.max_len}")
        b_idx = rows[:, None].expand(B, T)
        # Advanced indexing over (row, position) puts those dims first: [B, T, H, D].
        kc, vc = self.k[layer], self.v[layer]
        kc[b_idx, :, positions] = k.transpose(1, 2).to(kc.dtype)
        vc[b_idx, :, positions] = v.transpose(1, 2).to(vc.dtype)
        S = int(positions.max()) + 1
        keys, values = kc[rows, :, :S], vc[rows, :, :S]
        mask = torch.arange(S, device=k.device)[None, None, :] <= positions[:, :, None]
        return keys, values, mask[:, None]


def document_mask(doc_ids: torch.Tensor) -> torch.Tensor:
    """The boolean attention mask [B, 1, T, T] of packed rows: causal, and within one document only."""
    T = doc_ids.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=doc_ids.device).tril()
    return ((doc_ids[:, :, None] == doc_ids[:, None, :]) & causal)[:, None]


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.wq = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layer: int = 0,
                cache: KVCache | None = None, positions: torch.Tensor | None = None,
                rows: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T, _ = x.shape
        # -1 instead of the head count keeps this correct when tensor parallelism shards the heads.
        q = self.wq(x).view(B, T, -1, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(B, T, -1, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(B, T, -1, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, k, cos, sin)
        gqa = q.shape[1] != k.shape[1]
        if cache is None and mask is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        elif cache is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
        else:
            assert positions is not None
            k, v, mask = cache.update(layer, k, v, positions, rows)
            out = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=mask, enable_gqa=gqa)
        return self.wo(out.transpose(1, 2).reshape(B, T, -1))


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x) (HF: down(silu(gate(x)) * up(x)))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.w1 = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.w3 = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.w2 = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attention = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.feed_forward = FeedForward(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache | None = None,
                positions: torch.Tensor | None = None, rows: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), cos, sin, self.layer, cache, positions, rows, mask)
        return x + self.feed_forward(self.ffn_norm(x))


class Transformer(nn.Module):
    """The decoder. ``forward(tokens)`` returns logits; with ``targets`` it returns the mean loss."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg = cfg.resolved()
        self.cfg = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        # A ModuleDict keyed by layer index keeps parameter names stable when parallelism wraps blocks.
        self.layers = nn.ModuleDict({str(i): Block(cfg, i) for i in range(cfg.n_layers)})
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.output.weight = self.tok_embeddings.weight
        cos, sin = rope_tables(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Normal(0, std) everywhere; residual output projections scaled by 1/sqrt(2 * n_layers)."""
        std = self.cfg.init_std
        nn.init.normal_(self.tok_embeddings.weight, std=std)
        if not self.cfg.tie_embeddings:
            nn.init.normal_(self.output.weight, std=std)
        for block in self.layers.values():
            for lin in (block.attention.wq, block.attention.wk, block.attention.wv,
                        block.feed_forward.w1, block.feed_forward.w3):
                nn.init.normal_(lin.weight, std=std)
            for lin in (block.attention.wo, block.feed_forward.w2):
                nn.init.normal_(lin.weight, std=std / math.sqrt(2 * self.cfg.n_layers))
            block.attention_norm.weight.fill_(1.0)
            block.ffn_norm.weight.fill_(1.0)
        self.norm.weight.fill_(1.0)

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor | None = None, *,
                positions: torch.Tensor | None = None, cache: KVCache | None = None,
                rows: torch.Tensor | None = None, doc_ids: torch.Tensor | None = None,
                ignore_index: int = -100) -> torch.Tensor:
        """tokens [B, T] -> logits [B, T, V] (fp32), or the mean cross-entropy when ``targets`` is given
        (over the targets that are not ``ignore_index``).

        With a ``cache``, ``positions`` [B, T] gives each token's position and ``rows`` [B] the cache
        rows the batch occupies; without one, the sequence is attended causally from position 0.
        ``doc_ids`` [B, T] packs several documents into one row: a token attends only to earlier
        tokens with the same id (block-diagonal causal attention); give ``positions`` restarting at 0
        for each document and every document is computed exactly as if it were alone.
        """
        B, T = tokens.shape
        if positions is None:
            if T > self.cfg.max_seq_len:
                raise ValueError(f"sequence of {T} tokens is longer than max_seq_len {self.cfg.max_seq_len}")
            cos, sin = self.rope_cos[:T][None], self.rope_sin[:T][None]
        else:
            cos, sin = self.rope_cos[positions], self.rope_sin[positions]
        mask = None if doc_ids is None or cache is not None else document_mask(doc_ids)
        h = self.tok_embeddings(tokens)
        for block in self.layers.values():
            h = block(h, cos, sin, cache, positions, rows, mask)
        h = self.norm(h)
        logits = self.output(h).float()
        if targets is None:
            return logits
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=ignore_index)


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
