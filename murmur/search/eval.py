"""``murmur search eval``: retrieval quality against the demo world's ground truth.

Queries are drawn from the world's topics (:data:`murmur.world.text.TOPICS`), for each topic and
each of English and Spanish:

- ``hashtag``: the topic's first hashtag in that language (``#running``);
- ``words``: one of the topic's noun phrases, which never contains the hashtag's own word
  (``marathon training plan``);
- ``cross``: the English noun phrase, filtered to Spanish posts (``lang=es``): an English query
  that must find Spanish posts on the same topic.

A post is relevant to a query when the world's truth says it is about the query's topic (for
``cross``: and written in Spanish). Metrics per mode, overall, per query language and per kind:
nDCG@10 (binary gains), recall@100 (relevant posts in the top 100 over ``min(100, relevant)``,
since every topic has far more than 100 posts) and MRR (reciprocal rank of the first relevant post).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from murmur.io import write_json
from murmur.search.lexical import Filters
from murmur.search.retrieve import MODES, RetrieveConfig, SearchRequest, ranked


@dataclass(frozen=True)
class EvalQuery:
    q: str
    topic: str
    lang: str       # the query's language
    kind: str       # hashtag | words | cross
    filter_lang: str | None = None


def topic_queries(topics: tuple[str, ...] | None = None) -> list[EvalQuery]:
    """The evaluation queries (deterministic)."""
    from murmur.world.text import TOPICS

    out = []
    for name in topics or tuple(TOPICS):
        t = TOPICS[name]
        for lang in ("en", "es"):
            out.append(EvalQuery("#" + t.tags[lang][0], name, lang, "hashtag"))
            tag_words = {w.lower() for tag in t.tags[lang] for w in [tag]}
            noun = next((n for n in t.nouns[lang] if not any(w in n.lower().replace(" ", "") for w in tag_words)),
                        t.nouns[lang][0])
            out.append(EvalQuery(noun, name, lang, "words"))
        out.append(EvalQuery(t.nouns["en"][1 % len(t.nouns["en"])], name, "en", "cross", filter_lang="es"))
    return out


def ndcg_at(rel: np.ndarray, n_rel: int, k: int = 10) -> float:
    gains = rel[:k] / np.log2(np.arange(2, min(k, len(rel)) + 2))
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, n_rel)))
    return float(gains.sum() / ideal) if ideal else 0.0


def evaluate(index: Any, world_dir: str | Path, modes: tuple[str, ...] = MODES, cfg: RetrieveConfig | None = None,
             queries: list[EvalQuery] | None = None) -> dict[str, Any]:
    """Metrics per mode (overall, per query language, per kind) and the queries that were run."""
    from murmur.world.truth import load_truth

    truth = load_truth(world_dir)
    store = index.store
    ids = [store.get(k)["post_id"] for k in range(len(store))] if store.added else \
        store.base.column("post_id").to_pylist()
    topics = np.array([t or "" for t in truth.topics_of(ids)], dtype=object) if ids else np.array([], object)
    langs = np.array([store.get(k)["lang"] for k in range(len(store))], dtype=object) if store.added else \
        np.array(store.base.column("lang").to_pylist(), dtype=object)
    alive = store.alive.view
    queries = queries or topic_queries()
    modes = tuple(m for m in modes if m == "lexical" or index.dense is not None)
    vecs = index.embedder.encode([q.q for q in queries], "query") if index.dense is not None else None
    per: dict[str, dict[str, list[tuple[float, float, float]]]] = {m: defaultdict(list) for m in modes}
    t0 = time.perf_counter()
    for i, q in enumerate(queries):
        relevant = (topics == q.topic) & alive
        if q.filter_lang:
            relevant &= langs == q.filter_lang
        n_rel = int(relevant.sum())
        if n_rel == 0:
            continue
        for mode in modes:
            req = SearchRequest(q=q.q, mode=mode, k=100, filters=Filters(lang=q.filter_lang))
            keys = [k for k, _ in ranked(index, req, cfg, query_vec=vecs[i] if vecs is not None else None)][:100]
            rel = relevant[np.array(keys, np.int64)].astype(np.float64) if keys else np.zeros(0)
            first = np.flatnonzero(rel)
            m = (ndcg_at(rel, n_rel), float(rel.sum()) / min(100, n_rel), 1.0 / (first[0] + 1) if len(first) else 0.0)
            for group in ("all", f"lang:{q.lang}", f"kind:{q.kind}"):
                per[mode][group].append(m)
    report: dict[str, Any] = {"queries": len(queries), "posts": int(alive.sum()), "seconds": time.perf_counter() - t0,
                              "metrics": {}}
    for mode in modes:
        report["metrics"][mode] = {
            g: {"ndcg@10": round(float(np.mean([v[0] for v in vals])), 4),
                "recall@100": round(float(np.mean([v[1] for v in vals])), 4),
                "mrr": round(float(np.mean([v[2] for v in vals])), 4), "n": len(vals)}
            for g, vals in sorted(per[mode].items())}
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [f"{report['queries']} queries over {report['posts']:,} posts ({report['seconds']:.1f}s)",
             f"{'mode':8} {'group':12} {'nDCG@10':>8} {'R@100':>8} {'MRR':>8} {'n':>4}"]
    for mode, groups in report["metrics"].items():
        for g, m in groups.items():
            lines.append(f"{mode:8} {g:12} {m['ndcg@10']:8.4f} {m['recall@100']:8.4f} {m['mrr']:8.4f} {m['n']:4d}")
    return "\n".join(lines)


def write_report(report: dict[str, Any], out: str | Path) -> None:
    write_json(out, report)
