"""X (Twitter) account archives: ``data/tweets.js`` (+ ``data/account.js``), as a folder or as the ``.zip``.

An archive's ``tweets.js`` is JavaScript: ``window.YTD.tweets.part0 = [ {"tweet": {...}}, ... ]``.
Big accounts split it into ``tweets-part1.js``, ``tweets-part2.js``...; archives from before 2020 call
it ``tweet.js`` and may leave out the ``{"tweet": ...}`` wrapper. The array is parsed element by
element (:func:`iter_json`), so a huge archive is never in memory at once. The author comes from
``account.js`` beside it (``accountId``); without one, ``author_id`` stays empty and the report says so.
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from murmur.data.readers.common import (
    FileReport,
    NoPostsHere,
    Row,
    as_list,
    encoding_error,
    extract_hashtags,
    extract_mentions,
    extract_urls,
    finish_row,
    guard_utf8,
    iter_json,
    parse_x_archive_time,
    read_head,
    to_count,
    to_id,
    unescape_x,
)
from murmur.errors import InputError
from murmur.io import open_binary, open_text, strip_compression_suffix

READER = "x-archive"
TWEETS_NAME_RE = re.compile(r"^tweets?(-part\d+)?\.js$", re.IGNORECASE)
_YTD = "window.YTD."


def is_tweets_name(name: str) -> bool:
    """``tweets.js``, ``tweets-part3.js``, ``tweet.js`` (also ``.gz``/``.zst``)."""
    return bool(TWEETS_NAME_RE.match(strip_compression_suffix(name)))


def tweets_sort_name(name: str) -> str:
    """A name that sorts ``tweets.js`` before ``tweets-part1.js`` before ``tweets-part10.js``."""
    m = re.search(r"-part(\d+)\.js", name)
    return f"tweets.js.{int(m.group(1)) + 1:09d}{name}" if m else f"tweets.js.{0:09d}{name}"


def _member_key(member: str) -> tuple[str, str]:
    folder, _, name = member.rpartition("/")
    return folder, tweets_sort_name(name)


def _skip_prefix(f: IO[str], where: str, expect: tuple[str, ...]) -> tuple[str, int, str | None]:
    """Consume ``window.YTD.<kind>.partN =``; return (rest of the head, its first line, kind or None)."""
    head = read_head(f)
    stripped = head.lstrip()
    lead_lines = head[: len(head) - len(stripped)].count("\n")
    if not stripped:
        raise InputError("empty file", where)
    if not stripped.startswith(_YTD):
        return head, 1, None  # a bare JSON array of tweets (accepted when the format is forced)
    eq = stripped.find("=")
    if eq < 0:
        raise InputError("malformed X archive file: no '=' after 'window.YTD...'", where, lead_lines + 1)
    kind = stripped[len(_YTD):eq].strip().split(".")[0]
    if kind not in expect:
        raise NoPostsHere(f"holds X archive {kind!r} data, not posts; pass the archive folder, its zip or "
                          "data/tweets.js", where, short=f"X archive {kind!r} data")
    return stripped[eq + 1:], lead_lines + 1 + stripped[:eq].count("\n"), kind


def read_account(f: IO[str], where: str) -> tuple[str | None, str | None]:
    """``(accountId, username)`` from an archive's ``account.js``."""
    rest, first_line, _ = _skip_prefix(f, where, ("account",))
    for value, line in iter_json(f, where, initial=rest, first_line=first_line, allow_trailing_semicolon=True):
        acct = value.get("account", value) if isinstance(value, dict) else None
        if not isinstance(acct, dict) or "accountId" not in acct:
            raise InputError("account.js entry without 'accountId'", where, line, "accountId")
        try:
            return to_id(acct.get("accountId")), to_id(acct.get("username"))
        except ValueError:
            raise InputError("account.js: accountId or username is not an id", where, line, "accountId") from None
    raise InputError("account.js holds no account", where)


def find_account_file(tweets_path: Path) -> Path | None:
    """``account.js`` (or ``.gz``/``.zst``) in the folder of a ``tweets.js``."""
    for name in ("account.js", "account.js.gz", "account.js.zst"):
        p = tweets_path.with_name(name)
        if p.is_file():
            return p
    return None


