"""``SearchIndex``: build it from a clean Parquet file, open it, add and delete posts in real time.

An index directory (written whole by :func:`build_index` through ``murmur.io.atomic_dir``, so a
build that dies leaves the previous index as it was)::

    manifest.json   format, version, post count, the embedder (name, dimension, directory)
    posts.parquet   the indexed posts (row = key): what results show
    lexical/        the tantivy BM25 index (:mod:`murmur.search.lexical`)
    vectors.npy     float16 embeddings (row = key), and dense.faiss, their HNSW graph (the manifest names it;
                    an index built before with another engine's graph gets it rebuilt from the rows)
    dense-LANG.faiss  the graph of one language's posts, for each language with enough of them
                    (:class:`murmur.search.dense.GraphConfig`; the manifest's ``lang_graphs`` names them)
    wal-NNNNNN.jsonl  adds and deletes not yet compacted (:mod:`murmur.search.wal`), replayed on open
    segments.json, seg-*, dead-*, graph-*  what compaction folded in (:mod:`murmur.search.segments`)

Real time: :meth:`SearchIndex.add` cleans the posts (:mod:`murmur.search.ingest`), embeds them,
appends them to the log with an fsync, then adds them to both halves and commits the lexical one
before it returns; :meth:`SearchIndex.delete` logs the deletion and removes the post everywhere
before it returns. So a post is searchable, or gone, as soon as the call returns, and an
acknowledged add survives a crash. One writer at a time holds the index (tantivy's lock); readers
(``murmur search query``) open it read-only beside a running server.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from murmur.config import knob
from murmur.errors import InputError, MurmurError
from murmur.io import COMPLETE_MARKER, _entries, atomic_dir, is_complete, open_parquet, write_json
from murmur.progress import Progress
from murmur.search.analyze import doc_terms
from murmur.search.dense import (
    GRAPH_SUFFIX,
    DenseIndex,
    GraphConfig,
    add_rows,
    graph_langs,
    keyed_graph_of,
    lang_graphs_of,
    new_ann,
    save_ann,
)
from murmur.search.embed import DEFAULT_NAME, Embedder, QueryCache, load_embedder
from murmur.search.ingest import Cleaner, Post, validate
from murmur.search.lexical import LexicalIndex
from murmur.search.segments import (
    LEGACY_WAL,
    OLD_GRAPH,
    STATE,
    DiskState,
    Segment,
    fsync_file,
    posts_table,
    read_state,
    wal_name,
    wal_numbers,
    write_state,
)
from murmur.search.store import SCHEMA, Store
from murmur.search.wal import WriteAheadLog, decode_vector, encode_vector

log = logging.getLogger(__name__)
FORMAT = "murmur-search-index"
KIND = "search-index"
VERSION = 1
MANIFEST = "manifest.json"
GRAPH = f"dense{GRAPH_SUFFIX}"
REQUIRED = ("post_id", "text", "created_at")


@dataclass(frozen=True)
class CompactConfig:
    """When a writable index folds its write-ahead log into its segments."""

    auto: bool = knob(True, "compact in a background thread of the writer")
    wal_bytes: int = knob(64 * 1024 * 1024, "compact when the log passes this many bytes")
    interval_seconds: float = knob(600.0, "compact a non-empty log at least this often")
    on_close: bool = knob(True, "compact on a clean shutdown (close, or interpreter exit)")
    max_segments: int = knob(8, "merge the segments added since the build into one past this many")
    poll_seconds: float = knob(1.0, "how often the background thread checks the log")


class IndexNotUsable(MurmurError):
    """An index directory that is missing, unfinished, or does not fit what it is used with."""


@dataclass
class BuildResult:
    path: Path
    posts: int
    seconds: float
    embed_seconds: float
    embedder: str | None
    lang_graphs: tuple[str, ...] = ()

    def describe(self) -> str:
        rate = self.posts / max(self.seconds, 1e-9)
        emb = f", embedded with {self.embedder}" if self.embedder else ", lexical only"
        own = f"; graphs of their own: {', '.join(self.lang_graphs)}" if self.lang_graphs else ""
        return f"indexed {self.posts:,} posts in {self.seconds:.1f}s ({rate:,.0f} posts/s{emb}{own}) -> {self.path}"


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
    f = open_parquet(src)
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


def write_lang_graphs(out: Path, langs: list[str | None], cfg: GraphConfig, progress: bool = True) -> dict[str, str]:
    """Build and save the languages' own graphs over ``out/vectors.npy`` (``langs``: each row's language);
    the file of each, by language, for the manifest's ``lang_graphs``."""
    rows = np.load(out / "vectors.npy", mmap_mode="r")
    names = {}
    for lang, graph in lang_graphs_of(rows, langs, cfg, progress).items():
        names[lang] = f"dense-{lang}{GRAPH_SUFFIX}"
        save_ann(graph, out / names[lang])
    return names


