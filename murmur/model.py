"""The murmur language model: a Llama-architecture decoder in one readable file.

It computes exactly what Hugging Face's ``LlamaForCausalLM`` computes (RMSNorm in fp32, RoPE in the
rotate-half layout, SwiGLU MLP, grouped-query attention, optional tied embeddings, no biases), so an
exported murmur model runs unchanged in transformers, vLLM and llama.cpp.

Nothing here knows about distribution: data, tensor and pipeline parallelism are applied from
outside (``murmur.train.parallel``), as torchtitan does. Module names follow torchtitan
(``tok_embeddings``, ``layers.{i}.attention.wq`` ...); ``murmur.export`` maps them to HF names.
The shape (:class:`ModelConfig`, the presets, parameter and FLOP counts) lives in
:mod:`murmur.modelconfig`, which imports no torch, and is re-exported here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from murmur.modelconfig import PRESETS, ModelConfig, flops_per_token, num_params, preset

__all__ = ["PRESETS", "KVCache", "ModelConfig", "Transformer", "document_mask", "flops_per_token", "num_params",
           "preset"]


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
        gqa = self.n_heads != self.n_kv_heads  # tensor parallelism shards both by the same factor
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
                ignore_index: int = -100, return_hidden: bool = False) -> torch.Tensor:
        """tokens [B, T] -> logits [B, T, V] (fp32), or the mean cross-entropy when ``targets`` is given
        (over the targets that are not ``ignore_index``), or with ``return_hidden`` the final hidden
        states [B, T, dim] (:meth:`hidden`: what an embedding pools; called through ``forward`` so
        wrappers applied from outside see the call).

        With a ``cache``, ``positions`` [B, T] gives each token's position and ``rows`` [B] the cache
        rows the batch occupies; without one, the sequence is attended causally from position 0.
        ``doc_ids`` [B, T] packs several documents into one row: a token attends only to earlier
        tokens with the same id (block-diagonal causal attention); give ``positions`` restarting at 0
        for each document and every document is computed exactly as if it were alone.
        """
        h = self.hidden(tokens, positions=positions, cache=cache, rows=rows, doc_ids=doc_ids)
        if return_hidden:
            return h
        logits = self.output(h).float()
        if targets is None:
            return logits
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=ignore_index)

    def hidden(self, tokens: torch.Tensor, *, positions: torch.Tensor | None = None, cache: KVCache | None = None,
               rows: torch.Tensor | None = None, doc_ids: torch.Tensor | None = None) -> torch.Tensor:
        """tokens [B, T] -> the final (normed) hidden states [B, T, dim] that the output layer reads:
        what an embedding pools. Arguments as in :meth:`forward`."""
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
        return self.norm(h)
