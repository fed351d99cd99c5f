"""Sampling parameters and the vectorised sampler: one call turns a batch of logits into next tokens.

Every row of the batch carries its own settings (a request each). The order of operations follows
vLLM and Hugging Face:

1. penalties on the raw logits: ``repetition_penalty`` (CTRL / HF: over prompt and output tokens, a
   positive logit is divided by it, a negative one multiplied), then the OpenAI penalties over the
   output tokens so far: ``logit -= frequency_penalty * count + presence_penalty * (count > 0)``;
2. rows with ``temperature == 0`` take the argmax (greedy);
3. the others: divide by the temperature, keep the ``top_k`` most likely tokens, the smallest set
   whose probability reaches ``top_p``, and the tokens with at least ``min_p`` times the top
   probability; then draw from what is left, a seeded request with its own ``torch.Generator``,
   so it gives the same tokens whatever else shares its batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from murmur.errors import InputError


@dataclass
class SamplingParams:
    """How one request is decoded. ``None`` for ``max_tokens`` means: up to the context limit."""

    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    ignore_eos: bool = False
    #: Added to the logits of these token ids before the penalties and sampling (OpenAI's
    #: ``logit_bias``): -100..100 from clients; ``-inf`` rules a token out for certain.
    logit_bias: dict[int, float] | None = None
    #: Called as ``logits_processor(prompt_ids, output_ids, logits[V]) -> logits[V]`` before the
    #: penalties and sampling, for this request only (constrained decoding: mask what may not come
    #: next). An exception ends this request with finish_reason "error" and no other.
    logits_processor: Callable[[Sequence[int], Sequence[int], torch.Tensor], torch.Tensor] | None = field(
        default=None, repr=False, compare=False)

    def validate(self) -> SamplingParams:
        """Raise ``InputError`` naming the field when a value is out of range; return self."""
        checks = [
            (self.max_tokens is None or self.max_tokens >= 1, "max_tokens", "must be at least 1"),
            (0.0 <= self.temperature <= 2.0, "temperature", "must be between 0 and 2"),
            (0.0 < self.top_p <= 1.0, "top_p", "must be in (0, 1]"),
            (self.top_k >= -1, "top_k", "must be -1 or 0 (off) or a positive count"),
            (self.seed is None or -(2**63) <= self.seed < 2**64, "seed", "must fit in 64 bits"),
            (0.0 <= self.min_p <= 1.0, "min_p", "must be between 0 and 1"),
            (-2.0 <= self.frequency_penalty <= 2.0, "frequency_penalty", "must be between -2 and 2"),
            (-2.0 <= self.presence_penalty <= 2.0, "presence_penalty", "must be between -2 and 2"),
            (0.0 < self.repetition_penalty <= 10.0, "repetition_penalty", "must be in (0, 10]"),
            (all(isinstance(s, str) and s for s in self.stop), "stop", "stop strings must be non-empty"),
            (not self.logit_bias or all(-100.0 <= v <= 100.0 or v == float("-inf") for v in self.logit_bias.values()),
             "logit_bias", "values must be between -100 and 100"),
        ]
        for ok, name, message in checks:
            if not ok:
                raise InputError(f"{message} (got {getattr(self, name)!r})", field=name)
        return self

    @property
    def uses_penalties(self) -> bool:
        return bool(self.frequency_penalty or self.presence_penalty or self.repetition_penalty != 1.0)


def apply_penalties(logits: torch.Tensor, counts: torch.Tensor, seen: torch.Tensor, frequency: torch.Tensor,
                    presence: torch.Tensor, repetition: torch.Tensor) -> torch.Tensor:
    """Penalised logits [B, V].

    ``counts`` [B, V]: how often each token was generated so far; ``seen`` [B, V] (bool): tokens in
    the prompt or the output; ``frequency``, ``presence``, ``repetition`` [B]: per-row settings.
    """
    rep = repetition[:, None]
    penalised = torch.where(logits > 0, logits / rep, logits * rep)
    logits = torch.where(seen & (rep != 1.0), penalised, logits)
    return logits - frequency[:, None] * counts - presence[:, None] * (counts > 0).to(logits.dtype)


def filter_logits(logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor, min_p: torch.Tensor
                  ) -> torch.Tensor:
    """Set to -inf the tokens that top_k [B] (<= 0: off), top_p [B] and min_p [B] exclude.

    top_k keeps ties with the k-th logit (as Hugging Face does); top_p keeps a token while the
    probability of the tokens ranked above it is below top_p (so the first token always stays).
    """
    V = logits.shape[-1]
    active = (top_k > 0) & (top_k < V)
    if bool(active.any()):
        k = torch.where(active, top_k, 1)
        kth = logits.topk(int(k.max()), dim=-1).values.gather(-1, (k - 1)[:, None])
        logits = logits.masked_fill(active[:, None] & (logits < kth), float("-inf"))
    if bool((top_p < 1.0).any()):
        logits = logits.masked_fill(~nucleus(logits.softmax(-1), top_p), float("-inf"))
    if bool((min_p > 0).any()):
        probs = logits.softmax(-1)
        logits = logits.masked_fill(probs < min_p[:, None] * probs.amax(-1, keepdim=True), float("-inf"))
    return logits


def nucleus(probs: torch.Tensor, top_p: torch.Tensor, bins: int = 1024) -> torch.Tensor:
    """Mask [B, V] of the tokens top_p keeps, without sorting the vocabulary.

    Tokens are bucketed by log-probability (``bins`` buckets between the row's most and least
    likely token); the cumulative mass of the buckets, most likely first, shows which buckets are
    kept whole, which are dropped whole, and the one bucket where top_p is crossed. Only that
    bucket's tokens are ranked exactly (``topk``). Same result as sorting the row, at a fraction of
    the cost for a large vocabulary.
    """
    B = probs.shape[0]
    logp = probs.clamp_min(1e-30).log()
    hi = logp.amax(-1, keepdim=True)
    lo = torch.where(probs > 0, logp, hi).amin(-1, keepdim=True).clamp_min(hi - 30.0)
    bucket = ((hi - logp) * (bins / (hi - lo).clamp_min(1e-6))).long().clamp_(0, bins - 1)
    cum = torch.zeros(B, bins, device=probs.device, dtype=probs.dtype).scatter_add_(1, bucket, probs).cumsum(-1)
    cut = (cum < top_p[:, None]).sum(-1, keepdim=True)  # the bucket where the mass reaches top_p
    keep = bucket < cut
    edge = bucket == cut
    widest = int(edge.sum(-1).max())
    if widest:
        above = torch.where(cut > 0, cum.gather(1, (cut - 1).clamp_min(0)), torch.zeros((), device=probs.device))
        vals, idx = torch.where(edge, probs, -1.0).topk(widest, dim=-1)
        ok = (vals >= 0) & (above + vals.cumsum(-1) - vals < top_p[:, None])
        keep.scatter_(1, idx, ok | keep.gather(1, idx))
    return keep | (top_p >= 1.0)[:, None]


def draw(probs: torch.Tensor, generators: list[torch.Generator | None],
         default: torch.Generator | None = None) -> torch.Tensor:
    """One token per row from probs [B, V], by inverting the cumulative distribution.

    Rows with their own generator take their uniform number from it (so a seeded request is
    reproducible whatever shares its batch); the others from ``default``.
    """
    B = probs.shape[0]
    u = torch.empty(B, 1, device=probs.device, dtype=probs.dtype)
    if all(g is None for g in generators):
        u.uniform_(generator=default)
    else:
        for i, g in enumerate(generators):
            u[i].uniform_(generator=g if g is not None else default)
    cdf = probs.cumsum(-1)
    # right=True: the first token whose cumulative mass exceeds u, so a zero-probability token never wins
    idx = torch.searchsorted(cdf, u * cdf[:, -1:], right=True)
    return idx.squeeze(-1).clamp_(max=probs.shape[1] - 1)


def sample(logits: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor,
           min_p: torch.Tensor, generators: list[torch.Generator | None],
           default: torch.Generator | None = None) -> torch.Tensor:
    """Next token [B] for logits [B, V] (already penalised): greedy where temperature == 0."""
    greedy = temperature <= 0
    if bool(greedy.all()):
        return logits.argmax(-1)
    t = torch.where(greedy, torch.ones_like(temperature), temperature)
    scaled = filter_logits(logits / t[:, None], top_k, top_p, min_p)
    tokens = draw(scaled.softmax(-1), generators, default)
    if bool(greedy.any()):
        tokens = torch.where(greedy, logits.argmax(-1), tokens)
    return tokens
