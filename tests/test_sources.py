"""Readers and `murmur data ingest`: every input format written for real, every schema field checked."""

from __future__ import annotations

import csv
import gzip
import json
import shutil
import subprocess
import sys
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from murmur.data.readers import common
from murmur.data.schema import POST_SCHEMA
from murmur.data.sources import ingest, iter_batches, parse_mapping
from murmur.errors import InputError

REPO = Path(__file__).resolve().parents[1]


def ts(s: str) -> datetime:
    return datetime.fromisoformat(s).replace(tzinfo=UTC)


# ---------------------------------------------------------------- fixtures in the real formats
def archive_tweet(tid: str, text: str, created: str, reply_to: str | None = None, likes: str = "3",
                  reposts: str = "1", lang: str = "en", tags=(), mentions=(), urls=()) -> dict:
    """One entry of an X archive's tweets.js, shaped as real archives are (counts as strings)."""
    t = {
        "edit_info": {"initial": {"editTweetIds": [tid], "editableUntil": "2018-10-10T21:19:24.000Z",
                                  "editsRemaining": "5", "isEditEligible": True}},
        "retweeted": False,
        "source": '<a href="https://mobile.twitter.com" rel="nofollow">Twitter Web App</a>',
        "entities": {
            "hashtags": [{"text": h, "indices": ["0", "4"]} for h in tags],
            "symbols": [],
            "user_mentions": [{"name": m.title(), "screen_name": m, "indices": ["5", "9"], "id_str": "77",
                               "id": "77"} for m in mentions],
            "urls": [{"url": "https://t.co/abc", "expanded_url": u, "display_url": u[8:], "indices": ["10", "33"]}
                     for u in urls],
        },
        "display_text_range": ["0", str(len(text))],
        "favorite_count": likes,
        "id_str": tid,
        "truncated": False,
        "retweet_count": reposts,
        "id": tid,
        "created_at": created,
        "favorited": False,
        "full_text": text,
        "lang": lang,
    }
    if reply_to:
        t.update(in_reply_to_status_id_str=reply_to, in_reply_to_status_id=reply_to,
                 in_reply_to_user_id="88", in_reply_to_user_id_str="88", in_reply_to_screen_name="bob")
    return {"tweet": t}


ARCHIVE_TWEETS = [
    archive_tweet("1050118621198921728", "Loving #python &amp; @bob's talk https://t.co/abc",
                  "Wed Oct 10 20:19:24 +0000 2018", tags=["python"], mentions=["bob"],
                  urls=["https://example.com/talk"]),
    archive_tweet("1050118621198921729", "@bob agreed &lt;3", "Thu Oct 11 01:02:03 +0200 2018",
                  reply_to="1050000000000000000", likes="12", reposts="0", mentions=["bob"]),
    {"tweet": {"id_str": "1050118621198921730", "created_at": "Thu Oct 11 01:02:03 +0000 2018"}},  # no text
]


def write_ytd(path: Path, kind: str, entries: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"window.YTD.{kind}.part0 = " + json.dumps(entries, indent=2), encoding="utf-8")
    return path


def make_archive(root: Path, handle: str = "alice", account_id: str = "1001", tweets=None) -> Path:
    """An unpacked X archive folder: data/tweets.js, data/account.js, other data, media, html."""
    data = root / handle / "data"
    write_ytd(data / "tweets.js", "tweets", ARCHIVE_TWEETS if tweets is None else tweets)
    write_ytd(data / "account.js", "account", [{"account": {
        "email": f"{handle}@example.com", "createdVia": "web", "username": handle, "accountId": account_id,
        "createdAt": "2010-01-01T00:00:00.000Z", "accountDisplayName": handle.title()}}])
    write_ytd(data / "like.js", "like", [{"like": {"tweetId": "1", "fullText": "not mine"}}])
    (data / "tweets_media").mkdir()
    (data / "tweets_media" / "1050118621198921728-abc.jpg").write_bytes(b"\xff\xd8\xff\xe0 jpeg")
    (root / handle / "Your archive.html").write_text("<html></html>")
    return root / handle


def zip_dir(folder: Path, dest: Path) -> Path:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(folder).as_posix())
    return dest


