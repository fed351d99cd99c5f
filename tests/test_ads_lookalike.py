"""Follower look-alike audiences against the world's true interests, beside the follow-graph and random
baselines, and `murmur ads eval` printing them."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from murmur.ads.audiences import AudienceBuilder
from murmur.ads.eval import evaluate_lookalikes, lookalike_table
from murmur.ads.vectors import build_user_vectors, read_posts
from murmur.data.clean import clean
from murmur.data.sources import ingest
from murmur.errors import InputError
from murmur.world.generate import WorldConfig, generate_world
from murmur.world.truth import load_truth

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("lookalike")
    generate_world(root / "world", WorldConfig(users=1200, seed=5, archive_users=0, stories=0))
    ingest([str(root / "world" / "api")], root / "posts.parquet", progress=False)
    clean(root / "posts.parquet", root / "clean.parquet")
    return root


@pytest.fixture(scope="module")
def builder(world):
    posts = read_posts(world / "clean.parquet", ("post_id", "author_id", "text", "lang", "created_at",
                                                 "conversation_id"))
    return AudienceBuilder(posts, build_user_vectors(posts), follows=load_truth(world / "world").follows)


def test_lookalikes_beat_random_users_and_hold_their_seed(world, builder):
    res = evaluate_lookalikes(builder, world / "world", sizes=(1.5, 3.0))
    assert res["topics"] >= 20
    m = res["mean"]
    # a look-alike holds its seed and then expands it: recall grows with the size knob, precision falls
    assert m["lookalike x3"]["recall"] > m["lookalike x1.5"]["recall"] > m["seed"]["recall"]
    assert m["lookalike x3"]["precision"] < m["lookalike x1.5"]["precision"] < m["seed"]["precision"]
    for size in ("x1.5", "x3"):
        # the seed is far above the base rate (followers share the accounts' interests), so the audience is too
        assert m[f"lookalike {size}"]["precision"] > 1.3 * m[f"random {size}"]["precision"]
        # and the users it adds beyond the seed are more often on target than random ones
        assert m[f"lookalike {size}"]["added_precision"] > m[f"random {size}"]["added_precision"]
    for row in res["per_topic"]:
        if row["method"] != "seed":
            # the knob's size, or every user with posts when that is fewer (a seed of popular accounts' followers)
            if "knob" in row:
                assert row["size"] <= max(100, round(row["knob"] * row["seed"]))
            if row["method"] == "lookalike":
                assert row["size"] > row["seed"]
    assert np.isclose(m["random x1.5"]["precision"], m["seed"]["base_rate"], atol=0.03)
    assert "followers_of_followers x3" in lookalike_table(res)


def test_lookalike_size_and_similarity_knobs(world, builder):
    truth = load_truth(world / "world")
    followers = truth.users["followers"].to_numpy(zero_copy_only=False)
    accounts = [truth.users["user_id"][int(i)].as_py() for i in np.argsort(-followers)[:2]]
    sims, seed_rows = builder.lookalike_scores(accounts)
    seed = set(builder.vectors.user_ids[seed_rows].tolist())
    eligible = len(builder.vectors.user_ids)
    assert builder.lookalike(accounts, size=300).size == 300
    half = builder.lookalike(accounts, fraction=0.5)
    assert half.size == round(0.5 * eligible) and half.params["fraction"] == 0.5
    sizes = []
    for t in (0.0, 0.1, 0.2):
        aud = builder.lookalike(accounts, min_similarity=t)
        members = set(aud.user_ids.tolist())
        assert seed <= members  # the seed always belongs
        # outside the seed: exactly the users reaching the threshold
        outside = {u for u, s in zip(builder.vectors.user_ids.tolist(), sims.tolist(), strict=True)
                   if s >= t and u not in seed}
        assert members - seed == outside
        sizes.append(aud.size)
    assert sizes[0] > sizes[1] > sizes[2]
    both = builder.lookalike(accounts, size=len(seed) + 10, min_similarity=0.0)
    assert both.size == len(seed) + 10 and seed <= set(both.user_ids.tolist())
    for kwargs, field in [({"size": 99}, "size"), ({"fraction": 0.0}, "fraction"), ({"fraction": 1.01}, "fraction"),
                          ({"fraction": 0.01}, "fraction"), ({"min_similarity": -0.2}, "min_similarity"),
                          ({"min_similarity": 1.5}, "min_similarity"), ({"size": 200, "fraction": 0.5}, "fraction")]:
        with pytest.raises(InputError) as e:
            builder.lookalike(accounts, **kwargs)
        assert e.value.field == field, kwargs


def test_similarity_knob_trades_recall_for_precision(world, builder):
    res = evaluate_lookalikes(builder, world / "world", sizes=(), similarities=(0.0, 0.2))
    m = res["mean"]
    loose, strict = m["lookalike sim>=0"], m["lookalike sim>=0.2"]
    assert loose["size"] > strict["size"] > m["seed"]["size"]
    assert loose["recall"] > strict["recall"] and strict["precision"] > loose["precision"]
    # what the threshold adds beyond the seed is more often on target than random users of the same size
    assert strict["added_precision"] > m["random sim>=0.2"]["added_precision"]
    assert "lookalike sim>=0.2" in lookalike_table(res)


def test_eval_cli_prints_the_lookalike_sweep(world):
    r = subprocess.run([sys.executable, "-m", "murmur.cli", "ads", "eval", "--world", world / "world", "--posts",
                        world / "clean.parquet", "--embedder", "lsa", "--lookalike-sizes", "2",
                        "--lookalike-similarities", "0.15"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "lookalike x2" in r.stdout and "random x2" in r.stdout and "interest" in r.stdout
    assert "lookalike sim>=0.15" in r.stdout
    r = subprocess.run([sys.executable, "-m", "murmur.cli", "ads", "eval", "--world", world / "world", "--posts",
                        world / "clean.parquet", "--embedder", "lsa", "--lookalike-sizes", "0.5"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "lookalike-sizes" in r.stderr and "Traceback" not in r.stderr
