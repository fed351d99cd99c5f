"""Exact and near-duplicate removal: connected components of posts that share a key, earliest kept.

Both work on the *dedup key* of a post (``normalize.dedup_key``: lowercased, links, mentions,
hashtags and placeholders dropped, punctuation and emoji folded, digit runs folded to ``0``).

**Candidate pairs**: two posts are a pair when they share a key: the 64-bit blake2b hash of the
dedup key (an exact duplicate), or one MinHash LSH band key (a near duplicate).

**Near duplicates**: MinHash over character 5-grams of the key, and LSH banding. Character shingles
suit short posts: a 15-word post has only ~13 word 2-grams, so one changed word already costs a
quarter of them, while a typo, an elongated word or an added emoji changes only a handful of its
~80 character 5-grams. The signatures use datasketch's ``affine32`` permutation scheme exactly (the
MurmurHash3 finalizer, then ``a * h + b mod 2**32`` with datasketch's own ``a, b`` for the seed), but are
computed for a whole batch in one compiled loop (``murmur.data.jit``), ~2 µs per post, some 150x faster
than one ``MinHash`` object per post and 3x faster than the same arithmetic as numpy passes; the number of bands and rows per band for a threshold come from datasketch's ``MinHashLSH``.
Each band is reduced to one 64-bit key. Sharing a band is a pair without a second Jaccard check (as
with datasketch's ``MinHashLSH.query``): the S-curve of the banding is the precision/recall trade-off;
at the default 128 permutations and threshold 0.8, 9 bands of 13 rows, pairs at Jaccard 0.9 collide
93% of the time, at 0.7 8%, at 0.5 0.1%.

**Connected components, earliest kept**: the pairs join posts into connected components (the
multi-stage scheme of datatrove and NeMo Curator: signatures, band buckets, candidate pairs,
components). Of each component the earliest post is kept and every other is dropped: as a
``duplicate`` when an earlier post has its exact hash, else as a ``near_duplicate``. A chain
collapses onto its earliest post: with A earliest, B near A and C near B but not near A, only A is
kept, whatever the order of B and C in time (a rule that only drops posts with an *earlier* pair
would keep C when C is earlier than B).

**Time order**: "earlier" means earlier ``created_at``, ties broken by ``post_id`` (string order),
then input position, posts without a timestamp last. The decision depends only on the posts and that
order, never on how they were batched, bucketed or spread over workers.

**Memory.** ``decide`` holds every key in memory (the reference, for tests). ``SpilledIndex`` (the
local engine) writes the keys to bucket files on disk partitioned by key and sorts one bucket at a
time; each bucket's groups become candidate pairs, written to disk, and ``Components`` joins them
with a vectorised union-find over the *candidates* only (posts that share a key with another, ~40
bytes each in memory while joined; see ``Components``). The Ray engine shuffles the same key rows by
key and joins the same pairs on the cluster (``ray_components``: large-star/small-star rounds), with
the same result.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from murmur.data.jit import jit
from murmur.errors import ConfigError

KEEP, DUPLICATE, NEAR_DUPLICATE = 0, 1, 2

_M64 = np.uint64(0x100000001B3)  # multiplier of the rolling shingle hash (FNV prime, odd)
_FMIX64 = (np.uint64(33), np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53))
_FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35))


def fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer (an avalanching bijection), element-wise."""
    s, m1, m2 = _FMIX64
    h = h ^ (h >> s)
    h = h * m1
    h = h ^ (h >> s)
    h = h * m2
    return h ^ (h >> s)


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, as datasketch applies it before its affine32 permutations."""
    s1, m1, s2, m2 = _FMIX32
    h = h ^ (h >> s1)
    h = h * m1
    h = h ^ (h >> s2)
    h = h * m2
    return h ^ (h >> s1)


def exact_hash(key: str) -> int:
    """64-bit hash of a dedup key (blake2b, stable across processes and runs)."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def exact_hashes(keys: Sequence[str]) -> np.ndarray:
    return np.fromiter((exact_hash(k) for k in keys), dtype=np.uint64, count=len(keys))


_KNOWN_LSH_PARAMS = {(0.8, 128): (9, 13)}
"""``lsh_params`` of the default settings, so that a run at the defaults need not import datasketch
(and scipy, ~0.6 s per process); a test checks them against datasketch."""


