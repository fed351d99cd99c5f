"""Exact and near-duplicate detection that keeps the earliest post.

Both work on the *dedup key* of a post (``normalize.dedup_key``: lowercased, links, mentions,
hashtags and placeholders dropped, punctuation and emoji folded, digit runs folded to ``0``).

**Exact duplicates**: the 64-bit blake2b hash of the key. A post is a ``duplicate`` when an earlier
post has the same hash.

**Near duplicates**: MinHash over character 5-grams of the key, and LSH banding. Character shingles
suit short posts: a 15-word post has only ~13 word 2-grams, so one changed word already costs a
quarter of them, while a typo, an elongated word or an added emoji changes only a handful of its
~80 character 5-grams. The signatures use datasketch's ``affine32`` permutation scheme exactly (the
MurmurHash3 finalizer, then ``a * h + b mod 2**32`` with datasketch's own ``a, b`` for the seed), but are
computed for a whole batch at once with numpy, which is ~50x faster than one ``MinHash`` object per
post; the number of bands and rows per band for a threshold come from datasketch's ``MinHashLSH``.
Each band is reduced to one 64-bit key. A post is a ``near_duplicate`` when it shares a band key with
an earlier post (so, as with datasketch's ``MinHashLSH.query``, without a second Jaccard check: the
S-curve of the banding is the precision/recall trade-off; at the default 128 permutations and
threshold 0.8, 9 bands of 13 rows, pairs at Jaccard 0.9 collide 93% of the time, at 0.7 8%, at 0.5
0.1%). Chains collapse onto their earliest post: when B is near A and C near B, only A is kept.

**Time order**: "earlier" means earlier ``created_at``, ties broken by ``post_id`` (string order),
posts without a timestamp last. The decision is made over all posts at once with stable sorts
(``decide``), so it does not depend on how the posts were batched or on the number of workers.

**Memory.** ``decide`` holds the keys of all posts (8 bytes of exact hash plus 8 per band, 80 bytes at
the defaults, plus the sort keys). ``SpilledIndex`` makes the same decisions with the keys in bucket
files on disk, partitioned by key, sorting one bucket at a time: the local engine's clean uses it, and
the Ray engine does the same with a shuffle.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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
    chunk_shingles: int = 1 << 13

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
        ``MinHash(num_perm, seed, scheme="affine32")`` updated with the same shingle hashes."""
        n = len(keys)
        sig_t = np.empty((self.num_perm, n), dtype=np.uint32)  # permutation-major: 3-4x faster reduceat
        if n == 0:
            return sig_t.T
        hashes, starts = self.shingle_hashes(keys)
        mixed = fmix32(hashes)
        ends = np.append(starts[1:], len(mixed))
        a, b = self.a[:, None], self.b[:, None]
        doc = 0
        while doc < n:
            # a group of whole documents with about chunk_shingles shingles in all
            stop = max(int(np.searchsorted(ends, starts[doc] + self.chunk_shingles, side="right")), doc + 1)
            lo, hi = int(starts[doc]), int(ends[stop - 1])
            phv = a * mixed[None, lo:hi]
            phv += b
            sig_t[:, doc:stop] = np.minimum.reduceat(phv, starts[doc:stop] - lo, axis=1)
            doc = stop
        return sig_t.T

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


def _later_repeats(time_sorted: np.ndarray) -> np.ndarray:
    """For values in time order, True where the same value occurred at an earlier position."""
    _, first = np.unique(time_sorted, return_index=True)
    repeat = np.ones(len(time_sorted), dtype=bool)
    repeat[first] = False
    return repeat