def api_tweet(tid: str, text: str, author: str = "2002", created: str = "2024-05-01T12:34:56.000Z",
              **extra) -> dict:
    t = {"id": tid, "text": text, "author_id": author, "created_at": created, "lang": "en",
         "conversation_id": tid, "edit_history_tweet_ids": [tid],
         "public_metrics": {"retweet_count": 1, "reply_count": 2, "like_count": 3, "quote_count": 0,
                            "bookmark_count": 0, "impression_count": 40}}
    t.update(extra)
    return t


API_REPLY = api_tweet(
    "1785000000000000002", "@alice yes! #ml is fun https://t.co/y", created="2024-05-01T12:35:00.250Z",
    conversation_id="1785000000000000001",
    referenced_tweets=[{"type": "quoted", "id": "17"}, {"type": "replied_to", "id": "1785000000000000001"}],
    entities={"hashtags": [{"start": 12, "end": 15, "tag": "ml"}],
              "mentions": [{"start": 0, "end": 6, "username": "alice", "id": "1001"}],
              "urls": [{"start": 23, "end": 46, "url": "https://t.co/y", "expanded_url": "https://example.com/y",
                        "display_url": "example.com/y"}]})
API_LONG = api_tweet("1785000000000000003", "A long post that the API cuts off here\u2026 https://t.co/z",
                     note_tweet={"text": "A long post that the API cuts off here, and the rest of it #longform",
                                 "entities": {"hashtags": [{"start": 60, "end": 69, "tag": "longform"}]}})
API_PAGE = {"data": [api_tweet("1785000000000000001", "first post &gt; second"), API_REPLY],
            "includes": {"users": [{"id": "2002", "username": "bob", "name": "Bob"}]},
            "meta": {"result_count": 2, "newest_id": "1785000000000000002", "next_token": "b26v89c19zqg8o3f"}}
API_PAGE2 = {"data": [API_LONG], "meta": {"result_count": 1}}
EMPTY_PAGE = {"meta": {"result_count": 0}}


