"""Text generation from a trained model: sampling, KV-cached decoding, and loading a model directory.

A model directory (what ``murmur train`` writes at the end of a run) holds ``model.safetensors``
(murmur parameter names; tied weights stored once), ``config.json`` (the ModelConfig) and
``tokenizer/``. :func:`load_model` reads it; :func:`generate` continues prompts token by token,
running the prompt once and then one token per step through the :class:`~murmur.model.KVCache`.

Generation of a base model starts from ``<|doc|>`` (every post in the training data does) and
stops at the next ``<|doc|>``: the model saying the post is over.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from murmur.errors import InputError
from murmur.model import KVCache, Transformer
from murmur.modeldir import load_model


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Next token ids [B] from logits [B, V]: greedy at temperature 0, else top-k / nucleus sampling."""
    logits = logits.float()
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if 0 < top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs > top_p  # keep the smallest prefix reaching top_p (always the first)
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = logits.softmax(-1)
    return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(logits.device)


@torch.no_grad()
def generate(model: Transformer, prompts: Sequence[Sequence[int]], max_new_tokens: int, *,
             temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, seed: int | None = None,
             stop_ids: Sequence[int] = (), use_cache: bool = True) -> list[list[int]]:
    """Continue each prompt (a list of ids) by up to ``max_new_tokens`` tokens; returns the new ids.

    A row stops after emitting a token in ``stop_ids`` (the stop token is not returned) or at the
    model's context length. With ``use_cache`` the prompt runs once and each new token is one
    forward step over the KV cache; without it every step re-runs the whole sequence (a reference
    for tests; slow). Sampling draws from a CPU generator seeded by ``seed``, so the same seed
    gives the same text on any device.
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise InputError("every prompt needs at least one token (start it with <|doc|>)")
    cfg = model.cfg
    longest = max(len(p) for p in prompts)
    if longest >= cfg.max_seq_len:
        raise InputError(f"prompt of {longest} tokens does not fit the model's context of {cfg.max_seq_len}")
    max_new_tokens = min(max_new_tokens, cfg.max_seq_len - longest)
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    stop = set(int(s) for s in stop_ids)
    was_training = model.training
    model.eval()
    seqs = [list(map(int, p)) for p in prompts]
    out: list[list[int]] = [[] for _ in prompts]
    active = list(range(len(prompts)))
    try:
        if use_cache:
            cache = KVCache(cfg, len(prompts), longest + max_new_tokens, device=device,
                            dtype=next(model.parameters()).dtype)
            last = []
            for b, p in enumerate(seqs):  # prompts may differ in length: prefill each into its own row
                tokens = torch.tensor([p], device=device)
                pos = torch.arange(len(p), device=device)[None]
                last.append(model(tokens, positions=pos, cache=cache, rows=torch.tensor([b], device=device))[0, -1])
            logits = torch.stack(last)
        else:
            logits = torch.stack([model(torch.tensor([p], device=device))[0, -1] for p in seqs])
        for _ in range(max_new_tokens):
            nxt = sample_next(logits, temperature, top_k, top_p, generator).tolist()
            still = []
            for b, t in zip(active, nxt, strict=True):
                if t in stop:
                    continue
                out[b].append(t)
                seqs[b].append(t)
                still.append(b)
            active = still
            if not active or len(out[active[0]]) >= max_new_tokens:
                break
            if use_cache:
                tokens = torch.tensor([[seqs[b][-1]] for b in active], device=device)
                pos = torch.tensor([[len(seqs[b]) - 1] for b in active], device=device)
                logits = model(tokens, positions=pos, cache=cache, rows=torch.tensor(active, device=device))[:, -1]
            else:
                logits = torch.stack([model(torch.tensor([seqs[b]], device=device))[0, -1] for b in active])
    finally:
        model.train(was_training)
    return out


def generate_text(model: Transformer, tokenizer: Any, prompt: str, max_new_tokens: int = 128, *,
                  temperature: float = 0.8, top_k: int = 0, top_p: float = 1.0, seed: int | None = None,
                  num_samples: int = 1) -> list[str]:
    """Continue ``prompt`` as a post (``<|doc|>`` + prompt); returns the prompt plus each continuation."""
    ids = [tokenizer.doc_id, *tokenizer.encode(prompt)]
    outs = generate(model, [ids] * num_samples, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                    seed=seed, stop_ids=(tokenizer.doc_id, tokenizer.end_id))
    return [tokenizer.decode(ids[1:] + o) for o in outs]


def run_generate(model_dir: str | Path, prompt: str, *, max_tokens: int = 128, temperature: float = 0.8,
                 top_k: int = 0, top_p: float = 1.0, seed: int | None = None, num: int = 1,
                 device: str = "auto") -> list[str]:
    """What ``murmur generate`` does: check the settings, load the model, sample ``num`` continuations."""
    if max_tokens < 1:
        raise InputError(f"must be at least 1 (got {max_tokens})", field="max_tokens")
    if temperature < 0:
        raise InputError(f"must be >= 0 (got {temperature})", field="temperature")
    if not 0 < top_p <= 1:
        raise InputError(f"must be in (0, 1] (got {top_p})", field="top_p")
    if top_k < 0 or num < 1:
        raise InputError("top_k must be >= 0 and num >= 1")
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    model, tokenizer, _ = load_model(model_dir, device=dev, dtype=torch.bfloat16 if dev.type == "cuda" else None)
    return generate_text(model, tokenizer, prompt.rstrip("\n"), max_tokens, temperature=temperature, top_k=top_k,
                         top_p=top_p, seed=seed, num_samples=num)
