"""Hostile inputs to the readers: each bad record is skipped (or its field emptied) and counted, each
broken file stops with one line naming file and line, and no input gives a traceback or a partial output."""

from __future__ import annotations

import gzip
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from murmur.data.sources import ingest
from murmur.errors import InputError, OutputError

REPO = Path(__file__).resolve().parents[1]
GOOD = '{"id": "g1", "text": "a good post"}\n'


def run(tmp_path: Path, name: str, content: bytes | str, **kw):
    """Ingest one file; returns (stats, rows)."""
    src = tmp_path / name
    src.write_bytes(content.encode() if isinstance(content, str) else content)
    out = tmp_path / "out" / "posts.parquet"
    stats = ingest([str(src)], out, progress=False, **kw)
    return stats, pq.read_table(out).to_pylist()


def no_output(tmp_path: Path) -> bool:
    out = tmp_path / "out"
    return not out.exists() or not list(out.iterdir())


# ---------------------------------------------------------------- one bad record: skipped and counted
SKIPS = [
    ("lone surrogate in text", "s.jsonl", '{"id": "1", "text": "hi \\ud800 there"}\n', "text not valid Unicode"),
    ("text is an object", "o.jsonl", '{"id": "1", "text": {"a": 1}}\n', "text is not a string"),
    ("text is a list", "l.jsonl", '{"id": "1", "text": ["x", "y"]}\n', "text is not a string"),
    ("text is a boolean", "b.jsonl", '{"id": "1", "text": true}\n', "text is not a string"),
    ("deeply nested line", "n.jsonl", '{"id": "1", "text": "x", "deep": ' + "[" * 50_000 + "]" * 50_000 + "}\n",
     "JSON nested too deeply"),
    ("number of 5000 digits", "d.jsonl", '{"id": "1", "text": "x", "likes": ' + "9" * 5000 + "}\n",
     "JSON number too long"),
    ("post_id is an object", "i.jsonl", '{"id": {"x": 1}, "text": "x"}\n', "post_id is not an id"),
    ("API tweet with a surrogate", "a.jsonl",
     '{"data": [{"id": "1", "text": "x \\udfff", "edit_history_tweet_ids": ["1"]}]}\n', "text not valid Unicode"),
]


@pytest.mark.parametrize("name,file,line,reason", SKIPS, ids=[c[0] for c in SKIPS])
def test_a_bad_record_is_skipped_and_counted(tmp_path, name, file, line, reason):
    stats, rows = run(tmp_path, file, GOOD + line + GOOD.replace("g1", "g2"))
    assert [r["post_id"] for r in rows] == ["g1", "g2"]
    assert stats.skipped == {reason: 1}
    assert stats.examples[reason] == f"{file}:2"
    assert reason in stats.describe()


NULLS = [
    ("20-digit like count", "c.jsonl", '{"id": "1", "text": "x", "likes": 123456789012345678901}\n',
     "likes/reposts/replies unreadable", "likes"),
    ("20-digit like count in CSV", "c.csv", None, "likes/reposts/replies unreadable", "likes"),
    ("created_at 1e22", "t.jsonl", '{"id": "1", "text": "x", "created_at": 1e22}\n', "created_at unreadable",
     "created_at"),
    ("created_at '1e22' in CSV", "t.csv", None, "created_at unreadable", "created_at"),
    ("infinite API like count", "m.jsonl",
     '{"data": [{"id": "1", "text": "x", "public_metrics": {"like_count": 1e400}}]}\n', "public_metrics unreadable",
     "likes"),
    ("surrogate in author_id", "u.jsonl", '{"id": "1", "text": "x", "author_id": "\\ud800"}\n', "author_id unreadable",
     "author_id"),
    ("hashtags as nested lists", "h.jsonl", '{"id": "1", "text": "x #tag", "hashtags": [["a"]]}\n',
     "hashtags/mentions/urls unreadable", "hashtags"),
    ("archive count 1e30", "tweets.js", None, "favorite_count/retweet_count unreadable", "likes"),
]


@pytest.mark.parametrize("name,file,line,reason,column", NULLS, ids=[c[0] for c in NULLS])
def test_a_bad_field_is_left_empty_and_counted(tmp_path, name, file, line, reason, column):
    if file == "c.csv":
        content = "id,text,likes\n1,x,123456789012345678901\n2,y,3\n"
    elif file == "t.csv":
        content = "id,text,created_at\n1,x,1e22\n2,y,2020-01-01\n"
    elif file == "tweets.js":
        content = ('window.YTD.tweets.part0 = [{"tweet": {"id_str": "1", "full_text": "x", "favorite_count": "1e30", '
                   '"created_at": "Wed Oct 10 20:19:24 +0000 2018"}}]')
    else:
        content = line + GOOD
    stats, rows = run(tmp_path, file, content)
    empty = ["tag"] if column == "hashtags" else None  # unreadable entity lists fall back to the text's
    assert rows[0]["post_id"] == "1" and rows[0][column] == empty
    assert stats.nulled[reason] == 1
    assert len(rows) == (1 if file == "tweets.js" else 2)