def write_api(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    page = root / "page.json"
    page.write_text(json.dumps(API_PAGE, indent=2))
    pages = root / "pages.jsonl"
    pages.write_text("\n".join(json.dumps(p) for p in (API_PAGE, EMPTY_PAGE, API_PAGE2)) + "\n")
    tweets = root / "tweets.jsonl"
    tweets.write_text("\n".join(json.dumps(t) for t in (*API_PAGE["data"], API_LONG)) + "\n")
    return {"page": page, "pages": pages, "tweets": tweets}


CSV_ROWS = [
    {"tweet_id": "t1", "user": "u1", "posted": "2024-01-02T03:04:05Z", "body": "hello, \"world\" #Greeting",
     "n_likes": "5", "language": "en"},
    {"tweet_id": "t2", "user": "u2", "posted": "1704164645", "body": "multi\nline @carol see https://x.org/a.",
     "n_likes": "", "language": "fr"},
    {"tweet_id": "t3", "user": "u3", "posted": "", "body": "", "n_likes": "1", "language": ""},
]
CSV_MAP = "id=tweet_id,author=user,time=posted,text=body,likes=n_likes"


def write_csv(path: Path, rows=CSV_ROWS) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


JSONL_ROWS = [
    {"id": 7, "author_id": "a7", "created_at": "2024-03-01 10:00:00", "text": "generic #one",
     "hashtags": ["#one", "two"], "likes": 4, "reposts": "2", "replies": None, "reply_to": 6, "lang": "de"},
    {"text": "no id here @dave"},
    {"id": 9, "text": "   "},
]


def write_compressed(path: Path, comp: str) -> Path:
    """Replace ``path`` by ``path.gz`` / ``path.zst``; return the new path."""
    if not comp:
        return path
    data = path.read_bytes()
    dest = path.with_name(path.name + "." + comp)
    dest.write_bytes(gzip.compress(data) if comp == "gz" else zstandard.ZstdCompressor().compress(data))
    path.unlink()
    return dest


def rows_of(path: Path) -> list[dict]:
    table = pq.read_table(path)
    assert table.schema.equals(POST_SCHEMA), table.schema
    return table.to_pylist()


def by_id(rows: list[dict]) -> dict[str, dict]:
    return {r["post_id"]: r for r in rows}


# ---------------------------------------------------------------- X archive
def test_archive_folder_every_field(tmp_path):
    folder = make_archive(tmp_path / "archives")
    out = tmp_path / "posts.parquet"
    stats = ingest([str(tmp_path / "archives")], out, progress=False)
    rows = rows_of(out)
    assert [r["post_id"] for r in rows] == ["1050118621198921728", "1050118621198921729"]
    assert rows[0] == {
        "post_id": "1050118621198921728", "author_id": "1001", "created_at": ts("2018-10-10 20:19:24"),
        "lang": "en", "text": "Loving #python & @bob's talk https://t.co/abc", "reply_to": None,
        "conversation_id": "1050118621198921728", "hashtags": ["python"], "mentions": ["bob"],
        "urls": ["https://example.com/talk"], "likes": 3, "reposts": 1, "replies": None,
        "source": "x-archive:alice/data/tweets.js"}
    assert rows[1]["created_at"] == ts("2018-10-10 23:02:03")  # +0200 -> UTC
    assert rows[1]["text"] == "@bob agreed <3"
    assert (rows[1]["reply_to"], rows[1]["conversation_id"], rows[1]["likes"]) == ("1050000000000000000", None, 12)
    assert stats.posts == 2 and stats.files == 1 and stats.by_format == {"x-archive": 2}
    assert stats.skipped == {"tweet without full_text": 1}
    assert stats.examples["tweet without full_text"].startswith("alice/data/tweets.js:")
    assert any("like.js" in n for n in stats.not_read)
    text = stats.describe()
    assert "2 posts" in text and "tweet without full_text 1" in text
    # the tweets.js alone finds account.js beside it
    rows2 = [r for b in iter_batches(folder / "data" / "tweets.js") for r in b.to_pylist()]
    assert [r["author_id"] for r in rows2] == ["1001", "1001"]
    assert rows2[0]["source"] == "x-archive:tweets.js"


def test_archive_zip_and_parts(tmp_path):
    folder = make_archive(tmp_path / "src")
    more = [archive_tweet(str(2000 + i), f"part one post {i}", "Mon Jan 01 00:00:00 +0000 2024") for i in range(3)]
    write_ytd(folder / "data" / "tweets-part1.js", "tweets", more)
    z = zip_dir(folder, tmp_path / "alice.zip")
    out = tmp_path / "z.parquet"
    stats = ingest([str(z)], out, progress=False)
    rows = rows_of(out)
    assert [r["post_id"] for r in rows] == ["1050118621198921728", "1050118621198921729", "2000", "2001", "2002"]
    assert {r["author_id"] for r in rows} == {"1001"}
    assert rows[0]["source"] == "x-archive:alice.zip/data/tweets.js"
    assert rows[-1]["source"] == "x-archive:alice.zip/data/tweets-part1.js"
    assert stats.files == 1 and stats.posts == 5
    # same content as the unpacked folder, apart from the source label
    ingest([str(folder)], tmp_path / "f.parquet", progress=False)
    strip = [{k: v for k, v in r.items() if k != "source"} for r in rows]
    assert strip == [{k: v for k, v in r.items() if k != "source"} for r in rows_of(tmp_path / "f.parquet")]


def test_archive_parsed_incrementally_with_line_numbers(tmp_path, monkeypatch):
    tweets = [archive_tweet(str(i), f"post {i} " + "é" * (i % 7), "Tue Feb 27 10:00:00 +0000 2024")
              for i in range(40)]
    folder = make_archive(tmp_path, tweets=tweets)
    monkeypatch.setattr(common, "_CHUNK", 7)  # force many refills inside objects and strings
    rows = [r for b in iter_batches(folder / "data" / "tweets.js", batch_size=16) for r in b.to_pylist()]
    assert [r["text"] for r in rows] == [t["tweet"]["full_text"] for t in tweets]
    bad = folder / "data" / "tweets.js"
    lines = bad.read_text().splitlines()
    lines[500] = lines[500] + " oops"
    bad.write_text("\n".join(lines))
    with pytest.raises(InputError, match=r"tweets\.js:501: malformed JSON"):
        list(iter_batches(bad))


def test_archive_without_account_leaves_author_empty(tmp_path):
    p = write_ytd(tmp_path / "data" / "tweet.js", "tweet", [a["tweet"] for a in ARCHIVE_TWEETS[:1]])  # old style
    stats = ingest([str(p)], tmp_path / "o.parquet", progress=False)
    assert rows_of(tmp_path / "o.parquet")[0]["author_id"] is None
    assert any("no account.js" in n for n in stats.notes)


# ---------------------------------------------------------------- X API v2
def test_api_page_pages_and_tweet_lines(tmp_path):
    files = write_api(tmp_path / "api")
    expect_reply = {
        "post_id": "1785000000000000002", "author_id": "2002", "created_at": ts("2024-05-01 12:35:00.250"),
        "lang": "en", "text": "@alice yes! #ml is fun https://t.co/y", "reply_to": "1785000000000000001",
        "conversation_id": "1785000000000000001", "hashtags": ["ml"], "mentions": ["alice"],
        "urls": ["https://example.com/y"], "likes": 3, "reposts": 1, "replies": 2}
    for name, f in files.items():
        out = tmp_path / f"{name}.parquet"
        stats = ingest([str(f)], out, progress=False)
        rows = by_id(rows_of(out))
        assert stats.by_format == {"x-api": len(rows)}
        got = dict(rows["1785000000000000002"])
        assert got.pop("source") == f"x-api:{f.name}"
        assert got == expect_reply
        first = rows["1785000000000000001"]
        assert first["text"] == "first post > second" and first["reply_to"] is None
        assert first["hashtags"] == [] and first["urls"] == []
        if name != "page":
            long = rows["1785000000000000003"]
            assert long["text"].endswith("the rest of it #longform") and long["hashtags"] == ["longform"]
    assert len(rows_of(tmp_path / "pages.parquet")) == 3


def test_odd_names_by_content_or_forced_format(tmp_path):
    p = tmp_path / "dump.data"
    p.write_text("just words\n")
    with pytest.raises(InputError, match=r"dump\.data: cannot tell the format .*pass --format"):
        ingest([str(p)], tmp_path / "o.parquet", progress=False)
    assert ingest([str(p)], tmp_path / "o.parquet", fmt="text", progress=False).posts == 1
    p.write_text(json.dumps(API_PAGE) + "\n")  # JSON is recognised by its first byte
    assert ingest([str(p)], tmp_path / "o.parquet", progress=False).by_format == {"x-api": 2}
    assert ingest([str(p)], tmp_path / "o.parquet", fmt="x-api", progress=False).posts == 2


# ---------------------------------------------------------------- generic tables and text
def test_csv_with_map(tmp_path):
    p = write_csv(tmp_path / "export.csv")
    out = tmp_path / "c.parquet"
    stats = ingest([str(p)], out, mapping=parse_mapping(CSV_MAP), progress=False)
    rows = rows_of(out)
    assert rows[0] == {
        "post_id": "t1", "author_id": "u1", "created_at": ts("2024-01-02 03:04:05"), "lang": "en",
        "text": 'hello, "world" #Greeting', "reply_to": None, "conversation_id": None, "hashtags": ["Greeting"],
        "mentions": [], "urls": [], "likes": 5, "reposts": None, "replies": None, "source": "csv:export.csv"}
    assert rows[1]["text"] == "multi\nline @carol see https://x.org/a."
    assert rows[1]["created_at"] == ts("2024-01-02 03:04:05") and rows[1]["likes"] is None
    assert (rows[1]["mentions"], rows[1]["urls"], rows[1]["lang"]) == (["carol"], ["https://x.org/a"], "fr")
    assert len(rows) == 2 and stats.skipped == {"empty text": 1}


def test_csv_auto_columns_and_generated_ids(tmp_path):
    p = tmp_path / "plain.csv"
    p.write_text("Text,Timestamp,retweet_count\nfirst,2024-01-01,1\nsecond,bad date,x\n", encoding="utf-8")
    stats = ingest([str(p)], tmp_path / "o.parquet", progress=False)
    rows = rows_of(tmp_path / "o.parquet")
    assert [r["post_id"] for r in rows] == ["plain.csv#1", "plain.csv#2"]
    assert rows[0]["created_at"] == ts("2024-01-01 00:00:00") and rows[0]["reposts"] == 1
    assert rows[1]["created_at"] is None and rows[1]["reposts"] is None
    assert stats.nulled == {"created_at unreadable": 1, "likes/reposts/replies unreadable": 1}
    assert stats.examples["created_at unreadable"] == "plain.csv:2"


def test_jsonl_parquet_text(tmp_path):
    j = tmp_path / "rows.jsonl"
    j.write_text("\n".join(json.dumps(r) for r in JSONL_ROWS) + "\n\n")
    ingest([str(j)], tmp_path / "j.parquet", progress=False)
    rows = rows_of(tmp_path / "j.parquet")
    assert rows[0] == {
        "post_id": "7", "author_id": "a7", "created_at": ts("2024-03-01 10:00:00"), "lang": "de",
        "text": "generic #one", "reply_to": "6", "conversation_id": None, "hashtags": ["one", "two"],
        "mentions": [], "urls": [], "likes": 4, "reposts": 2, "replies": None, "source": "jsonl:rows.jsonl"}
    assert rows[1]["post_id"] == "rows.jsonl#2" and rows[1]["mentions"] == ["dave"] and len(rows) == 2

    table = pa.table({"message": ["from parquet #pq", "second"], "uid": [1, 2],
                      "created_at": pa.array([datetime(2024, 6, 1, 8, 0), None], pa.timestamp("ns")),
                      "likes": [10, None], "mentions": [["x"], []]})
    pq.write_table(table, tmp_path / "t.parquet")
    ingest([str(tmp_path / "t.parquet")], tmp_path / "p.parquet", mapping=parse_mapping("text=message,author=uid"),
           progress=False)
    rows = rows_of(tmp_path / "p.parquet")
    assert rows[0] == {
        "post_id": "t.parquet#1", "author_id": "1", "created_at": ts("2024-06-01 08:00:00"), "lang": "und",
        "text": "from parquet #pq", "reply_to": None, "conversation_id": None, "hashtags": ["pq"],
        "mentions": ["x"], "urls": [], "likes": 10, "reposts": None, "replies": None, "source": "parquet:t.parquet"}
    assert rows[1]["created_at"] is None and rows[1]["mentions"] == []

    t = tmp_path / "notes.txt"
    t.write_text("first line #a\n\n   \nthird line @b http://c.d\r\n", encoding="utf-8")
    ingest([str(t)], tmp_path / "t.out.parquet", progress=False)
    rows = rows_of(tmp_path / "t.out.parquet")
    assert rows == [
        {"post_id": "notes.txt#1", "author_id": None, "created_at": None, "lang": "und", "text": "first line #a",
         "reply_to": None, "conversation_id": None, "hashtags": ["a"], "mentions": [], "urls": [],
         "likes": None, "reposts": None, "replies": None, "source": "text:notes.txt"},
        {"post_id": "notes.txt#4", "author_id": None, "created_at": None, "lang": "und",
         "text": "third line @b http://c.d", "reply_to": None, "conversation_id": None, "hashtags": [],
         "mentions": ["b"], "urls": ["http://c.d"], "likes": None, "reposts": None, "replies": None,
         "source": "text:notes.txt"}]


def _write_one(kind: str, d: Path) -> tuple[list[str], dict]:
    """Write one fixture of ``kind`` under ``d``; return (source args, ingest kwargs)."""
    d.mkdir(parents=True)
    if kind == "archive":
        f = make_archive(d)
        return [str(f)], {}
    if kind == "api":
        return [str(write_api(d)["pages"])], {}
    if kind == "csv":
        return [str(write_csv(d / "export.csv"))], {"mapping": parse_mapping(CSV_MAP)}
    if kind == "jsonl":
        (d / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in JSONL_ROWS))
        return [str(d / "rows.jsonl")], {}
    if kind == "parquet":
        pq.write_table(pa.table({"text": ["a #b", "c"], "id": ["1", "2"]}), d / "t.parquet")
        return [str(d / "t.parquet")], {}
    (d / "notes.txt").write_text("one\ntwo @x\n")
    return [str(d / "notes.txt")], {}


