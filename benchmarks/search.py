"""Search benchmark: murmur's index (tantivy BM25 + usearch HNSW, RRF) beside the peers a Python user
would reach for, on the same posts and the same vectors, in one run.

    python benchmarks/search.py --users 5000 [--vectors INDEX_DIR] [--write]

Measures: indexing rate (lexical only; embedding separately, per post, with the packaged
all-MiniLM-L6-v2), query latency p50/p99 per mode at 1 and 8 concurrent clients (query embedding
included), time from add() returning to the post being found, disk and resident memory per post.
Peers: bm25s (lexical), faiss HNSW (dense), milvus-lite (BM25 full-text + dense + RRF hybrid
through pymilvus, the client of a Milvus cluster).

Scale: ``--posts N`` tiles the world's clean posts to N rows (each copy gets new post ids; texts
repeat), so a 1M-post index is built from a world of a few thousand accounts in minutes.

Vectors: embedding every post on 2 CPU cores is far slower than indexing (the rate is measured on a
sample at several batch sizes and reported), so the dense side uses real all-MiniLM-L6-v2 vectors
of ``--embed-sample`` posts (or ``--vectors`` an index built with embeddings) repeated with small
noise to cover every post. Latency, rates and ANN recall against exact search are measured on
those; retrieval quality is measured by ``murmur search eval`` on real vectors.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from murmur.search.embed import load_embedder  # noqa: E402
from murmur.search.index import SearchIndex, build_index  # noqa: E402
from murmur.search.retrieve import make_request  # noqa: E402

QUERIES = ["marathon training", "receta de cocina", "#MachineLearning", "new phone battery", "partido de fútbol",
           "gardening tomatoes", "jazz concert tonight", "viaje a la playa", "startup funding", "#running"]


def machine() -> str:
    from murmur.train.metrics import cpu_model_name

    return f"{cpu_model_name()}, {os.cpu_count()} cores, Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.array(xs) * 1000, p))


def latencies(fn, queries: list, clients: int, rounds: int) -> tuple[float, float]:
    work = [q for _ in range(rounds) for q in queries]
    times: list[float] = []

    def one(q):
        t0 = time.perf_counter()
        fn(q)
        return time.perf_counter() - t0

    with cf.ThreadPoolExecutor(clients) as pool:
        times = list(pool.map(one, work))
    return pct(times, 50), pct(times, 99)


def rss_bytes() -> int:
    """Resident memory of this process now (Linux), 0 where unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def corpus(users: int, root: Path) -> Path:
    from murmur.data.clean import clean
    from murmur.data.sources import ingest
    from murmur.world.generate import WorldConfig, generate_world

    generate_world(root / "world", WorldConfig(users=users, seed=7), progress=False)
    ingest([str(root / "world")], root / "posts.parquet", progress=False)
    clean(root / "posts.parquet", root / "clean.parquet")
    return root / "clean.parquet"


def tile(src: Path, posts: int, out: Path) -> Path:
    """``src``'s posts repeated (new post ids) to ``posts`` rows."""
    import pyarrow as pa

    t = pq.read_table(src)
    parts, i = [], 0
    while sum(p.num_rows for p in parts) < posts:
        ids = pa.array([f"{x}~{i}" for x in t.column("post_id").to_pylist()])
        parts.append(t.set_column(t.schema.get_field_index("post_id"), "post_id", ids))
        i += 1
    pq.write_table(pa.concat_tables(parts).slice(0, posts), out, compression="zstd")
    return out


