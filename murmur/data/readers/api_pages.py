"""X API v2 response pages, one per line, read as whole Arrow columns instead of post by post.

A file of pages (``{"data": [tweet, ...], "includes": ..., "meta": ...}`` on each line, what the X
API returns and what the demo world writes) is parsed by pyarrow's JSON reader, and each field of
:func:`murmur.data.readers.x_api.api_row` is computed for all its posts at once with pyarrow.compute.
This path gives exactly the rows of the post-by-post reader, or gives nothing: every input it is not
sure to read the same way returns ``None``, and the caller reads the file post by post as before
(with the same rows, counts and errors). It takes a file when, throughout it:

- every line is one JSON object (blank lines aside) with a non-empty ``data`` array of tweet
  objects and no top-level ``text`` (a ``"text": null`` there reads as absent, the one difference
  from the row reader, which would call that line a record without text);
- every tweet has an ``id`` of digits, a ``text`` (or ``note_tweet.text``) with at least one letter,
  digit, punctuation mark or symbol, a ``note_tweet.entities`` that is absent or has a key that is
  not null, an ASCII ``lang`` (or none), ``author_id`` and
  ``conversation_id`` of digits (or none), ``created_at`` as ``YYYY-MM-DDTHH:MM:SS[.fff[fff]]Z`` (or
  none), counts that fit in int64 (not its minimum), and a ``replied_to`` reference id of digits;
- the bytes are UTF-8 without a lone ``\\r`` (the row reader splits lines there too), and the file
  is at most ``MAX_BYTES`` (32 MB) once decompressed (it is held in memory while read).

Anything else (a record to skip or a value to leave empty, a field of an unexpected type, an escaped
lone surrogate, malformed JSON, two values on a line) makes pyarrow refuse the file or a check fail.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from murmur.data.readers.common import extract_hashtags, extract_mentions, extract_urls
from murmur.data.schema import POST_SCHEMA
from murmur.errors import InputError
from murmur.io import open_binary

MAX_BYTES = 32 << 20
"""Larger files (decompressed) are read post by post, in constant memory. A file read here costs up to
about 10x its size while it is read (its bytes, the parsed table, the columns): ingest of the demo
world, files of 13 MB and 20,000 posts, peaks at ~290 MB against ~170 MB post by post."""

_STR = pa.string()
_ENTITIES = pa.struct([("hashtags", pa.list_(pa.struct([("tag", _STR)]))),
                       ("mentions", pa.list_(pa.struct([("username", _STR)]))),
                       ("urls", pa.list_(pa.struct([("url", _STR), ("expanded_url", _STR)]))),
                       ("cashtags", pa.list_(pa.struct([("tag", _STR)]))),  # not kept: they tell {} from {...}
                       ("annotations", pa.list_(pa.struct([("type", _STR)])))])
_TWEET = pa.struct([
    ("id", _STR), ("text", _STR), ("author_id", _STR), ("created_at", _STR), ("lang", _STR),
    ("conversation_id", _STR), ("note_tweet", pa.struct([("text", _STR), ("entities", _ENTITIES)])),
    ("referenced_tweets", pa.list_(pa.struct([("type", _STR), ("id", _STR)]))),
    ("public_metrics", pa.struct([("like_count", pa.int64()), ("retweet_count", pa.int64()),
                                  ("reply_count", pa.int64())])),
    ("entities", _ENTITIES),
])
_PAGE = pa.schema([("data", pa.list_(_TWEET)), ("text", _STR)])
_OPTIONS = pj.ParseOptions(explicit_schema=_PAGE, unexpected_field_behavior="ignore")
_DIGITS = r"^[0-9]+$"
_ISO_UTC = r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{3}|\.[0-9]{6})?Z$"
_VISIBLE = r"[\p{L}\p{N}\p{P}\p{S}]"
_INT64_MIN = -(1 << 63)
_LIST = pa.list_(_STR)


class _NotHere(Exception):
    """This file is not one the column path reads exactly like the row path."""


def read_pages(path: Path, source: str, batch_size: int) -> list[pa.RecordBatch] | None:
    """The posts of a file of X API v2 pages as batches in POST_SCHEMA (``source`` in every row), or
    None when the file must be read post by post."""
    try:
        with open_binary(path) as f:
            raw = f.read(MAX_BYTES + 1)
    except (InputError, OSError):
        return None  # the row reader raises the same error in its own words
    if len(raw) > MAX_BYTES or b"\r" in raw:
        return None
    try:
        pa.array([raw], pa.binary()).cast(_STR)  # UTF-8, checked (pyarrow's JSON reader would keep other bytes)
        table = pj.read_json(io.BytesIO(raw), parse_options=_OPTIONS)
        batch = _posts(table, sum(1 for line in raw.split(b"\n") if line.strip()), source)
    except (pa.ArrowException, _NotHere):
        return None
    return [batch.slice(i, batch_size) for i in range(0, batch.num_rows, batch_size)]


def _require(ok: bool | pa.BooleanScalar) -> None:
    if not (ok.as_py() if isinstance(ok, pa.Scalar) else ok):
        raise _NotHere


def _all(mask: pa.Array) -> bool:
    return bool(pc.all(pc.fill_null(mask, False)).as_py()) if len(mask) else True


def _ids(arr: pa.Array, nullable: bool) -> pa.Array:
    """An id column as the row reader's ``to_id`` leaves it: digits only (or null where allowed)."""
    _require(nullable or arr.null_count == 0)
    _require(_all(pc.or_kleene(pc.is_null(arr), pc.match_substring_regex(arr, _DIGITS))))
    return arr