@pytest.mark.parametrize("comp", ["gz", "zst"])
@pytest.mark.parametrize("kind", ["archive", "api", "csv", "jsonl", "parquet", "text"])
def test_compressed_inputs_read_the_same(tmp_path, kind, comp):
    args, kw = _write_one(kind, tmp_path / "plain")
    ingest(args, tmp_path / "plain.parquet", progress=False, **kw)
    args, kw = _write_one(kind, tmp_path / "packed")
    src = Path(args[0])
    if src.is_dir():  # an archive folder: tweets.js.gz beside account.js.gz
        for f in list(src.rglob("*.js")):
            write_compressed(f, comp)
    else:
        args = [str(write_compressed(src, comp))]
    ingest(args, tmp_path / "packed.parquet", progress=False, **kw)
    plain, packed = rows_of(tmp_path / "plain.parquet"), rows_of(tmp_path / "packed.parquet")
    assert len(plain) >= 2
    assert [r["source"] + "." + comp for r in plain] == [r["source"] for r in packed]
    for a, b in zip(plain, packed, strict=True):
        if "#" in a["post_id"]:  # generated ids name the file
            assert b["post_id"] == a["post_id"].replace("#", f".{comp}#")
        assert {k: v for k, v in a.items() if k not in ("source", "post_id")} == \
            {k: v for k, v in b.items() if k not in ("source", "post_id")}


