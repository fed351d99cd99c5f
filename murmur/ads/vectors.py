"""User and post vectors for ads, behind one small interface.

Everything in ads that needs "what is this person / this text about" asks an *embedder*: an object
with ``name``, ``dim`` and ``encode(texts, kind) -> unit-length float32 [n, dim]`` (the same shape as
:mod:`murmur.search.embed`'s embedders, so any of them plugs in). A user's vector is the normalised
mean of their posts' vectors.

:class:`LsaEmbedder` is the fast default fitted on the posts themselves: tf-idf over words
and word pairs, reduced by truncated SVD (latent semantic analysis). It needs no model weights and
embeds a million posts in about a minute on one core, which is what the ad server's latency (a
context post embedded per request) and the pCTR features need. Audiences take search's neural
embedder (:func:`text_embedder`: the packaged all-MiniLM-L6-v2, or murmur's own embedder directory),
chosen by measurement against the world's true interests (docs/ads.md); its post vectors are cached
by post id (:func:`build_user_vectors` ``cache=``), so a rebuild embeds only the posts it has not seen.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from murmur.errors import InputError
from murmur.io import atomic_path


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


EMBEDDERS = "lsa, default (search's packaged all-MiniLM-L6-v2) or an embedder directory (murmur embed train)"


def text_embedder(spec: str | Path | None) -> Embedder | None:
    """The embedder named by ``spec``: ``"lsa"`` gives None (an :class:`LsaEmbedder` is fitted on the posts),
    ``"default"`` or None search's packaged embedder, anything else a directory for
    :func:`murmur.search.embed.load_embedder` (murmur's own embedder or a BERT-style one)."""
    if spec is not None and str(spec) == "lsa":
        return None
    from murmur.search.embed import load_embedder

    return load_embedder(None if spec is None or str(spec) == "default" else Path(spec))


def _cache_file(cache: Path, embedder: Embedder) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{embedder.name}-{embedder.dim}")
    return cache / f"post-vectors-{safe}.npz"


def index_post_vectors(index_dir: str | Path, post_ids: Sequence[str]) -> tuple[Embedder, np.ndarray, np.ndarray]:
    """The vectors a search index (``murmur search index``) already holds for ``post_ids``: its embedder,
    the vectors (zero rows where it holds none) and the mask of posts it holds."""
    from murmur.search.index import SearchIndex

    with SearchIndex(index_dir, writable=False) as index:
        if index.dense is None or index.embedder is None:
            raise InputError("the search index holds no post vectors (it was built without an embedder)",
                             path=index_dir)
        try:
            keys = np.array([index.store.ids.get(p, -1) for p in post_ids], dtype=np.int64)
            have = keys >= 0
            vecs = np.zeros((len(post_ids), index.embedder.dim), np.float32)
            if have.any():
                vecs[have] = index.dense.rows(keys[have])
        except (AttributeError, IndexError) as e:
            raise InputError(f"cannot read this search index's post vectors ({e}); pass --embedder instead",
                             path=index_dir) from None
        return index.embedder, _normalise(vecs) * have[:, None], have


def _embed_cached(post_ids: Sequence[str], texts: Sequence[str], embedder: Embedder, cache: Path | None,
                  batch: int, progress: Callable[[int, int], None] | None,
                  preset: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Post vectors: those in ``preset`` (vectors, mask), then those of posts already embedded in ``cache``;
    the rest are embedded and added to the cache."""
    vecs = np.zeros((len(texts), embedder.dim), np.float32)
    todo = np.arange(len(texts))
    if preset is not None:
        vecs[preset[1]] = preset[0][preset[1]]
        todo = np.flatnonzero(~preset[1])
    known_ids = np.zeros(0, str)
    known_vecs = np.zeros((0, embedder.dim), np.float32)
    path = _cache_file(cache, embedder) if cache is not None else None
    if path is not None and path.is_file():
        try:
            with np.load(path) as z:
                known_ids, known_vecs = z["post_id"], z["vectors"]
        except (OSError, ValueError, KeyError):
            known_ids = np.zeros(0, str)  # an unreadable cache is rebuilt, not trusted
    if len(known_ids) and len(todo):
        pid = np.asarray(post_ids, dtype=str)[todo]
        pos = np.minimum(np.searchsorted(known_ids, pid), len(known_ids) - 1)
        hit = known_ids[pos] == pid
        vecs[todo[hit]] = known_vecs[pos[hit]]
        todo = todo[~hit]
    for i in range(0, len(todo), batch):
        rows = todo[i:i + batch]
        vecs[rows] = embedder.encode([texts[r] for r in rows], "passage")
        if progress is not None:
            progress(min(i + batch, len(todo)), len(todo))
    if path is not None and len(todo):
        ids = np.concatenate([known_ids, np.asarray(post_ids, dtype=str)[todo]])
        allv = np.concatenate([known_vecs, vecs[todo]])
        ids, first = np.unique(ids, return_index=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, post_id=ids, vectors=allv[first])
    return vecs


def build_user_vectors(posts: pa.Table, embedder: Embedder | None = None, seed: int = 0,
                       batch: int = 20_000, cache: Path | None = None,
                       progress: Callable[[int, int], None] | None = None,
                       index: str | Path | None = None) -> UserVectors:
    """Embed every post (fitting an :class:`LsaEmbedder` on them when no embedder is given) and average
    them per author. With ``cache`` (a directory) a given embedder's post vectors are kept there by post id;
    with ``index`` (a search index directory) the vectors it holds are taken from it, with its embedder."""
    texts = posts.column("text").to_pylist()
    preset = None
    if index is not None:
        if "post_id" not in posts.column_names:
            raise InputError("reading vectors from a search index needs the posts' post_id column")
        embedder, pvecs, have = index_post_vectors(index, posts.column("post_id").to_pylist())
        preset = (pvecs, have)
    if embedder is None:
        embedder = LsaEmbedder().fit(texts, seed=seed)
        cache = None  # fitted on these posts: its vectors are not comparable across fits
    authors = posts.column("author_id").to_numpy(zero_copy_only=False).astype(str)
    user_ids, post_user = np.unique(authors, return_inverse=True)
    post_ids = posts.column("post_id").to_pylist() if "post_id" in posts.column_names else None
    if post_ids is None:
        cache = None
    vecs = _embed_cached(post_ids or [], texts, embedder, cache, batch, progress, preset)
    from scipy import sparse

    owner = sparse.csr_matrix((np.ones(len(texts), np.float32), (post_user, np.arange(len(texts)))),
                              shape=(len(user_ids), len(texts)))
    sums = np.asarray(owner @ vecs)
    langs = posts.column("lang").to_numpy(zero_copy_only=False).astype(str) if "lang" in posts.column_names \
        else np.full(len(texts), "und")
    return UserVectors(user_ids=user_ids, matrix=_normalise(sums), post_user=post_user, post_vectors=vecs,
                       post_lang=langs, embedder=embedder)
