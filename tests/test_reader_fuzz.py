"""Fuzzing every reader (hypothesis, bounded): whatever the bytes, ingest either writes a complete
output whose rows are the posts it counted, or stops with one InputError line and leaves nothing.
Any other exception is a traceback a user would see, and fails the test."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from murmur.data.sources import ingest  # noqa: E402
from murmur.errors import InputError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = int(os.environ.get("MURMUR_FUZZ_EXAMPLES", "25"))  # per reader: a few seconds; raise it to dig deeper
# Random inputs on a developer's machine; the same inputs on every CI run (CI is set there).
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, print_blob=True, derandomize=bool(os.environ.get("CI")),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ---------------------------------------------------------------- strategies
NASTY = ["\ud800", "\udfff", "\x00", '"', ",", "\n", "\r", "\t", "é", "😀", "\ufeff", "#x", "@y", "\\", "[", "{", " "]
texts = st.one_of(st.text(max_size=30), st.lists(st.sampled_from(NASTY + ["a", "b", "1"]), max_size=12).map("".join))
leaves = st.one_of(
    st.none(), st.booleans(), texts,
    st.integers(min_value=-(10**25), max_value=10**25),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e22, -1e22, 1e400, 2**63, -(2**63) - 1, "1e22", "2024-05-01T12:00:00Z", "Wed Oct 10 20:19:24 +0000 2018",
                     "99999999999999999999", "", " ", "nan"]),
)
values = st.recursive(leaves, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(texts, kids, max_size=3),
                      max_leaves=8)
FIELDS = ("author_id", "created_at", "lang", "reply_to", "conversation_id", "hashtags", "mentions", "urls", "likes",
          "reposts", "replies")
records = st.fixed_dictionaries({"id": st.one_of(texts, values), "text": st.one_of(texts, texts, values)},
                                optional={f: values for f in FIELDS})


def api_tweet(r: dict) -> dict:
    t = {k: v for k, v in r.items() if k not in ("likes", "reposts", "replies")}
    t["edit_history_tweet_ids"] = [r.get("id")]
    t["public_metrics"] = {"like_count": r.get("likes"), "retweet_count": r.get("reposts")}
    t["entities"] = {"hashtags": r.get("hashtags"), "mentions": r.get("mentions"), "urls": r.get("urls")}
    return t


def archive_tweet(r: dict) -> dict:
    return {"tweet": {"id_str": r.get("id"), "full_text": r.get("text"), "created_at": r.get("created_at"),
                      "favorite_count": r.get("likes"), "retweet_count": r.get("reposts"), "lang": r.get("lang"),
                      "in_reply_to_status_id_str": r.get("reply_to"),
                      "entities": {"hashtags": r.get("hashtags"), "user_mentions": r.get("mentions")}}}


def dumps(v) -> str:
    return json.dumps(v)  # ensure_ascii: lone surrogates become \ud800 escapes, as real exports write them


def encode(s: str) -> bytes:
    return s.encode("utf-8", "surrogatepass")  # a surrogate written raw is bytes that are not UTF-8


# ---------------------------------------------------------------- the property
def check(name: str, data: bytes, **kw) -> None:
    """Ingest one file named ``name`` holding ``data``: a complete output or one InputError line, nothing else."""
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "in"
        src.mkdir()
        (src / name).write_bytes(data)
        out = Path(d) / "out" / "posts.parquet"
        try:
            stats = ingest([str(src / name)], out, progress=False, **kw)
        except InputError as e:
            assert "\n" not in str(e), str(e)
            assert not out.parent.exists() or list(out.parent.iterdir()) == [], "partial output left behind"
            return
        table = pq.read_table(out)
        assert table.num_rows == stats.posts > 0
        assert [p.name for p in out.parent.iterdir()] == ["posts.parquet"]
        texts_out = table.column("text").to_pylist()
        assert all(isinstance(t, str) and t.strip() for t in texts_out)
        stats.describe().encode("utf-8")


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Flip, delete or insert bytes at positions (as a disk, a copy or a careless editor would)."""
    b = bytearray(data)
    for op, pos, val in edits:
        if not b:
            break
        i = pos % len(b)
        if op == 0:
            b[i] ^= val or 1
        elif op == 1:
            del b[i]
        elif op == 2:
            b.insert(i, val)
        else:
            del b[i:]
    return bytes(b)


