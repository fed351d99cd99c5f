"""The ground truth of a demo world, read back as a typed API: who is interested in what, what each
post is about, who follows whom.

Search, the assistant and ads measure themselves against this (is a result on the query's topic? is
an ad shown to someone interested in it?). Everything comes from the files the generator wrote under
``truth/`` and ``world.json`` (the layout is in :mod:`murmur.world.generate` and docs/formats.md).

Loading keeps the three tables as pyarrow tables and builds the lookups from numpy arrays the first
time they are asked for, so a million-post world loads in about a second and single lookups cost a
binary search. Bulk work should use the tables (``truth.posts``, ``truth.users``, ``truth.follows``)
or the array helpers (:meth:`Truth.post_rows`, :meth:`Truth.interest_matrix`, :meth:`Truth.follow_csr`).

Posts follow a daily rhythm (quiet at night, peaks at lunch and in the evening) with slightly busier
weekends, and topics are equally likely over time, except during a world's few stories: for a few
hours many people post about one piece of news with its own words and two hashtags
(:attr:`Truth.bursts`; ``truth.post(id).story`` names the story a post belongs to). Everything else
is drawn exactly as in a world without stories.

Example::

    truth = load_truth("world/")
    u = truth.user_by_handle("alice")
    u.interests, u.interest_weights          # ('cooking', 'running'), (0.725, 0.275)
    truth.post("1785...").topic              # 'cooking'
    truth.following(u.user_id)               # ['1401...', ...]
    truth.bursts[0].hashtags, truth.bursts[0].start   # ('SolarEclipse', 'Eclipse2024'), datetime(...)
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from murmur.errors import InputError

USER_COLUMNS = ("user_id", "handle", "name", "kind", "langs", "lang_weights", "interests", "interest_weights",
                "followers", "following", "posts", "archive")
POST_COLUMNS = ("post_id", "author_id", "created_at", "topic", "lang", "kind", "duplicate_of", "reply_to",
                "conversation_id", "retweet_of", "quote_of", "long", "file", "story")
FOLLOW_COLUMNS = ("src", "dst")
MIN_VERSION = 3  # worlds before version 2 lack the interest and language weights, before 3 the stories


@dataclass(frozen=True)
class User:
    """One account. ``interests`` are topic names (empty for spam accounts and bots);
    ``interest_weights`` the chance each is picked for a post of the account's own (they sum to 1);
    ``lang_weights`` the share of its posts written in each of ``langs``."""

    user_id: str
    handle: str
    name: str
    kind: str                         # human | spam | bot
    langs: tuple[str, ...]
    lang_weights: tuple[float, ...]
    interests: tuple[str, ...]
    interest_weights: tuple[float, ...]
    followers: int
    following: int
    posts: int
    archive: str | None               # archives/<handle>[.zip], or None for accounts seen through the API


@dataclass(frozen=True)
class Post:
    """One post. ``topic`` is None for spam, bot and foreign-language posts; a reply keeps its
    parent's topic and conversation, a quote (``quote_of``, kind normal) the quoted post's topic; a
    duplicate copies ``duplicate_of``'s text and topic. Other posts take a topic from their author's
    interests with the author's ``interest_weights``, and a language with its ``lang_weights``."""

    post_id: str
    author_id: str
    created_at: dt.datetime           # UTC
    topic: str | None
    lang: str
    kind: str                         # normal | reply | spam | bot | duplicate | near_duplicate | retweet | foreign | pii
    duplicate_of: str | None
    reply_to: str | None
    conversation_id: str
    retweet_of: str | None
    quote_of: str | None
    long: bool                        # longer than 280 characters (an API note_tweet)
    file: str                         # where the post was written, relative to the world
    story: str | None = None          # the story (burst) the post belongs to, if any


