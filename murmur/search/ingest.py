"""New posts on their way into a live index: checked against the post schema, then cleaned as the
corpus was (``murmur data clean``'s own functions and :class:`~murmur.data.clean.CleanConfig`).

Per batch, by the corpus's own :class:`~murmur.data.clean.TextCleaner`: normalise, drop classic
retweets, URLs/PII/mentions to placeholders, the quality rules (too short, spam patterns, mostly
tags, ...), then language identification (a ``lang`` the client sent is used as the config's
``source_lang`` says: by default when the identifier is unsure) and the allowed languages. Near-duplicate removal is a whole-corpus pass and is not applied to single adds.

A row that does not fit the schema (no ``post_id``, a ``created_at`` that is not a date, ...) is a
client error: the whole batch is refused with one line naming the row and field, and nothing is
added. A row that the cleaning rules drop is not an error: it is reported back with its reason.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from murmur.data.clean import CleanConfig, TextCleaner
from murmur.errors import InputError

_HASHTAG_RE = re.compile(r"(?<![\w&#@$])#(\w+)")
_MENTION_RE = re.compile(r"(?<![\w&#@$])@(\w{1,15})\b")
MAX_TEXT_CHARS = 25_000
POST_FIELDS = ("post_id", "author_id", "created_at", "lang", "text", "reply_to", "conversation_id", "hashtags",
               "mentions", "urls", "likes", "reposts", "replies", "source")


@dataclass
class Post:
    """One post as the index keeps it (the post schema's fields that search uses)."""

    post_id: str
    author_id: str
    created_us: int
    lang: str
    text: str
    hashtags: list[str] = field(default_factory=list)
    mentions: list[str] = field(default_factory=list)
    likes: int = 0
    reposts: int = 0
    replies: int = 0
    reply_to: str | None = None
    conversation_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Post:
        return cls(**d)


def parse_time(value: object, where: str = "created_at") -> int:
    """Microseconds since the epoch (UTC) from an ISO-8601 string or a datetime; naive times are UTC."""
    if isinstance(value, dt.datetime):
        t = value
    elif isinstance(value, str):
        try:
            t = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InputError(f"{value!r} is not an ISO-8601 date or time (e.g. 2024-05-01 or "
                             "2024-05-01T12:00:00Z)", field=where) from None
    else:
        raise InputError(f"expected an ISO-8601 date or time, got {type(value).__name__}", field=where)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp() * 1_000_000)


def _str(row: dict, name: str, where: str, required: bool = False) -> str | None:
    v = row.get(name)
    if v is None:
        if required:
            raise InputError("is required", field=f"{where}.{name}")
        return None
    if not isinstance(v, str) or (required and not v.strip()):
        raise InputError("must be a non-empty string" if required else "must be a string", field=f"{where}.{name}")
    return v


def _count(row: dict, name: str, where: str) -> int:
    v = row.get(name)
    if v is None:
        return 0
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise InputError("must be a non-negative integer", field=f"{where}.{name}")
    return v


def _list(row: dict, name: str, where: str) -> list[str] | None:
    v = row.get(name)
    if v is None:
        return None
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise InputError("must be a list of strings", field=f"{where}.{name}")
    return v


def validate(rows: Sequence[object], now_us: int | None = None) -> list[dict[str, Any]]:
    """Check every row against the post schema; raise on the first bad one (``posts[i].field``)."""
    if not isinstance(rows, list | tuple) or not rows:
        raise InputError("must be a non-empty list of posts", field="posts")
    out = []
    for i, row in enumerate(rows):
        where = f"posts[{i}]"
        if not isinstance(row, dict):
            raise InputError("must be an object with the post schema's fields", field=where)
        unknown = sorted(set(row) - set(POST_FIELDS))
        if unknown:
            raise InputError(f"unknown field(s) {', '.join(unknown)}; the post schema has {', '.join(POST_FIELDS)}",
                             field=where)
        text = _str(row, "text", where, required=True)
        if len(text) > MAX_TEXT_CHARS:
            raise InputError(f"is longer than {MAX_TEXT_CHARS:,} characters", field=f"{where}.text")
        created = row.get("created_at")
        out.append({
            "post_id": _str(row, "post_id", where, required=True),
            "author_id": _str(row, "author_id", where) or "",
            "created_us": parse_time(created, f"{where}.created_at") if created is not None else
            (now_us if now_us is not None else int(dt.datetime.now(dt.UTC).timestamp() * 1_000_000)),
            "lang": _str(row, "lang", where),
            "text": text,
            "hashtags": _list(row, "hashtags", where),
            "mentions": _list(row, "mentions", where),
            "likes": _count(row, "likes", where), "reposts": _count(row, "reposts", where),
            "replies": _count(row, "replies", where),
            "reply_to": _str(row, "reply_to", where), "conversation_id": _str(row, "conversation_id", where),
        })
        _list(row, "urls", where)
        _str(row, "source", where)
    return out


class Cleaner:
    """The corpus's cleaning steps (:class:`~murmur.data.clean.TextCleaner`) for posts that arrive one
    batch at a time (build once: langid loads)."""

    def __init__(self, cfg: CleanConfig | None = None):
        self.cfg = cfg or CleanConfig()
        self.text_cleaner = TextCleaner(self.cfg)

    def clean(self, rows: list[dict[str, Any]]) -> tuple[list[Post], list[tuple[str, str]]]:
        """The posts that pass, cleaned; and (post_id, reason) for each one dropped."""
        got = self.text_cleaner.clean([row["text"] for row in rows], [row["lang"] for row in rows])
        out = []
        for i, text, normalised, lang in zip(got.rows, got.texts, got.normalised, got.langs, strict=True):
            row = rows[i]
            hashtags = row["hashtags"] if row["hashtags"] is not None else _HASHTAG_RE.findall(normalised)
            mentions = row["mentions"] if row["mentions"] is not None else _MENTION_RE.findall(normalised)
            out.append(Post(post_id=row["post_id"], author_id=row["author_id"], created_us=row["created_us"],
                            lang=lang, text=text, hashtags=hashtags, mentions=mentions,
                            likes=row["likes"], reposts=row["reposts"], replies=row["replies"],
                            reply_to=row["reply_to"], conversation_id=row["conversation_id"]))
        return out, [(rows[i]["post_id"], reason) for i, reason in sorted(got.dropped)]