def test_json_array_tsv_and_map_beside_api_pages(tmp_path):
    (tmp_path / "rows.json").write_text(json.dumps([{"content": "from an array", "user": {"id_str": "9"}},
                                                    {"content": "second"}], indent=2))
    (tmp_path / "t.tsv").write_text("msg\tid\nhello\t5\n")
    write_api(tmp_path / "api")
    (tmp_path / "_COMPLETE").write_text("ok")
    stats = ingest([str(tmp_path)], tmp_path / "out" / "o.parquet", mapping=parse_mapping("text=msg"),
                   progress=False)
    rows = rows_of(tmp_path / "out" / "o.parquet")
    got = {r["source"]: r for r in rows}
    assert got["csv:t.tsv"]["text"] == "hello" and got["csv:t.tsv"]["post_id"] == "5"
    # --map applies to generic tables: API pages stay API, and a JSON file without the column is passed over
    assert {r["reply_to"] for r in rows if r["source"] == "x-api:api/page.json"} == {None, "1785000000000000001"}
    assert "rows.json: no column 'msg'" in stats.not_read and not any("_COMPLETE" in n for n in stats.not_read)
    stats = ingest([str(tmp_path / "rows.json")], tmp_path / "o2.parquet", progress=False)
    rows = rows_of(tmp_path / "o2.parquet")
    assert [(r["post_id"], r["author_id"], r["text"]) for r in rows] == [
        ("rows.json#2", "9", "from an array"), ("rows.json#8", None, "second")]  # n = line of the object


