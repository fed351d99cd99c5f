"""murmur's own embedder: pairs from a tiny world (checked against its truth), a contrastive run on the one
trainer that lowers its loss, exact resume, the embedder in the search index and /v1/embeddings, bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from search_helpers import tiny_corpus

from murmur import config as cfgmod
from murmur.embed.pairs import KINDS, build_pairs, read_posts, strip_tag, tag_words, word_span
from murmur.embed.train import EmbedConfig, embed_task, embed_train
from murmur.errors import ConfigError, InputError
from murmur.pooling import pad_rows, pool, read_meta, text_ids
from murmur.train import checkpoint as ckpt
from murmur.train.contrastive import info_nce
from murmur.train.metrics import read_metrics

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(root, world dir, clean.parquet, base model dir) of a small world and a micro model on its tokenizer."""
    from chat_helpers import make_base_model

    from murmur.tokenizer import TokenizerConfig, train_tokenizer

    root = tmp_path_factory.mktemp("embed")
    world_dir, clean = tiny_corpus(root, users=80)
    train_tokenizer(clean, root / "tokenizer", TokenizerConfig(vocab_size=512, val_fraction=0.0))
    base = make_base_model(root, root / "tokenizer")
    return root, world_dir, clean, base


def micro(**kw) -> EmbedConfig:
    base = {"steps": 30, "seed": 0, "dtype": "fp32", "device": "cpu", "log_every": 5, "max_tokens": 48,
            "optim.lr": 3e-3, "schedule.warmup": 3, "batch.micro_batch": 16, "eval.val_fraction": 0.05,
            "eval.every": 0, "eval.batches": 2, "checkpoint.every": 0, "temperature": 0.1}
    base.update(kw)
    return cfgmod.load(EmbedConfig, None, [f"{k}={v}" for k, v in base.items()])


# ---------------------------------------------------------------- pairs
def test_tag_words_strip_and_spans():
    assert tag_words("MachineLearning") == "machine learning" and tag_words("carlife") == "carlife"
    assert tag_words("AI4Good") == "ai 4 good"
    assert strip_tag("Loved it #Running #runningday", "running") == "Loved it #runningday"
    assert word_span("@user the marathon training plan <url> ok", 0.0, 0.99) in ("the marathon training plan",
                                                                                "marathon training plan")
    assert word_span("@user <url> #tag", 0.5, 0.5) is None


@pytest.mark.slow
def test_pairs_agree_with_the_worlds_truth(world):
    from murmur.world.text import TOPICS
    from murmur.world.truth import load_truth

    _, world_dir, clean, _ = world
    truth = load_truth(world_dir)
    posts = read_posts(clean, KINDS)
    pairs = build_pairs(posts, KINDS, seed=0)
    assert {p.kind for p in pairs} == set(KINDS)
    assert pairs == build_pairs(posts, KINDS, seed=0)  # deterministic
    by_text: dict[str, str] = {}
    for pid, text in zip(posts["post_id"], posts["text"], strict=True):
        by_text.setdefault(text, pid)
    parent = dict(zip(posts["post_id"], posts["reply_to"], strict=True))
    checked = {k: 0 for k in KINDS}
    same_topic = both_topics = 0
    for p in pairs:
        if p.kind in ("reply", "conversation"):
            a, b = truth.post(by_text[p.query]), truth.post(by_text[p.passage])
            assert a.conversation_id == b.conversation_id, p
            if a.topic and b.topic:  # a reply to a bot's post picks its own topic
                both_topics += 1
                same_topic += a.topic == b.topic
            if p.kind == "reply":
                assert parent[b.post_id] == a.post_id
            else:
                assert parent[b.post_id] != a.post_id and parent[a.post_id] != b.post_id
        elif p.kind == "span":
            assert p.query in p.passage.replace("¿", "").replace("?", "") or \
                all(w in p.passage for w in p.query.split()), p
            assert 2 <= len(p.query.split()) <= 4
        checked[p.kind] += 1
    assert all(checked.values()), checked
    assert same_topic > 0.95 * both_topics > 0
    # hashtag pairs: the passage no longer holds the tag, and the tag belongs to the post's topic (truth)
    tag_pairs = [p for p in pairs if p.kind == "hashtag"]
    on_topic = 0
    for p in tag_pairs:
        assert p.query.startswith("#") or p.query == p.query.lower()
        if p.query.startswith("#"):
            assert p.query.lower() not in p.passage.lower().split()
    story_tags = {pid: {t.lower() for t in b.hashtags} for b in truth.bursts for pid in b.post_ids}
    for pid, tags in zip(posts["post_id"], posts["hashtags"], strict=True):
        topic = truth.post(pid).topic
        if tags and topic:  # a story's posts carry the story's own tags (truth.bursts)
            known = {x.lower() for lang in TOPICS[topic].tags.values() for x in lang} | story_tags.get(pid, set())
            on_topic += any(t.lower() in known for t in tags)
    assert on_topic > 0.8 * sum(1 for t, pid in zip(posts["hashtags"], posts["post_id"], strict=True)
                                if t and truth.post(pid).topic)


