"""The dense half: an HNSW graph (faiss) over unit-length embeddings, and exact search beside it.

The graph is faiss's ``IndexHNSWSQ`` with float16 codes (inner product, M = 16, ef_construction =
128, ef = 96): on the same vectors it searched in about half of usearch's f16 time (0.2 against 0.43
ms at 200,000 posts) and in less than faiss's own float32 graph (0.27 ms), at equal recall. faiss
numbers the vectors in the order they are added, which is murmur's key order; it cannot remove one,
so a deleted post stays in the graph (the walk still passes through it) and the store's liveness
drops it from the neighbours; where deletions crowd a query's neighbourhood the walk is run with
liveness inside it (an ``IDSelectorBitmap``, ``allowed``). Once deleted posts are more than
``GraphConfig.rebuild_dead_share`` of a graph, compaction builds it again over the live posts only,
keyed by murmur's keys (faiss's ``IndexIDMap``), as a language's graph is from the start.

The vectors themselves are kept as float16 rows (``vectors.npy``, memory-mapped, plus the rows
added since the build) so that exact search is always available: for filtered queries whose
allowed set is small (an author, a rare hashtag) exact search over those rows is both faster and
exact, and :func:`recall_at_k` measures the ANN's recall against it.

A language with many posts (``GraphConfig.lang_min_posts``) also gets a graph of its own beside the
main one, over its posts only, keyed by murmur's keys (faiss's ``IndexIDMap``): a filter on that
language then walks its graph. Without it the filter has to read all of the language's rows
exactly whenever the main graph's neighbours of the query are in another language (an English query
asking for Spanish posts): at 1,000,000 posts that pass over 247,165 Spanish rows took 160 ms at the
median, the Spanish graph's walk 21 ms with the query embedded (recall@10 0.95).
Each such graph costs its posts a second copy of their float16 codes and links in memory and on disk.

Exact search computes the dot products on the float16 rows as they are stored (numkong's SIMD
kernels), never converting the rows to float32 in numpy (that
conversion cost ten times the dot products). It reads the rows it needs, or, when the keys are
more than a quarter of a segment, the whole segment in order (a sequential pass beats a gather).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import faiss
import numkong
import numpy as np

from murmur.config import knob
from murmur.errors import InputError
from murmur.progress import Progress, log

CONNECTIVITY = 16
EXPANSION_ADD = 128
EXPANSION_SEARCH = 96
GRAPH_SUFFIX = ".faiss"  # a graph file of another engine (an index built before) is rebuilt from the rows
GATHER_ROWS = 65536     # rows read at once when exact search gathers them (48 MiB of 384-d float16)
FULL_PASS_SHARE = 0.25  # exact search reads a whole segment when the keys are more than this share of it
_LANG_CODE = re.compile(r"[a-z]{2,3}(-[a-z0-9]{2,8})?")  # a language that may name a graph file


@dataclass(frozen=True)
class GraphConfig:
    """Which HNSW graphs an index keeps beside its main one."""

    lang_min_posts: int = knob(50_000, "a language with at least this many posts gets a graph of its own, so a "
                                       "filter on it walks a graph instead of reading all its rows (0: none)")
    rebuild_dead_share: float = knob(0.2, "compaction builds a graph again over its live posts once deleted ones are "
                                          "more than this share of it (faiss's HNSW cannot remove one; 0: never)")

    def __post_init__(self) -> None:
        if isinstance(self.lang_min_posts, bool) or not isinstance(self.lang_min_posts, int) or self.lang_min_posts < 0:
            raise InputError(f"lang_min_posts must be a whole number >= 0 (got {self.lang_min_posts!r})",
                             field="lang_min_posts")
        share = self.rebuild_dead_share
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share < 1:
            raise InputError(f"rebuild_dead_share must be in [0, 1) (got {share!r}; 0: never rebuild)",
                             field="rebuild_dead_share")


def graph_langs(counts: dict[str, int], cfg: GraphConfig) -> list[str]:
    """The languages of ``counts`` (posts per language) that get a graph of their own: at least
    ``lang_min_posts`` posts, a language code, and not the index's only language (the main graph is its)."""
    if not cfg.lang_min_posts or sum(1 for n in counts.values() if n) < 2:
        return []
    return sorted(lang for lang, n in counts.items()
                  if n >= cfg.lang_min_posts and lang and _LANG_CODE.fullmatch(lang))


def new_ann(dim: int) -> faiss.Index:
    """An empty HNSW graph over float16 codes, inner product."""
    ann = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_fp16, CONNECTIVITY, faiss.METRIC_INNER_PRODUCT)
    ann.hnsw.efConstruction = EXPANSION_ADD
    ann.hnsw.efSearch = EXPANSION_SEARCH
    return ann


