"""Deleted posts in the search index's HNSW graph: dense query time and recall with them in it, and after
compaction has built the graph again over the live posts only (``GraphConfig.rebuild_dead_share``).

    python benchmarks/search_deletions.py --corpus demo/clean.parquet --vectors demo/search --posts 200000

faiss's HNSW cannot remove a vector, so a deleted post stays in the graph until it is built again: the
walk still passes through it, and a query whose neighbourhood holds many deleted posts walks a second
time with liveness inside the walk. The same index is measured three times, with the query vectors
given (no embedding): as built, with ``--delete`` of its posts deleted (at random, and besides 80% of
the 40 nearest posts of half the queries: a story taken down), and after one compaction.
The posts and vectors are those of ``benchmarks/search.py`` (the corpus tiled, each post's own real
vector with noise); recall@10 is against exact search over the live posts.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from search import bench_embedder, fake_vectors, machine, tile  # noqa: E402

from murmur.search.dense import GraphConfig, graph_of, save_ann  # noqa: E402
from murmur.search.index import GRAPH, MANIFEST, CompactConfig, SearchIndex, build_index  # noqa: E402
from murmur.search.retrieve import RetrieveConfig, make_request, ranked  # noqa: E402


def graph_mb(ix: SearchIndex) -> str:
    """The main graph's vectors, and its size as saved (codes, links and keys)."""
    import faiss

    return f"{ix.dense.graph_size():,} ({faiss.serialize_index(ix.dense.graph()).nbytes / 2**20:,.0f} MiB)"


def measure(ix: SearchIndex, qvecs: np.ndarray, rounds: int) -> tuple[float, float, float]:
    """p50 and p99 (ms) of a dense top-10 with the vector given, and recall@10 against exact search."""
    req, cfg = make_request("q", mode="dense", k=10), RetrieveConfig(query_cache=0)
    live = np.flatnonzero(ix.store.alive.view)
    times, hits = [], 0
    for r in range(rounds):
        for v in qvecs:
            t0 = time.perf_counter()
            got = ranked(ix, req, cfg, v)
            times.append(time.perf_counter() - t0)
            if r == 0:
                hits += len({k for k, _ in ix.dense.search_exact(v, live, 10)} & {k for k, _ in got[:10]})
    ms = np.array(times) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), hits / (10 * len(qvecs))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", type=Path, required=True, help="clean posts Parquet (the one --vectors indexed)")
    ap.add_argument("--vectors", type=Path, required=True, help="an index of --corpus built with embeddings")
    ap.add_argument("--posts", type=int, default=200_000)
    ap.add_argument("--delete", type=float, default=0.3, help="share of the posts deleted")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--write", action="store_true", help="write the docs/benchmarks.md section")
    args = ap.parse_args()
    embedder, embedder_dir = bench_embedder(args.vectors)
    root = Path(tempfile.mkdtemp(prefix="search-deletions-"))
    try:
        src = tile(args.corpus, args.posts, root / "tiled.parquet")
        n = pq.read_metadata(src).num_rows
        build_index(src, root / "idx", None, progress=False)
        vecs = fake_vectors(n, np.load(args.vectors / "vectors.npy").astype(np.float32))
        np.save(root / "idx" / "vectors.npy", vecs.astype(np.float16))
        save_ann(graph_of(vecs, vecs.shape[1], progress=False), root / "idx" / GRAPH)
        m = json.loads((root / "idx" / MANIFEST).read_text())
        m.update(graph=GRAPH, embedder={"name": embedder.name, "dim": embedder.dim, "dir": embedder_dir})
        (root / "idx" / MANIFEST).write_text(json.dumps(m))
        qvecs = fake_vectors(args.queries, vecs[np.random.default_rng(1).choice(n, args.queries)], seed=2)
        del vecs
        rows = []
        graphs = GraphConfig(lang_min_posts=0, rebuild_dead_share=0.2)
        with SearchIndex(root / "idx", embedder=embedder, compact=CompactConfig(auto=False), graphs=graphs) as ix:
            rows.append(("as built", graph_mb(ix), *measure(ix, qvecs, args.rounds)))
            rng = np.random.default_rng(0)
            near = {k for v in qvecs[: args.queries // 2] for k, _ in ix.dense.search_ann(v, 40)}
            doomed = set(rng.choice(n, int(args.delete * n), replace=False).tolist())
            doomed |= set(rng.choice(sorted(near), int(0.8 * len(near)), replace=False).tolist())
            for key in doomed:  # the store's liveness, as a delete sets it (one at a time would commit each)
                ix._kill(int(key))
            rows.append((f"{len(doomed) / n:.0%} deleted, in the graph", graph_mb(ix), *measure(ix, qvecs, args.rounds)))
            t0 = time.perf_counter()
            ix.compact()
            compact_s = time.perf_counter() - t0
            rows.append(("after compaction (graph built again)", graph_mb(ix), *measure(ix, qvecs, args.rounds)))
            ix.compact_cfg = CompactConfig(auto=False, on_close=False)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    cmd = " ".join(a for a in sys.argv[1:] if a != "--write")
    body = "### Search: deleted posts in the graph (`benchmarks/search_deletions.py`)\n\n" + \
        f"Machine: {machine()}; `python benchmarks/search_deletions.py {cmd}`; {n:,} posts, " \
        f"{args.queries} queries with the vector given, dense top 10, {args.rounds} rounds; the share deleted " \
        "at random, and besides 80% of the 40 nearest posts of half the queries; recall@10 against exact " \
        "search over the live posts.\n\n" + \
        "| graph | vectors in it (size) | p50 ms | p99 ms | recall@10 |\n|---|--:|--:|--:|--:|\n" + \
        "\n".join(f"| {name} | {size} | {p50:.2f} | {p99:.2f} | {rec:.3f} |" for name, size, p50, p99, rec in rows) + \
        f"\n\nThe compaction that built the graph again took {compact_s:.1f} s (adds and searches go on meanwhile)."
    print(body)
    if args.write:
        from report import write_section

        write_section("search-deletions", body)


if __name__ == "__main__":
    main()