def test_pooling_and_info_nce():
    h = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    lengths = torch.tensor([3, 4])
    mean = pool(h, lengths, "mean")
    want = torch.nn.functional.normalize(torch.stack([h[0, 1:3].mean(0), h[1, 1:4].mean(0)]), dim=-1)
    assert torch.allclose(mean, want)
    assert torch.allclose(pool(h, lengths, "last"), torch.nn.functional.normalize(torch.stack([h[0, 2], h[1, 3]]), dim=-1))
    q = torch.nn.functional.normalize(torch.eye(3), dim=-1)
    assert float(info_nce(q, q, torch.arange(3), 0.05)) < 1e-6  # each query finds its passage
    assert float(info_nce(q, q.roll(1, 0), torch.arange(3), 0.05)) > 10
    # pairs that share a query are not each other's negatives
    same = info_nce(q[[0, 0]], torch.stack([q[0], q[1]]), torch.tensor([7, 7]), 0.05)
    assert torch.isfinite(same)


# ---------------------------------------------------------------- training on the one trainer
@pytest.mark.slow
def test_run_lowers_the_loss_and_writes_an_embedder(world, tmp_path):
    from murmur.search.embed import load_embedder
    from murmur.search.murmur_embedder import MurmurEmbedder

    _, _, clean, base = world
    out = tmp_path / "emb"
    result = embed_train(base, clean, out, micro(steps=300, log_every=30))  # a few passes over the pairs
    losses = [r["loss"] for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "train"]
    assert losses[-1] < 0.7 * losses[0], losses
    assert result.val_loss is not None and (out / "model.safetensors").is_file()
    assert read_meta(out).pooling == "mean" and json.loads((out / "embed.json").read_text())["train_pairs"] > 100
    emb = load_embedder(out)
    assert isinstance(emb, MurmurEmbedder) and emb.dim == 32
    texts = ["marathon training plan", "receta de paella", "marathon training plan"]
    v = emb.encode(texts)
    assert v.shape == (3, 32) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert np.allclose(v[0], v[2], atol=1e-6)
    # one text alone gives the vector it gets in a padded batch (no padding leaks in)
    assert np.allclose(emb.encode([texts[1]])[0], v[1], atol=1e-5)
    rows = [text_ids(emb.murmur_tokenizer, t, 48, "mean") for t in texts[:2]]
    tokens, lengths = pad_rows(rows, emb.murmur_tokenizer.pad_id)
    with torch.no_grad():
        ref = pool(emb.model(tokens, return_hidden=True), lengths, "mean").numpy()
    assert np.allclose(ref, v[:2], atol=1e-5)


