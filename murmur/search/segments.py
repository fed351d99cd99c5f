"""The on-disk state of a live index: which files hold its posts, and which logs are not folded in yet.

A build writes one segment (``posts.parquet`` + ``vectors.npy``), the HNSW graph ``dense.faiss``
and the lexical (tantivy) index. Posts added and deleted later go to numbered write-ahead logs
(``wal-000001.jsonl``, ...). Compaction (:meth:`murmur.search.index.SearchIndex.compact`) folds
the logs into the segments: it writes a new segment of the added posts and their vectors, the
keys deleted so far (``dead-G.npy``) and the graphs (``graph-G.faiss``, and ``graph-G-LANG.faiss`` for
each language with a graph of its own), each fsynced, then
switches ``segments.json`` to them with one atomic rename, and only then removes the logs it
folded. ``segments.json`` says: generation ``G`` (every log numbered ``G`` or less is in the
segments; logs above ``G`` are replayed on open), the number of posts the segments hold, the
segments in key order, the dead keys and the graphs. No file ``segments.json`` means the build as
it was written (generation 0). A crash at any point leaves either the old state with all its logs
or the new state: nothing acknowledged is lost.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from murmur.io import write_json
from murmur.search.ingest import Post

STATE = "segments.json"
LEGACY_WAL = "wal.jsonl"
_WAL_RE = re.compile(r"wal-(\d{6,})\.jsonl")


def wal_name(number: int) -> str:
    return f"wal-{number:06d}.jsonl"


def wal_numbers(path: Path) -> list[int]:
    """Numbers of the logs present in ``path``, ascending."""
    return sorted(int(m.group(1)) for p in path.iterdir() if (m := _WAL_RE.fullmatch(p.name)))


@dataclass(frozen=True)
class Segment:
    posts: str                 # Parquet file of the post rows, keys start..start+n-1
    vectors: str | None        # float16 .npy of their embeddings (None for a lexical-only index)
    start: int
    n: int


@dataclass(frozen=True)
class DiskState:
    gen: int
    posts: int
    segments: tuple[Segment, ...]
    dead: str | None = None     # .npy of dead keys below ``posts``
    graph: str | None = None    # the HNSW graph file
    lang_graphs: dict[str, str] = field(default_factory=dict)  # language -> the file of its own graph

    def files(self) -> set[str]:
        out = {s.posts for s in self.segments} | {s.vectors for s in self.segments if s.vectors}
        return out | {f for f in (self.dead, self.graph) if f} | set(self.lang_graphs.values())

    def to_json(self) -> dict[str, Any]:
        return {"gen": self.gen, "posts": self.posts, "dead": self.dead, "graph": self.graph,
                "lang_graphs": self.lang_graphs, "segments": [s.__dict__ for s in self.segments]}


OLD_GRAPH = "dense.usearch"  # the graph a build wrote before the manifest named it (usearch's): rebuilt on open


def initial_state(manifest: dict[str, Any]) -> DiskState:
    """The state of a directory as ``build_index`` wrote it."""
    dense = manifest.get("embedder") is not None
    n = int(manifest.get("posts", 0))
    return DiskState(0, n, (Segment("posts.parquet", "vectors.npy" if dense else None, 0, n),),
                     graph=manifest.get("graph", OLD_GRAPH) if dense else None,
                     lang_graphs=dict(manifest.get("lang_graphs") or {}) if dense else {})


def read_state(path: Path, manifest: dict[str, Any]) -> DiskState:
    f = path / STATE
    if not f.is_file():
        return initial_state(manifest)
    d = json.loads(f.read_text(encoding="utf-8"))
    return DiskState(int(d["gen"]), int(d["posts"]), tuple(Segment(**s) for s in d["segments"]), d.get("dead"),
                     d.get("graph"), {str(k): str(v) for k, v in (d.get("lang_graphs") or {}).items()})


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def write_state(path: Path, state: DiskState) -> None:
    """Switch the directory to ``state`` (atomic rename, then the directory entry made durable)."""
    write_json(path / STATE, state.to_json())
    fsync_dir(path)


def posts_table(posts: list[Post], schema: pa.Schema) -> pa.Table:
    """The store's rows of ``posts`` (the columns of ``posts.parquet``)."""
    cols: dict[str, list[Any]] = {f.name: [] for f in schema}
    for p in posts:
        d = p.to_json()
        for name in cols:
            cols[name].append(d["created_us"] if name == "created_at" else d.get(name))
    arrays = []
    for f in schema:
        if f.name == "created_at":
            arrays.append(pa.array(cols[f.name], pa.int64()).cast(f.type))
        else:
            arrays.append(pa.array(cols[f.name], f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


class Stacked:
    """Several row blocks (memory-mapped segments) read as one array of rows, by key."""

    def __init__(self, parts: list[np.ndarray], dim: int):
        self.parts = parts
        self.dim = dim
        self.starts = np.cumsum([0] + [len(p) for p in parts])

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self), self.dim)

    def __getitem__(self, keys: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys)
        if len(self.parts) == 1:
            return self.parts[0][keys]
        out = np.empty((len(keys), self.dim), np.float16)
        part = np.searchsorted(self.starts, keys, side="right") - 1
        for j in np.unique(part):
            sel = part == j
            out[sel] = self.parts[j][keys[sel] - self.starts[j]]
        return out