def add_rows(ann: faiss.Index, rows: np.ndarray) -> None:
    """Append ``rows`` (keys ``ann.ntotal`` onwards) to the graph."""
    ann.add(np.ascontiguousarray(rows, np.float32))


def save_ann(ann: faiss.Index, path: Path) -> None:
    faiss.write_index(ann, str(path))


def graph_of(rows: np.ndarray, dim: int, progress: bool = True, block: int = 65536) -> faiss.Index:
    """A graph over every row of ``rows`` (keys in row order), built a block at a time."""
    ann = new_ann(dim)
    with Progress("search: HNSW graph", total=len(rows), unit="posts", enabled=progress) as bar:
        for i in range(0, len(rows), block):
            add_rows(ann, rows[np.arange(i, min(i + block, len(rows)))])  # a Stacked view takes keys, not slices
            bar.advance(min(block, len(rows) - i))
    return ann


def keyed_graph_of(read: Callable[[np.ndarray], np.ndarray], keys: np.ndarray, dim: int, what: str,
                   progress: bool = True, block: int = 65536) -> faiss.Index:
    """A graph over the rows of ``keys`` only (one language's posts, or the live ones; ``read(keys)`` gives
    their rows), answering with those keys."""
    ann = faiss.IndexIDMap(new_ann(dim))
    with Progress(f"search: HNSW graph of {what}", total=len(keys), unit="posts", enabled=progress) as bar:
        for i in range(0, len(keys), block):
            part = np.asarray(keys[i:i + block], np.int64)
            ann.add_with_ids(np.ascontiguousarray(read(part), np.float32), part)
            bar.advance(len(part))
    return ann


def lang_graphs_of(rows: np.ndarray, langs: list[str | None], cfg: GraphConfig,
                   progress: bool = True) -> dict[str, faiss.Index]:
    """The graph of each language :func:`graph_langs` picks (``langs``: each row's language)."""
    codes = np.array([lang or "" for lang in langs], dtype=object)
    values, counts = np.unique(codes, return_counts=True)
    return {lang: keyed_graph_of(rows.__getitem__, np.flatnonzero(codes == lang), rows.shape[1], f"{lang!r} posts",
                                 progress)
            for lang in graph_langs(dict(zip(values.tolist(), counts.tolist(), strict=True)), cfg)}


def _hnsw(ann: faiss.Index) -> faiss.Index:
    """The HNSW index itself (inside an ``IndexIDMap`` for a keyed graph)."""
    return faiss.downcast_index(ann.index) if isinstance(ann, faiss.IndexIDMap) else ann


def held_keys(ann: faiss.Index) -> np.ndarray:
    """The keys a graph holds: its ids when keyed, else ``0..ntotal-1`` (numbered in the order added)."""
    return faiss.vector_to_array(ann.id_map) if isinstance(ann, faiss.IndexIDMap) else np.arange(ann.ntotal)


def last_key(ann: faiss.Index) -> int:
    """The last key a graph holds (-1: none); keys are added in order."""
    if isinstance(ann, faiss.IndexIDMap):
        return int(faiss.vector_to_array(ann.id_map).max()) if ann.ntotal else -1
    return int(ann.ntotal) - 1


def _covers(ann: faiss.Index, needed: np.ndarray) -> bool:
    """Whether a graph holds every key of ``needed`` (ascending)."""
    if not len(needed):
        return True
    if not isinstance(ann, faiss.IndexIDMap):
        return int(ann.ntotal) > int(needed[-1])
    held = np.zeros(int(needed[-1]) + 1, bool)
    ids = faiss.vector_to_array(ann.id_map)
    held[ids[ids <= needed[-1]]] = True
    return bool(held[needed].all())


def _read_graph(path: Path, dim: int, needed: np.ndarray, build: Callable[[], faiss.Index], what: str = "",
                keyed: bool | None = None) -> faiss.Index:
    """The graph saved at ``path``, or, with a log line saying why, the one ``build`` makes from the stored
    rows (a graph is derived from them, and saved at the next compaction): when the file is another
    engine's (an index built before), unreadable, or not a graph of dimension ``dim`` holding the keys
    ``needed`` (``keyed``: one answering with keys, a language's; None: either)."""
    why = "a graph of another engine"
    if path.suffix == GRAPH_SUFFIX:
        try:
            ann = faiss.read_index(str(path))
        except RuntimeError as e:  # faiss's C++ errors: a missing or damaged file
            why = f"unreadable ({re.sub(r'^Error in .*? at [^ ]+:[0-9]+: (Error: )?', '', str(e).strip())[:200]})"
        else:
            if ann.d == dim and keyed in (None, isinstance(ann, faiss.IndexIDMap)) and _covers(ann, needed):
                _hnsw(ann).hnsw.efSearch = EXPANSION_SEARCH  # the default of a search that passes no parameters
                return ann
            why = f"a graph of {ann.ntotal:,} vectors of dimension {ann.d}, not of these {len(needed):,} of {dim}"
    log(f"{path}: {why}; building the HNSW graph{what} from the {len(needed):,} stored rows (saved at the next "
        "compaction)")
    return build()


