"""The command line: a flag overrides the TOML only when the user gives it; names are forgiving."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_chat_data import write_posts
from train_helpers import make_posts
from typer.testing import CliRunner

from murmur.cli import app, given


def invoke(*args: str) -> str:
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r.output


def test_given_keeps_only_flags_the_user_gave():
    assert given(None, users=None, seed=None) == []
    assert given(["days=3"], users=50, seed=None) == ["users=50", "days=3"]  # key=value arguments come last


def test_world_generate_takes_users_and_seed_from_the_config_unless_given(tmp_path):
    toml = tmp_path / "world.toml"
    toml.write_text("users = 30\nseed = 5\narchive_users = 1\ndays = 2\n")
    invoke("world", "generate", "-o", tmp_path / "a", "--config", toml)
    cfg = json.loads((tmp_path / "a" / "world.json").read_text())["config"]
    assert (cfg["users"], cfg["seed"]) == (30, 5)
    invoke("world", "generate", "-o", tmp_path / "b", "--config", toml, "--users", "40")
    cfg = json.loads((tmp_path / "b" / "world.json").read_text())["config"]
    assert (cfg["users"], cfg["seed"], cfg["days"]) == (40, 5, 2)
    invoke("world", "generate", "-o", tmp_path / "c", "--users", "25", "--seed", "2", "archive_users=1", "days=1")
    cfg = json.loads((tmp_path / "c" / "world.json").read_text())["config"]
    assert (cfg["users"], cfg["seed"]) == (25, 2)


def test_tokenizer_train_takes_vocab_size_from_the_config_unless_given(tmp_path):
    texts = make_posts(200)["text"]
    posts = tmp_path / "posts.parquet"
    pq.write_table(pa.table({"post_id": [f"p{i}" for i in range(len(texts))], "text": texts}), posts)
    toml = tmp_path / "tok.toml"
    toml.write_text("vocab_size = 300\nval_fraction = 0.0\n")
    assert "300 tokens" in invoke("tokenizer", "train", posts, "-o", tmp_path / "a", "--config", toml)
    assert "310 tokens" in invoke("tokenizer", "train", posts, "-o", tmp_path / "b", "--config", toml,
                                  "--vocab-size", "310")


def test_sft_data_takes_seed_and_instructions_from_the_config_unless_given(tmp_path):
    posts = write_posts(tmp_path / "posts.parquet")
    toml = tmp_path / "sft.toml"
    toml.write_text("instructions = 5\nthreads = false\nseed = 4\n")

    def count(path):
        return len(path.read_text(encoding="utf-8").splitlines())

    invoke("sft-data", posts, "-o", tmp_path / "a.jsonl", "--config", toml)
    assert count(tmp_path / "a.jsonl") == 5
    invoke("sft-data", posts, "-o", tmp_path / "b.jsonl", "--config", toml, "--instructions", "7")
    assert count(tmp_path / "b.jsonl") == 7
    invoke("sft-data", posts, "-o", tmp_path / "c.jsonl", "--config", toml, "--seed", "4")
    assert (tmp_path / "c.jsonl").read_bytes() == (tmp_path / "a.jsonl").read_bytes()  # seed 4 came from the TOML


@pytest.mark.parametrize("name", ["a100-80gb", "A100-80GB", "h100", "H200"])
def test_plan_accepts_gpu_names_in_any_case(name):
    out = invoke("plan", "--gpu", name, "--model", "1b", "--tokens", "1e11", "--gpus", "8", "--json")
    assert json.loads(out)["config"]["gpu"] == name.upper()