@pytest.mark.slow
def test_resume_continues_exactly(world, tmp_path):
    from safetensors.torch import load_file

    _, _, clean, base = world
    extra = {"steps": 8, "checkpoint.every": 4, "checkpoint.keep_last": 5, "log_every": 4}
    full = tmp_path / "full"
    ref = embed_train(base, clean, full, micro(**extra))
    part = tmp_path / "part"
    (part / "checkpoints").mkdir(parents=True)
    shutil.copytree(ckpt.checkpoint_path(full, 4), ckpt.checkpoint_path(part, 4))
    shutil.copy(full / "metrics.jsonl", part / "metrics.jsonl")
    resumed = embed_train(base, clean, part, micro(resume=True, **extra))
    assert resumed.train_loss == ref.train_loss
    a, b = load_file(str(full / "model.safetensors")), load_file(str(part / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert read_meta(part).pooling == "mean"


@pytest.mark.slow
def test_data_order_depends_on_seed_and_index_only(world, tmp_path):
    from murmur.train.task import BatchPlan

    _, _, clean, base = world
    import dataclasses

    cfg = dataclasses.replace(micro(), model=str(base), data=str(clean), out=str(tmp_path / "o"))
    task = embed_task(cfg)
    one = task.batches(3, BatchPlan(8, 8))
    two = [b for r in range(2) for b in embed_task(cfg).batches(3, BatchPlan(8, 4, r, 2))]
    keys_one = sorted(one[0].keys.tolist())
    assert keys_one == sorted(k for b in two for k in b.keys.tolist())
    assert sum(b.weight for b in two) == pytest.approx(1.0)
    assert task.stream.take(5, 40) == embed_task(cfg).stream.take(5, 40)


# ---------------------------------------------------------------- search with it
@pytest.fixture(scope="module")
def trained(world, tmp_path_factory):
    _, _, clean, base = world
    out = tmp_path_factory.mktemp("trained") / "emb"
    embed_train(base, clean, out, micro(steps=10))
    return out


@pytest.mark.slow
def test_index_query_and_embeddings_route(world, trained, tmp_path):
    import httpx
    import openai
    from serve_helpers import ServerThread, make_tokenizer, micro_model

    from murmur.engine import Engine
    from murmur.search.index import SearchIndex, build_index
    from murmur.search.murmur_embedder import MurmurEmbedder
    from murmur.search.retrieve import make_request
    from murmur.search.router import build_router
    from murmur.serve.app import create_app

    _, _, clean, _ = world
    idx = tmp_path / "idx"
    build_index(clean, idx, MurmurEmbedder.load(trained), progress=False)
    with SearchIndex(idx, writable=False) as ix:  # the embedder comes back from the index's manifest
        assert isinstance(ix.embedder, MurmurEmbedder) and ix.embedder.dim == 32
        hits = ix.search(make_request("running", mode="dense", k=5))
        assert len(hits) == 5 and hits[0]["score"] >= hits[-1]["score"]
    tok = make_tokenizer(tmp_path / "tok")
    engine = Engine(micro_model(tok.vocab_size), tok, max_batch=1, name="m")
    with SearchIndex(idx) as ix:
        with ServerThread(create_app(engine, routers=[build_router(ix)])) as url:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="none")
            out = client.embeddings.create(model="murmur", input=["hello world", "hola mundo"])
            assert len(out.data) == 2 and len(out.data[0].embedding) == 32
            assert np.allclose(out.data[0].embedding, ix.embedder.encode(["hello world"])[0], atol=1e-5)
            assert out.usage.total_tokens > 2
            r = httpx.post(f"{url}/v1/embeddings", json={"input": []})
            assert r.status_code == 400 and r.json()["error"]["param"] == "input"
    engine.stop()


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "murmur.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def _one_line(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    return r.stderr


@pytest.mark.slow
def test_cli_train_and_bad_input(world, trained, tmp_path):
    from chat_helpers import make_base_model

    from murmur.pooling import EmbedderMeta, write_meta
    from murmur.search.index import build_index
    from murmur.search.murmur_embedder import MurmurEmbedder

    root, _, clean, base = world
    out = tmp_path / "cli"
    r = _cli("embed", "train", "--model", str(base), "--data", str(clean), "-o", str(out), "--pooling", "eos",
             "--steps", "2", "dtype=fp32", "batch.micro_batch=8", "max_tokens=32", "eval.batches=1")
    assert r.returncode == 0, r.stderr
    assert "trained 2 steps" in r.stdout and read_meta(out).pooling == "eos"
    assert "pooling" in _cli("embed", "train", "--knobs").stdout
    # a model directory that is missing
    assert "model directory not found" in _one_line(
        _cli("embed", "train", "--model", str(tmp_path / "nope"), "--data", str(clean), "-o", str(tmp_path / "o")))
    # posts without the columns the pairs need
    thin = tmp_path / "thin.parquet"
    pq.write_table(pa.table({"post_id": ["a", "b"], "text": ["one two three", "four five six"]}), thin)
    err = _one_line(_cli("embed", "train", "--model", str(base), "--data", str(thin), "-o", str(tmp_path / "o")))
    assert str(thin) in err and "field 'conversation_id'" in err
    assert not (tmp_path / "o").exists()
    # an index built with one embedder, queried with another of another dimension
    idx = tmp_path / "idx"
    build_index(clean, idx, MurmurEmbedder.load(trained), progress=False)
    other = make_base_model(root / "wide", root / "tokenizer", dim=48)
    write_meta(other, EmbedderMeta())
    err = _one_line(_cli("search", "query", str(idx), "running", "--mode", "dense", "--embedder", str(other)))
    assert "32-d" in err and "48-d" in err
    with pytest.raises(InputError, match="pooling"):
        (other / "embedder.json").write_text(json.dumps({"format": "murmur-embedder", "pooling": "max"}))
        read_meta(other)
    with pytest.raises(ConfigError, match="pooling"):
        micro(pooling="max")


def test_shipped_preset_and_flags():
    cfg = cfgmod.load(EmbedConfig, "embed-tiny-cpu", ["pooling=eos"])
    assert cfg.pooling == "eos" and cfg.batch.micro_batch == 64 and cfg.pairs == ["hashtag", "reply", "conversation"]
    assert cfgmod.load(EmbedConfig, "embed-tiny-cpu", ["pairs=hashtag,reply"]).pairs == ["hashtag", "reply"]
    with pytest.raises(InputError, match="unknown pair kind"):
        read_posts(REPO / "pyproject.toml", ["likes"])


def test_length_ordered_passes_give_the_same_vectors():
    """The loss runs queries and passages together in length order, each pass cut to its longest row: the
    vectors are those of one padded batch (causal attention never sees the right padding)."""
    from murmur.model import ModelConfig, Transformer
    from murmur.pooling import embed_by_length, embed_rows

    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=64, dim=32, n_layers=2, n_heads=4, max_seq_len=32)).eval()
    gen = np.random.default_rng(0)
    rows = [gen.integers(1, 64, int(n)) for n in gen.integers(1, 30, 11)]
    tokens, lengths = pad_rows(rows, 0)
    with torch.no_grad():
        ref = embed_rows(model, tokens, lengths, "mean")
        for per_pass in (1, 3, 4, 32):
            assert torch.allclose(embed_by_length(model, tokens, lengths, "mean", per_pass), ref, atol=1e-5)


