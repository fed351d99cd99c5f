"""Trends: terms and hashtags whose rate in the latest window rises well above their baseline,
grouped into stories, each with a short summary the model writes from the story's posts, citing them.

The burst score (docs/search.md, "Trends"). For a window ``W`` ending at ``now`` (default: the
newest post in the index) and the baseline ``B`` before it (``baseline_windows`` windows long), with
``N_w``/``N_b`` the posts in each and ``c``/``b`` the posts holding the term::

    p = (b + prior) / (N_b + 1)            # the term's smoothed share of baseline posts
    e = N_w * p                            # posts expected to hold it in the window
    z = (c - e) / sqrt(max(e, min_expected))

a Poisson z-score against the term's own history, scaled by the window's volume (so the daily
rhythm does not trend). A term trends when ``z >= min_score``, ``c >= min_ratio * e``, ``c >=
min_posts`` and at least ``min_authors`` accounts posted it. (A function word such as ``del`` can
pass during a Spanish story in a small world, whose Spanish posts are few; it then joins the story's
trend, after the story's own words, which score higher.) Two trending terms are one story when at
least ``group_overlap`` of the smaller one's window posts hold both (single linkage, so a story's
two hashtags join through the words they share); a story's score is its best term's. A story needs a
trending hashtag or at least ``min_words`` trending words: one everyday word that happens to be
posted a few more times than usual in an hour is chance, not news (with thousands of words tested
every window, some pass any per-word threshold).

Terms are those the index analyses (:func:`murmur.search.analyze.surface_terms`: stemmed words,
folded hashtags; no mentions or links) from the index's live posts, added ones included.

Counting at scale. The baseline is most of the work (48 windows for one), so its whole hours are
counted once and kept: per hour (and language filter), the posts counted and, per term, how many
of them hold it. A kept hour is used only while its posts are exactly those the index has alive in
that hour now (one vectorised comparison), so a post added into an old hour or deleted from one
makes that hour count again; the partial hours at the baseline's edges are counted post by post.
A baseline then costs a sum of kept counts (``numpy.bincount``), and the terms of a post are kept
only while it is in the latest window (memory bounded by the window, not the index). What is not
kept yet is counted first a slice at a time (an hour, or 2,000 window posts), each slice under the
index's read lock, so a cold detection never holds adds and deletes back for long. The router
counts the default window's hours in the background at startup.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from murmur.config import knob
from murmur.errors import ConfigError, InputError
from murmur.search.analyze import surface_terms
from murmur.search.ingest import parse_time
from murmur.search.store import iso

log = logging.getLogger(__name__)
WINDOW_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)\s*$", re.IGNORECASE)
UNIT_S = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
MIN_WINDOW_S, MAX_WINDOW_S = 60, 7 * 86400
MAX_K = 20
HOUR_US = 3_600_000_000
MAX_KEPT_HOURS = 50_000  # hours of baseline counts kept (per language filter asked for), oldest dropped first
PARAMS = ("window", "k", "lang", "at", "summaries")


@dataclass(frozen=True)
class TrendConfig:
    """Knobs of trend detection (``configs/trends.toml``; ``murmur trends --config``, ``murmur serve
    --trends-config``)."""

    window: str = knob("1h", "the latest window when a request names none: 30m, 1h, 6h, 1d (1 minute to 7 days)")
    k: int = knob(5, f"most stories reported when a request names no k (1 to {MAX_K})")
    baseline_windows: int = knob(48, "the baseline is this many windows before the window")
    prior: float = knob(0.5, "pseudo-count added to a term's baseline posts (smoothing)")
    min_expected: float = knob(1.0, "floor of the expected count under the z-score's square root")
    min_score: float = knob(5.0, "least z-score of a trending term")
    min_ratio: float = knob(5.0, "least ratio of a trending term's posts to those expected")
    min_posts: int = knob(5, "least posts holding a trending term in the window")
    min_authors: int = knob(3, "least accounts posting a trending term in the window")
    min_term_chars: int = knob(3, "shorter words are never terms")
    group_overlap: float = knob(0.5, "share of the smaller term's posts holding both, to be one story "
                                     "(above 1: every term its own story)")
    min_words: int = knob(2, "least trending words of a story without a trending hashtag")
    max_terms: int = knob(8, "terms listed per trend")
    examples: int = knob(5, "posts per trend given to the summary (and citable)")
    summary_tokens: int = knob(64, "longest summary in tokens")

    def check(self) -> TrendConfig:
        """The config itself, or ConfigError naming the first bad knob."""
        try:
            parse_window(self.window)
        except InputError as e:
            raise ConfigError(f"window: {str(e).split(': ', 1)[-1]}") from None
        if not 1 <= self.k <= MAX_K:
            raise ConfigError(f"k must be from 1 to {MAX_K} (got {self.k})")
        for name, least in (("baseline_windows", 1), ("min_posts", 1), ("min_authors", 1), ("min_term_chars", 1),
                            ("min_words", 1), ("max_terms", 1), ("examples", 1), ("summary_tokens", 1),
                            ("min_ratio", 0)):
            if getattr(self, name) < least:
                raise ConfigError(f"{name} must be at least {least} (got {getattr(self, name)})")
        for name in ("prior", "min_expected", "group_overlap"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive (got {getattr(self, name)})")
        return self


def parse_window(value: object, name: str = "window") -> int:
    """Seconds in a window written ``90s``, ``30m``, ``1h``, ``1.5h`` or ``1d`` (1 minute to 7 days)."""
    m = WINDOW_RE.match(value) if isinstance(value, str) else None
    if m is None:
        raise InputError(f"{value!r} is not a window like 30m, 1h or 1d", field=name)
    seconds = float(m.group(1)) * UNIT_S[m.group(2).lower()]
    if not MIN_WINDOW_S <= seconds <= MAX_WINDOW_S:
        raise InputError(f"{value!r} is outside 1m..7d", field=name)
    return int(seconds)


def burst_score(c: int, b: int, n_window: int, n_baseline: int, cfg: TrendConfig) -> tuple[float, float]:
    """(z, expected) of a term in ``c`` of ``n_window`` window posts and ``b`` of ``n_baseline`` baseline posts."""
    expected = n_window * (b + cfg.prior) / (n_baseline + 1)
    return (c - expected) / math.sqrt(max(expected, cfg.min_expected)), expected


@dataclass
class TermStat:
    term: str
    shown: str
    posts: int
    expected: float
    score: float
    authors: int
    keys: set[int] = field(default_factory=set, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"term": self.shown, "kind": "hashtag" if self.term.startswith("#") else "word", "posts": self.posts,
                "expected": round(self.expected, 3), "score": round(self.score, 2)}


@dataclass
class Trend:
    """One story: its terms (best first), the window posts holding any of them, and its examples."""

    label: str
    score: float
    terms: list[TermStat]
    keys: list[int]
    lang: str
    examples: list[dict[str, Any]] = field(default_factory=list)
    summary: str | None = None
    citations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def post_ids(self) -> list[str]:
        return [e["post_id"] for e in self.examples]

    def to_json(self, max_terms: int) -> dict[str, Any]:
        return {"label": self.label, "score": round(self.score, 2), "posts": len(self.keys), "lang": self.lang,
                "terms": [t.to_json() for t in self.terms[:max_terms]], "summary": self.summary,
                "citations": self.citations, "examples": self.examples}


@dataclass
class TrendReport:
    since_us: int
    until_us: int
    window_s: int
    window_posts: int
    baseline_posts: int
    trends: list[Trend]

    def to_json(self, cfg: TrendConfig) -> dict[str, Any]:
        return {"object": "list", "since": iso(self.since_us), "until": iso(self.until_us), "window_s": self.window_s,
                "window_posts": self.window_posts, "baseline_posts": self.baseline_posts,
                "data": [t.to_json(cfg.max_terms) for t in self.trends]}


class _Union:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def join(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)


def group_terms(terms: list[TermStat], overlap: float) -> list[list[TermStat]]:
    """Stories from trending terms: two join when ``overlap`` of the smaller one's posts hold both."""
    u = _Union(len(terms))
    for i in range(len(terms)):
        for j in range(i + 1, len(terms)):
            a, b = terms[i].keys, terms[j].keys
            if len(a & b) >= overlap * min(len(a), len(b)):
                u.join(i, j)
    groups: dict[int, list[TermStat]] = {}
    for i, t in enumerate(terms):
        groups.setdefault(u.find(i), []).append(t)
    return [sorted(g, key=lambda t: -t.score) for g in groups.values()]