# ---------------------------------------------------------------- many files, workers, row groups
def make_mixed_dir(root: Path) -> Path:
    make_archive(root / "archives", "alice", "1001")
    make_archive(root / "archives", "bob", "2002")
    zip_dir(make_archive(root / "tmpzip", "carol", "3003"), root / "archives" / "carol.zip")
    shutil.rmtree(root / "tmpzip")
    write_api(root / "api")
    write_compressed(root / "api" / "tweets.jsonl", "gz")
    (root / "tables").mkdir()
    write_csv(root / "tables" / "a.csv")
    (root / "world.json").write_text(json.dumps({"seed": 0, "users": 3}))
    (root / "truth").mkdir()
    pq.write_table(pa.table({"post_id": ["1"], "topic": ["x"]}), root / "truth" / "topics.parquet")
    return root


def test_directory_walk_order_and_files_without_posts(tmp_path):
    root = make_mixed_dir(tmp_path / "world")
    out = tmp_path / "all.parquet"
    stats = ingest([str(root)], out, progress=False)
    rows = rows_of(out)
    sources_seen = list(dict.fromkeys(r["source"] for r in rows))
    assert sources_seen == [
        "x-api:api/page.json", "x-api:api/pages.jsonl", "x-api:api/tweets.jsonl.gz",
        "x-archive:archives/alice/data/tweets.js", "x-archive:archives/bob/data/tweets.js",
        "x-archive:archives/carol.zip/data/tweets.js", "csv:tables/a.csv"]
    assert stats.files == 7
    not_read = " | ".join(stats.not_read)
    assert "world.json: no text column" in not_read and "truth/topics.parquet: no text column" in not_read
    assert "jpg" in not_read
    assert stats.by_source == {str(root): len(rows)}
    # globs: labels relative to the folder before the wildcard
    stats = ingest([str(root / "api" / "*.json*")], out, progress=False)
    assert {r["source"] for r in rows_of(out)} == {"x-api:page.json", "x-api:pages.jsonl", "x-api:tweets.jsonl.gz"}


