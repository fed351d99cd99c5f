"""Files of X API pages read a column at a time give exactly the rows of the post-by-post reader."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from murmur.data import sources
from murmur.data.readers import api_pages
from murmur.data.sources import ingest
from murmur.errors import InputError
from murmur.world.generate import WorldConfig, generate_world


def ingest_both(monkeypatch, sources_: list[str], tmp_path: Path, name: str):
    """Ingest with the column reader and with the row reader: (bytes, stats or error) of each."""
    results = []
    for columns in (True, False):
        monkeypatch.setattr(sources, "COLUMN_PAGES", columns)
        out = tmp_path / f"{name}-{columns}.parquet"
        try:
            stats = ingest(sources_, out, progress=False)
        except InputError as e:
            results.append((None, str(e)))
        else:
            results.append((out.read_bytes(), (stats.posts, dict(stats.skipped), dict(stats.nulled), stats.examples,
                                                dict(stats.by_format))))
    return results


def test_a_worlds_pages_take_the_column_path_and_give_the_same_file(tmp_path, monkeypatch):
    generate_world(tmp_path / "world", WorldConfig(users=400, seed=3))
    api = sorted((tmp_path / "world" / "api").iterdir())
    assert all(api_pages.read_pages(p, "x-api:" + p.name, 8192) is not None for p in api)  # taken, not passed over
    (col, col_stats), (row, row_stats) = ingest_both(
        monkeypatch, [str(tmp_path / "world" / "archives"), str(tmp_path / "world" / "api")], tmp_path, "world")
    assert col == row and col_stats == row_stats and col_stats[0] > 4000


def tweet(i: int, **over) -> dict:
    t = {"id": str(1000 + i), "text": f"post {i} about #tea with @amy https://t.co/x{i}", "author_id": "77",
         "created_at": "2024-05-01T12:34:56.000Z", "lang": "en", "conversation_id": str(1000 + i),
         "public_metrics": {"retweet_count": 1, "reply_count": 2, "like_count": 3, "quote_count": 0},
         "entities": {"hashtags": [{"start": 14, "end": 18, "tag": "tea"}],
                      "mentions": [{"start": 24, "end": 28, "username": "amy"}],
                      "urls": [{"url": f"https://t.co/x{i}", "expanded_url": f"https://ex.com/{i}"}]}}
    t.update(over)
    return {k: v for k, v in t.items() if v is not ...}


def page(tweets: list[dict]) -> str:
    return json.dumps({"data": tweets, "includes": {"users": [{"id": "77", "username": "amy"}]},
                       "meta": {"result_count": len(tweets)}}, ensure_ascii=False)


SOUND = [tweet(i) for i in range(3)]
# Each case: the lines of a file (one page per line unless said). Those marked True must take the column
# path; every one must give the row reader's bytes, counts and errors.
CASES = {
    "plain": (True, [page(SOUND), page([tweet(5)])]),
    "no entities (found in the text)": (True, [page([tweet(1, entities=...), tweet(2, entities={})])]),
    "long post with its own entities": (True, [page([tweet(1, note_tweet={"text": "a longer #note text",
                                                                            "entities": {"hashtags": [{"tag": "note"}]}})])]),
    "long post, cashtags only": (True, [page([tweet(1, note_tweet={"text": "buy $X now", "entities": {"cashtags": [{"tag": "X"}]}})])]),
    "long post, empty entities": (False, [page([tweet(1, note_tweet={"text": "long text", "entities": {}})])]),
    "long post without text": (True, [page([tweet(1, note_tweet={"lang": "en"})])]),
    "reply and quote": (True, [page([tweet(1, referenced_tweets=[{"type": "quoted", "id": "5"},
                                                                 {"type": "replied_to", "id": "6"},
                                                                 {"type": "replied_to", "id": "7"}])])]),
    "reply without id": (True, [page([tweet(1, referenced_tweets=[None, {"type": "replied_to"}])])]),
    "html entities": (True, [page([tweet(1, text="a &amp;lt; b &lt;3 &gt; &amp;amp;")])]),
    "no lang, empty lang, no time, no metrics": (True, [page([tweet(1, lang=..., created_at=..., public_metrics=...),
                                                              tweet(2, lang="")])]),
    "empty and odd entity values": (True, [page([tweet(1, entities={"hashtags": [{"tag": ""}, {}, None, {"tag": "ok"}],
                                                                    "urls": [{"url": "u", "expanded_url": ""}, {"url": ""}]})])]),
    "blank lines": (True, ["", page(SOUND), "   ", page([tweet(9)]), ""]),
    "no text": (False, [page([tweet(1, text="   ")]), page(SOUND)]),
    "no id": (False, [page([tweet(1, id=...)])]),
    "id with spaces": (False, [page([tweet(1, id=" 12 ")])]),
    "number id": (False, [page([tweet(1, id=12)])]),
    "bad date": (False, [page([tweet(1, created_at="2024-02-30T00:00:00.000Z")])]),
    "other date form": (False, [page([tweet(1, created_at="2024-05-01 12:00:00+02:00")])]),
    "count as text": (False, [page([tweet(1, public_metrics={"like_count": "12"})])]),
    "count beyond int64": (False, ['{"data": [' + json.dumps(tweet(1))[:-1] + ', "public_metrics": {"like_count": 99999999999999999999}}]}']),
    "lowest int64": (False, [page([tweet(1, public_metrics={"like_count": -(1 << 63)})])]),
    "non-ASCII lang": (False, [page([tweet(1, lang="ésp")])]),
    "lone surrogate": (False, ['{"data": [{"id": "1", "text": "bad \\ud800 one"}]}']),
    "surrogate pair": (True, ['{"data": [{"id": "1", "text": "party \\ud83c\\udf89 time"}]}']),
    "two pages on a line": (False, [page(SOUND) + " " + page([tweet(4)])]),
    "a bare tweet line": (False, [page(SOUND), json.dumps(tweet(4))]),
    "top-level text": (False, ['{"data": [{"id": "1", "text": "a post"}], "text": "hello"}']),
    "data not a list": (False, ['{"data": {"id": "1", "text": "a post"}}']),
    "empty page": (False, ['{"data": [], "meta": {"result_count": 0}}', page(SOUND)]),
    "malformed line": (False, [page(SOUND), '{"data": [']),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_column_path_reads_what_the_row_path_reads(tmp_path, monkeypatch, name):
    columns, lines = CASES[name]
    path = tmp_path / "pages.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert (api_pages.read_pages(path, "x-api:pages.jsonl", 8192) is not None) == columns
    (col, col_out), (row, row_out) = ingest_both(monkeypatch, [str(path)], tmp_path, "case")
    assert col == row and col_out == row_out


def test_crlf_gzip_and_batches(tmp_path, monkeypatch):
    path = tmp_path / "pages.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8", newline="") as f:
        f.write("\r\n".join(page([tweet(10 * j + i) for i in range(7)]) for j in range(5)) + "\r\n")
    assert api_pages.read_pages(path, "x", 8192) is None  # a \r: the row reader splits lines there too
    plain = tmp_path / "plain.jsonl.gz"
    with gzip.open(plain, "wt", encoding="utf-8") as f:
        f.write("\n".join(page([tweet(10 * j + i) for i in range(7)]) for j in range(5)) + "\n")
    batches = api_pages.read_pages(plain, "x", 8)
    assert [b.num_rows for b in batches] == [8, 8, 8, 8, 3]
    (col, col_out), (row, row_out) = ingest_both(monkeypatch, [str(path), str(plain)], tmp_path, "gz")
    assert col == row and col_out == row_out