@functools.lru_cache(maxsize=16)
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) that datasketch's ``MinHashLSH`` picks for this threshold."""
    if (threshold, num_perm) in _KNOWN_LSH_PARAMS:
        return _KNOWN_LSH_PARAMS[(threshold, num_perm)]
    from datasketch import MinHashLSH

    try:
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    except ValueError as e:
        raise ConfigError(f"near-dedup with threshold {threshold} and {num_perm} permutations: {e}") from None
    return lsh.b, lsh.r


@functools.lru_cache(maxsize=16)
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 permutation parameters (a odd, b) for ``seed``.

    Drawn the way ``MinHash._init_permutations`` draws them (numpy's ``RandomState(seed)``), without
    importing datasketch; a test checks they are equal to datasketch's.
    """
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return np.ascontiguousarray(a, dtype=np.uint32), np.ascontiguousarray(b, dtype=np.uint32)


@dataclass
class MinHasher:
    """Vectorised MinHash signatures and LSH band keys for batches of dedup keys."""

    num_perm: int = 128
    threshold: float = 0.8
    shingle_size: int = 5
    seed: int = 1

    def __post_init__(self) -> None:
        self.a, self.b = _permutations(self.num_perm, self.seed)
        self.bands, self.rows = lsh_params(self.threshold, self.num_perm)
        self._band_seeds = fmix64(np.arange(1, self.bands + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))

    def shingle_hashes(self, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """32-bit hashes of every character k-gram of every key, and each key's start offset.

        A key shorter than k is padded with NUL characters to one shingle, so every key has at
        least one. The hash of a k-gram is a polynomial over its code points mod 2**64, mixed by
        ``fmix64`` and cut to its top 32 bits.
        """
        k = self.shingle_size
        padded = [key if len(key) >= k else key + "\0" * (k - len(key)) for key in keys]
        lengths = np.fromiter((len(p) for p in padded), dtype=np.int64, count=len(padded))
        cps = np.frombuffer("".join(padded).encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
        total = len(cps)
        n_starts = total - k + 1
        roll = np.zeros(max(n_starts, 0), dtype=np.uint64)
        for j in range(k):
            roll *= _M64
            roll += cps[j:j + n_starts]
        counts = lengths - k + 1
        doc_starts = np.cumsum(lengths) - lengths
        out_starts = np.cumsum(counts) - counts
        idx = np.arange(int(counts.sum()), dtype=np.int64) + np.repeat(doc_starts - out_starts, counts)
        hashes = (fmix64(roll[idx]) >> np.uint64(32)).astype(np.uint32)
        return hashes, out_starts

    def signatures(self, keys: Sequence[str]) -> np.ndarray:
        """MinHash signatures, shape (len(keys), num_perm), uint32; equal to datasketch's
        ``MinHash(num_perm, seed, scheme="affine32")`` updated with ``shingle_hashes``' hashes.

        One compiled loop over the batch (``_signatures``): each shingle's hash is mixed and run through
        every permutation in registers, ~10x faster than numpy's whole-array passes over the
        (permutations x shingles) block."""
        n = len(keys)
        sig = np.empty((n, self.num_perm), dtype=np.uint32)
        if n == 0:
            return sig
        lens = np.fromiter(map(len, keys), dtype=np.int64, count=n)
        starts = np.zeros(n, dtype=np.int64)
        np.cumsum(lens[:-1], out=starts[1:])
        cps = np.frombuffer("".join(keys).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        _signatures(cps, starts, lens, self.shingle_size, self.a.astype(np.uint64), self.b.astype(np.uint64), sig)
        return sig

    def band_keys(self, sig: np.ndarray) -> np.ndarray:
        """One 64-bit key per LSH band, shape (n, bands): equal keys <=> equal band rows (up to 2**-64)."""
        n = sig.shape[0]
        keys = np.empty((n, self.bands), dtype=np.uint64)
        wide = sig.astype(np.uint64)
        for band in range(self.bands):
            h = np.full(n, self._band_seeds[band], dtype=np.uint64)
            for col in range(band * self.rows, (band + 1) * self.rows):
                h = fmix64(h ^ wide[:, col])
            keys[:, band] = h
        return keys

    def keys_for(self, dedup_keys: Sequence[str]) -> np.ndarray:
        """Band keys of a batch of dedup keys."""
        return self.band_keys(self.signatures(dedup_keys))


@jit
def _signatures(cps, starts, lens, k, a, b, sig):  # pragma: no cover - compiled by numba
    """``MinHasher.signatures``' loop: for every key (code points ``cps[starts[d]:starts[d] + lens[d]]``,
    NUL-padded to ``k``), every k-gram's hash as ``shingle_hashes`` computes it, mixed by ``fmix32``, then
    ``a * h + b mod 2**32`` per permutation, minimum per key into ``sig[d]``. Integer arithmetic in 64
    bits, masked to 32 where datasketch's is 32-bit: the same bits as the numpy version."""
    m64 = np.uint64(0x100000001B3)
    m32 = np.uint64(0xFFFFFFFF)
    c1, c2 = np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53)
    c3, c4 = np.uint64(0x85EBCA6B), np.uint64(0xC2B2AE35)
    s33, s32, s16, s13 = np.uint64(33), np.uint64(32), np.uint64(16), np.uint64(13)
    n_perm = len(a)
    best = np.empty(n_perm, dtype=np.uint64)
    for d in range(len(starts)):
        start, length = starts[d], lens[d]
        best[:] = m32
        for i in range(max(length, k) - k + 1):
            h = np.uint64(0)
            for j in range(k):
                cp = np.uint64(cps[start + i + j]) if i + j < length else np.uint64(0)
                h = h * m64 + cp
            h ^= h >> s33
            h *= c1
            h ^= h >> s33
            h *= c2
            h ^= h >> s33
            x = h >> s32  # the top 32 bits: shingle_hashes' hash
            x ^= x >> s16  # fmix32, masked to 32 bits after each product
            x = (x * c3) & m32
            x ^= x >> s13
            x = (x * c4) & m32
            x ^= x >> s16
            for p in range(n_perm):
                best[p] = min(best[p], (a[p] * x + b[p]) & m32)
        for p in range(n_perm):
            sig[d, p] = best[p]