@dataclass(frozen=True)
class Burst:
    """One story: for ``[start, end)`` many accounts post about it in ``lang``, with its ``hashtags``
    (a post carries one, the other or both) and its own words (``terms``: noun phrases of its posts).
    ``topic`` is the everyday topic its posts count as; ``post_ids`` are its posts, oldest first."""

    story_id: str
    name: str
    topic: str
    lang: str
    hashtags: tuple[str, ...]
    terms: tuple[str, ...]
    start: dt.datetime
    end: dt.datetime
    post_ids: tuple[str, ...]


class Truth:
    """A world's ground truth. Build it with :func:`load_truth`.

    Attributes: ``root`` (the world directory), ``config`` (the generator's knobs, as world.json
    records them), ``topics`` (every topic name, in the generator's order), ``counts`` (world.json's
    counts), and the tables ``users``, ``posts``, ``follows`` (pyarrow, columns as in docs/formats.md).
    """

    def __init__(self, root: Path, meta: dict[str, Any], users: pa.Table, posts: pa.Table, follows: pa.Table):
        self.root = root
        self.config: dict[str, Any] = meta.get("config", {})
        self.counts: dict[str, Any] = meta.get("counts", {})
        self.topics: tuple[str, ...] = tuple(meta.get("topics", ()))
        self._stories: list[dict[str, Any]] = list(meta.get("stories", ()))
        self.users, self.posts, self.follows = users, posts, follows

    def __repr__(self) -> str:
        return (f"Truth({self.root}: {self.users.num_rows:,} users, {self.posts.num_rows:,} posts, "
                f"{self.follows.num_rows:,} follows)")

    # ------------------------------------------------------------------ users
    @cached_property
    def _user_keys(self) -> tuple[np.ndarray, np.ndarray]:
        return _sorted_keys(self.users["user_id"])

    def user_rows(self, user_ids: Sequence[str] | pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Row numbers in ``users`` of many user ids at once; KeyError names the first unknown one."""
        return _lookup(self._user_keys, user_ids, "user")

    def user_row(self, user_id: str) -> int:
        return int(self.user_rows([user_id])[0])

    def user(self, user_id: str) -> User:
        """The account with this id (KeyError if there is none)."""
        return self._user_at(self.user_row(user_id))

    @cached_property
    def _handle_rows(self) -> dict[str, int]:
        return {h.lower(): i for i, h in enumerate(self.users["handle"].to_pylist())}

    def user_by_handle(self, handle: str) -> User:
        """The account with this handle, any case, with or without a leading ``@``."""
        key = handle.lstrip("@").lower()
        if key not in self._handle_rows:
            raise KeyError(f"no user with handle {handle!r}")
        return self._user_at(self._handle_rows[key])

    def _user_at(self, row: int) -> User:
        r = {c: v[0] for c, v in self.users.slice(row, 1).to_pydict().items()}
        return User(user_id=r["user_id"], handle=r["handle"], name=r["name"], kind=r["kind"],
                    langs=tuple(r["langs"]), lang_weights=tuple(r["lang_weights"]),
                    interests=tuple(r["interests"]), interest_weights=tuple(r["interest_weights"]),
                    followers=r["followers"], following=r["following"], posts=r["posts"], archive=r["archive"])

    def interests(self, user_id: str) -> dict[str, float]:
        """topic -> weight for one account (empty for spam accounts and bots)."""
        u = self.user(user_id)
        return dict(zip(u.interests, u.interest_weights, strict=True))

    def interest_matrix(self) -> np.ndarray:
        """float32 [users, topics]: row i is ``users`` row i's interest weights over :attr:`topics`."""
        col = {t: j for j, t in enumerate(self.topics)}
        out = np.zeros((self.users.num_rows, len(self.topics)), np.float32)
        names = self.users["interests"].combine_chunks()
        weights = self.users["interest_weights"].combine_chunks()
        offsets = names.offsets.to_numpy()
        rows = np.repeat(np.arange(self.users.num_rows), np.diff(offsets))
        cols = np.array([col[t] for t in names.flatten().to_pylist()], np.int64)
        out[rows, cols] = weights.flatten().to_numpy(zero_copy_only=False)
        return out

    # ------------------------------------------------------------------ follow graph
    @cached_property
    def _follow_edges(self) -> tuple[np.ndarray, np.ndarray]:
        return self._user_rows_of(self.follows["src"]), self._user_rows_of(self.follows["dst"])

    def _user_rows_of(self, column: pa.ChunkedArray) -> np.ndarray:
        return _lookup(self._user_keys, column, "user", _table_ids(column))

    def follow_csr(self, reverse: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The graph over ``users`` rows as CSR arrays ``(ptr, nbr)``: row i follows ``nbr[ptr[i]:ptr[i+1]]``
        (with ``reverse=True``: is followed by them)."""
        return self._csr_rev if reverse else self._csr

    @cached_property
    def _csr(self) -> tuple[np.ndarray, np.ndarray]:
        return _csr(*self._follow_edges, self.users.num_rows)

    @cached_property
    def _csr_rev(self) -> tuple[np.ndarray, np.ndarray]:
        src, dst = self._follow_edges
        return _csr(dst, src, self.users.num_rows)

    def following(self, user_id: str) -> list[str]:
        """The ids of the accounts this account follows."""
        return self._neighbours(user_id, reverse=False)

    def followers(self, user_id: str) -> list[str]:
        """The ids of the accounts that follow this account."""
        return self._neighbours(user_id, reverse=True)

    def _neighbours(self, user_id: str, reverse: bool) -> list[str]:
        ptr, nbr = self.follow_csr(reverse)
        i = self.user_row(user_id)
        return self.users["user_id"].take(pa.array(nbr[ptr[i]:ptr[i + 1]])).to_pylist()

    # ------------------------------------------------------------------ posts
    @cached_property
    def _post_keys(self) -> tuple[np.ndarray, np.ndarray]:
        return _sorted_keys(self.posts["post_id"])

    def post_rows(self, post_ids: Sequence[str] | pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Row numbers in ``posts`` of many post ids at once; KeyError names the first unknown one."""
        return _lookup(self._post_keys, post_ids, "post")

    def post(self, post_id: str) -> Post:
        """The post with this id (KeyError if there is none)."""
        row = int(self.post_rows([post_id])[0])
        r = {c: v[0] for c, v in self.posts.slice(row, 1).to_pydict().items()}
        return Post(**{c: r[c] for c in POST_COLUMNS})

    def topics_of(self, post_ids: Sequence[str]) -> list[str | None]:
        """The topic of each post id, in order (None where a post has no topic)."""
        return self.posts["topic"].take(pa.array(self.post_rows(post_ids))).to_pylist()

    @cached_property
    def _author_rows(self) -> np.ndarray:
        return self._user_rows_of(self.posts["author_id"])

    def posts_by(self, user_id: str) -> list[str]:
        """The ids of an account's posts, oldest first."""
        rows = np.flatnonzero(self._author_rows == self.user_row(user_id))
        return self.posts["post_id"].take(pa.array(rows)).to_pylist()

    # ------------------------------------------------------------------ stories
    @cached_property
    def bursts(self) -> tuple[Burst, ...]:
        """The world's stories, in time order (empty for a world generated with ``stories=0``)."""
        ids = self.posts["post_id"].to_pylist()
        members: dict[str, list[str]] = {}
        for pid, story in zip(ids, self.posts["story"].to_pylist(), strict=True):
            if story is not None:
                members.setdefault(story, []).append(pid)
        return tuple(Burst(story_id=s["id"], name=s["name"], topic=s["topic"], lang=s["lang"],
                           hashtags=tuple(s["hashtags"]), terms=tuple(s["terms"]), start=_time(s["start"]),
                           end=_time(s["end"]), post_ids=tuple(members.get(s["id"], ())))
                     for s in self._stories)

    def stories_of(self, post_ids: Sequence[str]) -> list[str | None]:
        """The story id of each post id, in order (None for everyday posts)."""
        return self.posts["story"].take(pa.array(self.post_rows(post_ids))).to_pylist()

    def conversation(self, conversation_id: str) -> list[str]:
        """The ids of the posts in a conversation (the root post and its reply thread), oldest first."""
        mask = pc.equal(self.posts["conversation_id"], conversation_id)
        return self.posts["post_id"].filter(mask).to_pylist()


def load_truth(world_dir: str | Path) -> Truth:
    """Read a world's ground truth (``truth/*.parquet`` and ``world.json``) written by
    :func:`murmur.world.generate.generate_world`. Raises :class:`InputError` naming the file when a
    piece is missing, malformed, or from a world format this murmur does not read."""
    root = Path(world_dir)
    meta_path = root / "world.json"
    if not meta_path.is_file():
        raise InputError("no world.json here; is this a world written by `murmur world generate`?", path=root)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"not readable JSON ({e})", path=meta_path) from None
    if not isinstance(meta, dict) or meta.get("format") != "murmur-world":
        raise InputError("not a murmur world description", path=meta_path, field="format")
    version = meta.get("version")
    if not isinstance(version, int) or version < MIN_VERSION:
        raise InputError(f"world format version {version!r} is older than {MIN_VERSION}; generate the world "
                         "again with `murmur world generate`", path=meta_path, field="version")
    tables = [_read(root / "truth" / f"{name}.parquet", cols)
              for name, cols in (("users", USER_COLUMNS), ("posts", POST_COLUMNS), ("follows", FOLLOW_COLUMNS))]
    return Truth(root, meta, *tables)


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _read(path: Path, columns: tuple[str, ...]) -> pa.Table:
    if not path.is_file():
        raise InputError("missing; the world is incomplete, generate it again", path=path)
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as e:
        raise InputError(f"not a readable parquet file ({e})", path=path) from None
    for c in columns:
        if c not in schema.names:
            raise InputError("column missing", path=path, field=c)
    return pq.read_table(path, columns=list(columns))


def _ids(values: Sequence[str] | pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Numeric string ids (X snowflakes and user ids) as int64; -1 for anything that is not one
    (signs, spaces, leading zeros and numbers past int64 included)."""
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(list(values), pa.string())
    ok = pc.match_substring_regex(arr, r"^(0|[1-9][0-9]{0,17}|[1-8][0-9]{18})$")
    return _table_ids(pc.if_else(ok, arr, "-1"))


def _table_ids(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A column of ids the generator wrote (all numeric) as int64, without the checks of :func:`_ids`."""
    out = pc.cast(column, pa.int64())
    return (out.to_numpy() if isinstance(out, pa.Array) else out.combine_chunks().to_numpy()).astype(np.int64)


def _sorted_keys(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    keys = _table_ids(column)
    order = np.argsort(keys, kind="stable")
    return keys[order], order


def _lookup(index: tuple[np.ndarray, np.ndarray], ids: Sequence[str] | pa.Array | pa.ChunkedArray,
            what: str, want: np.ndarray | None = None) -> np.ndarray:
    keys, order = index
    want = _ids(ids) if want is None else want
    pos = np.searchsorted(keys, want)
    pos = np.minimum(pos, max(len(keys) - 1, 0))
    found = (want >= 0) & (keys[pos] == want) if len(keys) else np.zeros(len(want), bool)
    if not found.all():
        bad = int(np.flatnonzero(~found)[0])
        name = ids[bad] if not isinstance(ids, (pa.Array, pa.ChunkedArray)) else ids[bad].as_py()
        raise KeyError(f"no {what} with id {name!r}")
    return order[pos]


def _csr(src: np.ndarray, dst: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(src, kind="stable")  # the file lists edges by follower already: near-linear
    ptr = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n))]).astype(np.int64)
    return ptr, dst[order].astype(np.int64)
