"""Search over posts: lexical (BM25) + dense (ANN) retrieval fused by RRF, updated in real time.

The public API, one module per idea:

- :mod:`murmur.search.analyze`: how text becomes index terms (English/Spanish analysis, highlights).
- :mod:`murmur.search.embed`: text embedders (the packaged all-MiniLM-L6-v2, murmur's own).
- :mod:`murmur.search.index`: :class:`~murmur.search.index.SearchIndex` (build, open, add, delete).
- :mod:`murmur.search.retrieve`: queries, filters and hybrid ranking (RRF + recency/engagement prior).
- :mod:`murmur.search.wal`: the write-ahead log that makes acknowledged adds survive a crash.
- :mod:`murmur.search.segments`: the on-disk state compaction switches atomically (segments, dead keys, graph).
- :mod:`murmur.search.eval`: nDCG@10, recall@100 and MRR against the demo world's ground truth.
- :mod:`murmur.search.router`: the HTTP routes (a FastAPI ``APIRouter`` the server mounts).
"""