# ---------------------------------------------------------------- connected components, earliest post kept

def roots(parent: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The root of each node in ``x`` in the forest ``parent``; the nodes are then pointed at it."""
    r = parent[x]
    while True:
        up = parent[r]
        if np.array_equal(up, r):
            break
        r = up
    parent[x] = r
    return r


def union(parent: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """Join the sets of ``a[i]`` and ``b[i]`` for every i, in place, all at once (vectorised).

    ``parent`` is a forest over nodes numbered in time order in which every node points at a smaller
    or equal number, so the root of a set is its earliest node; each round hooks the later root of
    every pair still apart under the earlier one (``np.minimum.at``: of several offers, the earliest
    wins, and the pairs left apart try again on the next round).
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    while len(a):
        ra, rb = roots(parent, a), roots(parent, b)
        apart = ra != rb
        if not apart.any():
            return
        a, b, ra, rb = a[apart], b[apart], ra[apart], rb[apart]
        np.minimum.at(parent, np.maximum(ra, rb), np.minimum(ra, rb))


def flatten(parent: np.ndarray) -> np.ndarray:
    """Every node's root (pointer jumping until nothing moves)."""
    while True:
        up = parent[parent]
        if np.array_equal(up, parent):
            return up
        parent = up


def _group_firsts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For values sorted so that equal ones are adjacent: True where a value repeats the previous
    one (``later``), and the index of the first row of each row's run."""
    n = len(values)
    later = np.zeros(n, dtype=bool)
    if n > 1:
        later[1:] = values[1:] == values[:-1]
    first = np.maximum.accumulate(np.where(later, 0, np.arange(n, dtype=np.int64)))
    return later, first


def decide(order: np.ndarray, exact: np.ndarray | None,
           bands: np.ndarray | Sequence[np.ndarray] | None) -> np.ndarray:
    """Dedup decision per post (``KEEP``, ``DUPLICATE`` or ``NEAR_DUPLICATE``), in input order, with
    all keys in memory: the reference the spilled and Ray decisions are tested against.

    ``order`` lists the posts' input positions from earliest to latest; ``exact`` holds their 64-bit
    key hashes and ``bands`` their LSH band keys, shape (n, bands) or a list of such blocks in input
    order (one per batch; bands are taken one at a time); either None skips that check. Posts that
    share a key are joined; the earliest post of each connected component is kept, the others are
    ``DUPLICATE`` when an earlier post has their exact hash, else ``NEAR_DUPLICATE``.
    """
    n = len(order)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n, dtype=np.int64)
    parent = np.arange(n, dtype=np.int64)
    duplicate = np.zeros(n, dtype=bool)  # by rank
    blocks = [bands] if isinstance(bands, np.ndarray) else list(bands or [])
    columns = ([(True, lambda: exact)] if exact is not None else []) + \
        [(False, functools.partial(_band_column, blocks, j)) for j in range(blocks[0].shape[1] if blocks else 0)]
    for is_exact, column in columns:
        values = column()[order]  # in time order: index = rank
        by_value = np.argsort(values, kind="stable")  # ranks grouped by value, earliest first in each
        later, first = _group_firsts(values[by_value])
        union(parent, by_value[first[later]], by_value[later])
        if is_exact:
            duplicate[by_value[later]] = True
    root = flatten(parent)
    decision_t = np.where(root == np.arange(n), KEEP, np.where(duplicate, DUPLICATE, NEAR_DUPLICATE))
    decision = np.empty(n, dtype=np.int8)
    decision[order] = decision_t
    return decision