def test_workers_give_identical_parquet(tmp_path):
    root = make_mixed_dir(tmp_path / "world")
    a, b = tmp_path / "w1.parquet", tmp_path / "w2.parquet"
    s1 = ingest([str(root / "archives"), str(root / "api")], a, workers=1, batch_size=4, progress=False)
    s2 = ingest([str(root / "archives"), str(root / "api")], b, workers=2, batch_size=4, progress=False)
    assert a.read_bytes() == b.read_bytes()
    assert s1.as_dict() | {"seconds": 0, "posts_per_second": 0, "out": ""} == \
        s2.as_dict() | {"seconds": 0, "posts_per_second": 0, "out": ""}
    meta = pq.ParquetFile(a).metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert sizes == [4] * (s1.posts // 4) + ([s1.posts % 4] if s1.posts % 4 else [])
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_iter_batches_respects_batch_size(tmp_path):
    t = tmp_path / "many.txt"
    t.write_text("".join(f"post {i}\n" for i in range(25)))
    sizes = [b.num_rows for b in iter_batches(t, batch_size=10)]
    assert sizes == [10, 10, 5]


# ---------------------------------------------------------------- bad input
def _bad_inputs(tmp_path: Path) -> list[tuple[str, list[str], dict, str]]:
    cases = []
    j = tmp_path / "broken.jsonl"
    j.write_text('{"text": "ok"}\n{"text": "fine"}\n{"text": "bad",}\n')
    cases.append(("jsonl syntax", [str(j)], {}, r"broken\.jsonl:3: malformed JSON"))
    folder = make_archive(tmp_path / "arch")
    tj = folder / "data" / "tweets.js"
    tj.write_text(tj.read_text().replace('"lang": "en"\n', '"lang": "en",\n', 1))
    line = next(i for i, s in enumerate(tj.read_text().splitlines(), 1) if s.endswith('"lang": "en",'))
    cases.append(("archive syntax", [str(folder)], {}, rf"tweets\.js:{line + 1}: malformed JSON"))
    u = tmp_path / "latin1.csv"
    u.write_bytes(b"id,text\n1,ok\n2,caf\xe9\n")
    cases.append(("csv encoding", [str(u)], {}, r"latin1\.csv:3: not valid UTF-8 \(byte offset 18\)"))
    u2 = tmp_path / "latin1.txt"
    u2.write_bytes(b"fine\nna\xefve\n")
    cases.append(("text encoding", [str(u2)], {}, r"latin1\.txt:2: not valid UTF-8 \(byte offset 7\)"))
    u3 = tmp_path / "latin1.jsonl.gz"
    u3.write_bytes(gzip.compress(b'{"text": "a"}\n{"text": "\xe9"}\n'))
    cases.append(("gz encoding", [str(u3)], {}, r"latin1\.jsonl\.gz:2: not valid UTF-8"))
    nt = tmp_path / "notext.csv"
    nt.write_text("id,message,user\n1,hi,u\n")
    cases.append(("no text column", [str(nt)], {}, r"notext\.csv: no text column \(columns: id, message, user\)"))
    cases.append(("bad map column", [str(nt)], {"mapping": {"text": "msg"}},
                  r"column 'msg' \(mapped to text\) not found; columns: id, message, user"))
    rc = tmp_path / "ragged.csv"
    rc.write_text("id,text\n1,a\n2,b,extra\n")
    cases.append(("ragged csv", [str(rc)], {}, r"ragged\.csv:3: malformed CSV: expected 2 fields, got 3"))
    for name in ("empty.jsonl", "empty.csv", "empty.txt", "empty.json", "empty.parquet"):
        (tmp_path / name).write_text("")
        cases.append((f"empty {name}", [str(tmp_path / name)], {}, rf"{name}: empty file"))
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "readme.md").write_text("hi")
    cases.append(("empty dir", [str(tmp_path / "nothing")], {}, r"no posts found in '.*nothing' \(readme\.md"))
    cases.append(("empty glob", [str(tmp_path / "*.nope")], {}, r"no posts found in '.*\*\.nope'"))
    cases.append(("missing", [str(tmp_path / "absent.csv")], {}, r"absent\.csv: no such file"))
    cases.append(("unknown format", [str(j)], {"fmt": "xml"}, r"unknown format 'xml'"))
    z = tmp_path / "notarchive.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("readme.txt", "hello")
    cases.append(("zip without tweets", [str(z)], {}, r"notarchive\.zip: no data/tweets\.js inside"))
    bz = tmp_path / "badutf8.zip"
    with zipfile.ZipFile(bz, "w") as zf:
        zf.writestr("arch/data/tweets.js", b'window.YTD.tweets.part0 = [\n{"tweet": {"full_text": "caf\xe9"}}\n]')
    cases.append(("zip member encoding", [str(bz)], {},
                  r"badutf8\.zip/arch/data/tweets\.js:2: not valid UTF-8 \(byte offset 56\)"))
    acc = folder / "data" / "account.js"
    cases.append(("account.js alone", [str(acc)], {}, r"account\.js: holds X archive 'account' data"))
    allskip = tmp_path / "allskip.jsonl"
    allskip.write_text('{"text": ""}\n')
    cases.append(("all records skipped", [str(allskip)], {}, r"no posts found in .*empty text"))
    return cases