def test_a_number_given_as_text_keeps_its_digits_and_bytes_are_decoded(tmp_path):
    stats, rows = run(tmp_path, "n.jsonl", '{"id": "1", "text": 42}\n')
    assert rows[0]["text"] == "42" and not stats.skipped
    pq.write_table(pa.table({"id": ["1", "2"], "text": pa.array([b"caf\xc3\xa9", b"caf\xe9"], pa.binary())}),
                   tmp_path / "b.parquet")
    stats = ingest([str(tmp_path / "b.parquet")], tmp_path / "o2.parquet", progress=False)
    assert pq.read_table(tmp_path / "o2.parquet")["text"].to_pylist() == ["café"]
    assert stats.skipped == {"text not valid UTF-8": 1}


# ---------------------------------------------------------------- a broken file: one line, file and line, no output
def _gz_truncated() -> bytes:
    g = gzip.compress("".join(f'{{"id": "{i}", "text": "post number {i} {i * 7919 % 1000}"}}\n'
                              for i in range(20_000)).encode())
    return g[: len(g) // 2]


def _zst_truncated() -> bytes:
    z = zstandard.ZstdCompressor().compress("".join(f'{{"id": "{i}", "text": "post {i * 7919 % 10007}"}}\n'
                                                    for i in range(20_000)).encode())
    return z[: len(z) // 2]


STOPS = [
    ("deeply nested .json", "deep.json", "[" * 50_000 + "]" * 50_000, r"deep\.json:1: JSON nested too deeply"),
    ("corrupt .zst", "c.jsonl.zst", b"\x28\xb5\x2f\xfd" + b"\xff" * 64, r"c\.jsonl\.zst:1: corrupt zstd data"),
    ("not zstd at all", "p.jsonl.zst", GOOD, r"p\.jsonl\.zst:1: not zstd data"),
    ("truncated .zst", "t.jsonl.zst", _zst_truncated(), r"t\.jsonl\.zst:\d+: zstd data ends early"),
    ("plain file named .gz", "p.jsonl.gz", GOOD, r"p\.jsonl\.gz:1: not gzip data"),
    ("plain CSV named .gz", "p.csv.gz", "id,text\n1,x\n", r"p\.csv\.gz:1: not gzip data"),
    ("truncated .gz", "t.jsonl.gz", _gz_truncated(), r"t\.jsonl\.gz:\d+: gzip data ends early"),
    ("CSV quote never closed", "q.csv", 'id,text\n1,ok\n2,"hello\n3,world\n4,x\n',
     r"q\.csv:3: malformed CSV: a quote opened in this row is never closed"),
    ("CSV quote closed in a later row", "q2.csv", 'id,text\n1,"hello\n2,"world"\n3,x\n',
     r"q2\.csv:2: malformed CSV: text after a closing quote"),
    ("CSV stray quote pair", "q3.csv", 'id,text\n1,"hello\n2,wor"ld\n3,x\n',
     r"q3\.csv:2: malformed CSV: text after a closing quote"),
    ("TSV quote never closed", "q.tsv", 'id\ttext\n1\t"oops\n2\tx\n', r"q\.tsv:2: malformed CSV"),
]


@pytest.mark.parametrize("name,file,content,pattern", STOPS, ids=[c[0] for c in STOPS])
def test_a_broken_file_stops_with_one_line(tmp_path, name, file, content, pattern):
    with pytest.raises(InputError, match=pattern) as e:
        run(tmp_path, file, content)
    assert "\n" not in str(e.value)
    assert no_output(tmp_path)


def test_a_quoted_line_break_is_still_one_post(tmp_path):
    _, rows = run(tmp_path, "ok.csv", 'id,text\n1,"two\nlines, ""quoted"""\n2,x\n')
    assert [r["text"] for r in rows] == ['two\nlines, "quoted"', "x"]


def test_links_that_loop_or_point_nowhere(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "good.jsonl").write_text(GOOD)
    (d / "self.jsonl").symlink_to("self.jsonl")
    (d / "gone.jsonl").symlink_to("missing.jsonl")
    stats = ingest([str(d)], tmp_path / "o.parquet", progress=False)
    assert stats.posts == 1
    assert sorted(stats.not_read) == ["gone.jsonl: a symbolic link to nothing", "self.jsonl: a symbolic link that loops"]
    for name, why in (("self.jsonl", "loops"), ("gone.jsonl", "to nothing")):
        with pytest.raises(InputError, match=why):
            ingest([str(d / name)], tmp_path / "o2.parquet", progress=False)


def test_a_file_name_that_is_not_utf8(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    name = os.fsdecode(b"caf\xe9.jsonl")
    (d / name).write_text(GOOD)
    stats = ingest([str(d)], tmp_path / "o.parquet", progress=False)
    assert pq.read_table(tmp_path / "o.parquet")["source"].to_pylist() == ["jsonl:caf\ufffd.jsonl"]
    stats.describe().encode("utf-8")  # printable


def test_output_pointing_at_a_folder(tmp_path):
    (tmp_path / "in.jsonl").write_text(GOOD)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("keep")
    with pytest.raises(OutputError, match="is a folder"):
        ingest([str(tmp_path / "in.jsonl")], out, progress=False)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


# ---------------------------------------------------------------- the process: full disk, signals, one line
def _big_jsonl(path: Path, n: int) -> None:
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": str(i), "text": f"post {i} about #topic{i % 50} and more words here"}) + "\n")


def _default_signals(preexec=None):
    """The child starts with SIGINT and SIGHUP at their defaults even where this test runs in the
    background of a non-interactive shell (which starts background jobs with SIGINT ignored, and Python
    then keeps it so) or under ``nohup`` (SIGHUP ignored, which murmur respects, as every command does)."""
    def run() -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        if preexec is not None:
            preexec()
    return run


def _murmur(*args: str, preexec=None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "murmur.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_signals(preexec),
                            env={**os.environ, "PYTHONPATH": str(REPO)}, **kw)


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    """RLIMIT_FSIZE stands in for a full disk (the write fails with EFBIG; SIGXFSZ ignored)."""
    src = tmp_path / "in.jsonl"
    _big_jsonl(src, 60_000)
    out = tmp_path / "out"

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    p = _murmur("data", "ingest", str(src), "-o", str(out / "posts.parquet"), preexec=limit)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2, err
    lines = [s for s in err.splitlines() if "ingest:" not in s]
    assert len(lines) == 1 and "cannot write: file too large" in lines[0] and "posts.parquet" in lines[0]
    assert not out.exists() or list(out.iterdir()) == []


def _stopped(pid: int) -> bool:
    """Wait until the process is stopped (True) or has exited (False)."""
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        if state in "TtZX":
            return state in "Tt"
        time.sleep(0.001)


def _stop_while_writing(p: subprocess.Popen, out: Path, name: str) -> None:
    """Run the process in short slices, stopped between them, until it is stopped with its temporary
    output present and its final output absent: however loaded the machine, the next signal lands
    while it writes (the process cannot finish while the test looks)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        p.send_signal(signal.SIGSTOP)
        alive = _stopped(p.pid)
        assert alive, "ingest ended before it wrote anything"
        present = [f.name for f in out.iterdir()]
        assert name not in present, "ingest finished within one slice; make the input bigger"
        if any(f.startswith(f".{name}.") and f.endswith(".tmp") for f in present):
            return
        p.send_signal(signal.SIGCONT)
        time.sleep(0.005)
    raise AssertionError("ingest did not start writing within 120 s")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_during_ingest_leaves_no_temporary(tmp_path, sig):
    src = tmp_path / "in.jsonl"
    _big_jsonl(src, 400_000)
    out = tmp_path / "out"
    out.mkdir()
    # the lowest priority: on a loaded machine the test, not ingest, gets the cores between slices
    p = _murmur("data", "ingest", str(src), "-o", str(out / "posts.parquet"), preexec=lambda: os.nice(19))
    _stop_while_writing(p, out, "posts.parquet")
    p.send_signal(sig)  # pending while the process is stopped: it lands while the temporary output exists
    p.send_signal(signal.SIGCONT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 128 + sig, err
    assert err.strip().splitlines()[-1].startswith("murmur: interrupted") and "Traceback" not in err
    assert list(out.iterdir()) == []


@pytest.mark.slow
def test_sigterm_with_worker_processes_leaves_nothing(tmp_path):
    srcs = tmp_path / "in"
    srcs.mkdir()
    for i in range(4):
        _big_jsonl(srcs / f"part{i}.jsonl", 150_000)
    out = tmp_path / "out"
    out.mkdir()
    p = _murmur("data", "ingest", str(srcs), "-o", str(out / "posts.parquet"), "--workers", "2")
    deadline = time.monotonic() + 90
    while not any(p.name.endswith(".parts") for p in out.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143, err
    assert "Traceback" not in err and list(out.iterdir()) == []
