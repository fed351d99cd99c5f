"""Exact dense search on the stored float16 rows, the forward-sharing batcher and the query cache."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from murmur.search.dense import DenseIndex, graph_of
from murmur.search.embed import Batcher, QueryCache
from murmur.search.segments import Stacked


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float16)


@pytest.mark.parametrize("share", [0.01, 0.2, 0.9, 1.0])
def test_exact_search_matches_float32_numpy(share):
    rng = np.random.default_rng(0)
    dim = 48
    parts = [_unit(rng, 700, dim), _unit(rng, 300, dim)]
    base = Stacked(parts, dim)
    dense = DenseIndex(dim, base, graph_of(base, dim, progress=False))
    for row in _unit(rng, 25, dim):
        dense.add(len(dense), row)
    allv = np.concatenate(parts + [np.stack(dense.added)]).astype(np.float32)
    keys = np.flatnonzero(rng.random(len(dense)) < share)
    q = rng.normal(size=dim).astype(np.float32)
    q /= np.linalg.norm(q)
    sims = dense.similarities(q, keys)
    ref = allv[keys] @ q.astype(np.float16).astype(np.float32)
    np.testing.assert_allclose(sims, ref, atol=2e-3)
    top = dense.search_exact(q, keys, 10)
    assert [k for k, _ in top] == [int(keys[i]) for i in np.lexsort((keys, -sims))[:10]]
    assert [s for _, s in top] == sorted((s for _, s in top), reverse=True)


def test_batcher_shares_forwards_and_keeps_each_callers_rows():
    sizes: list[int] = []

    def run(texts: list[str], kind: str) -> np.ndarray:
        if "boom" in texts:
            raise ValueError("bad text")
        sizes.append(len(texts))
        time.sleep(0.02)
        return np.array([[float(t.split()[-1]), 1.0 if kind == "query" else 0.0] for t in texts])

    b = Batcher(run, max_texts=16)
    results: dict[int, object] = {}

    def call(i: int) -> None:
        try:
            texts = ["boom"] if i == 5 else [f"q {i}", f"q {i + 0.5}"]
            results[i] = b(texts, "query" if i % 2 else "passage")
        except ValueError as e:
            results[i] = e

    threads = [threading.Thread(target=call, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(results) == 12
    assert isinstance(results[5], ValueError)
    for i, out in results.items():
        if i != 5:
            np.testing.assert_array_equal(out, [[i, i % 2], [i + 0.5, i % 2]])
    assert max(sizes) > 2 and max(sizes) <= 16  # calls went through shared forwards, none over the cap
    assert b(["q 3"], "query").tolist() == [[3.0, 1.0]]  # and it goes on after a failed forward


class _Counting:
    dim = 2

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, texts, kind="passage"):
        self.calls += 1
        return np.array([[len(t), 0.0] for t in texts], np.float32)


def test_query_cache_keeps_recent_queries():
    emb, cache = _Counting(), QueryCache()
    assert cache.get(emb, "abc", 2).tolist() == [3.0, 0.0]
    cache.get(emb, "abc", 2)
    assert emb.calls == 1
    cache.get(emb, "de", 2)
    cache.get(emb, "abc", 2)  # "abc" is now the most recent
    cache.get(emb, "fghi", 2)  # "de" goes
    cache.get(emb, "abc", 2)
    assert emb.calls == 3
    cache.get(emb, "de", 2)
    assert emb.calls == 4
    cache.get(emb, "de", 0)
    cache.get(emb, "de", 0)
    assert emb.calls == 6


def test_walk_with_liveness_inside_skips_deleted_neighbours():
    """Each query's 30 nearest posts deleted: the walk with liveness inside finds the nearest live ones,
    as exact search does, and never a deleted one; keys past the liveness array do not pass."""
    rng = np.random.default_rng(3)
    dim, n = 32, 4000
    rows = _unit(rng, n, dim)
    dense = DenseIndex(dim, rows, graph_of(rows, dim, progress=False))
    hits = total = 0
    for _ in range(40):
        q = rng.normal(size=dim).astype(np.float32)
        q /= np.linalg.norm(q)
        alive = np.ones(n, bool)
        alive[[k for k, _ in dense.search_exact(q, np.arange(n), 30)]] = False
        found = dense.search_ann(q, 10, allowed=alive)
        assert len(found) == 10 and all(alive[k] for k, _ in found)
        assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)
        exact = {k for k, _ in dense.search_exact(q, np.flatnonzero(alive), 10)}
        hits += len(exact.intersection(k for k, _ in found))
        total += 10
    assert hits / total >= 0.9
    assert dense.search_ann(q, 5, allowed=np.zeros(n // 2, bool)) == []
    assert {k for k, _ in dense.search_ann(q, 5, allowed=np.arange(n) < 7)} <= set(range(7))