def decide(order: np.ndarray, exact: np.ndarray | None,
           bands: np.ndarray | Sequence[np.ndarray] | None) -> np.ndarray:
    """Dedup decision per post (``KEEP``, ``DUPLICATE`` or ``NEAR_DUPLICATE``), in input order.

    ``order`` lists the posts' input positions from earliest to latest; ``exact`` holds their 64-bit
    key hashes and ``bands`` their LSH band keys, shape (n, bands) or a list of such blocks in input
    order (one per batch: no full copy is made, bands are taken one at a time); either None skips
    that check.
    """
    n = len(order)
    decision_t = np.zeros(n, dtype=np.int8)
    if exact is not None and n:
        decision_t[_later_repeats(exact[order])] = DUPLICATE
    blocks = [bands] if isinstance(bands, np.ndarray) else list(bands or [])
    n_bands = blocks[0].shape[1] if blocks else 0
    if n and n_bands:
        near = np.zeros(n, dtype=bool)
        for j in range(n_bands):
            column = np.concatenate([block[:, j] for block in blocks]) if len(blocks) > 1 else blocks[0][:, j]
            near |= _later_repeats(column[order])
        decision_t[near & (decision_t == KEEP)] = NEAR_DUPLICATE
    decision = np.empty(n, dtype=np.int8)
    decision[order] = decision_t
    return decision


# ---------------------------------------------------------------- the decision without an index in memory

KEY_ROW_FIELDS = (("kind", "int16"), ("key", "uint64"), ("t", "int64"), ("id", "string"), ("pos", "int64"))
"""A key row: which key (0 = exact hash, j = LSH band j), its value, and the post's time-order key
(``created_at`` as an integer, missing = last; ``post_id``; position in input order)."""

NO_TIME = np.iinfo(np.int64).max  # posts without a timestamp come last


def key_row_schema():
    import pyarrow as pa

    return pa.schema([(name, getattr(pa, typ)()) for name, typ in KEY_ROW_FIELDS])


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


def flag_later(keys) -> tuple[np.ndarray, np.ndarray]:
    """For key rows holding whole (kind, key) groups: the rows that are not their key's earliest post
    (indices into ``keys``) and their flag, ``DUPLICATE`` for an exact hash, ``NEAR_DUPLICATE`` for a band."""
    import pyarrow.compute as pc

    if keys.num_rows == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int8)
    order = pc.sort_indices(keys, sort_keys=[("kind", "ascending"), ("key", "ascending"), ("t", "ascending"),
                                             ("id", "ascending"), ("pos", "ascending")]).to_numpy()
    kind = keys.column("kind").to_numpy()[order]
    key = keys.column("key").to_numpy()[order]
    later = np.r_[False, (kind[1:] == kind[:-1]) & (key[1:] == key[:-1])]
    return order[later], np.where(kind[later] == 0, DUPLICATE, NEAR_DUPLICATE).astype(np.int8)


class SpilledIndex:
    """Keep-the-earliest deduplication with its keys on disk, not in memory.

    ``add`` appends each post's key rows to one of ``buckets`` Arrow IPC files by key; ``decide`` reads
    one bucket at a time, sorts it and flags every post that has an earlier post with the same key
    (``flag_later``). The decisions equal ``decide``'s over all posts at once (a key's rows are all in
    one bucket, and the earliest is chosen by the same order); what stays in memory is one bucket
    (~45 bytes x 10 key rows per post / ``buckets``) and one byte per post for the decision.
    """

    def __init__(self, directory, buckets: int):
        import pyarrow as pa

        self.directory, self.buckets, self.n = directory, max(1, int(buckets)), 0
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
        """``KEEP``, ``DUPLICATE`` or ``NEAR_DUPLICATE`` per post, in the order they were added."""
        import pyarrow as pa

        for w in self.writers:
            w.close()
        decision = np.full(self.n, 127, dtype=np.int8)  # 127: no flag yet
        for path in self.paths:
            with pa.memory_map(str(path)) as source:
                keys = pa.ipc.open_stream(source).read_all()
            idx, flag = flag_later(keys)
            np.minimum.at(decision, keys.column("pos").to_numpy()[idx], flag)  # duplicate (1) before near (2)
            del keys
            path.unlink()
            pa.default_memory_pool().release_unused()
        decision[decision == 127] = KEEP
        return decision