def test_bad_inputs_fail_with_file_and_line_and_leave_nothing(tmp_path):
    for name, args, kw, pattern in _bad_inputs(tmp_path):
        out = tmp_path / "out" / "posts.parquet"
        with pytest.raises(InputError, match=pattern) as err:
            ingest(args, out, progress=False, **kw)
        assert "\n" not in str(err.value), name
        assert not out.exists(), name
        assert not out.parent.exists() or not list(out.parent.iterdir()), name


def test_parse_mapping():
    assert parse_mapping("id=tweet_id, author=user,created_at=ts") == {
        "post_id": "tweet_id", "author_id": "user", "created_at": "ts"}
    assert parse_mapping("") == {} and parse_mapping(None) == {}
    assert parse_mapping("date=d,likes=l,reposts=r,replies=x,hashtags=h,mentions=m,urls=u,lang=g,"
                         "reply_to=p,conversation_id=c,text=t,post_id=i")["created_at"] == "d"
    with pytest.raises(InputError, match="unknown --map key 'athor'; did you mean 'author'"):
        parse_mapping("athor=user")
    with pytest.raises(InputError, match="not KEY=COLUMN"):
        parse_mapping("id")


def test_fast_date_parsers_agree_with_the_standard_library():
    for s in ("Wed Oct 10 20:19:24 +0000 2018", "Thu Feb 29 23:59:59 -0930 2024", "Sat Jan 01 00:00:00 +1400 2000"):
        want = datetime.strptime(s, "%a %b %d %H:%M:%S %z %Y")
        assert common.parse_x_archive_time(s) == int(want.timestamp()) * 1_000_000
    for s in ("2024-05-01T12:34:56.000Z", "2024-05-01T12:34:56.123456+05:30", "1999-12-31 23:59:59",
              "2024-05-01", "2024-05-01T12:34:56.5-0200"):
        want = datetime.fromisoformat(s.replace("Z", "+00:00"))
        want = want if want.tzinfo else want.replace(tzinfo=UTC)
        assert common.parse_time(s) == round(want.timestamp() * 1_000_000), s
    assert common.parse_time("1700000000") == common.parse_time(1_700_000_000_000) == 1_700_000_000_000_000
    with pytest.raises(ValueError):
        common.parse_time("2024-02-30T00:00:00Z")


# ---------------------------------------------------------------- CLI
def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = REPO / ".venv" / "bin" / "murmur"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "murmur.cli"]
    return subprocess.run([*cmd, "data", "ingest", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_cli_ingest_ok_and_bad_input(tmp_path):
    write_csv(tmp_path / "export.csv")
    r = _cli("export.csv", "-o", "x.parquet", "--map", CSV_MAP, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "ingested 2 posts" in r.stdout and len(rows_of(tmp_path / "x.parquet")) == 2
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\n{"text": \n')
    r = _cli("bad.jsonl", "-o", "y.parquet", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["murmur: error: bad.jsonl:2: malformed JSON: Expecting value (column 10)"]
    assert not (tmp_path / "y.parquet").exists()
    r = _cli("export.csv", "-o", "z.parquet", "--map", "nope=x", cwd=tmp_path)
    assert r.returncode == 2 and "unknown --map key 'nope'" in r.stderr and not (tmp_path / "z.parquet").exists()
