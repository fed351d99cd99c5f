"""Generic inputs: CSV/TSV, JSON/JSON Lines and Parquet tables with a text column, and plain text.

Columns are found by name (see :data:`AUTO_COLUMNS`, case-insensitive) or named with a mapping
(``--map id=tweet_id,author=user``). Only ``text`` is required. A post without an id gets
``<file label>#<n>`` (n = line number for JSON Lines and text, row number for CSV and Parquet), so
re-ingesting the same files gives the same ids. Hashtags, mentions and URLs are extracted from the
text when no column gives them.

JSON files are dispatched here too: a value with ``data`` is an X API v2 page, ``{"tweet": {...}}``
is an X archive entry, a record with API-only keys (``public_metrics``...) is an API tweet, anything
else is a generic row.
"""

from __future__ import annotations

import contextlib
import csv
import json
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from murmur.data.readers.common import (
    FileReport,
    NoPostsHere,
    Row,
    extract_hashtags,
    extract_mentions,
    extract_urls,
    finish_row,
    parse_time,
    stable_id,
    to_count,
    to_id,
)
from murmur.data.readers.x_api import api_row, looks_like_api_tweet
from murmur.data.readers.x_archive import archive_row
from murmur.errors import InputError
from murmur.io import open_binary, open_parquet, open_text

# Schema field -> names of columns that hold it, in order of preference (matched case-insensitively).
AUTO_COLUMNS: dict[str, tuple[str, ...]] = {
    "post_id": ("post_id", "id", "tweet_id", "id_str", "status_id"),
    "author_id": ("author_id", "user_id", "author", "user", "username", "screen_name", "user_screen_name"),
    "created_at": ("created_at", "timestamp", "date", "time", "datetime", "created"),
    "lang": ("lang", "language"),
    "text": ("text", "full_text", "content", "body", "tweet_text"),
    "reply_to": ("reply_to", "in_reply_to_status_id_str", "in_reply_to_status_id", "in_reply_to", "parent_id"),
    "conversation_id": ("conversation_id", "thread_id"),
    "hashtags": ("hashtags", "tags"),
    "mentions": ("mentions", "user_mentions"),
    "urls": ("urls", "links"),
    "likes": ("likes", "like_count", "favorite_count", "favorites", "likes_count"),
    "reposts": ("reposts", "repost_count", "retweets", "retweet_count", "retweets_count"),
    "replies": ("replies", "reply_count", "replies_count"),
}
FIELDS = tuple(AUTO_COLUMNS)  # == ROW_FIELDS

# --map keys -> schema fields.
MAP_KEYS: dict[str, str] = {
    **{f: f for f in FIELDS},
    "id": "post_id", "author": "author_id", "user": "author_id", "time": "created_at", "date": "created_at",
    "timestamp": "created_at", "language": "lang", "conversation": "conversation_id",
    "retweets": "reposts", "in_reply_to": "reply_to",
}


def resolve_columns(columns: list[str], mapping: dict[str, str], where: str,
                    allow_paths: bool = False) -> dict[str, str]:
    """Schema field -> column name, from the mapping first, then by the usual names.

    A mapped column that does not exist is an error naming the columns found; so is a table without
    any text column (raised as :class:`NoPostsHere`). With ``allow_paths`` (JSON), a mapped name
    with dots (``user.id_str``) is a path into nested objects.
    """
    found = ", ".join(columns[:30]) + (", ..." if len(columns) > 30 else "")
    lower = {c.lower(): c for c in reversed(columns)}
    out: dict[str, str] = {}
    for fld, col in mapping.items():
        if col in columns:
            out[fld] = col
        elif col.lower() in lower:
            out[fld] = lower[col.lower()]
        elif allow_paths and "." in col:
            out[fld] = col
        elif fld == "text":  # in a directory walk: a file that is not one of the mapped tables
            raise NoPostsHere(f"column {col!r} (mapped to text) not found; columns: {found or '(none)'}",
                              where, short=f"no column {col!r}")
        else:
            raise InputError(f"column {col!r} (mapped to {fld}) not found; columns: {found or '(none)'}",
                             where, field=fld)
    used = set(out.values())
    for fld, names in AUTO_COLUMNS.items():
        if fld in out:
            continue
        for name in names:
            col = lower.get(name)
            if col is not None and col not in used:
                out[fld] = col
                used.add(col)
                break
    if "text" not in out:
        raise NoPostsHere(f"no text column (columns: {found or '(none)'}); name it with --map text=COLUMN",
                          where, short="no text column")
    return out