def _posts(table: pa.Table, lines: int, source: str) -> pa.RecordBatch:
    _require(table.num_rows == lines and lines > 0)
    _require(table.column("text").null_count == table.num_rows)
    data = table.column("data").combine_chunks()
    _require(data.null_count == 0 and _all(pc.greater(pc.list_value_length(data), 0)))
    t = pc.list_flatten(data)
    n = len(t)
    _require(t.null_count == 0)
    f = {name: t.field(name) for name in _TWEET.names}
    note = f["note_tweet"]  # a long post: its full text (and its own entities, when it has any)
    has_note = _mask(pc.and_kleene(pc.is_valid(note), pc.is_valid(note.field("text"))))

    post_id = _ids(f["id"], nullable=False)
    text = pc.if_else(pa.array(has_note), note.field("text"), f["text"]) if has_note.any() else f["text"]
    _require(text.null_count == 0 and _all(pc.match_substring_regex(text, _VISIBLE)))
    for entity, plain in (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&")):  # unescape_x, in its order
        text = pc.replace_substring(text, entity, plain)
    lang = f["lang"]
    _require(_all(pc.or_kleene(pc.is_null(lang), pc.string_is_ascii(lang))))
    lang = pc.if_else(pc.fill_null(pc.equal(lang, ""), True), "und", lang)
    author, conversation = _ids(f["author_id"], True), _ids(f["conversation_id"], True)
    created = f["created_at"]
    _require(_all(pc.or_kleene(pc.is_null(created), pc.match_substring_regex(created, _ISO_UTC))))
    created = created.cast(POST_SCHEMA.field("created_at").type)

    metrics = f["public_metrics"]
    counts = []
    for name in ("like_count", "retweet_count", "reply_count"):
        c = pc.if_else(pc.is_valid(metrics), metrics.field(name), pa.scalar(None, pa.int64()))
        _require(_all(pc.or_kleene(pc.is_null(c), pc.not_equal(c, _INT64_MIN))))
        counts.append(c)

    reply_to = _reply_to(f["referenced_tweets"], n)
    own = f["entities"]
    has = _mask(pc.is_valid(own))
    lists = _entity_lists(own, n)
    if has_note.any():  # ``note.entities or entities``: the note's when it has any key
        ne = note.field("entities")
        valid = has_note & _mask(pc.is_valid(ne))
        keyed = np.zeros(n, dtype=bool)
        for name in _ENTITIES.names:
            keyed |= _mask(pc.is_valid(ne.field(name)))
        _require(not (valid & ~keyed).any())  # {} (falsy) and {"urls": null} (truthy) look the same here
        use = valid & keyed
        if use.any():
            lists = _choose(use, _entity_lists(ne, n), lists)
            has = has | use
    if not has.all():  # the API leaves entities out when there are none: found in the text, as the row reader does
        lists = _from_text(lists, text, has)
    columns = [post_id, author, created, lang, text, reply_to, conversation, *lists, *counts,
               pa.array(np.full(n, source, dtype=object), _STR)]
    return pa.RecordBatch.from_arrays(columns, schema=POST_SCHEMA)


def _reply_to(refs: pa.Array, n: int) -> pa.Array:
    """The id of each tweet's first ``replied_to`` reference (digits, or null), else null."""
    flat = pc.list_flatten(refs)
    parent = pc.list_parent_indices(refs).to_numpy()
    is_reply = pc.fill_null(pc.and_kleene(pc.is_valid(flat), pc.equal(flat.field("type"), "replied_to")), False) \
        .to_numpy(zero_copy_only=False) if len(flat) else np.zeros(0, dtype=bool)
    where = np.flatnonzero(is_reply)
    owners, first = np.unique(parent[where], return_index=True)
    chosen = _ids(flat.field("id").take(pa.array(where[first])), nullable=True) if len(owners) else pa.array([], _STR)
    index = np.full(n, -1, dtype=np.int64)
    index[owners] = np.arange(len(owners))
    return chosen.take(pa.array(index, mask=index < 0))


def _url(items: pa.StructArray) -> pa.Array:
    """``expanded_url or url``."""
    expanded = items.field("expanded_url")
    return pc.if_else(pc.fill_null(pc.not_equal(expanded, ""), False), expanded, items.field("url"))


def _mask(arr: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


def _entity_lists(entities: pa.StructArray, n: int) -> list[pa.Array]:
    """Hashtags, mentions and links of each tweet from an ``entities`` object (as ``api_row`` reads it)."""
    return [_entity_list(entities.field("hashtags"), lambda s: s.field("tag"), n),
            _entity_list(entities.field("mentions"), lambda s: s.field("username"), n),
            _entity_list(entities.field("urls"), _url, n)]


def _choose(use: np.ndarray, first: list[pa.Array], second: list[pa.Array]) -> list[pa.Array]:
    """Row by row, ``first`` where ``use`` else ``second``."""
    index = np.where(use, np.arange(len(use)), len(use) + np.arange(len(use)))
    return [pa.concat_arrays([a, b]).take(pa.array(index)) for a, b in zip(first, second, strict=True)]


def _entity_list(lists: pa.Array, value, n: int) -> pa.Array:  # noqa: ANN001
    """Per tweet, the truthy values of one entity kind (an empty list where there are none)."""
    flat = pc.list_flatten(lists)
    parent = pc.list_parent_indices(lists).to_numpy()
    values = value(flat) if len(flat) else pa.array([], _STR)
    keep = pc.fill_null(pc.and_kleene(pc.is_valid(flat), pc.not_equal(values, "")), False) \
        .to_numpy(zero_copy_only=False) if len(flat) else np.zeros(0, dtype=bool)
    counts = np.bincount(parent[keep], minlength=n) if n else np.zeros(0, np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), values.filter(pa.array(keep)), type=_LIST)


def _from_text(lists: list[pa.Array], text: pa.Array, has: np.ndarray) -> list[pa.Array]:
    """Tweets without ``entities`` get their hashtags, mentions and links from their text."""
    missing = np.flatnonzero(~has)
    texts = text.take(pa.array(missing)).to_pylist()
    found = [[extract(s) for s in texts] for extract in (extract_hashtags, extract_mentions, extract_urls)]
    index = np.arange(len(has), dtype=np.int64)  # the entity lists' own row, or one of the found lists
    index[missing] = len(has) + np.arange(len(missing))
    return [pa.concat_arrays([lst, pa.array(extra, type=_LIST)]).take(pa.array(index))
            for lst, extra in zip(lists, found, strict=True)]
