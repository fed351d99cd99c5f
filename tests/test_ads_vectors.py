"""Ads text vectors: the embedder is chosen by name, and a given embedder's post vectors are cached by post id."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from murmur.ads.vectors import LsaEmbedder, _cache_file, build_user_vectors, text_embedder


class Counting:
    """A real embedder that counts the texts it was asked to embed."""

    def __init__(self, inner):
        self.inner, self.name, self.dim, self.seen = inner, "lsa-test", inner.dim, 0

    def encode(self, texts, kind="passage"):
        self.seen += len(texts)
        return self.inner.encode(texts, kind)


def posts(n: int, start: int = 0) -> pa.Table:
    topics = ["pasta recipe dinner", "marathon training run", "football match goal", "jazz album record"]
    return pa.table({"post_id": [f"p{i}" for i in range(start, start + n)],
                     "author_id": [f"u{i % 7}" for i in range(start, start + n)],
                     "text": [f"{topics[i % 4]} number {i}" for i in range(start, start + n)],
                     "lang": ["en"] * n})


def test_post_vectors_are_cached_by_post_id(tmp_path):
    first = posts(40)
    emb = Counting(LsaEmbedder(dim=8).fit(first.column("text").to_pylist()))
    a = build_user_vectors(first, emb, cache=tmp_path)
    assert emb.seen == 40 and _cache_file(tmp_path, emb).is_file()
    both = pa.concat_tables([first, posts(10, start=40)])
    b = build_user_vectors(both, emb, cache=tmp_path)
    assert emb.seen == 50  # only the 10 new posts were embedded
    np.testing.assert_allclose(b.post_vectors[:40], a.post_vectors, atol=1e-6)
    np.testing.assert_allclose(b.post_vectors[40:], emb.inner.encode(both.column("text").to_pylist()[40:]), atol=1e-6)
    _cache_file(tmp_path, emb).write_bytes(b"not a cache")  # a broken cache is rebuilt, not trusted
    build_user_vectors(both, emb, cache=tmp_path)
    assert emb.seen == 100


def test_embedder_by_name():
    assert text_embedder("lsa") is None  # fitted on the posts by build_user_vectors
    v = build_user_vectors(posts(40), text_embedder("lsa"))
    assert v.embedder.name == "lsa" and v.matrix.shape[0] == 7


def test_vectors_from_a_search_index(tmp_path):
    """Posts the search index holds take its vectors (and its embedder); posts it lacks are embedded."""
    import pyarrow.parquet as pq

    from murmur.data.schema import POST_SCHEMA
    from murmur.search.index import build_index

    held = posts(24)
    full = held.to_pylist()
    import datetime as dt

    when = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    rows = [{**{f.name: None for f in POST_SCHEMA}, **r, "created_at": when, "hashtags": [], "mentions": [],
             "urls": [], "source": "test"} for r in full]
    pq.write_table(pa.Table.from_pylist(rows, schema=POST_SCHEMA), tmp_path / "clean.parquet")
    emb = text_embedder("default")
    build_index(tmp_path / "clean.parquet", tmp_path / "idx", emb, progress=False)
    table = pa.concat_tables([held, posts(6, start=24)])
    v = build_user_vectors(table, index=tmp_path / "idx")
    assert v.embedder.dim == emb.dim == v.post_vectors.shape[1]
    direct = emb.encode(table.column("text").to_pylist())
    np.testing.assert_allclose(v.post_vectors, direct, atol=2e-3)  # the index keeps float16