def _band_column(blocks: list[np.ndarray], j: int) -> np.ndarray:
    return np.concatenate([block[:, j] for block in blocks]) if len(blocks) > 1 else blocks[0][:, j]


# ---------------------------------------------------------------- the decision without an index in memory

KEY_ROW_FIELDS = (("kind", "int16"), ("key", "uint64"), ("t", "int64"), ("id", "string"), ("pos", "int64"))
"""A key row: which key (0 = exact hash, j = LSH band j), its value, and the post's time-order key
(``created_at`` as an integer, missing = last; ``post_id``; position in input order)."""

NO_TIME = np.iinfo(np.int64).max  # posts without a timestamp come last


def key_row_schema():
    import pyarrow as pa

    return pa.schema([(name, getattr(pa, typ)()) for name, typ in KEY_ROW_FIELDS])


def candidate_schema():
    """A candidate row: a post that shares a key with another (its ``pos``, ``t``, ``id``), the
    ``first`` (earliest) post of that key, and whether that key is its exact hash and it is not the first."""
    import pyarrow as pa

    return pa.schema([("pos", pa.int64()), ("t", pa.int64()), ("id", pa.string()), ("first", pa.int64()),
                      ("exact", pa.bool_())])


def key_rows(exact: np.ndarray | None, bands: np.ndarray | None, created_at, post_id, pos: np.ndarray) -> list:
    """One key-row table per kind of key (exact hash, then each band) for a batch of posts."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(pos)
    t = pc.fill_null(created_at.cast(pa.int64()), NO_TIME).to_numpy(zero_copy_only=False)
    blocks = ([(0, exact)] if exact is not None else []) + \
        ([(j + 1, bands[:, j]) for j in range(bands.shape[1])] if bands is not None else [])
    return [pa.table([np.full(n, kind, np.int16), np.ascontiguousarray(key, dtype=np.uint64), t, post_id, pos],
                     schema=key_row_schema()) for kind, key in blocks]


def bucket_of(kind: int, key: np.ndarray, buckets: int) -> np.ndarray:
    """The bucket of each key: every row of one (kind, key) lands in the same bucket."""
    return (fmix64(np.ascontiguousarray(key, dtype=np.uint64) ^ np.uint64(kind)) % np.uint64(buckets)).astype(np.int32)


def candidate_rows(keys):
    """For key rows holding whole (kind, key) groups (one bucket): a candidate row (``candidate_schema``)
    for every row of a group of more than one post, naming the group's earliest post.

    Each later row is one candidate pair (earliest, later): a star per key, which joins the same posts
    as every pair of the group would."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if keys.num_rows == 0:
        return candidate_schema().empty_table()
    # most keys are one post's: find the shared ones with a numpy sort of the keys alone, then sort
    # only their rows by key and time (the string sort of every row was most of the time)
    kind, key = keys.column("kind").to_numpy(), keys.column("key").to_numpy()
    by_key = np.lexsort((key, kind))
    same = (kind[by_key][1:] == kind[by_key][:-1]) & (key[by_key][1:] == key[by_key][:-1])
    shared = np.zeros(len(by_key), dtype=bool)
    shared[1:] |= same
    shared[:-1] |= same
    keys = keys.take(pa.array(np.sort(by_key[shared])))
    if keys.num_rows == 0:
        return candidate_schema().empty_table()
    order = pc.sort_indices(keys, sort_keys=[("kind", "ascending"), ("key", "ascending"), ("t", "ascending"),
                                             ("id", "ascending"), ("pos", "ascending")]).to_numpy()
    kind = keys.column("kind").to_numpy()[order]
    key = keys.column("key").to_numpy()[order]
    n = len(order)
    later = np.zeros(n, dtype=bool)
    later[1:] = (kind[1:] == kind[:-1]) & (key[1:] == key[:-1])
    first = np.maximum.accumulate(np.where(later, 0, np.arange(n, dtype=np.int64)))
    pos = keys.column("pos").to_numpy()[order]
    rows = pa.array(order)
    return pa.table([pos, keys.column("t").take(rows), keys.column("id").take(rows), pos[first],
                     later & (kind == 0)], schema=candidate_schema())


