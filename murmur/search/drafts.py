"""Drafts: posts and replies the model writes for a user, each held to the rules a post must keep.

A draft request names what to write: a ``post`` on a ``topic``, or a ``reply`` to a post of the index
(``reply_to``), in a language, optionally in the voice of an account (``voice``: its own recent posts
from the index). The model is asked in one of two ways (``DraftConfig.prompt``):

- ``post`` (the default): a post document the model continues (``<|doc|>`` + lines): the context posts
  one per line (the voice's recent posts, the post replied to, or, for a post without a voice, the
  index's posts on the topic in the language), then the topic as the new line's opening.
- ``chat``: the drafting turn of the chat format (murmur.chat.drafting, which the fine-tuning data's
  ``drafts`` kind teaches): a system line with the rules, then "Write a post about TOPIC in LANG" or
  "Reply to this post in LANG: ...", with the voice's recent posts when one is named; the model's
  answer is the draft. On the tiny demo model it keeps the language and the topic less often than
  ``post`` (docs/benchmarks.md, "drafts"), so it is not the default.

The model writes ``oversample * n`` answers or continuations through the one generation engine; each
becomes a candidate and is
scored by the model's own mean token log-probability (one forward pass over prompt + continuation,
without the sampling temperature). A candidate is dropped, never repaired, when it breaks a rule:

- ``too_long``: more than 280 characters, each link counting 23 (X's rule, :func:`tweet_length`);
- ``pii``: the cleaner's scrubber (e-mails, card and phone numbers) would change it;
- ``wrong_lang``: the cleaner's language identifier does not give the requested language;
- ``near_duplicate``: MinHash Jaccard (the cleaner's dedup keys and shingles) at least ``near_dup``
  with a post the index finds for the draft (a lexical search) or a context post;
- ``duplicate``: the same text as a better candidate; ``empty``: nothing written.

The best ``n`` of the others come back, best score first; fewer than ``n`` when too few pass, and then
``short_by`` says how many are missing (never a variant that breaks a rule).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from murmur.chat.drafting import draft_messages
from murmur.chat.template import render
from murmur.chat.tools import answer_only
from murmur.config import knob
from murmur.data.dedup import MinHasher
from murmur.data.langid import DEFAULT_LANGUAGES, langid_text
from murmur.data.normalize import MAX_POST_CHARS, dedup_key, scrub_pii, tweet_length
from murmur.engine import Engine, SamplingParams, post_prompt
from murmur.engine.http import current_engine, json_body
from murmur.errors import ConfigError, InputError
from murmur.search.retrieve import make_request

KINDS = ("post", "reply")
MAX_N = 16
MAX_TOPIC_CHARS = 200
FIELDS = ("kind", "reply_to", "topic", "lang", "voice", "n", "seed", "temperature", "max_tokens")
REASONS = ("empty", "too_long", "pii", "wrong_lang", "near_duplicate", "duplicate")
PROMPTS = ("chat", "post")


@dataclass(frozen=True)
class DraftConfig:
    """Knobs of drafting."""

    prompt: str = knob("post", "how the model is asked: post (continue a post document after context posts) or "
                               "chat (the drafting turn the fine-tuning data's drafts kind teaches)")
    oversample: int = knob(3, "candidates written per variant asked for")
    max_tokens: int = knob(64, "longest continuation in tokens")
    temperature: float = knob(0.9, "sampling temperature")
    top_p: float = knob(0.95, "nucleus sampling mass")
    context_posts: int = knob(3, "posts given as context (the voice's or the topic's)")
    context_chars: int = knob(200, "each context post is cut here")
    neighbours: int = knob(10, "index posts found for a draft to check it is not a near-duplicate")
    near_dup: float = knob(0.8, "MinHash Jaccard from which a draft is a near-duplicate (the cleaner's)")


@dataclass(frozen=True)
class DraftRequest:
    kind: str = "post"
    topic: str | None = None
    lang: str | None = None
    reply_to: str | None = None
    voice: str | None = None
    n: int = 4
    seed: int = 0
    temperature: float | None = None
    max_tokens: int | None = None


def check_request(body: Mapping[str, Any]) -> DraftRequest:
    """A checked request from a JSON body (or CLI options); bad values raise InputError naming the field.
    Whether ``reply_to`` and ``voice`` exist is checked against the index by :meth:`Drafter.resolve`."""
    if not isinstance(body, Mapping):
        raise InputError("the body must be a JSON object", field="body")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(unknown)}; accepted: {', '.join(FIELDS)}", field=unknown[0])
    kind = body.get("kind", "post")
    if kind not in KINDS:
        raise InputError(f"{kind!r} is not one of {', '.join(KINDS)}", field="kind")
    for name in ("topic", "lang", "reply_to", "voice"):
        v = body.get(name)
        if v is not None and (not isinstance(v, str) or not v.strip()):
            raise InputError("must be a non-empty string", field=name)
    topic = body.get("topic")
    if kind == "post" and topic is None:
        raise InputError("a post needs a topic", field="topic")
    if topic is not None and len(topic) > MAX_TOPIC_CHARS:
        raise InputError(f"is {len(topic)} characters; at most {MAX_TOPIC_CHARS}", field="topic")
    if kind == "reply" and body.get("reply_to") is None:
        raise InputError("a reply needs reply_to, the id of the post replied to", field="reply_to")
    if kind == "post" and body.get("reply_to") is not None:
        raise InputError("a post replies to nothing; use kind \"reply\" with reply_to", field="reply_to")
    lang = body.get("lang")
    if lang is not None and lang.strip().lower() not in DEFAULT_LANGUAGES:
        raise InputError(f"{lang!r} is not a language code the identifier knows ({', '.join(DEFAULT_LANGUAGES)})",
                         field="lang")
    n = body.get("n", 4)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
        raise InputError(f"must be an integer from 1 to {MAX_N}", field="n")
    seed = body.get("seed", 0)
    if seed is None:
        seed = 0
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError("must be an integer", field="seed")
    t = body.get("temperature")
    if t is not None and (isinstance(t, bool) or not isinstance(t, int | float) or not 0 <= t <= 2):
        raise InputError("must be a number from 0 to 2", field="temperature")
    mt = body.get("max_tokens")
    if mt is not None and (isinstance(mt, bool) or not isinstance(mt, int) or not 1 <= mt <= 256):
        raise InputError("must be an integer from 1 to 256", field="max_tokens")
    return DraftRequest(kind, topic.strip() if topic else None, lang.strip().lower() if lang else None,
                        body.get("reply_to"), body.get("voice"), n, seed, None if t is None else float(t), mt)


@functools.lru_cache(maxsize=1)
def _langid() -> Any:
    from murmur.data.langid import LanguageIdentifier

    return LanguageIdentifier()


def text_lang(text: str) -> str:
    """The language the cleaner's identifier gives ``text`` ("und" when unsure)."""
    return _langid().identify_one(langid_text(text))[0]


