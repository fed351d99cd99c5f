"""Ad copy for an audience, written by the model through the one generation engine.

The model is asked in one of two ways (``PROMPTS``): ``chat``, the copy conversation murmur's
fine-tuning data teaches (:func:`copy_request`: the brief, the audience's topic and hashtags, its
language, brand and link; for a fine-tuned chat model), or ``post``, a post that opens with the brief
and the audience's two most used hashtags, continued (any model). Each answer or continuation becomes
one variant: the model's sentence(s), the audience's top hashtag, the brand name when the model left
it out, and the link. Variants are then held to the rules an ad must keep, and ranked by the pCTR
model's estimate for the audience's users:

- at most 280 characters, each link counting 23 (``murmur.ads.store.tweet_length``);
- the brand name and the link present;
- no personal data (the cleaner's email, phone and card detectors);
- no prohibited claim (:data:`PROHIBITED_CLAIMS`, a configurable list of regular expressions).

A variant that breaks a rule is dropped, never repaired in a way that could hide the breach.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from murmur.ads.audiences import Audience
from murmur.ads.pctr import Featurizer
from murmur.ads.store import MAX_BRIEF, MAX_TEXT, tweet_length
from murmur.ads.vectors import UserVectors
from murmur.data.normalize import scrub_pii
from murmur.errors import InputError

PROHIBITED_CLAIMS = (
    r"\bguarantee(?:d|s)?\b", r"\brisk[- ]free\b", r"\bcures?\b", r"\bmiracle\b", r"\bget rich\b",
    r"\b100% (?:free|safe|effective)\b", r"\blose weight fast\b", r"\bno side effects\b", r"\bclinically proven\b",
    r"\b(?:best|#1) in the world\b", r"\bgarantizad[oa]s?\b", r"\bmilagro(?:so)?\b", r"\bcura\b",
)
_URL_RE = re.compile(r"https?://\S+")
_SENT_END = re.compile(r"(?<=[.!?])\s")


@dataclass(frozen=True)
class CopyPolicy:
    prohibited: tuple[str, ...] = PROHIBITED_CLAIMS
    max_chars: int = MAX_TEXT

    def violation(self, text: str, brand: str, url: str) -> str | None:
        """Why ``text`` may not run (None when it may)."""
        if tweet_length(text) > self.max_chars:
            return "too_long"
        if brand.lower() not in _URL_RE.sub(" ", text).lower():
            return "no_brand"
        if url not in text:
            return "no_link"
        if scrub_pii(_URL_RE.sub(" ", text))[1]:
            return "pii"
        for p in self.prohibited:
            if re.search(p, text, re.IGNORECASE):
                return "prohibited_claim"
        return None


PROMPTS = ("chat", "post")


@dataclass
class Voice:
    """How an audience writes: its main language and most used hashtags (and its topic, when it was built
    for one)."""

    lang: str
    hashtags: list[str] = field(default_factory=list)
    topic: str | None = None


def audience_voice(aud: Audience, vectors: UserVectors, texts: Sequence[str], top: int = 5) -> Voice:
    rows = vectors.rows(aud.user_ids)
    member = np.zeros(len(vectors.user_ids), dtype=bool)
    member[rows[rows >= 0]] = True
    mine = np.flatnonzero(member[vectors.post_user])
    langs = Counter(vectors.post_lang[mine].tolist())
    tags: Counter[str] = Counter()
    for i in mine.tolist():
        tags.update(t.lower() for t in re.findall(r"#(\w{2,30})", texts[i]))
    topic = aud.params.get("topic") if isinstance(aud.params, dict) else None
    return Voice(langs.most_common(1)[0][0] if langs else "en", [t for t, _ in tags.most_common(top)],
                 topic if isinstance(topic, str) and topic else None)


def validate_brief(brief: str, brand: str, url: str, n: int) -> None:
    if not brief or not brief.strip():
        raise InputError("the brief is empty", field="brief")
    if len(brief) > MAX_BRIEF:
        raise InputError(f"the brief is {len(brief):,} characters; the limit is {MAX_BRIEF:,}", field="brief")
    if not brand or len(brand) > 50 or not brand.strip():
        raise InputError("brand must be 1-50 characters", field="brand")
    if not re.match(r"^https?://[^\s/]+\.[^\s]+$", url or ""):
        raise InputError(f"url {url!r} is not an http(s) URL", field="url")
    if not 1 <= n <= 32:
        raise InputError(f"n must be 1-32 (got {n})", field="n")


def compose(generated: str, brand: str, url: str, hashtag: str | None, max_chars: int = MAX_TEXT) -> str:
    """One variant from the model's text: its first sentences that fit, a hashtag, the brand, the link."""
    body = _URL_RE.sub("", generated.replace("\n", " ")).strip()
    tail = []
    if hashtag and ("#" + hashtag).lower() not in body.lower():
        tail.append("#" + hashtag)
    if brand.lower() not in body.lower():  # the body has no links left
        tail.append(brand)
    tail.append(url)
    suffix = " ".join(tail)
    room = max_chars - tweet_length(" " + suffix)
    sentences = _SENT_END.split(body)
    out = ""
    for s in sentences:
        cand = (out + " " + s).strip()
        if len(cand) > room:
            break
        out = cand
    if not out:  # a first sentence longer than the room: cut at a word
        out = body[:room].rsplit(" ", 1)[0] if len(body) > room else body
    if not out:
        return ""
    return f"{out} {suffix}"