def fake_vectors(n: int, src: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = src[np.arange(n) % len(src)].astype(np.float32) + rng.normal(0, 0.02, (n, src.shape[1])).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--vectors", type=Path, help="an index built with embeddings: its vectors seed the dense side")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--posts", type=int, default=0, help="tile the world's posts to this many (0: as generated)")
    ap.add_argument("--embed-sample", type=int, default=512, help="posts embedded for real (rate and seed vectors)")
    ap.add_argument("--recall-queries", type=int, default=50)
    ap.add_argument("--no-milvus", action="store_true")
    ap.add_argument("--write", action="store_true", help="write the docs/benchmarks.md section")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="search-bench-"))
    rows: list[tuple[str, str]] = []
    try:
        t0 = time.perf_counter()
        src = corpus(args.users, root)
        world_posts = pq.read_metadata(src).num_rows
        if args.posts:
            src = tile(src, args.posts, root / "tiled.parquet")
        print(f"corpus {time.perf_counter() - t0:.0f}s", flush=True)
        table = pq.read_table(src)
        n = table.num_rows
        texts = table.column("text").to_pylist()
        embedder = load_embedder(None)
        sample = texts[:args.embed_sample]
        embedder.encode(sample[:16])  # warm up
        rates = {}
        for bs in (16, 64, 256):
            embedder.batch_size = bs
            t0 = time.perf_counter()
            seed = embedder.encode(sample)
            rates[bs] = len(sample) / (time.perf_counter() - t0)
        embedder.batch_size = max(rates, key=rates.get)
        import torch

        embed_note = ", ".join(f"batch {b}: {r:,.0f}" for b, r in rates.items()) + \
            f" posts/s ({len(sample)} posts, {torch.get_num_threads()} torch threads)"
        seed_vecs = np.load(args.vectors / "vectors.npy") if args.vectors else seed
        vecs = fake_vectors(n, seed_vecs)
        print(f"embedding {embed_note}", flush=True)

        # murmur: lexical build, then the dense half from the same vectors
        t0 = time.perf_counter()
        build_index(src, root / "idx", None, progress=False)
        lex_s = time.perf_counter() - t0
        import json

        from murmur.io import write_json
        from murmur.search.dense import new_ann
        from murmur.search.index import MANIFEST

        t0 = time.perf_counter()
        np.save(root / "idx" / "vectors.npy", vecs.astype(np.float16))
        ann = new_ann(vecs.shape[1])
        ann.add(np.arange(n), vecs.astype(np.float16))
        ann.save(str(root / "idx" / "dense.usearch"))
        ann_s = time.perf_counter() - t0
        print(f"lexical {lex_s:.0f}s, HNSW {ann_s:.0f}s", flush=True)
        m = json.loads((root / "idx" / MANIFEST).read_text())
        m["embedder"] = {"name": embedder.name, "dim": embedder.dim, "dir": None}
        write_json(root / "idx" / MANIFEST, m)
        disk = du(root / "idx")
        rss0 = rss_bytes()
        from murmur.search.index import CompactConfig

        ix = SearchIndex(root / "idx", embedder=embedder, compact=CompactConfig(auto=False))
        rows.append(("posts", f"{n:,}" + (f" ({world_posts:,} world posts tiled)" if args.posts else "")))
        rows.append(("murmur index, lexical (tantivy)", f"{n / lex_s:,.0f} posts/s"))
        rows.append(("murmur index, HNSW add (usearch, f16)", f"{n / ann_s:,.0f} posts/s"))
        rows.append(("embedding (all-MiniLM-L6-v2, CPU)", embed_note))
        rows.append(("murmur index with embedding (estimated: lexical + HNSW + embedding rates)",
                     f"{1 / (1 / (n / lex_s) + 1 / (n / ann_s) + 1 / max(rates.values())):,.0f} posts/s"))
        from murmur.search.dense import recall_at_k

        rq = fake_vectors(args.recall_queries, embedder.encode(QUERIES * 5, "query"), seed=1)
        t0 = time.perf_counter()
        rows.append((f"HNSW recall@10 vs exact ({args.recall_queries} queries)",
                     f"{recall_at_k(ix.dense, rq, ix.store.alive.view, k=10):.3f}"))
        print(f"recall {time.perf_counter() - t0:.0f}s", flush=True)
        rows.append(("murmur disk per post", f"{disk / n:,.0f} B"))
        for mode in ("lexical", "dense", "hybrid"):
            for clients in (1, 8):
                p50, p99 = latencies(lambda q, mode=mode: ix.search(make_request(q, mode=mode, k=10)), QUERIES,
                                     clients, args.rounds)
                rows.append((f"murmur {mode}, {clients} client(s)", f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"))
        rss = rss_bytes()
        delays, adds = [], []
        for i in range(20):
            t0 = time.perf_counter()
            ix.add([{"post_id": f"bench{i}", "text": f"Benchmark post number {i} about the qwertyzz{i} festival"}])
            adds.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            while not ix.search(make_request(f"qwertyzz{i}", mode="lexical")):
                pass
            delays.append(time.perf_counter() - t0)
        rows.append(("murmur add() returned -> searchable", f"max {max(delays) * 1000:.1f} ms over 20 adds"))
        rows.append(("murmur add() call (clean, embed, log fsync, commit)",
                     f"p50 {pct(adds, 50):.1f} ms, max {max(adds) * 1000:.1f} ms"))
        rows.append(("murmur resident memory per post (open index, queried)", f"{(rss - rss0) / n:,.0f} B"))
        ix.add([{"post_id": f"bulk{i}", "text": f"Bulk post {i} about the weekend market and fresh bread"}
                for i in range(200)])
        t0 = time.perf_counter()
        ix.compact()
        rows.append(("murmur compaction (220 logged adds; segment, dead keys, graph save, fsyncs)",
                     f"{(time.perf_counter() - t0) * 1000:,.0f} ms"))
        ix.compact_cfg = type(ix.compact_cfg)(on_close=False)
        ix.close()

        # bm25s
        import bm25s

        t0 = time.perf_counter()
        retriever = bm25s.BM25()
        retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
        rows.append(("bm25s index", f"{n / (time.perf_counter() - t0):,.0f} posts/s"))
        p50, p99 = latencies(lambda q: retriever.retrieve(bm25s.tokenize([q], show_progress=False), k=10,
                                                          show_progress=False), QUERIES, 1, args.rounds)
        rows.append(("bm25s lexical, 1 client", f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"))

        # faiss HNSW on the same vectors
        import faiss

        t0 = time.perf_counter()
        fidx = faiss.IndexHNSWFlat(vecs.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
        fidx.hnsw.efConstruction = 128  # murmur's settings
        fidx.hnsw.efSearch = 96
        fidx.add(vecs)
        rows.append(("faiss HNSW add (f32)", f"{n / (time.perf_counter() - t0):,.0f} posts/s"))
        p50, p99 = latencies(lambda q: fidx.search(embedder.encode([q], "query"), 10), QUERIES, 1, args.rounds)
        rows.append(("faiss dense, 1 client (query embedding included)", f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"))

        if not args.no_milvus:
            rows.extend(milvus(root, table, vecs, embedder, args.rounds))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    load = os.getloadavg()[0]
    body = "## Search\n\n" + f"Machine: {machine()}, load average {load:.1f} at the end (a shared machine: " \
        "latencies are noisy). Same posts and vectors for every engine; the dense side uses real " \
        "all-MiniLM-L6-v2 vectors repeated with noise (see the script). Dense and hybrid latencies " \
        "include embedding the query on the CPU.\n\n" + \
        "| measure | result |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)
    print(body)
    if args.write:
        from report import write_section

        write_section("search", body)


def milvus(root: Path, table, vecs: np.ndarray, embedder, rounds: int) -> list[tuple[str, str]]:
    from pymilvus import AnnSearchRequest, DataType, Function, FunctionType, MilvusClient, RRFRanker

    client = MilvusClient(str(root / "milvus.db"))
    schema = client.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("text", DataType.VARCHAR, max_length=8192, enable_analyzer=True)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_field("dense", DataType.FLOAT_VECTOR, dim=vecs.shape[1])
    schema.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["text"],
                                 output_field_names=["sparse"]))
    params = client.prepare_index_params()
    params.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    params.add_index("dense", index_type="HNSW", metric_type="IP", params={"M": 16, "efConstruction": 128})
    client.create_collection("posts", schema=schema, index_params=params)
    texts = table.column("text").to_pylist()
    n = len(texts)
    t0 = time.perf_counter()
    for i in range(0, n, 2000):
        client.insert("posts", [{"id": j, "text": texts[j][:8000], "dense": vecs[j].tolist()}
                                for j in range(i, min(n, i + 2000))])
    client.flush("posts")
    client.load_collection("posts")
    rate = n / (time.perf_counter() - t0)
    out = [("milvus-lite insert + index (BM25 + HNSW)", f"{rate:,.0f} posts/s")]

    def lexical(q):
        return client.search("posts", data=[q], anns_field="sparse", limit=10, search_params={"metric_type": "BM25"})

    def hybrid(q):
        v = embedder.encode([q], "query")[0].tolist()
        return client.hybrid_search("posts", [AnnSearchRequest([q], "sparse", {"metric_type": "BM25"}, 100),
                                              AnnSearchRequest([v], "dense", {"metric_type": "IP"}, 100)],
                                    RRFRanker(60), limit=10)

    for name, fn in (("lexical", lexical), ("hybrid", hybrid)):
        p50, p99 = latencies(fn, QUERIES, 1, rounds)
        out.append((f"milvus-lite {name}, 1 client", f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"))
    client.close()
    return out


if __name__ == "__main__":
    main()