class DenseIndex:
    """ANN + exact search over keys ``0..n-1`` (a key's vector is row ``key``)."""

    def __init__(self, dim: int, base: np.ndarray, ann: faiss.Index, by_lang: dict[str, faiss.Index] | None = None):
        self.dim = dim
        self.base = base                       # (n_base, dim) float16, usually a memory map
        self.added: list[np.ndarray] = []      # one float16 row per key past the base
        self.ann = ann                         # the main graph: keys in the order added, or keyed once rebuilt
        self.by_lang: dict[str, faiss.Index] = {}  # a language's own graph, answering with keys
        self._last: dict[str | None, int] = {None: last_key(ann)}  # the last key each graph holds (None: main)
        for lang, graph in (by_lang or {}).items():
            self.set_graph(lang, graph)

    @classmethod
    def load(cls, vector_paths: list[Path], ann_path: Path, lang_paths: dict[str, Path],
             keys_of: Callable[[str | None], np.ndarray]) -> DenseIndex:
        """The segments' vectors (memory-mapped, in key order), the graph over them and the languages'
        graphs (``keys_of(lang)``: the stored live keys in that language, or in all for None), each read as
        :func:`_read_graph` says."""
        from murmur.search.segments import Stacked

        parts = [np.load(p, mmap_mode="r") for p in vector_paths]
        dim = parts[0].shape[1]
        base = parts[0] if len(parts) == 1 else Stacked(parts, dim)
        by_lang = {}
        for lang, path in lang_paths.items():
            keys = keys_of(lang)
            rebuild = functools.partial(keyed_graph_of, base.__getitem__, keys, dim, f"{lang!r} posts")
            by_lang[lang] = _read_graph(path, dim, keys, rebuild, f" of {lang!r} posts", keyed=True)
        return cls(dim, base, _read_graph(ann_path, dim, keys_of(None), lambda: graph_of(base, dim)), by_lang)

    def set_graph(self, lang: str | None, graph: faiss.Index) -> None:
        """Keep ``graph`` as ``lang``'s (keyed: :func:`keyed_graph_of`), or as the main graph for None (built
        again); the adds that follow go to it too."""
        if lang is None:
            self.ann = graph
        else:
            self.by_lang[lang] = graph
        self._last[lang] = last_key(graph)

    def graph(self, lang: str | None = None) -> faiss.Index:
        """The graph :meth:`search_ann` walks for ``lang`` (the main graph for None)."""
        return self.ann if lang is None else self.by_lang[lang]

    def dead_share(self, lang: str | None, alive: np.ndarray) -> float:
        """The share of a graph's vectors whose posts are deleted (``alive``: a bool per key)."""
        keys = held_keys(self.graph(lang))
        keys = keys[keys < len(alive)]
        return float(np.count_nonzero(~alive[keys])) / max(len(keys), 1)

    def __len__(self) -> int:
        return len(self.base) + len(self.added)

    def add(self, key: int, vector: np.ndarray, lang: str | None = None) -> None:
        assert key == len(self), "dense keys are added in order"
        row = vector.astype(np.float16)
        self.added.append(row)
        for which in (None, lang) if lang in self.by_lang else (None,):
            if key > self._last[which]:  # a graph saved by compaction may already hold a later add
                graph = self.graph(which)
                if isinstance(graph, faiss.IndexIDMap):
                    graph.add_with_ids(row[None].astype(np.float32), np.array([key], np.int64))
                else:
                    assert key == graph.ntotal, "the graph holds every key before this one"
                    add_rows(graph, row[None])
                self._last[which] = key

    def rows(self, keys: np.ndarray) -> np.ndarray:
        n_base = len(self.base)
        out = np.empty((len(keys), self.dim), np.float32)
        in_base = keys < n_base
        if in_base.any():
            out[in_base] = self.base[keys[in_base]]
        for i in np.flatnonzero(~in_base):
            out[i] = self.added[int(keys[i]) - n_base]
        return out

    def save_graph(self, path: Path) -> None:
        save_ann(self.ann, path)

    def graph_size(self, lang: str | None = None) -> int:
        """Vectors in the graph :meth:`search_ann` walks for ``lang`` (the main graph for None)."""
        return int(self.graph(lang).ntotal)

    def search_ann(self, query: np.ndarray, limit: int, allowed: np.ndarray | None = None,
                   lang: str | None = None) -> list[tuple[int, float]]:
        """(key, cosine similarity) of the approximate nearest ``limit`` vectors; with ``allowed`` (a bool
        per key; keys past it are not allowed) only among those, tested inside the graph walk (for
        liveness, which most keys pass: a filter few pass finds too few this way); with ``lang`` (one of
        ``by_lang``) in that language's graph."""
        ann = self.graph(lang)
        n = ann.ntotal
        if n == 0:
            return []
        q = np.ascontiguousarray(query, np.float32)[None]
        if allowed is None:  # the graph's own efSearch is EXPANSION_SEARCH: no parameter object to build
            params = None if limit <= EXPANSION_SEARCH else faiss.SearchParametersHNSW(efSearch=limit)
        else:
            bits = np.packbits(allowed, bitorder="little")  # it and the selector held until the search returns
            sel = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))
            params = faiss.SearchParametersHNSW(sel=sel, efSearch=max(EXPANSION_SEARCH, limit))
        sims, keys = ann.search(q, min(limit, n), params=params)
        return [(k, s) for k, s in zip(keys[0].tolist(), sims[0].tolist(), strict=True) if k >= 0]

    def similarities(self, query: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Cosine similarity of ``query`` with the vector of each key (float32), exactly."""
        keys = np.asarray(keys, np.int64)
        out = np.empty(len(keys), np.float32)
        n_base = len(self.base)
        in_base = keys < n_base
        if in_base.any():
            q16 = np.ascontiguousarray(query, np.float16)
            parts = self.base.parts if hasattr(self.base, "parts") else [self.base]
            starts = np.cumsum([0] + [len(p) for p in parts])
            base_keys = keys[in_base]
            part_of = np.searchsorted(starts, base_keys, side="right") - 1
            sims = np.empty(len(base_keys), np.float32)
            for j in np.unique(part_of):
                sel = part_of == j
                sims[sel] = _segment_sims(parts[j], q16, base_keys[sel] - starts[j])
            out[in_base] = sims
        rest = np.flatnonzero(~in_base)
        if len(rest):
            rows = np.stack([self.added[int(k) - n_base] for k in keys[rest]]).astype(np.float32)
            out[rest] = rows @ np.asarray(query, np.float32)
        return out

    def search_exact(self, query: np.ndarray, keys: np.ndarray, limit: int) -> list[tuple[int, float]]:
        """(key, cosine similarity) of the nearest ``limit`` among ``keys``, exactly."""
        if len(keys) == 0:
            return []
        keys = np.asarray(keys, np.int64)
        sims = self.similarities(query, keys)
        top = np.argpartition(-sims, min(limit, len(sims)) - 1)[:limit] if len(sims) > limit else np.arange(len(sims))
        top = top[np.lexsort((keys[top], -sims[top]))]
        return [(int(keys[i]), float(sims[i])) for i in top]


def _dots(rows: np.ndarray, q16: np.ndarray) -> np.ndarray:
    """``rows @ q16`` for float16 rows (numkong's float64 output: its float32 output is a slow path)."""
    if len(rows) == 0:
        return np.empty(0, np.float32)
    rows = np.ascontiguousarray(rows, np.float16)
    return np.asarray(numkong.cdist(q16[None], rows, metric="dot"))[0].astype(np.float32)


def _segment_sims(part: np.ndarray, q16: np.ndarray, local: np.ndarray) -> np.ndarray:
    """Similarities of ``q16`` with rows ``local`` of one segment's float16 rows."""
    if len(local) > FULL_PASS_SHARE * len(part):
        out = np.empty(len(local), np.float32)
        lo, hi = int(local.min()), int(local.max()) + 1
        for i in range(lo, hi, 4 * GATHER_ROWS):  # in order, a block at a time
            j = min(hi, i + 4 * GATHER_ROWS)
            sel = (local >= i) & (local < j)
            if sel.any():
                out[sel] = _dots(part[i:j], q16)[local[sel] - i]
        return out
    return np.concatenate([_dots(part[local[i:i + GATHER_ROWS]], q16) for i in range(0, len(local), GATHER_ROWS)])


def recall_at_k(dense: DenseIndex, queries: np.ndarray, alive: np.ndarray, k: int = 10) -> float:
    """Share of the exact top-``k`` (over live keys) that the ANN's top-``k`` live keys also hold."""
    keys = np.flatnonzero(alive)
    hits = 0
    for q in queries:
        exact = {key for key, _ in dense.search_exact(q, keys, k)}
        approx = [key for key, _ in dense.search_ann(q, 2 * k) if alive[key]][:k]
        hits += len(exact.intersection(approx))
    return hits / max(len(queries) * k, 1)
