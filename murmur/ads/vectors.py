"""User and post vectors for ads, behind one small interface.

Everything in ads that needs "what is this person / this text about" asks an *embedder*: an object
with ``name``, ``dim`` and ``encode(texts, kind) -> unit-length float32 [n, dim]`` (the same shape as
:mod:`murmur.search.embed`'s embedders, so any of them plugs in). A user's vector is the normalised
mean of their posts' vectors.

:class:`LsaEmbedder` is the fast default fitted on the posts themselves: tf-idf over words
and word pairs, reduced by truncated SVD (latent semantic analysis). It needs no model weights and
embeds a million posts in about a minute on one core, which is what audience building at a
network's scale and the ad server's latency need; a network with GPUs passes search's neural
embedder instead (``--embedder DIR``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from murmur.errors import InputError


class Embedder(Protocol):
    name: str
    dim: int

    def encode(self, texts: Sequence[str], kind: str = "passage") -> np.ndarray: ...


def _normalise(m: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(m, axis=1, keepdims=True)
    return (m / np.maximum(n, 1e-12)).astype(np.float32)


@dataclass
class LsaEmbedder:
    """tf-idf over words and word pairs (a vocabulary fitted on a sample of posts), reduced by
    truncated SVD to ``dim`` dimensions."""

    dim: int = 256
    max_features: int = 50_000
    name: str = "lsa"
    _tfidf: object = field(default=None, repr=False)
    _svd: object = field(default=None, repr=False)
    _proj: np.ndarray | None = field(default=None, repr=False)

    def fit(self, texts: Sequence[str], seed: int = 0, sample: int = 50_000) -> LsaEmbedder:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        if len(texts) < 10:
            raise InputError(f"need at least 10 posts to fit the text vectors (got {len(texts)})")
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(len(texts), sample, replace=False)) if len(texts) > sample else None
        fit_texts = [texts[i] for i in idx] if idx is not None else list(texts)
        self._tfidf = TfidfVectorizer(min_df=2, max_features=self.max_features, ngram_range=(1, 2), sublinear_tf=True,
                                      token_pattern=r"(?u)[#@]?\b\w\w+\b", dtype=np.float32)
        m = self._tfidf.fit_transform(fit_texts)
        dim = min(self.dim, max(2, min(m.shape) - 1))
        self._svd = TruncatedSVD(dim, random_state=seed, algorithm="randomized", n_iter=4).fit(m)
        # the projection, C-contiguous: sparse @ dense then needs no copy of it per call (27 ms -> 0.1 ms)
        self._proj = np.ascontiguousarray(self._svd.components_.T, dtype=np.float32)
        self.dim = dim
        return self

    def encode(self, texts: Sequence[str], kind: str = "passage") -> np.ndarray:
        if self._svd is None:
            raise RuntimeError("fit the embedder first")
        if len(texts) == 0:
            return np.zeros((0, self.dim), np.float32)
        return _normalise(np.asarray(self._tfidf.transform(list(texts)) @ self._proj))


@dataclass
class UserVectors:
    """One unit vector per author, the mean of their posts' vectors; also each post's vector."""

    user_ids: np.ndarray        # str [users]
    matrix: np.ndarray          # float32 [users, dim]
    post_user: np.ndarray       # int [posts], row of each post's author
    post_vectors: np.ndarray    # float32 [posts, dim]
    post_lang: np.ndarray       # str [posts]
    embedder: Embedder
    index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.index = {u: i for i, u in enumerate(self.user_ids.tolist())}

    def rows(self, user_ids: Sequence[str]) -> np.ndarray:
        """Row of each user id; -1 for users with no posts."""
        return np.array([self.index.get(u, -1) for u in user_ids], dtype=np.int64)

    def lang_share(self, lang: str) -> np.ndarray:
        """Share of each user's posts written in ``lang``."""
        n = np.bincount(self.post_user, minlength=len(self.user_ids)).astype(np.float64)
        k = np.bincount(self.post_user[self.post_lang == lang], minlength=len(self.user_ids))
        return k / np.maximum(n, 1)


def read_posts(path: str | Path, columns: Sequence[str] = ("post_id", "author_id", "text", "lang")) -> pa.Table:
    """Clean posts (the post schema) with an author, as a table of ``columns``."""
    path = Path(path)
    if not path.exists():
        raise InputError("posts file not found", path=path)
    try:
        t = pq.read_table(path, columns=list(columns))
    except (pa.ArrowInvalid, OSError, KeyError) as e:
        raise InputError(f"not a posts Parquet file with columns {', '.join(columns)}: {e}", path=path) from None
    return t.filter(pc.is_valid(t.column("author_id")))


def build_user_vectors(posts: pa.Table, embedder: Embedder | None = None, seed: int = 0,
                       batch: int = 20_000) -> UserVectors:
    """Embed every post (fitting an :class:`LsaEmbedder` on them when no embedder is given) and average
    them per author."""
    texts = posts.column("text").to_pylist()
    if embedder is None:
        embedder = LsaEmbedder().fit(texts, seed=seed)
    authors = posts.column("author_id").to_numpy(zero_copy_only=False).astype(str)
    user_ids, post_user = np.unique(authors, return_inverse=True)
    vecs = np.zeros((len(texts), embedder.dim), np.float32)
    for i in range(0, len(texts), batch):
        vecs[i:i + batch] = embedder.encode(texts[i:i + batch], "passage")
    from scipy import sparse

    owner = sparse.csr_matrix((np.ones(len(texts), np.float32), (post_user, np.arange(len(texts)))),
                              shape=(len(user_ids), len(texts)))
    sums = np.asarray(owner @ vecs)
    langs = posts.column("lang").to_numpy(zero_copy_only=False).astype(str) if "lang" in posts.column_names \
        else np.full(len(texts), "und")
    return UserVectors(user_ids=user_ids, matrix=_normalise(sums), post_user=post_user, post_vectors=vecs,
                       post_lang=langs, embedder=embedder)