@dataclass
class _HourCounts:
    """One hour of baseline: the posts counted, and how many of them hold each term (by id)."""

    keys: np.ndarray
    ids: np.ndarray
    counts: np.ndarray


class Trends:
    """Trend detection over one open :class:`~murmur.search.index.SearchIndex` (live: posts added
    after the build count as soon as ``add`` returns)."""

    def __init__(self, index: Any, cfg: TrendConfig | None = None):
        self.index, self.cfg = index, (cfg or TrendConfig()).check()
        self._terms: dict[int, tuple[tuple[str, str], ...]] = {}  # the latest window's posts
        self._ids: dict[str, int] = {}  # term -> its row in the counts below
        self._hours: OrderedDict[tuple[str | None, int], _HourCounts] = OrderedDict()
        self._summaries: OrderedDict[tuple, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._detecting = threading.Lock()  # one detection at a time: they share the kept counts

    # ------------------------------------------------------------------ posts
    def _post(self, key: int) -> dict[str, Any]:
        store = self.index.store
        if key >= store.n_base:
            p = store.added[key - store.n_base]
            return {"text": p.text, "lang": p.lang, "hashtags": p.hashtags, "author_id": p.author_id}
        return {name: store.base.column(name)[key].as_py() for name in ("text", "lang", "hashtags", "author_id")}

    def terms_of(self, key: int) -> tuple[tuple[str, str], ...]:
        """The post's distinct ``(term, shown)`` pairs (kept while the post is in the latest window)."""
        got = self._terms.get(key)
        if got is None:
            got = self._terms[key] = self._compute_terms(key)
        return got

    def _compute_terms(self, key: int) -> tuple[tuple[str, str], ...]:
        p = self._post(key)
        seen: dict[str, str] = {}
        for term, shown in surface_terms(p["text"] or "", p["lang"], p["hashtags"] or ()):
            if term not in seen and (term.startswith("#") or (len(shown) >= self.cfg.min_term_chars
                                                              and not shown.isdigit())):
                seen[term] = shown
        return tuple(seen.items())

    def _term_ids(self, keys: list[int]) -> np.ndarray:
        """The term ids of each post in ``keys``, one entry per (post, term)."""
        return np.concatenate([self._post_term_ids(k) for k in keys]) if keys else np.zeros(0, np.int64)

    def baseline_counts(self, mask: np.ndarray, start: int, since: int, lang: str | None) -> tuple[np.ndarray, int]:
        """(posts holding each term, by id; posts) among the ``mask``-ed posts created in ``(start, since]``:
        whole hours from the kept counts (counted again when their posts changed), edges post by post."""
        created = self.index.store.created.view
        keys = np.flatnonzero(mask & (created > start) & (created <= since))
        hours = (created[keys] - 1) // HOUR_US  # hour h holds (h * HOUR_US, (h + 1) * HOUR_US]
        whole = (hours * HOUR_US >= start) & ((hours + 1) * HOUR_US <= since)
        ids = [self._term_ids(keys[~whole].tolist())]
        weights = [np.ones(len(ids[0]), dtype=np.int64)]
        inner, inner_hours = keys[whole], hours[whole]
        order = np.argsort(inner_hours, kind="stable")  # by hour, then key (keys come sorted)
        inner, inner_hours = inner[order], inner_hours[order]
        starts = np.flatnonzero(np.r_[True, np.diff(inner_hours) != 0]) if len(inner) else np.zeros(0, np.int64)
        for lo, hi in zip(starts.tolist(), [*starts[1:].tolist(), len(inner)], strict=True):
            kept = self._hour(lang, int(inner_hours[lo]), inner[lo:hi])
            ids.append(kept.ids)
            weights.append(kept.counts)
        counts = np.bincount(np.concatenate(ids), weights=np.concatenate(weights), minlength=len(self._ids))
        return counts.astype(np.int64), len(keys)

    def _hour(self, lang: str | None, hour: int, keys: np.ndarray) -> _HourCounts:
        """The kept counts of one hour whose posts are ``keys`` now, counted again if they changed."""
        kept = self._hours.get((lang, hour))
        if kept is None or not np.array_equal(kept.keys, keys):
            uniq, counts = np.unique(self._term_ids(keys.tolist()), return_counts=True)
            kept = _HourCounts(keys.copy(), uniq, counts)
            self._hours[(lang, hour)] = kept
            while len(self._hours) > MAX_KEPT_HOURS:
                self._hours.popitem(last=False)
        return kept

    def _post_term_ids(self, key: int) -> np.ndarray:
        """A baseline post's term ids, from the window's kept terms or computed without keeping them."""
        terms = self._terms.get(key)
        if terms is None:
            terms = self._compute_terms(key)
        ids = self._ids
        return np.fromiter((ids.setdefault(t, len(ids)) for t, _ in terms), dtype=np.int64, count=len(terms))

    # ------------------------------------------------------------------ detection
    def _span(self, window_s: int, at_us: int | None, lang: str | None) -> tuple[np.ndarray, int, int, int]:
        """(live posts of ``lang``, baseline start, window start, window end); under the index's read lock."""
        store = self.index.store
        alive = store.alive.view.copy()
        if lang is not None:
            alive &= store.lang.view == store.langs.get(lang, -1)
        until = int(at_us) if at_us is not None else store.newest_us()
        since = until - window_s * 1_000_000
        return alive, since - self.cfg.baseline_windows * window_s * 1_000_000, since, until

    def prepare(self, window_s: int, at_us: int | None = None, lang: str | None = None, slice_posts: int = 2000) -> None:
        """Count what a detection needs a slice at a time (each whole baseline hour, the window's posts in
        slices), each slice under the index's read lock, so a cold detection does not hold adds and
        deletes back for seconds; :meth:`detect` then finds it kept (and counts again what changed since)."""
        lock, created = self.index.lock, self.index.store.created.view
        with lock.read():
            alive, start, since, until = self._span(window_s, at_us, lang)
            base = np.flatnonzero(alive & (created > start) & (created <= since))
            window = np.flatnonzero(alive & (created > since) & (created <= until))
            hours = (created[base] - 1) // HOUR_US
        whole = (hours * HOUR_US >= start) & ((hours + 1) * HOUR_US <= since)
        base, hours = base[whole], hours[whole]
        order = np.argsort(hours, kind="stable")
        base, hours = base[order], hours[order]
        bounds = np.flatnonzero(np.diff(hours)) + 1
        for keys in np.split(base, bounds) if len(base) else []:
            with lock.read(), self._detecting:
                self._hour(lang, int((created[keys[0]] - 1) // HOUR_US), keys)
        for lo in range(0, len(window), slice_posts):
            with lock.read(), self._detecting:
                for key in window[lo:lo + slice_posts].tolist():
                    self.terms_of(key)

    def detect(self, window_s: int = 3600, at_us: int | None = None, lang: str | None = None,
               k: int = 10) -> TrendReport:
        """The ``k`` strongest stories in the window ending at ``at_us`` (default: the newest post)."""
        cfg, store = self.cfg, self.index.store
        lang = lang.lower() if lang is not None else None
        self.prepare(window_s, at_us, lang)
        with self.index.lock.read(), self._detecting:
            created = store.created.view
            alive, start, since, until = self._span(window_s, at_us, lang)
            window = np.flatnonzero(alive & (created > since) & (created <= until)).tolist()
            self._terms = {key: self._terms[key] for key in window if key in self._terms}  # only the window's
            for key in window:
                self.terms_of(key)
            base_counts, n_baseline = self.baseline_counts(alive, start, since, lang)
            authors = store.author.view
            stats: dict[str, TermStat] = {}
            shown: dict[str, Counter[str]] = {}
            term_authors: dict[str, set[int]] = {}
            for key in window:
                for term, s in self.terms_of(key):
                    st = stats.get(term)
                    if st is None:
                        st = stats[term] = TermStat(term, s, 0, 0.0, 0.0, 0)
                        shown[term], term_authors[term] = Counter(), set()
                    st.posts += 1
                    st.keys.add(key)
                    shown[term][s] += 1
                    term_authors[term].add(int(authors[key]))
            trending = []
            for term, st in stats.items():
                if st.posts < cfg.min_posts or len(term_authors[term]) < cfg.min_authors:
                    continue
                row = self._ids.get(term, len(base_counts))
                b = int(base_counts[row]) if row < len(base_counts) else 0
                st.score, st.expected = burst_score(st.posts, b, len(window), n_baseline, cfg)
                st.authors = len(term_authors[term])
                if st.score >= cfg.min_score and st.posts >= cfg.min_ratio * st.expected:
                    st.shown = shown[term].most_common(1)[0][0]
                    trending.append(st)
            trending.sort(key=lambda t: (-t.score, t.term))
            groups = [g for g in group_terms(trending, cfg.group_overlap)
                      if len(g) >= cfg.min_words or any(t.term.startswith("#") for t in g)]
            trends = [self._trend(g) for g in groups]
            trends.sort(key=lambda t: (-t.score, t.label))
            trends = trends[:k]
            for t in trends:
                t.examples = self._examples(t)
        return TrendReport(since, until, window_s, len(window), n_baseline, trends)

    def warm_up(self) -> None:
        """Count the default window's baseline hours now, so the first request finds them kept."""
        try:
            self.detect(parse_window(self.cfg.window), k=1)
        except Exception as e:  # an index closed meanwhile: the first request counts instead
            log.info("trends: warm-up skipped (%s)", e)

    def _trend(self, terms: list[TermStat]) -> Trend:
        keys = sorted(set().union(*(t.keys for t in terms)))
        tags = [t for t in terms if t.term.startswith("#")]
        label = max(tags, key=lambda t: (t.posts, t.score)).shown if tags else terms[0].shown
        langs = Counter(self._post(k)["lang"] or "und" for k in keys)
        return Trend(label=label, score=terms[0].score, terms=terms, keys=keys, lang=langs.most_common(1)[0][0])

    def _examples(self, trend: Trend) -> list[dict[str, Any]]:
        """The posts that show the story best: most of its terms, then most liked; one per text."""
        names = {t.term for t in trend.terms}
        store = self.index.store
        ranked = sorted(trend.keys, key=lambda k: (-sum(t in names for t, _ in self.terms_of(k)),
                                                   -int(store.likes.a[k]), -int(store.created.a[k])))
        out, seen = [], set()
        for key in ranked:
            p = store.get(key)
            norm = " ".join(p["text"].lower().split())
            if norm in seen:
                continue
            seen.add(norm)
            out.append({"post_id": p["post_id"], "text": p["text"], "author_id": p["author_id"],
                        "created_at": iso(p["created_us"]), "lang": p["lang"]})
            if len(out) == self.cfg.examples:
                break
        return out

    # ------------------------------------------------------------------ summaries
    def summarize(self, engine: Any, trend: Trend, seed: int | None = 0) -> None:
        """Have the model write the story's summary from its examples, citing them as [1], [2]. Summaries
        are kept per story and examples, so a page that polls does not make the model write them again."""
        from murmur.search.answer import AnswerRequest, answer_from

        key = (trend.label, tuple(trend.post_ids), id(engine))
        with self._lock:
            done = self._summaries.get(key)
        if done is None:
            es = trend.lang == "es"
            question = f"¿Qué está pasando con {trend.label}?" if es else f"What is happening with {trend.label}?"
            req = AnswerRequest(question, k=len(trend.examples), max_tokens=self.cfg.summary_tokens, temperature=0.7,
                                seed=seed)
            done = answer_from(engine, req, trend.examples, "es" if es else "en", query=trend.label)
            with self._lock:
                self._summaries[key] = done
                while len(self._summaries) > 256:
                    self._summaries.popitem(last=False)
        trend.summary, trend.citations = done["answer"], done["citations"]

    def report(self, window: str | None = None, k: int | None = None, lang: str | None = None,
               at: str | None = None, engine: Any = None) -> dict[str, Any]:
        """The JSON the route and ``murmur trends --json`` give (summaries when ``engine`` is given);
        ``window`` and ``k`` default to the config's."""
        window = self.cfg.window if window is None else window
        k = self.cfg.k if k is None else k
        window_s, at_us = check_query(window, k, lang, at)
        rep = self.detect(window_s, at_us, lang, k)
        if engine is not None:
            for t in rep.trends:
                self.summarize(engine, t)
        out = rep.to_json(self.cfg)
        out["window"] = window
        return out


def check_query(window: object, k: object, lang: object, at: object) -> tuple[int, int | None]:
    """(window seconds, end of the window in microseconds or None); InputError names a bad value."""
    window_s = parse_window(window)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise InputError(f"must be an integer from 1 to {MAX_K}", field="k")
    if lang is not None and (not isinstance(lang, str) or not re.fullmatch(r"[A-Za-z]{2,3}(-\w+)?", lang)):
        raise InputError(f"{lang!r} is not a language code like en or es", field="lang")
    return window_s, parse_time(at, "at") if at is not None else None


def _int(value: object, name: str) -> int:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"{value!r} is not an integer", field=name) from None


def check_params(params: Mapping[str, str]) -> dict[str, Any]:
    """The route's query parameters, checked (InputError names the bad one)."""
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise InputError(f"unknown parameter(s) {', '.join(unknown)}; accepted: {', '.join(PARAMS)}",
                         field=unknown[0])
    summaries = params.get("summaries", "true").lower()
    if summaries not in ("true", "false", "1", "0"):
        raise InputError("must be true or false", field="summaries")
    k = params.get("k")
    return {"window": params.get("window"), "k": None if k is None else _int(k, "k"), "lang": params.get("lang"),
            "at": params.get("at"), "summaries": summaries in ("true", "1")}


def build_router(trends: Trends) -> APIRouter:
    """``GET /v1/trends?window=1h&k=5&lang=&at=&summaries=true``: the strongest stories of the window,
    each with its terms, examples and (when the server's model is loaded) a cited summary; a request
    without ``window`` or ``k`` gets the config's."""
    router = APIRouter()
    threading.Thread(target=trends.warm_up, name="trends-warm-up", daemon=True).start()  # serve meanwhile

    @router.get("/v1/trends")
    async def get_trends(request: Request) -> dict[str, Any]:
        params: dict[str, str] = {}
        for key, value in request.query_params.multi_items():
            if key in params:
                raise InputError("given more than once", field=key)
            params[key] = value
        p = check_params(params)
        engine = getattr(request.app.state, "engine", None) if p.pop("summaries") else None
        return await run_in_threadpool(trends.report, engine=engine, **p)

    return router