edits = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1 << 20), st.integers(0, 255)), max_size=4)


# ---------------------------------------------------------------- one test per reader
@FUZZ
@given(st.lists(records, max_size=5), edits)
def test_fuzz_jsonl(recs, ed):
    data = "".join(dumps(r) + "\n" for r in recs).encode()
    check("posts.jsonl", data)
    check("posts.jsonl", mutate(data, ed))


@FUZZ
@given(st.lists(records, max_size=5), st.booleans(), edits)
def test_fuzz_json_document(recs, as_array, ed):
    data = (dumps(recs) if as_array else "\n".join(dumps(r) for r in recs)).encode()
    check("posts.json", data)
    check("posts.json", mutate(data, ed))


@FUZZ
@given(st.lists(st.lists(records, max_size=3), max_size=3), edits)
def test_fuzz_x_api(pages, ed):
    data = "".join(dumps({"data": [api_tweet(r) for r in p], "meta": {"result_count": len(p)}}) + "\n"
                   for p in pages).encode()
    check("page.jsonl", data, fmt="x-api")
    check("page.jsonl", mutate(data, ed), fmt="x-api")


@FUZZ
@given(st.lists(records, max_size=5), st.one_of(st.none(), values), edits)
def test_fuzz_x_archive(recs, account_id, ed):
    with tempfile.TemporaryDirectory() as d:
        data = ("window.YTD.tweets.part0 = " + dumps([archive_tweet(r) for r in recs])).encode()
        check("tweets.js", data)
        check("tweets.js", mutate(data, ed))
        folder = Path(d) / "archive" / "data"
        folder.mkdir(parents=True)
        (folder / "tweets.js").write_bytes(data)
        (folder / "account.js").write_text(
            "window.YTD.account.part0 = " + dumps([{"account": {"accountId": account_id, "username": "u"}}]))
        try:
            ingest([str(Path(d) / "archive")], Path(d) / "o.parquet", progress=False)
        except InputError as e:
            assert "\n" not in str(e)


@FUZZ
@given(st.lists(records, max_size=4), edits, st.sampled_from([zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED]))
def test_fuzz_archive_zip(recs, ed, method):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        zf.writestr("arch/data/account.js", 'window.YTD.account.part0 = [{"account": {"accountId": "7"}}]')
        zf.writestr("arch/data/tweets.js", "window.YTD.tweets.part0 = " + dumps([archive_tweet(r) for r in recs]))
    check("archive.zip", buf.getvalue())
    check("archive.zip", mutate(buf.getvalue(), ed))


cells = st.one_of(texts, st.sampled_from(['"', '""', '"a,b"', '"x\ny"', 'a"b', "1e22", "123456789012345678901",
                                          "2024-05-01", "\ud800"]))


@FUZZ
@given(st.lists(st.lists(cells, min_size=1, max_size=5), max_size=6), st.sampled_from([",", "\t"]), edits)
def test_fuzz_csv(rows, sep, ed):
    lines = [sep.join(["id", "text", "likes", "created_at"])] + [sep.join(r) for r in rows]
    data = encode("\n".join(lines) + "\n")
    name = "posts.csv" if sep == "," else "posts.tsv"
    check(name, data)
    check(name, mutate(data, ed))


def _column(draw_values: list, kind: str) -> pa.Array:
    if kind == "string":
        return pa.array([None if v is None else encode(str(v)).decode("utf-8", "replace") for v in draw_values])
    if kind == "binary":
        return pa.array([encode(str(v)) for v in draw_values], pa.binary())
    if kind == "int":
        return pa.array([v if type(v) is int and -(2**63) <= v < 2**63 else None for v in draw_values], pa.int64())
    if kind == "float":
        return pa.array([float(v) if type(v) in (int, float) and abs(v) < 1e300 else None for v in draw_values],
                        pa.float64())
    return pa.array([[encode(str(v)).decode("utf-8", "replace")] for v in draw_values], pa.list_(pa.string()))