# ---------------------------------------------------------------- one generic row
_SPLIT_RE = re.compile(r"[,\s]+")


def _to_list(v: Any, strip: str) -> list[str] | None:
    """A hashtag/mention/url list from a list, a JSON list string or a comma/space separated string."""
    if v is None:
        return None
    if isinstance(v, str):
        s = v.strip()
        if not s:
            return []
        if s[0] == "[":
            with contextlib.suppress(ValueError, RecursionError):
                v = json.loads(s)
        if isinstance(v, str):
            return [x.lstrip(strip) for x in _SPLIT_RE.split(s) if x.lstrip(strip)]
    if isinstance(v, list | tuple):
        out = []
        for x in v:
            if isinstance(x, dict):  # {"tag": ...} / {"text": ...} entity objects
                x = x.get("tag") or x.get("text") or x.get("username") or x.get("screen_name") \
                    or x.get("expanded_url") or x.get("url")
            if x is None:
                continue
            if type(x) is int:
                x = str(x)
            elif type(x) is not str:
                raise ValueError(f"not a list of names: {type(x).__name__} inside")
            if x.lstrip(strip):
                out.append(x.lstrip(strip))
        return out
    if isinstance(v, float) and v != v:
        return None
    raise ValueError(f"not a list: {type(v).__name__}")


def _author(v: Any) -> str | None:
    if isinstance(v, dict):  # a nested user object
        v = v.get("id_str") or v.get("id") or v.get("username") or v.get("screen_name")
    return to_id(v)


def generic_row(v: list[Any] | tuple[Any, ...], n: int, label: str, report: FileReport,
                time_fn: Callable[[Any], int | None] = parse_time) -> Row | None:
    """Values in schema-field order (None where absent) -> a row, or None when there is no text."""
    pid, author, created, lang, text, reply, conv, tags, ments, urls, likes, reposts, replies = v
    where = f"{label}:{n}"
    if type(text) is not str:
        if text is None or (isinstance(text, float) and text != text):
            report.skip("empty text", where)
            return None
        if isinstance(text, bytes):  # a binary Parquet column
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError:
                report.skip("text not valid UTF-8", where)
                return None
        elif type(text) is int:  # a number written as the post: its digits are the text
            text = str(text)
        else:  # an object, a list, a float, a boolean: not text, never its Python repr
            report.skip("text is not a string", where)
            return None
    if not text.strip():
        report.skip("empty text", where)
        return None
    try:
        post_id = to_id(pid) or stable_id(label, n)
    except ValueError:
        report.skip("post_id is not an id", where)
        return None
    try:
        created_us = time_fn(created) if created is not None else None
    except (ValueError, TypeError, OverflowError):
        report.null("created_at unreadable", where)
        created_us = None
    try:
        tags = _to_list(tags, "#＃")
        ments = _to_list(ments, "@＠")
        urls = _to_list(urls, "")
    except ValueError:
        report.null("hashtags/mentions/urls unreadable", where)
        tags = ments = urls = None
    counts = []
    for c in (likes, reposts, replies):
        try:
            counts.append(to_count(c))
        except (ValueError, TypeError, OverflowError):
            report.null("likes/reposts/replies unreadable", where)
            counts.append(None)
    lang = lang.strip() if isinstance(lang, str) else None
    try:
        ids = [_author(author), to_id(reply), to_id(conv)]
    except ValueError:
        ids = []
        for name, value, fn in (("author_id", author, _author), ("reply_to", reply, to_id),
                                ("conversation_id", conv, to_id)):
            try:
                ids.append(fn(value))
            except ValueError:
                report.null(f"{name} unreadable", where)
                ids.append(None)
    return finish_row((post_id, ids[0], created_us, lang or "und", text, ids[1], ids[2],
                       extract_hashtags(text) if tags is None else tags,
                       extract_mentions(text) if ments is None else ments,
                       extract_urls(text) if urls is None else urls,
                       counts[0], counts[1], counts[2]), where, report)