NODE_COMPACT_ROWS = 1 << 18


class Components:
    """Connected components of candidate pairs, earliest post of each kept; pairs on disk.

    ``add`` takes candidate rows (``candidate_rows`` of each bucket, in any order): their pairs go
    to an Arrow IPC file in ``directory``, their posts to a table of *candidates* (posts that share a
    key with another) kept in memory and compacted to one row per post. ``decide`` numbers the
    candidates in time order (``t``, ``id``, ``pos``), reads the pairs back in batches and joins them
    (``union``), and drops every candidate that is not its component's earliest post.

    Memory: the candidates (position 8 bytes, time 8, ``post_id`` ~4 + its length, a flag; ~40 bytes
    each with ids of 19 digits) and, in ``decide``, 3 x 8 bytes more per candidate (time number, parent,
    root); posts that share no key cost nothing here. Disk: 16 bytes per pair.
    """

    def __init__(self, directory):
        import pyarrow as pa

        self.path = directory / "pairs.arrow"
        self.schema = pa.schema([("a", pa.int64()), ("b", pa.int64())])
        self.writer = pa.ipc.new_stream(str(self.path), self.schema, options=pa.ipc.IpcWriteOptions(compression="lz4"))
        self.nodes: list = []
        self.rows = self.compacted = self.pairs = 0

    def add(self, candidates) -> None:
        import pyarrow as pa

        if candidates.num_rows == 0:
            return
        pos = candidates.column("pos").to_numpy()
        first = candidates.column("first").to_numpy()
        pair = pos != first
        self.pairs += int(pair.sum())
        if pair.any():  # a pair that shares several keys comes once per key; the union skips repeats
            self.writer.write_batch(pa.record_batch([first[pair], pos[pair]], schema=self.schema))
        self.nodes.append(candidates.select(["pos", "t", "id", "exact"]))
        self.rows += candidates.num_rows
        if self.rows > 2 * self.compacted + NODE_COMPACT_ROWS:
            self._compact()

    def _compact(self) -> None:
        """One row per candidate, sorted by position (``exact`` set if any of its rows had it)."""
        import pyarrow as pa

        if not self.nodes:
            return
        table = pa.concat_tables(self.nodes).combine_chunks()
        self.nodes = []
        pos = table.column("pos").to_numpy()
        by_pos = np.argsort(pos, kind="stable")
        later, _ = _group_firsts(pos[by_pos])
        starts = np.flatnonzero(~later)
        exact = np.maximum.reduceat(table.column("exact").to_numpy(zero_copy_only=False)[by_pos].astype(np.int8),
                                    starts).astype(bool) if len(starts) else np.zeros(0, bool)
        table = table.take(pa.array(by_pos[starts]))
        table = table.set_column(3, "exact", pa.array(exact))
        self.nodes = [table]
        self.rows = self.compacted = table.num_rows
        pa.default_memory_pool().release_unused()

    def decide(self) -> tuple[np.ndarray, np.ndarray, dict]:
        """The positions of the dropped posts (ascending), their flag (``DUPLICATE`` or ``NEAR_DUPLICATE``)
        and counts: candidates, pairs (every later post of a shared key), components, largest component."""
        import pyarrow as pa
        import pyarrow.compute as pc

        self.writer.close()
        self._compact()
        if not self.nodes:
            self.path.unlink(missing_ok=True)
            return np.zeros(0, np.int64), np.zeros(0, np.int8), \
                {"candidates": 0, "pairs": 0, "components": 0, "largest_component": 0}
        nodes = self.nodes.pop()
        m = nodes.num_rows
        by_time = pc.sort_indices(nodes, sort_keys=[("t", "ascending"), ("id", "ascending"),
                                                    ("pos", "ascending")]).to_numpy()
        rank = np.empty(m, dtype=np.int64)
        rank[by_time] = np.arange(m, dtype=np.int64)
        del by_time
        pos = nodes.column("pos").to_numpy().copy()
        exact = nodes.column("exact").to_numpy(zero_copy_only=False)
        del nodes
        parent = np.arange(m, dtype=np.int64)
        with pa.memory_map(str(self.path)) as source:
            for batch in pa.ipc.open_stream(source):
                a = rank[np.searchsorted(pos, batch.column(0).to_numpy())]
                b = rank[np.searchsorted(pos, batch.column(1).to_numpy())]
                union(parent, a, b)
        self.path.unlink()
        root = flatten(parent)
        dropped = root[rank] != rank
        sizes = np.bincount(root)
        stats = {"candidates": m, "pairs": self.pairs, "components": int((root == np.arange(m)).sum()),
                 "largest_component": int(sizes.max())}
        return pos[dropped], np.where(exact[dropped], DUPLICATE, NEAR_DUPLICATE).astype(np.int8), stats