def build_index(src: str | Path, out: str | Path, embedder: Embedder | None, batch_size: int = 2048,
                progress: bool = True, threads: int = 1, overwrite: bool = False,
                graphs: GraphConfig | None = None) -> BuildResult:
    """Index every post of ``src`` (a clean Parquet file) into ``out``, atomically.

    ``embedder=None`` builds a lexical-only index. An existing index is replaced only with
    ``overwrite`` (and its log of live adds goes with it: rebuild from a corpus that holds them).
    ``graphs``: which languages get a graph of their own.
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
        langs: list[str | None] = []
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
                    langs.extend(cols["lang"])
                    if embedder is not None:
                        e0 = time.perf_counter()
                        vecs = embedder.encode(cols["text"], "passage")
                        vectors[key:key + t.num_rows] = vecs
                        add_rows(ann, vecs)
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
            save_ann(ann, tmp / GRAPH)
            del ann
        by_lang = write_lang_graphs(tmp, langs, graphs or GraphConfig(), progress) if embedder is not None else {}
        write_json(tmp / MANIFEST, {"format": FORMAT, "version": VERSION, "posts": key, "source": str(src),
                                    "graph": GRAPH if embedder is not None else None, "lang_graphs": by_lang,
                                    "embedder": _embedder_record(embedder)})
    return BuildResult(out, key, time.perf_counter() - t0, embed_s, embedder.name if embedder else None,
                       tuple(by_lang))


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


class _Held:
    """A ``with`` block around two calls (one object per lock side, made once: a search takes it)."""

    __slots__ = ("_enter", "_exit")

    def __init__(self, enter: Callable[[], None], exit_: Callable[[], None]):
        self._enter, self._exit = enter, exit_

    def __enter__(self) -> None:
        self._enter()

    def __exit__(self, *exc: object) -> None:
        self._exit()


class _RWLock:
    """Many readers or one writer; a waiting writer goes first (a reader that comes after it waits), so
    a stream of short reads (a search, a slice of trend counting) cannot hold an add back. Not
    reentrant: a thread that holds a read must not take another."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting = 0  # writers waiting
        self._read = _Held(self._start_read, self._end_read)
        self._write = _Held(self._start_write, self._end_write)

    def read(self) -> _Held:
        return self._read

    def write(self) -> _Held:
        return self._write

    def _start_read(self) -> None:
        with self._cond:
            while self._writer or self._waiting:
                self._cond.wait()
            self._readers += 1

    def _end_read(self) -> None:
        with self._cond:
            self._readers -= 1
            if not self._readers:  # only a writer waits for the readers to be gone
                self._cond.notify_all()

    def _start_write(self) -> None:
        with self._cond:
            self._waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            except BaseException:  # given up (an interrupt): readers held back by this writer go on
                self._waiting -= 1
                self._cond.notify_all()
                raise
            self._waiting -= 1
            self._writer = True

    def _end_write(self) -> None:
        with self._cond:
            self._writer = False
            self._cond.notify_all()