# ---------------------------------------------------------------- JSON
def _getter(key: str) -> Callable[[dict], Any]:
    if "." not in key:
        return lambda rec: rec.get(key)
    parts = key.split(".")

    def get(rec: dict) -> Any:
        for p in parts:
            if not isinstance(rec, dict):
                return None
            rec = rec.get(p)
        return rec
    return get


def _is_page(item: dict) -> bool:
    """An X API v2 response page: ``data`` (list, object or null) and/or ``meta``, and no ``text``."""
    if "text" in item:
        return False
    data = item.get("data", ...)
    return isinstance(data, list | dict) or (data is None or data is ...) and isinstance(item.get("meta"), dict)


def iter_json_rows(values: Iterator[tuple[Any, int]], where: str, label: str, fmt: str,
                   mapping: dict[str, str], report: FileReport) -> Iterator[Row]:
    """Rows from the JSON values of one file (pages, tweets, archive entries or generic records).

    ``fmt`` is ``auto``, ``x-api`` or ``jsonl``; it and the first record decide between reading
    records as API tweets or as generic rows (``report.reader`` says which).
    """
    mode: str | None = None
    getters: list[Callable[[dict], Any] | None] = []
    seen = False
    for value, line in values:
        seen = True
        at = f"{label}:{line}"
        if isinstance(value, dict) and fmt != "jsonl" and _is_page(value):
            data = value.get("data") or ()
            items, from_page = (data if isinstance(data, list) else (data,)), True
        else:
            items, from_page = (value if isinstance(value, list) else (value,)), False
        for item in items:
            if not isinstance(item, dict):
                report.skip("JSON value that is not an object", at)
                continue
            inner = item.get("tweet")
            if not from_page and isinstance(inner, dict) and len(item) == 1 and fmt != "jsonl":
                if mode is None:  # JSON Lines of X archive entries
                    mode = report.reader = "x-archive"
                row = archive_row(inner, None, at, report) if mode == "x-archive" else None
                if row is not None:
                    yield row
                continue
            if mode is None:
                if fmt in ("x-api", "jsonl"):
                    mode = fmt
                else:  # --map does not change this: it applies to generic records only
                    mode = "x-api" if from_page or looks_like_api_tweet(item) else "jsonl"
                report.reader = mode
                if mode == "jsonl":
                    getters = _json_getters(item, mapping, where)
            if mode == "x-api":
                row = api_row(item, at, report)
            elif mode == "jsonl":
                row = generic_row([g(item) if g else None for g in getters], line, label, report)
            else:
                row = archive_row(item.get("tweet", item), None, at, report)
            if row is not None:
                yield row
    if not seen:
        raise InputError("empty file", where)
    if mode is None:
        report.reader = report.reader or ("jsonl" if fmt == "jsonl" else "x-api")


def _json_getters(first: dict, mapping: dict[str, str], where: str) -> list[Callable[[dict], Any] | None]:
    cols = resolve_columns(list(first), mapping, where, allow_paths=True)
    return [_getter(cols[f]) if f in cols else None for f in FIELDS]


# ---------------------------------------------------------------- CSV
CSV_FIELD_LIMIT = 16 << 20  # characters in one field: a runaway quote stops here, not at the end of memory


def iter_csv_rows(path: Path, label: str, mapping: dict[str, str], report: FileReport,
                  delimiter: str = ",") -> Iterator[Row]:
    """Rows of a CSV (or TSV) file, read as text with Python's csv module in strict mode.

    Quoted fields may hold line breaks. A quote that is never closed, text after a closing quote or a
    row with more or fewer fields than the header is a broken file: one
    :class:`InputError` naming the line where the row starts (never two rows merged into one post).
    """
    where = str(path)
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    with open_text(path) as f:
        reader = csv.reader(f, delimiter=delimiter, strict=True)
        start = 1

        def rows() -> Iterator[list[str]]:
            nonlocal start
            while True:
                start = reader.line_num + 1
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as e:
                    raise InputError(f"malformed CSV: {_csv_reason(e)}", where, start) from None
                if row:
                    yield row

        it = rows()
        header = next(it, None)
        if header is None:
            raise InputError("empty file", where)
        if header[0].startswith("\ufeff"):
            header[0] = header[0][1:]
        cols = resolve_columns(header, mapping, where)
        index = {name: i for i, name in reversed(list(enumerate(header)))}
        picks = [index[cols[f]] if f in cols else None for f in FIELDS]
        width = len(header)
        n = 0
        for row in it:
            if len(row) != width:
                raise InputError(f"malformed CSV: expected {width} fields, got {len(row)}", where, start)
            n += 1
            out = generic_row([row[i] if i is not None else None for i in picks], n, label, report)
            if out is not None:
                yield out