class SpilledIndex:
    """Deduplication by connected components with its keys on disk, not in memory.

    ``add`` appends each post's key rows to one of ``buckets`` Arrow IPC files by key; ``decide`` reads
    one bucket at a time, sorts it and turns every group of posts sharing a key into candidate pairs
    (``candidate_rows``), then joins them (``Components``). The decisions equal ``decide``'s over all
    posts at once (a key's rows are all in one bucket, and the earliest is chosen by the same order).
    In memory: one bucket (~45 bytes x 10 key rows per post / ``buckets``), the candidates (~40 bytes
    per post that shares a key, ``Components``) and one byte per post for the decision.
    """

    def __init__(self, directory, buckets: int):
        import pyarrow as pa

        self.directory, self.buckets, self.n = directory, max(1, int(buckets)), 0
        self.stats: dict = {}
        opts = pa.ipc.IpcWriteOptions(compression="lz4")
        self.paths = [directory / f"keys-{b:05d}.arrow" for b in range(self.buckets)]
        self.writers = [pa.ipc.new_stream(str(p), key_row_schema(), options=opts) for p in self.paths]

    def add(self, exact: np.ndarray | None, bands: np.ndarray | None, created_at, post_id) -> None:
        """Key rows of the next ``len(post_id)`` posts (positions continue from the previous call)."""
        n = len(post_id)
        pos = np.arange(self.n, self.n + n, dtype=np.int64)
        self.n += n
        for table in key_rows(exact, bands, created_at, post_id, pos):
            bucket = bucket_of(int(table.column("kind")[0].as_py()), table.column("key").to_numpy(), self.buckets) \
                if self.buckets > 1 else np.zeros(n, np.int32)
            order = np.argsort(bucket, kind="stable")
            bounds = np.searchsorted(bucket[order], np.arange(self.buckets + 1))
            for b in range(self.buckets):
                if bounds[b + 1] > bounds[b]:
                    self.writers[b].write_table(table.take(order[bounds[b]:bounds[b + 1]]))

    def decide(self) -> np.ndarray:
        """``KEEP``, ``DUPLICATE`` or ``NEAR_DUPLICATE`` per post, in the order they were added; the
        counts of ``Components.decide`` in ``stats``."""
        import pyarrow as pa

        for w in self.writers:
            w.close()
        components = Components(self.directory)
        for path in self.paths:
            with pa.memory_map(str(path)) as source:
                keys = pa.ipc.open_stream(source).read_all()
            components.add(candidate_rows(keys))
            del keys
            path.unlink()
            pa.default_memory_pool().release_unused()
        dropped, flags, self.stats = components.decide()
        decision = np.zeros(self.n, dtype=np.int8)
        decision[dropped] = flags
        return decision