def check_prompt(prompt: str, field: str = "prompt") -> str:
    """``prompt`` when it is one of ``PROMPTS``; else a one-line error naming ``field``."""
    if prompt not in PROMPTS:
        raise InputError(f"must be {' or '.join(PROMPTS)} (got {prompt!r})", field=field)
    return prompt


Writer = Callable[[str, str, str, Voice, int], list[str]]


def engine_writer(engine, prompt: str = "post", max_tokens: int = 48, temperature: float = 0.9, seed: int = 0
                     ) -> Writer:
    """``write(brief, brand, url, voice, k)`` over the generation engine: ``k`` texts of copy, each to be
    composed into a variant. ``post``: the brief and the audience's two hashtags continued as a post (the
    text is the brief and the continuation); ``chat``: :func:`copy_request` as the user's turn, the
    answer as the text (never a tool call)."""
    from murmur.chat.template import render
    from murmur.chat.tools import answer_only
    from murmur.engine import SamplingParams, post_prompt

    check_prompt(prompt)

    def write(brief: str, brand: str, url: str, voice: Voice, k: int) -> list[str]:
        brief = brief.strip()
        if prompt == "chat":
            ask = copy_request(brief, brand, url, voice.topic, voice.hashtags[:2], voice.lang)
            ids = render(engine.tokenizer, [{"role": "user", "content": ask}])
        else:
            ids = post_prompt(engine.tokenizer, f"{brief} {' '.join('#' + t for t in voice.hashtags[:2])}".strip())
        room = engine.max_len - len(ids)
        if room < 1:
            raise InputError(f"the brief takes {len(ids)} tokens as asked; the model's context holds "
                             f"{engine.max_len}", field="brief")
        params = [SamplingParams(max_tokens=min(max_tokens, room), temperature=temperature, top_p=0.95,
                                 seed=seed + i, stop=["\n"], logit_bias=answer_only()) for i in range(k)]
        texts = [c.text.strip() for c in engine.run([ids] * k, params)]  # the engine's own loop when running
        return texts if prompt == "chat" else [f"{brief} {t}" for t in texts]

    return write


def write_copy(write: Writer, brief: str, brand: str, url: str, voice: Voice,
               n: int = 8, policy: CopyPolicy | None = None) -> tuple[list[str], Counter]:
    """Variants that keep the policy, from ``2n`` texts of the model (``write(brief, brand, url, voice,
    k)``, e.g. :func:`engine_writer`); returns them and the count of drops by reason."""
    policy = policy or CopyPolicy()
    outs = write(brief, brand, url, voice, 2 * n)
    kept, dropped, seen = [], Counter(), set()
    for i, text in enumerate(outs):
        hashtag = voice.hashtags[i % len(voice.hashtags)] if voice.hashtags else None
        v = compose(text, brand, url, hashtag, policy.max_chars)
        reason = "empty" if not v else policy.violation(v, brand, url)
        if reason is None and v in seen:
            reason = "duplicate"
        if reason is not None:
            dropped[reason] += 1
            continue
        seen.add(v)
        kept.append(v)
    return kept[:n], dropped


def rank_for_audience(variants: Sequence[str], lang: str, aud: Audience, vectors: UserVectors,
                      featurizer: Featurizer, model, sample: int = 300, seed: int = 0) -> np.ndarray:
    """Mean pCTR of each variant over a sample of the audience (position 0, evening, no context)."""
    if not variants:
        return np.zeros(0)
    rng = np.random.default_rng(seed)
    users = aud.user_ids if len(aud.user_ids) <= sample else rng.choice(aud.user_ids, sample, replace=False)
    rows = vectors.rows(users)
    vecs = vectors.embedder.encode(list(variants))
    k, m = len(variants), len(users)
    x = featurizer.features(np.tile(rows, k), list(users) * k, np.repeat(vecs, m, axis=0),
                            [v for v in variants for _ in range(m)], [lang] * (k * m),
                            np.zeros((k * m, vecs.shape[1]), np.float32), np.full(k * m, 20), np.zeros(k * m))
    return np.asarray(model.predict(x)).reshape(k, m).mean(1)


def world_brief(product: str, topic: str) -> str:
    """The plain brief an advertiser of the demo world hands in: its product and who it is for."""
    return f"Our {product}, made for {topic.replace('_', ' ')}."


