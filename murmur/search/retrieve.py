"""Queries: lexical, dense and hybrid retrieval with filters, ranking, highlights.

Hybrid ranking (``mode="hybrid"``, the default) fuses the lexical and the dense lists by
Reciprocal Rank Fusion and adds a prior::

    score(d) = sum over lists m of 1 / (rrf_k + rank_m(d))                          (rrf_k = 60)
             + (recency_weight * 0.5 ** (age_hours(d) / half_life_hours)
                + engagement_weight * min(1, log1p(likes + 2 * reposts) / log1p(engagement_scale)))
               / (rrf_k + 1)

Ranks start at 1; a post missing from a list gets nothing from it. The prior is scaled so that a
prior of 1 is worth a first place in one list: with the default weights (0.1 and 0.1) it breaks
ties between posts the two lists rank alike and never lifts an unrelated post over a relevant one.
Age is counted from the newest post in the index (the present, for a live index; a fixed point
for a historical corpus, so results do not drift as the wall clock moves). Set both weights to 0
for pure RRF. ``lexical`` and ``dense`` modes rank by BM25 score and cosine similarity alone.

Filters (``lang``, ``author``, ``hashtag``, ``since``/``until``, ``min_likes``) run inside tantivy
for the lexical list; for the dense list they run over the store's columns. When few posts pass
(``exact_below``), or so small a share that the ANN would have to fetch more than ``ann_max_fetch``
neighbours to find enough of them (``ann_overfetch`` times the number needed over the share), the
nearest of those are found exactly instead; so they are too when the ANN's neighbours hold too few
that pass (a Spanish-only filter on an English query). A walk of the graph with the filter inside it
(faiss's selector) was measured for that last case and is not used: the posts that pass lie away
from the query, and its recall of their exact nearest was 0.43-0.67 (400-2,048 candidates kept, 1.2-5.0
ms) where exact search took 21 ms (English queries, Spanish posts, 300,000 posts, murmur's embedder).
A language with a graph of its own (:class:`murmur.search.dense.GraphConfig`) is searched in that
graph instead, with the share counted within it: a Spanish-only filter then walks the Spanish graph.
``sort="recent"`` orders the best ``candidates`` matches by time, newest first.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from murmur.config import knob
from murmur.errors import InputError
from murmur.search.analyze import highlight_spans, query_kinds, query_terms
from murmur.search.ingest import parse_time
from murmur.search.lexical import Filters
from murmur.search.store import isos

MODES = ("lexical", "dense", "hybrid")
SORTS = ("relevance", "recent")


@dataclass(frozen=True)
class RetrieveConfig:
    """Knobs of ranking (``[search]`` in a config file)."""

    rrf_k: int = knob(60, "Reciprocal Rank Fusion constant k")
    lexical_weight: float = knob(1.0, "hybrid: weight of the lexical list's RRF term")
    dense_weight: float = knob(1.0, "hybrid: weight of the dense list's RRF term")
    dense_langs: list = knob(["en"], "hybrid: post languages the embedder was trained on ([] = all)")
    dense_weight_other_langs: float = knob(1.0, "hybrid: dense weight factor for posts in other languages")
    tag_lexical_weight: float = knob(2.0, "hybrid: lexical weight factor for a query of hashtags and mentions "
                                          "only (asking for the tag itself)")
    lexical_weight_other_langs: float = knob(0.25, "hybrid: lexical weight factor when the request asks for posts "
                                                   "in a language other than the query's (told for queries of "
                                                   "query_lang_min_words words or more)")
    query_lang_min_words: int = knob(2, "hybrid: words a query needs before its language is identified")
    candidates: int = knob(100, "how deep each list is read before fusion (and before a 'recent' sort)")
    recency_weight: float = knob(0.1, "hybrid prior: weight of freshness (0 turns it off)")
    half_life_hours: float = knob(72.0, "hybrid prior: hours after which freshness halves")
    engagement_weight: float = knob(0.1, "hybrid prior: weight of engagement (0 turns it off)")
    engagement_scale: float = knob(1000.0, "hybrid prior: likes + 2*reposts at which engagement counts fully")
    exact_below: int = knob(20000, "dense filters: search exactly when at most this many posts pass")
    ann_overfetch: float = knob(2.0, "dense filters: the ANN fetches this many times the neighbours needed, "
                                     "counted from the share of posts that pass")
    ann_max_fetch: int = knob(1000, "dense filters: search exactly when the ANN would have to fetch more "
                                    "neighbours than this")
    query_cache: int = knob(1024, "vectors of this many recent distinct queries are kept (0 turns it off)")
    max_query_chars: int = knob(1000, "longest query accepted")
    max_k: int = knob(1000, "most results one query may ask for")


@dataclass(frozen=True)
class SearchRequest:
    """One query: the text, the mode, how many results, filters and the order."""

    q: str
    mode: str = "hybrid"
    k: int = 10
    filters: Filters = field(default_factory=Filters)
    sort: str = "relevance"


def make_request(q: object, mode: str = "hybrid", k: int = 10, lang: str | None = None,
                 author: str | None = None, hashtag: str | None = None, since: str | None = None,
                 until: str | None = None, min_likes: int | None = None, sort: str = "relevance",
                 cfg: RetrieveConfig | None = None) -> SearchRequest:
    """A checked request from loose parameters (CLI options, query string, JSON body).

    Bad values raise ``InputError`` with ``field`` naming the parameter.
    """
    cfg = cfg or RetrieveConfig()
    if not isinstance(q, str) or not q.strip():
        raise InputError("the query is empty", field="q")
    if len(q) > cfg.max_query_chars:
        raise InputError(f"the query is {len(q):,} characters; at most {cfg.max_query_chars:,} are accepted",
                         field="q")
    if mode not in MODES:
        raise InputError(f"{mode!r} is not one of {', '.join(MODES)}", field="mode")
    if sort not in SORTS:
        raise InputError(f"{sort!r} is not one of {', '.join(SORTS)}", field="sort")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= cfg.max_k:
        raise InputError(f"must be an integer from 1 to {cfg.max_k}", field="k")
    if min_likes is not None and (isinstance(min_likes, bool) or not isinstance(min_likes, int) or min_likes < 0):
        raise InputError("must be a non-negative integer", field="min_likes")
    for name, value in (("lang", lang), ("author", author), ("hashtag", hashtag)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise InputError("must be a non-empty string", field=name)
    since_us = parse_time(since, "since") if since is not None else None
    until_us = parse_time(until, "until") if until is not None else None
    if until is not None and len(until.strip()) == 10:  # a bare date means the whole day
        until_us += 86_400_000_000 - 1
    if since_us is not None and until_us is not None and since_us > until_us:
        raise InputError("is after 'until'", field="since")
    return SearchRequest(q=q, mode=mode, k=k, sort=sort, filters=Filters(
        lang=lang.lower() if lang else None, author=author, hashtag=hashtag, since_us=since_us, until_us=until_us,
        min_likes=min_likes))


def _lexical(index: Any, req: SearchRequest, groups: list[set[str]], limit: int) -> list[tuple[int, float]]:
    alive = index.store.alive.a  # the store is the truth: a lexical doc it does not hold is not a post
    return [(k, s) for k, s in index.lexical.search(groups, req.filters, limit) if k < len(alive) and alive[k]]


def _dense(index: Any, req: SearchRequest, query_vec: np.ndarray, limit: int,
           cfg: RetrieveConfig) -> list[tuple[int, float]]:
    store, dense = index.store, index.dense
    if req.filters.any():
        mask = store.mask(req.filters)
        allowed = int(mask.sum())
        graph = req.filters.lang if req.filters.lang in dense.by_lang else None  # the language's own graph
        fetch = math.ceil(cfg.ann_overfetch * limit * max(dense.graph_size(graph), 1) / max(allowed, 1))
        if allowed > cfg.exact_below and fetch <= cfg.ann_max_fetch:
            found = [(k, s) for k, s in dense.search_ann(query_vec, fetch, lang=graph) if k < len(mask) and mask[k]]
            if len(found) >= min(limit, allowed):
                return found[:limit]
        return dense.search_exact(query_vec, np.flatnonzero(mask), limit)
    alive = store.alive.a
    found = [(k, s) for k, s in dense.search_ann(query_vec, limit + 16) if alive[k]][:limit]
    if len(found) < limit:  # deleted posts crowd the neighbourhood: liveness inside the walk
        found = dense.search_ann(query_vec, limit, allowed=store.alive.view)
    return found


def prior(index: Any, keys: np.ndarray, cfg: RetrieveConfig) -> np.ndarray:
    """The recency/engagement prior of ``keys`` (see the module docstring)."""
    store = index.store
    out = np.zeros(len(keys), np.float64)
    if cfg.recency_weight:
        age_h = (store.newest_us() - store.created.a[keys]) / 3.6e9
        out += cfg.recency_weight * np.power(0.5, np.maximum(age_h, 0.0) / cfg.half_life_hours)
    if cfg.engagement_weight:
        eng = store.likes.a[keys] + 2 * store.reposts.a[keys]
        out += cfg.engagement_weight * np.minimum(1.0, np.log1p(eng) / math.log1p(cfg.engagement_scale))
    return out


def fuse(lists: list[list[tuple[int, float]]], index: Any, cfg: RetrieveConfig,
         weights: tuple[Any, ...] | None = None) -> list[tuple[int, float]]:
    """Weighted RRF of ranked lists plus the prior, best first. A weight is a number, or a function of
    an array of keys giving theirs."""
    keys_parts, score_parts = [], []
    for ranked, w in zip(lists, weights or (1.0,) * len(lists), strict=True):
        if not ranked:
            continue
        keys = np.fromiter((key for key, _ in ranked), np.int64, len(ranked))
        weight = w(keys) if callable(w) else w
        keys_parts.append(keys)
        score_parts.append(weight / (cfg.rrf_k + np.arange(1, len(ranked) + 1, dtype=np.float64)))
    if not keys_parts:
        return []
    keys, where = np.unique(np.concatenate(keys_parts), return_inverse=True)
    total = np.bincount(where, weights=np.concatenate(score_parts), minlength=len(keys))
    total += prior(index, keys, cfg) / (cfg.rrf_k + 1)
    order = np.lexsort((keys, -total))
    return list(zip(keys[order].tolist(), total[order].tolist(), strict=True))


def dense_weight(index: Any, cfg: RetrieveConfig) -> Any:
    """The dense list's RRF weight: ``dense_weight``, times ``dense_weight_other_langs`` for a post
    in a language the embedder was not trained on (its neighbours there are noisy)."""
    if not cfg.dense_langs or cfg.dense_weight_other_langs == 1.0:
        return cfg.dense_weight
    store = index.store
    trained = np.array([store.langs[lang] for lang in cfg.dense_langs if lang in store.langs], np.int32)
    codes = store.lang.a
    other = cfg.dense_weight * cfg.dense_weight_other_langs
    return lambda keys: np.where(np.isin(codes[keys], trained), cfg.dense_weight, other)


def lexical_weight(index: Any, req: SearchRequest, cfg: RetrieveConfig) -> float:
    """The lexical list's RRF weight for ``req``: ``lexical_weight``, times ``tag_lexical_weight`` for a
    query of hashtags and mentions only (it asks for the tag itself), and times
    ``lexical_weight_other_langs`` when the request keeps posts of one language and the query is in
    another (an English query over Spanish posts): such posts match it only on borrowed words and
    names, which say little about their topic, while the embedder compares meanings across languages."""
    w = cfg.lexical_weight
    kinds = query_kinds(req.q)
    if kinds["w"] == 0 and (kinds["#"] or kinds["@"]):
        return w * cfg.tag_lexical_weight
    want = req.filters.lang
    if cfg.lexical_weight_other_langs == 1.0 or not want or kinds["w"] < cfg.query_lang_min_words:
        return w
    lang = query_language(req.q, tuple(sorted({*index.store.langs, want})))
    return w * cfg.lexical_weight_other_langs if lang is not None and lang != want else w


def query_language(q: str, langs: tuple[str, ...]) -> str | None:
    """The language of a query among the index's languages, or None when it is not clear."""
    from murmur.data.langid import UND, langid_text

    known = tuple(lang for lang in langs if len(lang) == 2)
    if len(known) < 2:
        return None
    code, _ = _identifier(known).identify_one(langid_text(q))
    return None if code == UND else code