@pytest.mark.slow
def test_late_pairs_join_for_the_end_of_the_run(world, tmp_path):
    """A curriculum in one run: span pairs only from late_from * steps on; a bad late_from is one line."""
    import dataclasses

    from murmur.train.task import BatchPlan

    _, _, clean, base = world
    cfg = dataclasses.replace(micro(steps=10), model=str(base), data=str(clean), out=str(tmp_path / "o"),
                              pairs=["hashtag", "reply"], late_pairs=["span"], late_from=0.6)
    task = embed_task(cfg)
    assert task.late_from == 6 and len(task.late_pairs) > len(task.train_pairs) and task.data_changes == (6,)
    early_keys = {p.key for p in task.train_pairs}
    plan = BatchPlan(16, 16)
    for index in range(6):
        assert set(task.batches(index, plan)[0].keys.tolist()) <= early_keys
    late = [k for index in range(6, 10) for k in task.batches(index, plan)[0].keys.tolist()]
    assert any(k not in early_keys for k in late)  # span queries arrive
    assert task.batches(7, plan)[0].keys.tolist() == embed_task(cfg).batches(7, plan)[0].keys.tolist()
    with pytest.raises(ConfigError, match="late_from"):
        embed_task(dataclasses.replace(cfg, late_from=1.5))


def test_the_loss_guard_starts_over_where_the_data_changes():
    from murmur.train.config import GuardSection
    from murmur.train.guard import LossGuard

    guard = LossGuard(GuardSection(spike_factor=2.0, window=20))
    for _ in range(12):
        guard.accept(1.0)
    assert guard.check(3.0) is not None  # a spike against the old pairs' losses
    guard.new_data()
    assert guard.check(3.0) is None  # the new pairs' level is judged on its own