@FUZZ
@given(st.lists(st.tuples(values, values, values), min_size=1, max_size=6),
       st.sampled_from(["string", "binary", "int", "float", "list"]),
       st.sampled_from(["string", "int", "float"]), st.sampled_from(["string", "int", "float"]), edits)
def test_fuzz_parquet(rows, text_kind, likes_kind, time_kind, ed):
    table = pa.table({"id": _column([str(i) for i in range(len(rows))], "string"),
                      "text": _column([r[0] for r in rows], text_kind),
                      "likes": _column([r[1] for r in rows], likes_kind),
                      "created_at": _column([r[2] for r in rows], time_kind)})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    check("posts.parquet", buf.getvalue())
    check("posts.parquet", mutate(buf.getvalue(), ed))


def test_a_parquet_column_name_that_is_not_utf8(tmp_path):
    """pyarrow decodes a Parquet file's column names as UTF-8 and raises UnicodeDecodeError on others:
    one line naming the file, as for any other broken Parquet file (found by the fuzzer above)."""
    buf = io.BytesIO()
    pq.write_table(pa.table({"id": ["1"], "textZ": ["hello there, friends of the garden club"]}), buf)
    check("posts.parquet", buf.getvalue().replace(b"textZ", b"text\xff"))
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(buf.getvalue().replace(b"textZ", b"text\xff"))
    with pytest.raises(InputError, match="bad.parquet: not a readable Parquet file"):
        ingest([str(bad)], tmp_path / "out.parquet", progress=False)


@FUZZ
@given(st.lists(texts, max_size=8), st.binary(max_size=64))
def test_fuzz_text(lines, junk):
    check("posts.txt", encode("\n".join(lines)))
    check("posts.txt", junk)


@FUZZ
@given(st.lists(records, max_size=4), st.sampled_from(["gz", "zst"]), edits, st.integers(0, 1 << 16))
def test_fuzz_compressed(recs, comp, ed, cut):
    data = "".join(dumps(r) + "\n" for r in recs).encode()
    packed = gzip.compress(data) if comp == "gz" else zstandard.ZstdCompressor().compress(data)
    name = f"posts.jsonl.{comp}"
    check(name, packed)
    check(name, mutate(packed, ed))
    check(name, packed[: cut % (len(packed) + 1)])
    check(name, data)  # not compressed at all


# ---------------------------------------------------------------- the command line: one line, exit 2
def _crafted(d: Path) -> list[tuple[str, str]]:
    (d / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    g = gzip.compress(b'{"id": "1", "text": "x"}\n' * 5000)
    (d / "cut.jsonl.gz").write_bytes(g[: len(g) // 2])
    (d / "plain.jsonl.gz").write_text('{"id": "1", "text": "x"}\n')
    (d / "quote.csv").write_text('id,text\n1,"never closed\n2,x\n')
    (d / "bad.jsonl.zst").write_bytes(b"\x28\xb5\x2f\xfd" + b"\x00" * 32)
    return [("deep.json", "nested too deeply"), ("cut.jsonl.gz", "ends early"), ("plain.jsonl.gz", "not gzip data"),
            ("quote.csv", "never closed"), ("bad.jsonl.zst", "zstd")]


def test_cli_prints_one_line_and_exits_2(tmp_path):
    t0 = time.perf_counter()
    for name, words in _crafted(tmp_path):
        r = subprocess.run([sys.executable, "-m", "murmur.cli", "data", "ingest", str(tmp_path / name), "-o",
                            str(tmp_path / "out" / "posts.parquet")], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
        assert r.returncode == 2, (name, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("murmur: error: ") and name in lines[0], (name, r.stderr)
        assert words in lines[0], (name, lines[0])
        assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    assert time.perf_counter() - t0 < 120