@functools.lru_cache(maxsize=4)
def _identifier(langs: tuple[str, ...]) -> Any:
    from murmur.data.langid import LanguageIdentifier

    return LanguageIdentifier(languages=langs, min_confidence=0.6)


def ranked(index: Any, req: SearchRequest, cfg: RetrieveConfig | None = None,
           query_vec: np.ndarray | None = None, groups: list[set[str]] | None = None) -> list[tuple[int, float]]:
    """(key, score) best first: the ranking without the result objects (evaluation uses it). ``groups``:
    the query's terms (:func:`query_terms`) when the caller has them."""
    cfg = cfg or RetrieveConfig()
    mode = req.mode
    # one list in relevance order is the answer itself: read k deep, as any engine asked for k would
    depth = req.k if mode != "hybrid" and req.sort != "recent" else max(req.k, cfg.candidates)
    if mode != "lexical" and index.dense is None:
        raise InputError(f"this index has no embeddings, so mode {mode!r} is not available; use 'lexical' "
                         "or rebuild the index with an embedder", field="mode")
    if mode != "dense" and groups is None:
        groups = query_terms(req.q)
    if mode != "lexical" and query_vec is None:  # before the lock: an add need not wait for a forward
        query_vec = index.query_vectors.get(index.embedder, req.q, cfg.query_cache)
    with index.lock.read():
        lex = _lexical(index, req, groups, depth) if mode in ("lexical", "hybrid") else []
        den: list[tuple[int, float]] = []
        if mode in ("dense", "hybrid"):
            den = _dense(index, req, query_vec, depth, cfg)
    if mode == "lexical":
        out = lex
    elif mode == "dense":
        out = den
    else:
        out = fuse([lex, den], index, cfg, (lexical_weight(index, req, cfg), dense_weight(index, cfg)))
    if req.sort == "recent":
        created = index.store.created.a
        out = sorted(out, key=lambda ks: (-created[ks[0]], ks[0]))
    return out


def search(index: Any, req: SearchRequest, cfg: RetrieveConfig | None = None) -> list[dict[str, Any]]:
    """The best ``req.k`` posts as result objects (``post_id``, ..., ``score``, ``highlights``)."""
    groups = query_terms(req.q)
    hits = ranked(index, req, cfg, groups=groups)[:req.k]
    wanted = set().union(*groups)
    out = []
    posts = index.store.rows([key for key, _ in hits])
    for (_, score), p, created in zip(hits, posts, isos([p["created_us"] for p in posts]), strict=True):
        out.append({"post_id": p["post_id"], "author_id": p["author_id"], "created_at": created,
                    "lang": p["lang"], "text": p["text"], "score": round(score, 6),
                    "highlights": highlight_spans(p["text"], p["lang"], wanted)})
    return out


def result_list(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The object the CLI's ``--json`` and the HTTP API return."""
    return {"object": "list", "data": results}