def archive_row(t: dict, author_id: str | None, where: str, report: FileReport) -> Row | None:
    """One archive tweet object -> a row, or None (counted as skipped) when it has no id or text."""
    try:
        pid = to_id(t.get("id_str") or t.get("id"))
    except ValueError:
        pid = None
    if pid is None:
        report.skip("tweet without id_str", where)
        return None
    text = t.get("full_text") or t.get("text")
    if not isinstance(text, str) or not text.strip():
        report.skip("tweet without full_text", where)
        return None
    text = unescape_x(text)
    created = t.get("created_at")
    created_us = None
    if created:
        try:
            created_us = parse_x_archive_time(created) if isinstance(created, str) else None
        except (ValueError, KeyError, OverflowError):
            created_us = None
        if created_us is None:
            report.null("created_at unreadable", where)
    try:
        reply_to = to_id(t.get("in_reply_to_status_id_str") or t.get("in_reply_to_status_id"))
    except ValueError:
        report.null("reply_to unreadable", where)
        reply_to = None
    ent = t.get("entities")
    if isinstance(ent, dict):
        hashtags = [h["text"] for h in as_list(ent.get("hashtags")) if isinstance(h, dict) and h.get("text")]
        mentions = [m["screen_name"] for m in as_list(ent.get("user_mentions"))
                    if isinstance(m, dict) and m.get("screen_name")]
        urls = [u.get("expanded_url") or u.get("url") for u in as_list(ent.get("urls"))
                if isinstance(u, dict) and (u.get("expanded_url") or u.get("url"))]
    else:
        hashtags, mentions, urls = extract_hashtags(text), extract_mentions(text), extract_urls(text)
    try:
        likes, reposts = to_count(t.get("favorite_count")), to_count(t.get("retweet_count"))
    except ValueError:
        report.null("favorite_count/retweet_count unreadable", where)
        likes = reposts = None
    # A post that replies to nothing starts its own conversation (the X API's conversation_id rule);
    # for a reply the archive does not say which conversation it belongs to.
    conversation = pid if reply_to is None else None
    return finish_row((pid, author_id, created_us, t.get("lang") or "und", text, reply_to, conversation,
                       hashtags, mentions, urls, likes, reposts, None), where, report)


def iter_archive_rows(f: IO[str], where: str, label: str, author_id: str | None,
                      report: FileReport) -> Iterator[Row]:
    """Rows of one ``tweets.js`` text stream."""
    rest, first_line, _ = _skip_prefix(f, where, ("tweets", "tweet"))
    for value, line in iter_json(f, where, initial=rest, first_line=first_line, allow_trailing_semicolon=True):
        at = f"{label}:{line}"
        t: Any = value.get("tweet", value) if isinstance(value, dict) else None
        if not isinstance(t, dict):
            report.skip("archive entry that is not an object", at)
            continue
        row = archive_row(t, author_id, at, report)
        if row is not None:
            yield row


def iter_archive_file(path: Path, label: str, report: FileReport) -> Iterator[tuple[Iterator[Row], str]]:
    """One ``(rows, label)`` for a ``tweets.js`` file on disk, author taken from ``account.js`` beside it."""
    acct = find_account_file(path)
    author_id = None
    if acct is not None:
        try:
            with open_text(acct) as af:
                author_id, _ = read_account(af, str(acct))
        except UnicodeDecodeError:
            raise encoding_error(str(acct), lambda: open_binary(acct)) from None
    else:
        report.notes.append(f"no account.js beside {label}: author_id left empty")
    with open_text(path) as f:
        yield iter_archive_rows(f, str(path), label, author_id, report), label


def iter_archive_zip(path: Path, label: str, report: FileReport) -> Iterator[tuple[Iterator[Row], str]]:
    """``(rows, label)`` for each ``data/tweets*.js`` member of an archive zip, in part order.

    Members are read as streams from the zip; the label is ``<zip label>/<member>``. A zip that is
    not one, or a member whose data is corrupt or cut short, is one :class:`InputError`.
    """
    try:
        zf = zipfile.ZipFile(path)
    except _ZIP_ERRORS as e:
        raise InputError(f"not a valid zip file ({_first_line(e)})", str(path)) from None
    with zf:
        names = zf.namelist()
        members = sorted((n for n in names if _is_data_member(n) and TWEETS_NAME_RE.match(n.rsplit("/", 1)[-1])),
                         key=_member_key)
        if not members:
            raise NoPostsHere("no data/tweets.js inside; is this an X account archive?", str(path),
                              short="zip without data/tweets.js")
        for member in members:
            folder = member.rsplit("/", 1)[0]
            author_id = None
            acct = f"{folder}/account.js"
            where = f"{path}/{member}"
            if acct in names:
                author_id = _zip_account(zf, acct, f"{path}/{acct}")
            else:
                report.notes.append(f"no {acct} in {label}: author_id left empty")
            rows = _zip_rows(zf, member, where, f"{label}/{member}", author_id, report)
            yield _zip_guard(rows, where), f"{label}/{member}"


# What reading a damaged zip raises: bad headers, bad CRC, corrupt or cut-short deflate data, seeks
# outside the file, compression methods zipfile does not know.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError)


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0]


def _zip_account(zf: zipfile.ZipFile, acct: str, where: str) -> str | None:
    def rows() -> Iterator[str | None]:
        with io.TextIOWrapper(zf.open(acct), encoding="utf-8", newline="") as af:
            yield read_account(af, where)[0]

    return next(_zip_guard(guard_utf8(rows(), where, lambda: zf.open(acct)), where))


def _zip_rows(zf: zipfile.ZipFile, member: str, where: str, label: str, author_id: str | None,
              report: FileReport) -> Iterator[Row]:
    with io.TextIOWrapper(zf.open(member), encoding="utf-8", newline="") as f:
        yield from guard_utf8(iter_archive_rows(f, where, label, author_id, report), where, lambda: zf.open(member))


def _zip_guard(rows: Iterator[Any], where: str) -> Iterator[Any]:
    """Pass ``rows`` through, turning a damaged member into one InputError."""
    try:
        yield from rows
    except _ZIP_ERRORS as e:
        raise InputError(f"corrupt zip member ({_first_line(e)})", where) from None


def _is_data_member(name: str) -> bool:
    parts = name.split("/")
    return len(parts) >= 2 and parts[-2] == "data"
