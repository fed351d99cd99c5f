"""Generation as a library call: a model (and its tokenizer) in, completions out, in this thread.

These build a short-lived :class:`~murmur.engine.engine.Engine` sized for the prompts and run it with
:meth:`Engine.run`, so they decode and sample exactly as the server does: the same prompt, seed and
:class:`SamplingParams` give the same tokens here, from ``murmur generate`` and over HTTP.

A base model continues a *post*: every post in the training data starts with ``<|doc|>``
(:func:`post_prompt`), and generation stops at the next ``<|doc|>`` (or ``<|end|>``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from murmur.engine.engine import Completion, Engine
from murmur.engine.sampling import SamplingParams


def post_prompt(tokenizer: Any, text: str) -> list[int]:
    """The token ids that start a post with ``text``: ``<|doc|>`` + the text's tokens."""
    return [tokenizer.doc_id, *tokenizer.encode(text)]


def seeded(params: SamplingParams, i: int) -> SamplingParams:
    """The settings of the ``i``-th of several samples: seed ``seed + i``, so samples differ yet reproduce."""
    if params.seed is None or i == 0:
        return params
    return dataclasses.replace(params, seed=params.seed + i)


def generate(model: Any, tokenizer: Any, prompts: Sequence[Sequence[int]],
             params: SamplingParams | Sequence[SamplingParams] | None = None, *, max_batch: int = 32,
             fit: bool = False) -> list[Completion]:
    """Complete every prompt (token ids) with ``params`` (one for all, or one per prompt).

    ``fit=True`` lowers each request's ``max_tokens`` to the room its prompt leaves in the context
    instead of refusing it (a prompt that fills the context is still refused). ``tokenizer`` may be
    None when only token ids are wanted (``Completion.text`` is then empty). The model is left in the
    training mode it was in. Raises ``InputError`` (``ContextLengthError``) for a prompt that does not fit.
    """
    each = list(params) if isinstance(params, Sequence) else [params or SamplingParams()] * len(prompts)
    if not prompts:
        return []
    ctx = model.cfg.max_seq_len
    if fit:
        for i, (p, sp) in enumerate(zip(prompts, each, strict=True)):
            if sp.max_tokens is not None and len(p) < ctx:
                each[i] = dataclasses.replace(sp, max_tokens=min(sp.max_tokens, ctx - len(p)))
    wanted = [None if sp.max_tokens is None else len(p) + sp.max_tokens for p, sp in zip(prompts, each, strict=True)]
    max_len = ctx if None in wanted else min(ctx, max(w for w in wanted if w is not None))
    was_training = model.training
    try:
        engine = Engine(model, tokenizer, max_batch=max(1, min(max_batch, len(prompts))), max_queue=len(prompts),
                        max_len=max_len)
        return engine.run(prompts, each)
    finally:
        model.train(was_training)


def continue_post(model: Any, tokenizer: Any, text: str, params: SamplingParams | None = None, n: int = 1,
                  fit: bool = True) -> list[Completion]:
    """``n`` continuations of a post that starts with ``text`` (sample i seeded ``seed + i``)."""
    params = params or SamplingParams()
    prompt = post_prompt(tokenizer, text)
    return generate(model, tokenizer, [prompt] * n, [seeded(params, i) for i in range(n)], fit=fit)