class SearchIndex:
    """An open index: search it (:mod:`murmur.search.retrieve`), add and delete posts.

    ``embedder``: ``None`` loads the one the index was built with; an :class:`Embedder` must give
    vectors of the index's dimension. ``writable=False`` opens it beside a running writer. ``graphs``:
    the languages that get a graph of their own when compaction finds them past its threshold.
    """

    def __init__(self, path: str | Path, embedder: Embedder | None = None, writable: bool = True,
                 cleaner: Cleaner | None = None, threads: int = 1, compact: CompactConfig | None = None,
                 graphs: GraphConfig | None = None):
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
        self.query_vectors = QueryCache()
        self.writable = writable
        self.lock = _RWLock()
        self._compacting = threading.Lock()
        self._cleaner = cleaner
        self.compact_cfg = compact or CompactConfig()
        self.graph_cfg = graphs or GraphConfig()
        try:
            self.lexical = LexicalIndex(self.path / "lexical", writable=writable, threads=threads)
        except ValueError as e:
            if "lock" in str(e).lower() or "busy" in str(e).lower():
                raise IndexNotUsable(f"{self.path}: another process is writing to this index; "
                                  "open it read-only or stop the other writer") from None
            raise IndexNotUsable(f"{self.path}: the lexical index cannot be opened ({e})") from None
        if writable and (self.path / LEGACY_WAL).exists() and not (self.path / STATE).exists():
            os.replace(self.path / LEGACY_WAL, self.path / wal_name(1))  # the log of a version without compaction
        for _ in range(5):  # a reader beside a writer: start again if a compaction switched state meanwhile
            try:
                state = read_state(self.path, self.manifest)
            except (ValueError, KeyError, TypeError) as e:
                raise IndexNotUsable(f"{self.path / STATE}: unreadable ({e}); rebuild the index with "
                                     "`murmur search index --overwrite`") from None
            try:
                self._load(state)
            except FileNotFoundError as e:
                if writable:
                    raise IndexNotUsable(f"{self.path}: {Path(str(e.filename or e)).name} named by {STATE} is missing; "
                                         "rebuild the index with `murmur search index --overwrite`") from None
                continue
            if writable or read_state(self.path, self.manifest) == state:
                break
        self._last_compact = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if writable:
            self._remove_unreferenced()
            if self.compact_cfg.auto:
                self._thread = threading.Thread(target=self._compactor, name="search-compact", daemon=True)
                self._thread.start()
                atexit.register(self._at_exit)

    def _load(self, state: DiskState) -> None:
        self.state = state
        self.store = Store(pa.concat_tables([pq.read_table(self.path / s.posts, schema=SCHEMA)
                                             for s in state.segments]))
        if state.dead:  # before the graphs: one built again at compaction holds the live posts only
            for key in np.load(self.path / state.dead):
                self._kill(int(key))
        self.dense = DenseIndex.load([self.path / s.vectors for s in state.segments], self.path / state.graph,
                                     {lang: self.path / f for lang, f in state.lang_graphs.items()},
                                     self._keys_in) if self.manifest.get("embedder") else None
        self.disk_posts = state.posts
        logs = [h for h in wal_numbers(self.path) if h > state.gen]
        for h in logs[:-1]:
            self._replay(WriteAheadLog(self.path / wal_name(h)))
        self.wal = WriteAheadLog(self.path / wal_name(logs[-1] if logs else state.gen + 1))
        self._replay(self.wal, final=True)

    # ------------------------------------------------------------------ the log
    def _replay(self, wal: WriteAheadLog, final: bool = False) -> None:
        """Apply a log on top of the segments; after the last log, a writer also rebuilds the lexical
        side of everything the logs added."""
        for rec in wal.records():
            if rec["op"] == "add":
                post = Post.from_json(rec["post"])
                old = self.store.ids.get(post.post_id)
                key = self.store.append(post)
                if key != rec["key"]:
                    raise IndexNotUsable(f"{wal.path}: record for key {rec['key']} found at key {key}; "
                                      "the log does not belong to this build")
                if old is not None:
                    self._kill(old)
                if self.dense is not None:
                    self.dense.add(key, decode_vector(rec["vec"]), post.lang)
            elif rec["op"] == "delete":
                key = self.store.ids.get(rec["post_id"])
                if key is not None:
                    self._kill(key)
        n_base = self.store.n_base
        if final and self.writable and (len(self.store) > n_base or wal_numbers(self.path)):
            self.lexical.delete_from(n_base)
            for key in range(n_base, len(self.store)):
                if self.store.alive.a[key]:
                    self._lexical_add(key, self.store.added[key - n_base])
            for key in np.flatnonzero(~self.store.alive.view[:n_base]):
                self.lexical.delete(int(key))
            self.lexical.commit()

    def _keys_in(self, lang: str | None, dead: np.ndarray | None = None) -> np.ndarray:
        """The keys of the store's live posts in ``lang`` (in any for None); with ``dead``, the keys not in
        it instead (the ones live when it was taken, and any added since)."""
        if dead is None:
            live = self.store.alive.view.copy()
        else:
            live = np.ones(len(self.store), bool)
            live[dead] = False
        if lang is not None:
            live &= self.store.lang.view == self.store.langs.get(lang, -1)
        return np.flatnonzero(live)

    def _kill(self, key: int) -> None:
        self.store.kill(key)  # the graph keeps the key: the store's liveness drops it from every result

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
                    self.dense.add(key, vecs[i], post.lang)
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

    # ------------------------------------------------------------------ compaction
    def compact(self, build_graphs: bool = True) -> bool:
        """Fold the write-ahead logs into the segments (see :mod:`murmur.search.segments`).

        Searches go on meanwhile; adds and deletes wait only while the log is switched and while
        a graph is saved (each graph on its own), and a graph built anew (a language's first, or one
        over the live posts) is built without holding them up. ``build_graphs=False`` leaves those to a
        later compaction (a shutdown does not wait minutes for them). Every file is fsynced before
        ``segments.json`` names it, and a log is removed only after that. False when there was nothing
        to fold.
        """
        self._check_writable()
        with self._compacting:
            with self.lock.write():
                n = len(self.store)
                dead = np.flatnonzero(~self.store.alive.view[:n]).astype(np.int64)
                old_dead = int(np.load(self.path / self.state.dead).size) if self.state.dead else 0
                if n == self.disk_posts and len(dead) == old_dead and self.wal.bytes == 0:
                    return False
                folded = int(self.wal.path.name[4:-6])
                self.wal.close()
                self.wal = WriteAheadLog(self.path / wal_name(folded + 1))  # new adds go to the next log
                first = self.disk_posts - self.store.n_base
                posts = self.store.added[first:first + n - self.disk_posts]
                vecs = np.stack(self.dense.added[first:first + len(posts)]) \
                    if self.dense is not None and posts else None
            segments = list(self.state.segments)
            tag = f"{folded:06d}"
            if posts:
                table = posts_table(posts, SCHEMA)
                start = self.disk_posts
                delta = [s for s in segments[1:]]
                if len(delta) + 1 >= self.compact_cfg.max_segments:  # merge the added segments into one
                    table = pa.concat_tables([pq.read_table(self.path / s.posts, schema=SCHEMA) for s in delta]
                                             + [table])
                    if vecs is not None:
                        vecs = np.concatenate([np.load(self.path / s.vectors) for s in delta] + [vecs])
                    start = delta[0].start if delta else start
                    segments = segments[:1]
                seg = Segment(f"seg-{tag}.parquet", f"seg-{tag}.npy" if vecs is not None else None, start,
                              table.num_rows)
                pq.write_table(table, self.path / seg.posts, compression="zstd")
                fsync_file(self.path / seg.posts)
                if vecs is not None:
                    np.save(self.path / seg.vectors, vecs.astype(np.float16))
                    fsync_file(self.path / seg.vectors)
                segments.append(seg)
            dead_file = None
            if len(dead):
                dead_file = f"dead-{tag}.npy"
                np.save(self.path / dead_file, dead)
                fsync_file(self.path / dead_file)
            graph, by_lang = self.state.graph, dict(self.state.lang_graphs)
            if self.dense is not None:
                if build_graphs:
                    self._refresh_graphs(dead)
                graph = f"graph-{tag}{GRAPH_SUFFIX}"
                by_lang = {lang: f"graph-{tag}-{lang}{GRAPH_SUFFIX}" for lang in self.dense.by_lang}
                with self.lock.read():  # the graphs may hold later adds too: replay is idempotent
                    self.dense.save_graph(self.path / graph)
                for lang, name in by_lang.items():  # one at a time: an add waits for one graph's save at most
                    with self.lock.read():
                        save_ann(self.dense.by_lang[lang], self.path / name)
                for name in (graph, *by_lang.values()):
                    fsync_file(self.path / name)
            state = DiskState(folded, n, tuple(segments), dead_file, graph, by_lang)
            write_state(self.path, state)
            self.state, self.disk_posts = state, n
            self._last_compact = time.monotonic()
            self._remove_unreferenced()
            _refresh_marker(self.path)
        return True

    def _refresh_graphs(self, dead: np.ndarray) -> None:
        """Build the graphs that compaction renews, while searches and adds go on (the adds made meanwhile
        join each before it is used): one for each language that has passed ``GraphConfig.lang_min_posts``,
        and, over the live posts only, each graph whose deleted posts are more than ``rebuild_dead_share``
        of it. ``dead``: the dead keys this compaction writes (a graph holds every key not in it)."""
        cfg = self.graph_cfg
        with self.lock.read():
            alive = self.store.alive.view
            counts = {lang: int(np.count_nonzero((self.store.lang.view == code) & alive))
                      for lang, code in self.store.langs.items()}
            todo = [lang for lang in graph_langs(counts, cfg) if lang not in self.dense.by_lang]
            if cfg.rebuild_dead_share > 0:
                todo += [lang for lang in (None, *self.dense.by_lang)
                         if self.dense.dead_share(lang, alive) > cfg.rebuild_dead_share]
            keys = {lang: self._keys_in(lang, dead) for lang in todo}
            n0 = len(self.store)
        for lang in todo:
            if not len(keys[lang]):
                continue
            what = f"{lang!r} posts" if lang is not None else "the live posts"
            graph = keyed_graph_of(self.dense.rows, keys[lang], self.dense.dim, what)
            with self.lock.write():
                late = self._keys_in(lang, dead)
                late = late[late >= n0]
                if len(late):
                    graph.add_with_ids(self.dense.rows(late), late.astype(np.int64))
                self.dense.set_graph(lang, graph)

    def _remove_unreferenced(self) -> None:
        """Files of earlier states and logs already folded (what a compaction leaves or a crash left)."""
        keep = self.state.files()
        for p in self.path.iterdir():
            name = p.name
            if name.startswith(("seg-", "dead-", "graph-")) and name not in keep \
                    or (name.startswith("wal-") and name.endswith(".jsonl") and name[4:-6].isdigit()
                        and int(name[4:-6]) <= self.state.gen):
                p.unlink(missing_ok=True)
            elif name in ("vectors.npy", GRAPH, OLD_GRAPH, "posts.parquet") and name not in keep \
                    or name.startswith("dense-") and name.endswith(GRAPH_SUFFIX) and name not in keep:
                p.unlink(missing_ok=True)

    def _compactor(self) -> None:
        cfg = self.compact_cfg
        while not self._stop.wait(cfg.poll_seconds):
            due = self.wal.bytes >= cfg.wal_bytes or \
                (self.wal.bytes > 0 and time.monotonic() - self._last_compact >= cfg.interval_seconds)
            if due:
                try:
                    self.compact()
                except Exception as e:  # the logs stay: nothing is lost, the next try may succeed
                    log.warning("search index %s: compaction failed (%s); the write-ahead log is kept",
                                self.path, e)
                    self._last_compact = time.monotonic()

    def _at_exit(self) -> None:
        if self.writable and self.lexical.writer is not None:
            self.close()

    def close(self) -> None:
        """Stop compacting in the background, fold the log in (a clean shutdown), release the writer."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            atexit.unregister(self._at_exit)
        if self.writable and self.lexical.writer is not None and self.compact_cfg.on_close:
            try:
                self.compact(build_graphs=False)
            except Exception as e:
                log.warning("search index %s: compaction on close failed (%s); the write-ahead log is kept",
                            self.path, e)
        self.wal.close()
        self.lexical.close()

    def __enter__(self) -> SearchIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def search(self, request: Any, cfg: Any = None) -> list[dict[str, Any]]:
        from murmur.search.retrieve import search

        return search(self, request, cfg)

    def warm_up(self) -> None:
        """Load now what the first query or add would otherwise wait for (about a second on a CPU):
        the query-language identifier, the embedder's forwards (murmur-embed traces them at their
        first call) and, on a writable index, the cleaner's, with its compiled kernels (one sample
        text cleaned, nothing stored)."""
        from murmur.search.retrieve import query_language

        query_language("warm up", tuple(sorted(self.store.langs)))
        if self.embedder is not None:
            self.embedder.encode(["warm up"], "query")
            if self.writable:
                self.embedder.encode(["warm up"], "passage")
        if self.writable:
            self.cleaner.text_cleaner.clean(["Warming up the garden club notes with fresh tomatoes today #garden"],
                                            [None])
