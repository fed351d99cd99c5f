"""The train/validation split: a stable hash of ``post_id``, the same everywhere.

A post is held out for validation when the first 8 bytes of ``blake2b(post_id)`` (read as an
unsigned little-endian integer) fall below ``val_fraction * 2**64``. The answer depends on the id
alone, so it never changes when posts are added, removed or reordered, it does not depend on the
number of worker processes, and the tokenizer (trained on the train side only) and the token shards
agree on every post. The held-out sets are nested: a post held out at 1% is also held out at 2%.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import pyarrow as pa

DEFAULT_VAL_FRACTION = 0.02
_SCALE = 2**64


def split_hash(post_id: str) -> int:
    """The post's 64-bit split hash (an int in ``[0, 2**64)``)."""
    return int.from_bytes(hashlib.blake2b(post_id.encode("utf-8"), digest_size=8).digest(), "little")


def _threshold(val_fraction: float) -> int:
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    return int(val_fraction * _SCALE)


def is_val(post_id: str, val_fraction: float) -> bool:
    """True when the post belongs to the held-out (validation) split."""
    return split_hash(post_id) < _threshold(val_fraction)


def split_hashes(post_ids: pa.Array | pa.ChunkedArray | Iterable[str]) -> np.ndarray:
    """Split hashes of a column of ids as a uint64 array (nulls hash as the empty string)."""
    if isinstance(post_ids, pa.Array | pa.ChunkedArray):
        post_ids = post_ids.to_pylist()
    digest = b"".join(hashlib.blake2b((p or "").encode("utf-8"), digest_size=8).digest() for p in post_ids)
    return np.frombuffer(digest, dtype="<u8").astype(np.uint64, copy=False)


def val_mask(post_ids: pa.Array | pa.ChunkedArray | Iterable[str], val_fraction: float) -> np.ndarray:
    """``is_val`` over a whole column: a boolean array, True for held-out posts."""
    hashes = split_hashes(post_ids)
    threshold = _threshold(val_fraction)
    if threshold >= _SCALE:  # val_fraction == 1.0: every post, without overflowing uint64
        return np.ones(len(hashes), dtype=bool)
    return hashes < np.uint64(threshold)