def _csv_reason(e: csv.Error) -> str:
    msg = str(e)
    if "unexpected end of data" in msg:
        return "a quote opened in this row is never closed"
    if "expected after" in msg:
        return "text after a closing quote (an unbalanced quote?)"
    if "field larger than field limit" in msg:
        return f"a field longer than {CSV_FIELD_LIMIT:,} characters (an unbalanced quote?)"
    return msg


# ---------------------------------------------------------------- Parquet
def _identity(v: Any) -> Any:
    return v


def _pylist(arr: pa.Array, is_text: bool, label: str, first: int, report: FileReport) -> list[Any]:
    """A column's values. A value holding bytes that are not valid UTF-8 (a damaged page) makes its
    post skipped and counted in the text column, and is left empty and counted in any other column."""
    try:
        return arr.to_pylist()
    except UnicodeDecodeError:
        pass
    out: list[Any] = []
    for i in range(len(arr)):
        try:
            out.append(arr[i].as_py())
        except UnicodeDecodeError:
            if is_text:
                out.append(b"\xff")  # undecodable bytes: generic_row skips the post as "text not valid UTF-8"
            else:
                report.null("a value not valid UTF-8", f"{label}:{first + i + 1}")
                out.append(None)
    return out


def iter_parquet_rows(path: Path, label: str, mapping: dict[str, str], report: FileReport,
                      batch_size: int = 8192) -> Iterator[Row]:
    """Rows of a Parquet file, read a row batch at a time (``.gz``/``.zst`` via a temporary copy)."""
    where = str(path)
    with contextlib.ExitStack() as stack:
        src: Any = str(path)
        if path.name.lower().endswith((".gz", ".zst", ".zstd")):  # Parquet needs a seekable file
            tmp = stack.enter_context(tempfile.TemporaryFile())
            with open_binary(path) as f:
                shutil.copyfileobj(f, tmp, 1 << 20)
            tmp.seek(0)
            src = tmp
        if path.stat().st_size == 0:
            raise InputError("empty file", where)
        pf = stack.enter_context(open_parquet(src, where))
        names = pf.schema_arrow.names
        cols = resolve_columns(names, mapping, where)
        used = sorted(set(cols.values()), key=names.index)
        n = 0
        batches = pf.iter_batches(batch_size=batch_size, columns=used)
        while True:
            try:
                batch = next(batches, None)
            except (pa.ArrowException, OSError) as e:  # a corrupt page, a truncated file
                raise InputError(f"not a readable Parquet file: {str(e).splitlines()[0]}", where) from None
            if batch is None:
                break
            lists: dict[str, list] = {}
            time_fn: Callable[[Any], int | None] = parse_time
            for c in used:
                arr = batch.column(c)
                if c == cols.get("created_at") and pa.types.is_timestamp(arr.type):
                    arr = arr.cast(pa.timestamp("us", tz=arr.type.tz), safe=False).cast(pa.int64())
                    time_fn = _identity
                lists[c] = _pylist(arr, c == cols.get("text"), label, n, report)
            nones = [None] * batch.num_rows
            columns = [lists[cols[f]] if f in cols else nones for f in FIELDS]
            for vals in zip(*columns, strict=True):
                n += 1
                row = generic_row(vals, n, label, report, time_fn)
                if row is not None:
                    yield row


# ---------------------------------------------------------------- plain text
def iter_text_rows(path: Path, label: str, report: FileReport) -> Iterator[Row]:
    """One post per line; blank lines skipped; post_id ``<label>#<line>``."""
    seen = False
    with open_text(path) as f:
        for n, line in enumerate(f, 1):
            text = line.rstrip("\r\n")
            if n == 1 and text.startswith("\ufeff"):
                text = text[1:]
            if not text.strip():
                continue
            seen = True
            yield (stable_id(label, n), None, None, "und", text, None, None,
                   extract_hashtags(text), extract_mentions(text), extract_urls(text), None, None, None)
    if not seen:
        raise InputError("empty file", str(path))
