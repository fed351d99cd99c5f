"""``murmur generate`` and the plain-argument generation calls, over the one engine (``murmur.engine``).

Kept for callers that think in token lists and keyword settings; everything here builds
:class:`~murmur.engine.SamplingParams` and runs :func:`murmur.engine.generate`, so it samples exactly
as the server does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from murmur.engine import SamplingParams, continue_post
from murmur.engine import generate as engine_generate
from murmur.engine.generate import seeded
from murmur.errors import InputError


def generate(model: Any, prompts: Sequence[Sequence[int]], max_new_tokens: int, *, temperature: float = 1.0,
             top_k: int = 0, top_p: float = 1.0, seed: int | None = None, stop_ids: Sequence[int] = (),
             tokenizer: Any = None) -> list[list[int]]:
    """Continue each prompt (token ids) by up to ``max_new_tokens`` tokens; returns the new ids.

    A row stops after a token in ``stop_ids`` (not returned) or at the model's context length.
    Prompt i is sampled with seed ``seed + i``.
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise InputError("every prompt needs at least one token (start it with <|doc|>)", field="prompt")
    params = SamplingParams(max_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                            stop_token_ids=[int(s) for s in stop_ids])
    outs = engine_generate(model, tokenizer, prompts, [seeded(params, i) for i in range(len(prompts))], fit=True)
    stop = set(params.stop_token_ids or ())
    return [c.token_ids[:-1] if c.token_ids and c.token_ids[-1] in stop else c.token_ids for c in outs]


def generate_text(model: Any, tokenizer: Any, prompt: str, max_new_tokens: int = 128, *, temperature: float = 0.8,
                  top_k: int = 0, top_p: float = 1.0, seed: int | None = None, num_samples: int = 1) -> list[str]:
    """Continue ``prompt`` as a post (``<|doc|>`` + prompt); returns the prompt plus each continuation."""
    params = SamplingParams(max_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    return [prompt + c.text for c in continue_post(model, tokenizer, prompt, params, num_samples)]


def run_generate(model_dir: str | Path, prompt: str, *, max_tokens: int = 128, temperature: float = 0.8,
                 top_k: int = 0, top_p: float = 1.0, seed: int | None = None, num: int = 1,
                 device: str = "auto") -> list[str]:
    """What ``murmur generate`` does: check the settings, load the model, sample ``num`` continuations."""
    import torch

    from murmur.modeldir import load_model

    params = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    params.validate()
    if num < 1:
        raise InputError(f"must be at least 1 (got {num})", field="num")
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    model, tokenizer, _ = load_model(model_dir, device=dev, dtype=torch.bfloat16 if dev.type == "cuda" else None)
    prompt = prompt.rstrip("\n")
    return [prompt + c.text for c in continue_post(model, tokenizer, prompt, params, num)]
