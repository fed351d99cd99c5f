"""Bad input to the ads commands: one line naming what is wrong, exit status 2, nothing written."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from murmur.data.schema import POST_SCHEMA


def murmur(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "murmur.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def refused(r: subprocess.CompletedProcess, *words: str) -> None:
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in lines[0], lines[0]


@pytest.fixture(scope="module")
def posts(tmp_path_factory):
    """150 users, two posts each."""
    path = tmp_path_factory.mktemp("adscli") / "clean.parquet"
    when = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    words = ["pasta dinner recipe", "marathon run training", "football match goal"]
    rows = [{**{f.name: None for f in POST_SCHEMA}, "post_id": f"p{i}", "author_id": f"u{i % 150}",
             "created_at": when, "lang": "en", "text": f"{words[i % 3]} {i}", "hashtags": [], "mentions": [],
             "urls": [], "source": "test"} for i in range(300)]
    pq.write_table(pa.Table.from_pylist(rows, schema=POST_SCHEMA), path)
    return path


def test_custom_audience_under_100_users(posts, tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(f"u{i}" for i in range(60)) + "\nnobody\n")
    r = murmur("ads", "audience", "build", "--kind", "custom", "--ids", ids, "--posts", posts, "-o", tmp_path / "a.parquet")
    refused(r, "100")
    assert not (tmp_path / "a.parquet").exists()
    ids.write_text("\n".join(f"u{i}" for i in range(120)))
    r = murmur("ads", "audience", "build", "--kind", "custom", "--ids", ids, "--posts", posts, "-o", tmp_path / "a.parquet")
    assert r.returncode == 0 and "120" in r.stdout


@pytest.mark.parametrize("knob, field", [
    (["--size", "50"], "size"),
    (["--fraction", "0"], "fraction"),
    (["--fraction", "1.5"], "fraction"),
    (["--min-similarity", "-0.1"], "min_similarity"),
    (["--min-similarity", "1.2"], "min_similarity"),
    (["--size", "500", "--fraction", "0.5"], "fraction"),
])
def test_lookalike_bad_knobs(posts, tmp_path, knob, field):
    r = murmur("ads", "audience", "build", "--kind", "lookalike", "--accounts", "u1", *knob, "--posts", posts,
               "-o", tmp_path / "a.parquet")
    refused(r, field)
    assert not (tmp_path / "a.parquet").exists()


def test_copy_bad_brief_and_unknown_audience(posts, tmp_path):
    base = ["ads", "copy", "--model", tmp_path / "no-model", "--brand", "Kalo", "--url", "https://kalo.example/p",
            "--posts", posts, "--pctr", tmp_path / "no-pctr"]
    refused(murmur(*base, "--brief", "x" * 10_240, "--audience", tmp_path / "a.parquet"), "brief", "10,240")
    refused(murmur(*base, "--brief", "A pan", "--audience", tmp_path / "nobody.parquet"), "audience file not found")


@pytest.mark.parametrize("knob, word", [("budget_rounds=-1", "budget_rounds"), ("budget_fraction=0", "budget_fraction"),
                                        ("slots=11", "slots"), ("pacing_learn=1.5", "pacing_learn"),
                                        ("pacing_doubt=-1", "pacing_doubt")])
def test_simulate_knobs_out_of_range_are_refused_before_any_work(tmp_path, knob, word):
    work = tmp_path / "sim"
    refused(murmur("ads", "simulate", "--world", tmp_path / "none", "--logs", tmp_path / "none", "--posts",
                   tmp_path / "none.parquet", "--work", work, knob), word)
    assert not work.exists()
