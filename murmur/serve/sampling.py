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

    def validate(self) -> SamplingParams:
        """Raise ``InputError`` naming the field when a value is out of range; return self."""
        checks = [
            (self.max_tokens is None or self.max_tokens >= 1, "max_tokens", "must be at least 1"),
            (0.0 <= self.temperature <= 2.0, "temperature", "must be between 0 and 2"),
            (0.0 < self.top_p <= 1.0, "top_p", "must be in (0, 1]"),
            (self.top_k >= -1, "top_k", "must be -1 or 0 (off) or a positive count"),
            (0.0 <= self.min_p <= 1.0, "min_p", "must be between 0 and 1"),
            (-2.0 <= self.frequency_penalty <= 2.0, "frequency_penalty", "must be between -2 and 2"),
            (-2.0 <= self.presence_penalty <= 2.0, "presence_penalty", "must be between -2 and 2"),
            (0.0 < self.repetition_penalty <= 10.0, "repetition_penalty", "must be in (0, 10]"),
            (all(isinstance(s, str) and s for s in self.stop), "stop", "stop strings must be non-empty"),
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
    """Set to -inf the tokens that top_k [B] (<= 0: off), top_p [B] and min_p [B] exclude."""
    V = logits.shape[-1]
    if bool(((top_k > 0) & (top_k < V)).any()) or bool((top_p < 1.0).any()):
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        rank = torch.arange(V, device=logits.device)[None, :]
        k = torch.where(top_k > 0, top_k, V)[:, None]
        sorted_logits = sorted_logits.masked_fill(rank >= k, float("-inf"))
        probs = sorted_logits.softmax(-1)
        # Drop a token when the tokens ranked above it already reach top_p (the first always stays).
        drop = (probs.cumsum(-1) - probs) >= top_p[:, None]
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.empty_like(logits).scatter_(-1, order, sorted_logits)
    if bool((min_p > 0).any()):
        probs = logits.softmax(-1)
        logits = logits.masked_fill(probs < min_p[:, None] * probs.amax(-1, keepdim=True), float("-inf"))
    return logits


def draw(probs: torch.Tensor, generators: list[torch.Generator | None],
         default: torch.Generator | None = None) -> torch.Tensor:
    """One token per row from probs [B, V].

    Rows with their own generator draw with it (so a seeded request is reproducible whatever
    shares its batch); the others draw together from ``default``.
    """
    shared = [i for i, g in enumerate(generators) if g is None]
    if len(shared) == len(generators):
        return torch.multinomial(probs, 1, generator=default).squeeze(-1)
    tokens = torch.empty(probs.shape[0], dtype=torch.long, device=probs.device)
    if shared:
        idx = torch.tensor(shared, device=probs.device)
        tokens[idx] = torch.multinomial(probs[idx], 1, generator=default).squeeze(-1)
    for i, g in enumerate(generators):
        if g is not None:
            tokens[i] = torch.multinomial(probs[i], 1, generator=g)[0]
    return tokens


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
