"""The index's own copy of each post, in memory: what results show and what dense filters test.

Row ``key`` of the store is the post with that key in the lexical and dense halves. The build's
posts come from ``posts.parquet`` (Arrow columns, no per-row Python objects until a result needs
one); posts added later are appended. Numeric columns are numpy arrays (growable), so a filter
over a million posts is a few vectorised comparisons.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from murmur.search.analyze import fold
from murmur.search.ingest import Post
from murmur.search.lexical import Filters

SCHEMA = pa.schema([
    ("post_id", pa.string()), ("author_id", pa.string()), ("created_at", pa.timestamp("us", tz="UTC")),
    ("lang", pa.string()), ("text", pa.string()), ("hashtags", pa.list_(pa.string())),
    ("mentions", pa.list_(pa.string())), ("likes", pa.int64()), ("reposts", pa.int64()), ("replies", pa.int64()),
    ("reply_to", pa.string()), ("conversation_id", pa.string()),
])


_SHOWN = ["post_id", "author_id", "lang", "text", "conversation_id"]
"""The columns a result shows (besides the time, kept as numbers)."""


class _Strings:
    """A string column of one Arrow chunk read a value at a time straight from its buffers (offsets and
    UTF-8 bytes, zero-copy): a page of results decodes a few dozen values, where Arrow's ``take`` and
    ``to_pylist`` build a table and a scalar per value."""

    def __init__(self, arr: pa.Array):
        wide = pa.types.is_large_string(arr.type)
        _, offsets, data = arr.buffers()
        size = 8 if wide else 4
        self.off = np.frombuffer(offsets, np.int64 if wide else np.int32, len(arr) + 1, arr.offset * size)
        self.data = memoryview(data) if data is not None else memoryview(b"")
        self.valid = None if arr.null_count == 0 else np.asarray(arr.is_valid())

    def get(self, i: int) -> str | None:
        if self.valid is not None and not self.valid[i]:
            return None
        return str(self.data[self.off[i]:self.off[i + 1]], "utf-8")


class _Grow:
    """A numpy column with amortised appends."""

    def __init__(self, values: np.ndarray):
        self.a = np.array(values)
        self.n = len(values)

    def append(self, v: object) -> None:
        if self.n == len(self.a):
            self.a = np.concatenate([self.a, np.zeros(max(1024, len(self.a) // 2), self.a.dtype)])
        self.a[self.n] = v
        self.n += 1

    @property
    def view(self) -> np.ndarray:
        return self.a[:self.n]


def _codes(values: list, vocab: dict[str, int]) -> np.ndarray:
    return np.fromiter((vocab.setdefault(v or "", len(vocab)) for v in values), np.int32, len(values))


class Store:
    def __init__(self, table: pa.Table):
        self.base = table.combine_chunks()
        self._shown = [(name, _Strings(self.base.column(name).chunk(0) if self.base.num_rows else
                                       pa.array([], pa.string()))) for name in _SHOWN]
        self.n_base = table.num_rows
        self.added: list[Post] = []
        self.langs: dict[str, int] = {}
        self.authors: dict[str, int] = {}
        self.lang = _Grow(_codes(self.base.column("lang").to_pylist(), self.langs))
        self.author = _Grow(_codes(self.base.column("author_id").to_pylist(), self.authors))
        self.created = _Grow(pc.cast(self.base.column("created_at"), pa.int64()).to_numpy(zero_copy_only=False))
        self.likes = _Grow(pc.fill_null(self.base.column("likes"), 0).to_numpy(zero_copy_only=False))
        self.reposts = _Grow(pc.fill_null(self.base.column("reposts"), 0).to_numpy(zero_copy_only=False))
        self.alive = _Grow(np.ones(self.n_base, np.bool_))
        self._newest = int(self.created.view.max()) if self.n_base else 0  # kept by append: a query reads it
        self.ids: dict[str, int] = {pid: i for i, pid in enumerate(self.base.column("post_id").to_pylist())}
        self.tags: dict[str, list[int]] = {}
        for i, tags in enumerate(self.base.column("hashtags").to_pylist()):
            for t in tags or ():
                self.tags.setdefault(fold(t), []).append(i)

    @classmethod
    def load(cls, path: Path) -> Store:
        return cls(pq.read_table(path, schema=SCHEMA))

    def __len__(self) -> int:
        return self.n_base + len(self.added)

    def append(self, post: Post) -> int:
        key = len(self)
        self.added.append(post)
        self.lang.append(self.langs.setdefault(post.lang, len(self.langs)))
        self.author.append(self.authors.setdefault(post.author_id, len(self.authors)))
        self.created.append(post.created_us)
        self._newest = max(self._newest, int(post.created_us)) if len(self) > 1 else int(post.created_us)
        self.likes.append(post.likes)
        self.reposts.append(post.reposts)
        self.alive.append(True)
        self.ids[post.post_id] = key
        for t in post.hashtags:
            self.tags.setdefault(fold(t), []).append(key)
        return key

    def kill(self, key: int) -> None:
        self.alive.a[key] = False

    def get(self, key: int) -> dict:
        """A post as results show it."""
        return self.rows([key])[0]

    def rows(self, keys: Sequence[int]) -> list[dict]:
        """The posts of ``keys`` as results show them, in that order (the build's rows decoded straight
        from their Arrow buffers: no table or scalar is built for a page of results)."""
        out = []
        created = self.created.a
        for k in keys:
            k = int(k)
            if k >= self.n_base:
                out.append(_shown(self.added[k - self.n_base]))
                continue
            row = {name: col.get(k) for name, col in self._shown}
            row["created_us"] = int(created[k])
            out.append(row)
        return out

    def mask(self, f: Filters) -> np.ndarray:
        """Live keys that pass ``f``, as a boolean array."""
        m = self.alive.view.copy()
        if f.lang is not None:
            m &= self.lang.view == self.langs.get(f.lang, -1)
        if f.author is not None:
            m &= self.author.view == self.authors.get(f.author, -1)
        if f.since_us is not None:
            m &= self.created.view >= f.since_us
        if f.until_us is not None:
            m &= self.created.view <= f.until_us
        if f.min_likes is not None:
            m &= self.likes.view >= f.min_likes
        if f.hashtag is not None:
            keep = np.zeros(len(m), np.bool_)
            keep[self.tags.get(fold(f.hashtag.lstrip("#")), [])] = True
            m &= keep
        return m

    def newest_us(self) -> int:
        """The newest post's time (deleted posts included), 0 when empty."""
        return self._newest


def _shown(p: Post) -> dict:
    """An added post as results show it (the build's posts come from their Arrow columns)."""
    return {"post_id": p.post_id, "author_id": p.author_id, "created_us": p.created_us, "lang": p.lang,
            "text": p.text, "conversation_id": p.conversation_id}


def iso(us: int) -> str:
    """A time in microseconds since the epoch as results show it: UTC, to the millisecond."""
    return isos([us])[0]


def isos(us: Sequence[int]) -> list[str]:
    """:func:`iso` of each, in one numpy call (a page of results)."""
    return [t + "Z" for t in np.datetime_as_string(np.asarray(us, np.int64).astype("datetime64[us]"), unit="ms")]
