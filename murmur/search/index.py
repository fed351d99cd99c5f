"""``SearchIndex``: build it from a clean Parquet file, open it, add and delete posts in real time.

An index directory (written whole by :func:`build_index` through ``murmur.io.atomic_dir``, so a
build that dies leaves the previous index as it was)::

    manifest.json   format, version, post count, the embedder (name, dimension, directory)
    posts.parquet   the indexed posts (row = key): what results show
    lexical/        the tantivy BM25 index (:mod:`murmur.search.lexical`)
    vectors.npy     float16 embeddings (row = key), and dense.usearch, their HNSW graph
    wal.jsonl       adds and deletes since the build (:mod:`murmur.search.wal`), replayed on open

Real time: :meth:`SearchIndex.add` cleans the posts (:mod:`murmur.search.ingest`), embeds them,
appends them to the log with an fsync, then adds them to both halves and commits the lexical one
before it returns; :meth:`SearchIndex.delete` logs the deletion and removes the post everywhere
before it returns. So a post is searchable, or gone, as soon as the call returns, and an
acknowledged add survives a crash. One writer at a time holds the index (tantivy's lock); readers
(``murmur search query``) open it read-only beside a running server.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from murmur.errors import InputError, MurmurError
from murmur.io import COMPLETE_MARKER, _entries, atomic_dir, is_complete, write_json
from murmur.progress import Progress
from murmur.search.analyze import doc_terms
from murmur.search.dense import DenseIndex, new_ann
from murmur.search.embed import DEFAULT_NAME, Embedder, load_embedder
from murmur.search.ingest import Cleaner, Post, validate
from murmur.search.lexical import LexicalIndex
from murmur.search.store import SCHEMA, Store
from murmur.search.wal import WriteAheadLog, decode_vector, encode_vector

FORMAT = "murmur-search-index"
KIND = "search-index"
VERSION = 1
MANIFEST = "manifest.json"
REQUIRED = ("post_id", "text", "created_at")


class IndexNotUsable(MurmurError):
    """An index directory that is missing, unfinished, or does not fit what it is used with."""


@dataclass
class BuildResult:
    path: Path
    posts: int
    seconds: float
    embed_seconds: float
    embedder: str | None

    def describe(self) -> str:
        rate = self.posts / max(self.seconds, 1e-9)
        emb = f", embedded with {self.embedder}" if self.embedder else ", lexical only"
        return f"indexed {self.posts:,} posts in {self.seconds:.1f}s ({rate:,.0f} posts/s{emb}) -> {self.path}"


@dataclass
class AddResult:
    added: list[str] = field(default_factory=list)
    dropped: list[tuple[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"object": "list", "added": self.added,
                "dropped": [{"post_id": p, "reason": r} for p, r in self.dropped]}


def _embedder_record(embedder: Embedder | None) -> dict[str, Any] | None:
    if embedder is None:
        return None
    path = getattr(embedder, "path", None)
    default = embedder.name == DEFAULT_NAME
    return {"name": embedder.name, "dim": int(embedder.dim), "dir": None if default or path is None else str(path)}


def _read_source(src: Path) -> pq.ParquetFile:
    if not src.is_file():
        raise InputError("not found (give the clean.parquet that `murmur data clean` wrote)", path=src)
    try:
        f = pq.ParquetFile(src)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"not a readable Parquet file ({e})", path=src) from None
    missing = [c for c in REQUIRED if c not in f.schema_arrow.names]
    if missing:
        raise InputError(f"missing column(s) {', '.join(missing)}; expected the post schema", path=src)
    return f


def _conform(batch: pa.RecordBatch) -> pa.Table:
    """The store's columns from a batch of the post schema (absent optional columns are null)."""
    t = pa.Table.from_batches([batch])
    cols = []
    for f in SCHEMA:
        if f.name in t.column_names:
            col = t.column(f.name)
            cols.append(col if col.type == f.type else pc.cast(col, f.type))
        else:
            cols.append(pa.nulls(t.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=SCHEMA)


def _refresh_marker(out: Path) -> None:
    """A live index writes files after its build (the log, new lexical segments): they are its own, so
    the completion marker is brought up to date before a rebuild replaces the directory."""
    try:
        marker = json.loads((out / COMPLETE_MARKER).read_text(encoding="utf-8"))
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if marker.get("murmur") == KIND and manifest.get("format") == FORMAT:
        marker["files"] = _entries(out)
        write_json(out / COMPLETE_MARKER, marker)


def build_index(src: str | Path, out: str | Path, embedder: Embedder | None, batch_size: int = 2048,
                progress: bool = True, threads: int = 1, overwrite: bool = False) -> BuildResult:
    """Index every post of ``src`` (a clean Parquet file) into ``out``, atomically.

    ``embedder=None`` builds a lexical-only index. An existing index is replaced only with
    ``overwrite`` (and its log of live adds goes with it: rebuild from a corpus that holds them).
    """
    src, out = Path(src), Path(out)
    pf = _read_source(src)
    if overwrite and out.is_dir():
        _refresh_marker(out)
    n = pf.metadata.num_rows
    t0 = time.perf_counter()
    embed_s = 0.0
    with atomic_dir(out, KIND, overwrite=overwrite, protect=[src]) as tmp:
        lexical = LexicalIndex(tmp / "lexical", writable=True, create=True, threads=threads)
        vectors = ann = None
        if embedder is not None:
            vectors = np.lib.format.open_memmap(tmp / "vectors.npy", mode="w+", dtype=np.float16,
                                                shape=(n, embedder.dim))
            ann = new_ann(embedder.dim)
        writer = pq.ParquetWriter(tmp / "posts.parquet", SCHEMA, compression="zstd")
        key = 0
        try:
            with Progress("search: index", total=n, unit="posts", enabled=progress) as bar:
                for batch in pf.iter_batches(batch_size=batch_size):
                    t = _conform(batch)
                    if pc.any(pc.is_null(t.column("post_id"))).as_py() or pc.any(pc.is_null(t.column("text"))).as_py():
                        raise InputError("a post without post_id or text", path=src)
                    writer.write_table(t)
                    cols = {name: t.column(name).to_pylist()
                            for name in ("text", "lang", "author_id", "hashtags", "mentions")}
                    created = pc.cast(t.column("created_at"), pa.int64()).to_numpy(zero_copy_only=False)
                    likes = pc.fill_null(t.column("likes"), 0).to_numpy(zero_copy_only=False)
                    for i in range(t.num_rows):
                        lexical.add(key + i, doc_terms(cols["text"][i], cols["lang"][i], cols["hashtags"][i] or (),
                                                       cols["mentions"][i] or ()),
                                    cols["lang"][i], cols["author_id"][i], cols["hashtags"][i] or (), int(created[i]),
                                    int(likes[i]))
                    if embedder is not None:
                        e0 = time.perf_counter()
                        vecs = embedder.encode(cols["text"], "passage")
                        vectors[key:key + t.num_rows] = vecs
                        ann.add(np.arange(key, key + t.num_rows), vecs.astype(np.float16))
                        embed_s += time.perf_counter() - e0
                    key += t.num_rows
                    bar.advance(t.num_rows)
        except BaseException:  # stop the writers before the temporary folder is removed
            writer.close()
            lexical.close()
            raise
        writer.close()
        lexical.commit()
        lexical.close()
        if embedder is not None:
            vectors.flush()
            del vectors
            ann.save(str(tmp / "dense.usearch"))
        write_json(tmp / MANIFEST, {"format": FORMAT, "version": VERSION, "posts": key, "source": str(src),
                                    "embedder": _embedder_record(embedder)})
    return BuildResult(out, key, time.perf_counter() - t0, embed_s, embedder.name if embedder else None)


def read_manifest(path: Path) -> dict[str, Any]:
    if not path.is_dir():
        raise IndexNotUsable(f"{path}: search index not found (build one with `murmur search index`)")
    if not (path / MANIFEST).is_file() or not is_complete(path):
        raise IndexNotUsable(f"{path}: not a search index (no {MANIFEST}); build one with `murmur search index`")
    try:
        m = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except ValueError as e:
        raise IndexNotUsable(f"{path / MANIFEST}: unreadable ({e})") from None
    if m.get("format") != FORMAT or m.get("version") != VERSION:
        raise IndexNotUsable(f"{path}: not a version {VERSION} search index; rebuild it with `murmur search index`")
    return m


class _RWLock:
    """Many readers or one writer."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False

    def read(self):
        lock = self

        class _R:
            def __enter__(self):
                with lock._cond:
                    while lock._writer:
                        lock._cond.wait()
                    lock._readers += 1

            def __exit__(self, *exc):
                with lock._cond:
                    lock._readers -= 1
                    lock._cond.notify_all()
        return _R()

    def write(self):
        lock = self

        class _W:
            def __enter__(self):
                with lock._cond:
                    while lock._writer or lock._readers:
                        lock._cond.wait()
                    lock._writer = True

            def __exit__(self, *exc):
                with lock._cond:
                    lock._writer = False
                    lock._cond.notify_all()
        return _W()


class SearchIndex:
    """An open index: search it (:mod:`murmur.search.retrieve`), add and delete posts.

    ``embedder``: ``None`` loads the one the index was built with; an :class:`Embedder` must give
    vectors of the index's dimension. ``writable=False`` opens it beside a running writer.
    """

    def __init__(self, path: str | Path, embedder: Embedder | None = None, writable: bool = True,
                 cleaner: Cleaner | None = None, threads: int = 1):
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        rec = self.manifest.get("embedder")
        if rec is not None and embedder is None:
            embedder = load_embedder(rec["dir"]) if rec["dir"] else load_embedder(None)
        if rec is not None and embedder is not None and int(embedder.dim) != int(rec["dim"]):
            raise IndexNotUsable(f"{self.path}: the index holds {rec['dim']}-d vectors from {rec['name']}, but the "
                              f"embedder {embedder.name} gives {embedder.dim}-d vectors; use the embedder the index "
                              "was built with, or rebuild the index")
        self.embedder = embedder if rec is not None else None
        self.writable = writable
        self.lock = _RWLock()
        try:
            self.lexical = LexicalIndex(self.path / "lexical", writable=writable, threads=threads)
        except ValueError as e:
            if "lock" in str(e).lower() or "busy" in str(e).lower():
                raise IndexNotUsable(f"{self.path}: another process is writing to this index; "
                                  "open it read-only or stop the other writer") from None
            raise IndexNotUsable(f"{self.path}: the lexical index cannot be opened ({e})") from None
        self.store = Store.load(self.path / "posts.parquet")
        self.dense = DenseIndex.load(self.path / "vectors.npy", self.path / "dense.usearch") if rec else None
        self.wal = WriteAheadLog(self.path / "wal.jsonl")
        self._cleaner = cleaner
        self._replay()

    # ------------------------------------------------------------------ the log
    def _replay(self) -> None:
        """Apply the log on top of the build; a writer also rebuilds the lexical side of it."""
        n_base = self.store.n_base
        adds = []
        for rec in self.wal.records():
            if rec["op"] == "add":
                post = Post.from_json(rec["post"])
                old = self.store.ids.get(post.post_id)
                key = self.store.append(post)
                if key != rec["key"]:
                    raise IndexNotUsable(f"{self.wal.path}: record for key {rec['key']} found at key {key}; "
                                      "the log does not belong to this build")
                if old is not None:
                    self._kill(old)
                if self.dense is not None:
                    self.dense.add(key, decode_vector(rec["vec"]))
                adds.append((key, post))
            elif rec["op"] == "delete":
                key = self.store.ids.get(rec["post_id"])
                if key is not None:
                    self._kill(key)
        if self.writable and (adds or len(self.store) > n_base or self.wal.path.exists()):
            self.lexical.delete_from(n_base)
            for key, post in adds:
                if self.store.alive.a[key]:
                    self._lexical_add(key, post)
            for key in np.flatnonzero(~self.store.alive.view[:n_base]):
                self.lexical.delete(int(key))
            self.lexical.commit()

    def _kill(self, key: int) -> None:
        self.store.kill(key)
        if self.dense is not None:
            self.dense.remove(key)

    def _lexical_add(self, key: int, post: Post) -> None:
        self.lexical.add(key, doc_terms(post.text, post.lang, post.hashtags, post.mentions), post.lang,
                         post.author_id, post.hashtags, post.created_us, post.likes)

    # ------------------------------------------------------------------ writes
    @property
    def cleaner(self) -> Cleaner:
        if self._cleaner is None:
            self._cleaner = Cleaner()
        return self._cleaner

    def _check_writable(self) -> None:
        if not self.writable:
            raise IndexNotUsable(f"{self.path}: opened read-only")

    def add(self, rows: Sequence[dict[str, Any]]) -> AddResult:
        """Validate, clean, embed, log (fsync) and index ``rows``; searchable when this returns.

        A row that does not fit the post schema refuses the whole batch (``InputError`` naming
        ``posts[i].field``); rows the cleaning rules drop come back in ``dropped`` with their reason.
        """
        self._check_writable()
        valid = validate(list(rows) if not isinstance(rows, list) else rows)
        posts, dropped = self.cleaner.clean(valid)
        vecs = self.embedder.encode([p.text for p in posts], "passage") if self.dense is not None and posts else None
        with self.lock.write():
            records = []
            for i, post in enumerate(posts):
                rec: dict[str, Any] = {"op": "add", "key": len(self.store) + i, "post": post.to_json()}
                if vecs is not None:
                    rec["vec"] = encode_vector(vecs[i])
                records.append(rec)
            if records:
                self.wal.append(records)
            for i, post in enumerate(posts):
                old = self.store.ids.get(post.post_id)
                key = self.store.append(post)
                if old is not None:
                    self._kill(old)
                    self.lexical.delete(old)
                if vecs is not None:
                    self.dense.add(key, vecs[i])
                self._lexical_add(key, post)
            if posts:
                self.lexical.commit()
        return AddResult(added=[p.post_id for p in posts], dropped=dropped)

    def delete(self, post_id: str) -> bool:
        """Remove a post from every result; False when the index does not hold it."""
        self._check_writable()
        with self.lock.write():
            key = self.store.ids.get(post_id)
            if key is None or not self.store.alive.a[key]:
                return False
            self.wal.append([{"op": "delete", "post_id": post_id}])
            self._kill(key)
            self.lexical.delete(key)
            self.lexical.commit()
        return True

    def __len__(self) -> int:
        return int(self.store.alive.view.sum())

    def close(self) -> None:
        self.wal.close()
        self.lexical.close()

    def __enter__(self) -> SearchIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def search(self, request: Any, cfg: Any = None) -> list[dict[str, Any]]:
        from murmur.search.retrieve import search

        return search(self, request, cfg)
