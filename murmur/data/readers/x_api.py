"""X API v2 tweet objects, as found in response pages (``{"data": [...], "includes": ..., "meta": ...}``).

A file may hold one page, one page per line (JSON Lines) or one tweet object per line; the dispatch
between those lives in :mod:`murmur.data.readers.tabular` (``iter_json_rows``), this module turns one
tweet object into a row. Long posts keep their full text in ``note_tweet.text`` (with its own
entities), which replaces the truncated ``text``. ``includes`` (users, referenced tweets) is not
ingested: referenced tweets are other people's posts, usually present in their own right.
"""

from __future__ import annotations

from typing import Any

from murmur.data.readers.common import (
    FileReport,
    Row,
    as_list,
    extract_hashtags,
    extract_mentions,
    extract_urls,
    finish_row,
    parse_iso_time,
    parse_time,
    to_count,
    to_id,
    unescape_x,
)

READER = "x-api"
# Keys only an X API v2 tweet object has; a JSON record with one of them is read as a tweet.
API_ONLY_KEYS = frozenset({"edit_history_tweet_ids", "public_metrics", "referenced_tweets", "note_tweet",
                           "entities", "edit_controls", "reply_settings", "possibly_sensitive"})


def looks_like_api_tweet(rec: dict) -> bool:
    """True for a dict that is an X API v2 tweet object rather than a generic row."""
    return "id" in rec and "text" in rec and not API_ONLY_KEYS.isdisjoint(rec)


def api_row(t: dict, where: str, report: FileReport) -> Row | None:
    """One API v2 tweet object -> a row, or None (counted as skipped) when it has no id or text."""
    try:
        pid = to_id(t.get("id"))
    except ValueError:
        pid = None
    if pid is None:
        report.skip("tweet without id", where)
        return None
    note = t.get("note_tweet")
    note = note if isinstance(note, dict) and isinstance(note.get("text"), str) else None
    text = note["text"] if note else t.get("text")
    if not isinstance(text, str) or not text.strip():
        report.skip("tweet without text", where)
        return None
    text = unescape_x(text)
    created = t.get("created_at")
    created_us = None
    if created is not None:
        try:
            created_us = parse_iso_time(created) if isinstance(created, str) else parse_time(created)
        except (ValueError, TypeError, OverflowError):
            report.null("created_at unreadable", where)
    reply_to = None
    refs = t.get("referenced_tweets")
    if isinstance(refs, list):
        for ref in refs:
            if isinstance(ref, dict) and ref.get("type") == "replied_to":
                reply_to = _id_or_none(ref.get("id"), "reply_to", where, report)
                break
    ent: Any = (note.get("entities") if note else None) or t.get("entities")
    if isinstance(ent, dict):
        hashtags = [h["tag"] for h in as_list(ent.get("hashtags")) if isinstance(h, dict) and h.get("tag")]
        mentions = [m["username"] for m in as_list(ent.get("mentions")) if isinstance(m, dict) and m.get("username")]
        urls = [u.get("expanded_url") or u.get("url") for u in as_list(ent.get("urls"))
                if isinstance(u, dict) and (u.get("expanded_url") or u.get("url"))]
    else:  # the API leaves `entities` out when there are none (or when not requested)
        hashtags, mentions, urls = extract_hashtags(text), extract_mentions(text), extract_urls(text)
    pm = t.get("public_metrics")
    likes = reposts = replies = None
    if isinstance(pm, dict):
        try:
            likes, reposts = to_count(pm.get("like_count")), to_count(pm.get("retweet_count"))
            replies = to_count(pm.get("reply_count"))
        except ValueError:
            report.null("public_metrics unreadable", where)
            likes = reposts = replies = None
    return finish_row((pid, _id_or_none(t.get("author_id"), "author_id", where, report), created_us,
                       t.get("lang") or "und", text, reply_to,
                       _id_or_none(t.get("conversation_id"), "conversation_id", where, report),
                       hashtags, mentions, urls, likes, reposts, replies), where, report)


def _id_or_none(v: Any, name: str, where: str, report: FileReport) -> str | None:
    """An optional id field; a value that is not an id is left empty and counted."""
    try:
        return to_id(v)
    except ValueError:
        report.null(f"{name} unreadable", where)
        return None