def copy_request(brief: str, brand: str, url: str, topic: str | None, hashtags: Sequence[str], lang: str) -> str:
    """The user turn of a copy conversation: the brief, the audience (its topic and hashtags), brand, link.
    Shared by the fine-tuning data and the ``chat`` prompt, so the model is asked as it was taught."""
    tags = " ".join("#" + t.lstrip("#") for t in hashtags)
    language = "Spanish" if lang == "es" else "English"
    who = f"people into {topic.replace('_', ' ')}" + (f" (they post {tags})" if tags else "") if topic else \
        (f"people who post {tags}" if tags else "everyone")
    return f"Write an ad post in {language} for {brand}. Brief: {brief} Audience: {who}. Link: {url}"


def copy_conversations(ads_dir: str | Path, min_impressions: int = 50) -> list[list[dict]]:
    """Fine-tuning conversations (brief + audience -> copy) from an ads world's logs: every ad whose logged
    CTR is at least its topic's median becomes an example (OpenAI messages)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from murmur.world import text as wt

    ads_dir = Path(ads_dir)
    if not (ads_dir / "ads.parquet").is_file() or not (ads_dir / "impressions.parquet").is_file():
        raise InputError("no ads.parquet/impressions.parquet; write them with `murmur ads world`", path=ads_dir)
    ads = pq.read_table(ads_dir / "ads.parquet").to_pylist()
    imps = pq.read_table(ads_dir / "impressions.parquet", columns=["ad_id", "clicked"])
    grouped = imps.group_by("ad_id").aggregate([("clicked", "count"), ("clicked", "sum")])
    stats = {a: (n, c) for a, n, c in zip(grouped["ad_id"].to_pylist(), grouped["clicked_count"].to_pylist(),
                                          pc.cast(grouped["clicked_sum"], "int64").to_pylist(), strict=True)}
    ctr = {a: c / n for a, (n, c) in stats.items() if n >= min_impressions}
    by_topic: dict[str, list[float]] = {}
    for ad in ads:
        if ad["ad_id"] in ctr:
            by_topic.setdefault(ad["topic"], []).append(ctr[ad["ad_id"]])
    out = []
    for ad in ads:
        rate = ctr.get(ad["ad_id"])
        if rate is None or rate < float(np.median(by_topic[ad["topic"]])):
            continue
        topic = wt.TOPICS.get(ad["topic"])
        tags = list(topic.tags[ad["lang"]][:2]) if topic is not None and ad["lang"] in topic.tags else []
        ask = copy_request(world_brief(ad["product"], ad["topic"]), ad["brand"], ad["url"], ad["topic"], tags,
                           ad["lang"])
        out.append([{"role": "user", "content": ask}, {"role": "assistant", "content": ad["text"]}])
    return out


def copy_sft_data(ads_dir: str | Path, out: str | Path, min_impressions: int = 50) -> int:
    """Write :func:`copy_conversations` as conversations JSONL; returns the count."""
    import json

    from murmur.io import atomic_open

    convs = copy_conversations(ads_dir, min_impressions)
    with atomic_open(out, "w", encoding="utf-8") as f:
        for conv in convs:
            f.write(json.dumps({"messages": conv}, ensure_ascii=False) + "\n")
    return len(convs)


def add_copy_conversations(conversations: str | Path, ads_dir: str | Path, seed: int = 0) -> int:
    """Mix the ad-copy conversations of an ads world into a conversations JSONL (``murmur sft-data
    --ad-copy``), shuffled in with ``seed``; returns how many were added."""
    import json
    import random

    from murmur.io import atomic_open

    path = Path(conversations)
    lines = path.read_text(encoding="utf-8").splitlines()
    added = [json.dumps({"messages": c}, ensure_ascii=False) for c in copy_conversations(ads_dir)]
    lines += added
    random.Random(seed).shuffle(lines)
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return len(added)


def copy_for_audience(engine: Any, brief: str, brand: str, url: str, aud: Audience, vectors: UserVectors,
                      texts: Sequence[str], featurizer: Featurizer, model: Any, n: int = 8, seed: int = 0,
                      prompt: str = "post") -> dict:
    """The whole copy step: the audience's voice, ``n`` variants through the engine (asked as ``prompt``)
    within the policy, best pCTR first. Returns ``{"data": [{"text", "score", "lang"}], "dropped":
    {reason: count}}``."""
    voice = audience_voice(aud, vectors, texts)
    variants, dropped = write_copy(engine_writer(engine, prompt, seed=seed), brief, brand, url, voice, n)
    scores = rank_for_audience(variants, voice.lang, aud, vectors, featurizer, model)
    order = sorted(range(len(variants)), key=lambda i: -scores[i])
    return {"data": [{"text": variants[i], "score": round(float(scores[i]), 6), "lang": voice.lang} for i in order],
            "dropped": dict(dropped)}