@functools.lru_cache(maxsize=4)
def _minhasher(threshold: float) -> MinHasher:
    return MinHasher(threshold=threshold)


def max_jaccard(text: str, others: Sequence[str], threshold: float = 0.8) -> float:
    """The largest MinHash estimate of Jaccard similarity between ``text`` and any of ``others``, on the
    cleaner's dedup keys (character 5-gram shingles)."""
    if not others:
        return 0.0
    sigs = _minhasher(threshold).signatures([dedup_key(text)] + [dedup_key(o) for o in others])
    return float((sigs[1:] == sigs[0]).mean(axis=1).max())


def one_line(text: str, limit: int) -> str:
    return " ".join(text.split())[:limit]


class Drafter:
    """Drafts over one open index; generation through the engine handed to :meth:`draft`."""

    def __init__(self, index: Any, cfg: DraftConfig | None = None):
        self.index, self.cfg = index, cfg or DraftConfig()
        if self.cfg.prompt not in PROMPTS:
            raise ConfigError(f"prompt must be one of {', '.join(PROMPTS)} (got {self.cfg.prompt!r})")

    # ---------------------------------------------------------------- the index's posts
    def post(self, post_id: str) -> dict[str, Any] | None:
        """A live post of the index by id, or None."""
        store = self.index.store
        with self.index.lock.read():
            key = store.ids.get(post_id)
            if key is None or not store.alive.a[key]:
                return None
            return store.get(key)

    def recent_posts(self, author: str, k: int, lang: str | None = None) -> list[dict[str, Any]]:
        """An account's ``k`` newest live posts (in ``lang`` first when given)."""
        store = self.index.store
        with self.index.lock.read():
            code = store.authors.get(author)
            if code is None:
                return []
            keys = np.flatnonzero((store.author.view == code) & store.alive.view)
            keys = keys[np.argsort(-store.created.view[keys], kind="stable")]
            posts = [store.get(int(key)) for key in keys[:200]]
        if lang is not None:
            posts = sorted(posts, key=lambda p: p["lang"] != lang)  # stable: newest first within each group
        return posts[:k]

    def search(self, q: str, k: int, lang: str | None = None) -> list[dict[str, Any]]:
        try:
            return self.index.search(make_request(q[:200], mode="lexical", k=k, lang=lang))
        except InputError:  # a text with nothing to search for
            return []

    def resolve(self, req: DraftRequest) -> tuple[DraftRequest, list[str]]:
        """(the request with its language settled, the context lines); unknown ``reply_to`` or ``voice``
        raise InputError naming the field."""
        ctx: list[dict[str, Any]] = []
        lang = req.lang
        if req.kind == "reply":
            parent = self.post(req.reply_to)
            if parent is None:
                raise InputError(f"no post {req.reply_to!r} in the index", field="reply_to")
            lang = lang or parent["lang"]
        if req.voice is not None:
            mine = self.recent_posts(req.voice, self.cfg.context_posts, lang)
            if not mine:
                raise InputError(f"no posts by account {req.voice!r} in the index", field="voice")
            lang = lang or Counter(p["lang"] for p in mine).most_common(1)[0][0]
            ctx += mine
        lang = lang or (text_lang(req.topic) if req.topic else "en")
        if lang not in DEFAULT_LANGUAGES:
            lang = "en"
        if req.voice is None and req.kind == "post":
            ctx += self.search(req.topic, self.cfg.context_posts, lang)
        if req.kind == "reply":
            ctx.append(parent)  # the post replied to comes last, just before the reply
        return DraftRequest(**{**req.__dict__, "lang": lang}), [one_line(p["text"], self.cfg.context_chars)
                                                               for p in ctx]

    # ---------------------------------------------------------------- writing
    def prompt(self, engine: Engine, req: DraftRequest, context: list[str], max_tokens: int) -> tuple[list[int], str]:
        """(prompt ids, the draft's opening). ``chat``: the drafting turn (the voice's posts, the post
        replied to), the opening empty; ``post``: the context posts one a line, then the opening (the
        topic). Context posts (the voice's oldest first) are dropped until prompt + ``max_tokens`` fits."""
        if self.cfg.prompt == "chat":
            parent = context[-1] if req.kind == "reply" else None
            voice = list(context[:-1] if req.kind == "reply" else context) if req.voice is not None else []
            while True:
                ids = render(engine.tokenizer, draft_messages(req.kind, req.lang, req.topic, parent, req.voice, voice))
                if len(ids) + max_tokens <= engine.max_len or not voice:
                    return ids, ""
                voice = voice[:-1]
        lead = req.topic or ""  # a reply may name what it says
        lines = list(context)
        while True:
            ids = post_prompt(engine.tokenizer, "\n".join([*lines, lead]))
            if len(ids) + max_tokens <= engine.max_len or not lines:
                return ids, lead
            lines = lines[1:]

    def candidates(self, engine: Engine, req: DraftRequest, context: list[str]) -> list[tuple[str, float]]:
        """``oversample * n`` (text, score) candidates, unfiltered, in the order they were written."""
        cfg = self.cfg
        max_tokens = req.max_tokens or cfg.max_tokens
        prompt, lead = self.prompt(engine, req, context, max_tokens)
        room = engine.max_len - len(prompt)
        if room < 1:
            raise InputError("the topic is too long for the model's context", field="topic")
        m = cfg.oversample * req.n
        temperature = cfg.temperature if req.temperature is None else req.temperature
        params = [SamplingParams(max_tokens=min(max_tokens, room), temperature=temperature, top_p=cfg.top_p,
                                 seed=req.seed + i, stop=["\n"], logit_bias=answer_only()) for i in range(m)]
        done = engine.run([prompt] * m, params)
        scores = [c.mean_logprob for c in done]
        texts = [" ".join(f"{lead} {c.text}".split()) for c in done]
        return list(zip(texts, scores, strict=True))

    def violation(self, text: str, lang: str, context: Sequence[str]) -> str | None:
        """The first rule ``text`` breaks (see the module doc), or None."""
        if not text.strip():
            return "empty"
        if tweet_length(text) > MAX_POST_CHARS:
            return "too_long"
        if scrub_pii(text)[0] != text:
            return "pii"
        if text_lang(text) != lang:
            return "wrong_lang"
        near = [p["text"] for p in self.search(text, self.cfg.neighbours)] + list(context)
        if max_jaccard(text, near, self.cfg.near_dup) >= self.cfg.near_dup:
            return "near_duplicate"
        return None

    def draft(self, engine: Engine, req: DraftRequest) -> dict[str, Any]:
        """``{"object", "data": [{"text", "score"}], "requested", "candidates", "filtered", "kind", "lang"}``."""
        req, context = self.resolve(req)
        return self.select(req, context, self.candidates(engine, req, context))

    def select(self, req: DraftRequest, context: list[str], cands: list[tuple[str, float]]) -> dict[str, Any]:
        """The draft response from scored candidates: those that keep every rule, best first, at most ``n``."""
        filtered = dict.fromkeys(REASONS, 0)
        kept: list[tuple[str, float]] = []
        seen: set[str] = set()
        for text, score in sorted(cands, key=lambda c: -c[1]):
            reason = self.violation(text, req.lang, context)
            if reason is None and text in seen:
                reason = "duplicate"
            if reason is not None:
                filtered[reason] += 1
                continue
            seen.add(text)
            kept.append((text, score))
        return {"object": "list", "kind": req.kind, "lang": req.lang, "requested": req.n, "candidates": len(cands),
                "filtered": filtered, "short_by": max(0, req.n - len(kept)),
                "data": [{"text": t, "score": round(s, 4)} for t, s in kept[:req.n]]}


def build_router(drafter: Drafter) -> APIRouter:
    """``POST /v1/drafts``: ``{"kind", "topic", "lang", "reply_to", "voice", "n"}`` -> the drafts."""
    router = APIRouter()

    @router.post("/v1/drafts")
    async def drafts(request: Request, engine: Annotated[Engine, Depends(current_engine)]) -> Any:
        body = await json_body(request)
        req = check_request(body)
        return await run_in_threadpool(drafter.draft, engine, req)

    return router
