"""Outputs: atomic files and directories that never replace what murmur did not write."""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from murmur.data.shards import ShardConfig, tokenize_to_shards
from murmur.errors import OutputError
from murmur.io import (
    COMPLETE_MARKER,
    atomic_dir,
    atomic_open,
    atomic_path,
    check_output_dir,
    written_by_murmur,
)
from murmur.tokenizer import TokenizerConfig, train_tokenizer

ROOT = Path(__file__).resolve().parents[1]


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (what must survive a refused write)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def write_dir(target: Path, kind: str = "thing", overwrite: bool = False, protect=(), name: str = "a.txt") -> None:
    with atomic_dir(target, kind, overwrite, protect) as tmp:
        (tmp / name).write_text("new")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.bin").write_bytes(b"\0")


# ---------------------------------------------------------------- the directory rule
def test_a_new_or_empty_folder_is_written_with_a_marker_naming_what_wrote_it(tmp_path):
    write_dir(tmp_path / "new")
    empty = tmp_path / "empty"
    empty.mkdir()
    write_dir(empty)
    for d in (tmp_path / "new", empty):
        assert written_by_murmur(d) == ("thing", ["a.txt", "sub", "sub/b.bin"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "new"]  # no temporary left beside


def test_an_earlier_output_is_replaced_only_with_overwrite(tmp_path):
    out = tmp_path / "out"
    write_dir(out)
    before = tree(out)
    with pytest.raises(OutputError, match="pass --overwrite"):
        write_dir(out, name="c.txt")
    assert tree(out) == before
    write_dir(out, overwrite=True, name="c.txt")
    assert (out / "c.txt").is_file() and not (out / "a.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("case", ["user files", "a file", "other kind", "user file added", "link", "bad marker"])
def test_what_murmur_did_not_write_is_never_replaced(tmp_path, case):
    target = tmp_path / "target"
    if case == "user files":
        target.mkdir()
        (target / "thesis.tex").write_text("years of work")
        (target / "data").mkdir()
        (target / "data" / "x.csv").write_text("1,2")
    elif case == "a file":
        target.write_text("not a folder")
    elif case == "other kind":
        write_dir(target, kind="world")
    elif case == "user file added":
        write_dir(target)
        (target / "sub" / "notes.md").write_text("mine")
    elif case == "link":
        real = tmp_path / "real"
        write_dir(real)
        target.symlink_to(real, target_is_directory=True)
    elif case == "bad marker":
        target.mkdir()
        (target / "keep.txt").write_text("keep")
        (target / COMPLETE_MARKER).write_text("{not json")
    before = tree(tmp_path)
    for overwrite in (False, True):
        with pytest.raises(OutputError) as e:
            write_dir(target, overwrite=overwrite)
        assert "\n" not in str(e.value) and str(target) in str(e.value)
    assert tree(tmp_path) == before
    assert len(list(tmp_path.iterdir())) == (2 if case == "link" else 1)


@pytest.mark.parametrize("where", ["same", "parent", "grandparent", "inside"])
def test_a_folder_that_is_holds_or_lies_in_an_input_is_refused(tmp_path, where):
    runs = tmp_path / "runs"
    src = runs / "model"
    write_dir(src, kind="thing")
    (runs / "sibling").mkdir()
    (runs / "sibling" / "weights.bin").write_bytes(b"precious")
    target = {"same": src, "parent": runs, "grandparent": tmp_path, "inside": src / "export"}[where]
    before = tree(tmp_path)
    with pytest.raises(OutputError, match="input of this command"):
        write_dir(target, overwrite=True, protect=[src])
    assert tree(tmp_path) == before


def test_a_failed_build_leaves_the_earlier_output_and_no_temporary(tmp_path):
    out = tmp_path / "out"
    write_dir(out)
    before = tree(out)
    with pytest.raises(RuntimeError), atomic_dir(out, "thing", overwrite=True) as tmp:
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("crash")
    assert tree(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_legacy_markers_count_as_murmur_output(tmp_path):
    out = tmp_path / "old"
    out.mkdir()
    (out / "x").write_text("x")
    (out / COMPLETE_MARKER).write_text("ok\n")
    with pytest.raises(OutputError, match="--overwrite"):
        check_output_dir(out, "thing")
    check_output_dir(out, "thing", overwrite=True)


def test_atomic_file_refuses_a_folder_and_cleans_up(tmp_path):
    (tmp_path / "dir").mkdir()
    with pytest.raises(OutputError, match="is a folder"), atomic_path(tmp_path / "dir"):
        pass
    with pytest.raises(ValueError), atomic_open(tmp_path / "f.txt") as f:
        f.write("partial")
        raise ValueError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir"]


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    """RLIMIT_FSIZE stands in for a full disk: the write fails with EFBIG (SIGXFSZ ignored)."""
    code = ("import os\n"
            "from murmur.io import atomic_open\n"
            "from murmur.errors import MurmurError\n"
            "try:\n"
            f"    with atomic_open({str(tmp_path / 'big.bin')!r}, 'wb') as f:\n"
            "        f.write(b'x' * 200_000)\n"
            "except MurmurError as e:\n"
            "    print(e)\n")

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))

    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, preexec_fn=limit,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "cannot write: file too large" in r.stdout and r.stdout.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- the commands that write folders
@pytest.fixture(scope="module")
def posts(tmp_path_factory):
    rng = random.Random(0)
    words = "the a to and of in is it you that for on with love today new people time".split()
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 20))) for _ in range(300)]
    path = tmp_path_factory.mktemp("io") / "posts.parquet"
    pq.write_table(pa.table({"post_id": [f"p{i}" for i in range(300)], "text": texts}), path)
    return path


def test_tokenizer_and_shards_follow_the_rule(posts, tmp_path):
    cfg = TokenizerConfig(vocab_size=300, val_fraction=0.1)
    tok = tmp_path / "tok"
    train_tokenizer([posts], tok, cfg)
    with pytest.raises(OutputError, match="--overwrite"):
        train_tokenizer([posts], tok, cfg)
    train_tokenizer([posts], tok, cfg, overwrite=True)
    with pytest.raises(OutputError, match="input of this command"):
        train_tokenizer([posts], posts.parent, cfg, overwrite=True)
    shards = tmp_path / "shards"
    tokenize_to_shards(posts, tok, shards, ShardConfig(val_fraction=0.1))
    with pytest.raises(OutputError, match="--overwrite"):
        tokenize_to_shards(posts, tok, shards, ShardConfig(val_fraction=0.1))
    tokenize_to_shards(posts, tok, shards, ShardConfig(val_fraction=0.1), overwrite=True)
    other = tmp_path / "other"
    write_dir(other, kind="tokenizer")
    with pytest.raises(OutputError, match="murmur tokenizer, not a shards"):
        tokenize_to_shards(posts, tok, other, ShardConfig(), overwrite=True)
    with pytest.raises(OutputError, match="input of this command"):
        tokenize_to_shards(posts, tok, tok / "shards", ShardConfig())
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(OutputError, match="not written by murmur"):
        tokenize_to_shards(posts, tok, mine, ShardConfig(), overwrite=True)
    assert (mine / "notes.txt").read_text() == "keep"
    assert json.loads((shards / COMPLETE_MARKER).read_text())["murmur"] == "shards"


def test_cli_refuses_in_one_line(posts, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "murmur.cli", "tokenizer", "train", str(posts), "-o", str(mine),
                        "--vocab-size", "300", "--overwrite"], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "not written by murmur" in r.stderr
    assert (mine / "notes.txt").read_text() == "keep"
    assert time.perf_counter() - t0 < 60
