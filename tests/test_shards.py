import json
import os
import random
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from murmur.data.shards import ShardConfig, ShardManifest, tokenize_to_shards
from murmur.data.shards_format import Shard, TokenShards, dtype_for_vocab
from murmur.data.split import is_val, val_mask
from murmur.errors import InputError
from murmur.tokenizer import (
    DOC_ID,
    SPECIAL_TOKENS,
    TokenizerConfig,
    load_tokenizer,
    new_tokenizer,
    save_tokenizer,
    special_added_tokens,
    train_tokenizer,
)

VOCAB = ("the a to and of in is it you that for on with this my just so what love today new people time "
         "le la les de et est pas très bien ça é ñ 今日 は 東京 😀 🎉 #ai @bob 42 https://ex.com/x").split()


def make_posts(n: int, seed: int = 0) -> dict[str, list]:
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(VOCAB) for _ in range(rng.randint(1, 40))) for _ in range(n)]
    texts[3] = "a post that types <|doc|> and <|end|> literally"
    texts[5] = ""  # no text: skipped
    return {"post_id": [f"s{seed}-{i}" for i in range(n)], "lang": ["en"] * n, "text": texts}


def write_posts(path, cols):
    pq.write_table(pa.table(cols), path, row_group_size=700)
    return path


def dir_bytes(d):
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


@pytest.fixture(scope="module")
def posts(tmp_path_factory):
    return write_posts(tmp_path_factory.mktemp("shards") / "posts.parquet", make_posts(2000))


@pytest.fixture(scope="module")
def tok_dir(posts):
    out = posts.parent / "tok"
    train_tokenizer([posts], out, TokenizerConfig(vocab_size=400, val_fraction=0.05))
    return out


@pytest.fixture(scope="module")
def shards(posts, tok_dir):
    out = posts.parent / "shards"
    tokenize_to_shards(posts, tok_dir, out, ShardConfig(tokens_per_shard=5000, val_fraction=0.05))
    return out


def test_documents_decode_to_the_posts_in_their_split(posts, tok_dir, shards):
    tok = load_tokenizer(tok_dir)
    rows = [r for r in pq.read_table(posts).to_pylist() if r["text"]]
    for split, want_val in (("train", False), ("val", True)):
        ts = TokenShards(shards, split)
        assert ts.vocab_size == tok.vocab_size == 400 and ts.doc_token_id == DOC_ID
        docs = ts.documents()
        expected = [r["text"] for r in rows if is_val(r["post_id"], 0.05) == want_val]
        assert len(docs) == len(expected) > 0
        for doc, text in zip(docs, expected, strict=True):
            assert doc[0] == DOC_ID and DOC_ID not in doc[1:]  # a typed "<|doc|>" is not a boundary
            assert tok.decode(doc[1:]) == text
            assert doc[1:].tolist() == tok.encode(text)
        assert ts.num_tokens == sum(len(d) for d in docs)


def test_manifest(posts, tok_dir, shards):
    m = json.loads((shards / "manifest.json").read_text())
    tok = load_tokenizer(tok_dir)
    assert (m["vocab_size"], m["dtype"], m["doc_token_id"], m["val_fraction"]) == (400, "uint16", 0, 0.05)
    assert m["tokenizer_sha256"] == tok.sha256
    assert m["skipped_posts"] == 1
    rows = pq.read_table(posts).to_pylist()
    val = val_mask([r["post_id"] for r in rows], 0.05)
    for split, sel in (("train", ~val), ("val", val)):
        s = m["splits"][split]
        texts = [r["text"] for r, keep in zip(rows, sel, strict=True) if keep and r["text"]]
        assert s["docs"] == len(texts) == sum(x["docs"] for x in s["shards"])
        assert s["bytes"] == sum(len(t.encode()) for t in texts)
        assert s["tokens"] == sum(x["tokens"] for x in s["shards"]) == TokenShards(shards, split).num_tokens
    loaded = ShardManifest.load(shards)
    assert loaded.train_docs == m["splits"]["train"]["docs"] and loaded.val_tokens == m["splits"]["val"]["tokens"]
    assert m["tokenizer"] == str(tok_dir.resolve()) and m["source"] == str(posts.resolve())
    assert "train" in loaded.describe() and "bytes/token" in loaded.describe()


def test_shards_hold_whole_documents_and_fill_to_the_limit(shards):
    m = json.loads((shards / "manifest.json").read_text())
    infos = m["splits"]["train"]["shards"]
    assert len(infos) > 3
    for info in infos:
        s = Shard.open(shards / info["file"])
        assert s.tokens.dtype == np.uint16 and s.tokens[0] == DOC_ID and s.doc_starts[0] == 0
        assert np.all(s.tokens[s.doc_starts.astype(np.int64)] == DOC_ID)
        assert int((np.asarray(s.tokens) == DOC_ID).sum()) == len(s.doc_starts) == info["docs"]
    # each shard but the last is closed by the document that reaches the limit
    for info in infos[:-1]:
        assert info["tokens"] >= 5000
        assert int(Shard.open(shards / info["file"]).doc_starts[-1]) < 5000


def test_output_is_identical_for_any_workers_and_batch_size(posts, tok_dir, shards, tmp_path):
    expected = dir_bytes(shards)
    for workers, batch_size in ((2, 333), (1, 2000)):
        cfg = ShardConfig(tokens_per_shard=5000, val_fraction=0.05, batch_size=batch_size)
        m = tokenize_to_shards(posts, tok_dir, tmp_path / f"w{workers}", cfg, workers=workers)
        assert m.splits["train"].docs > 0 and m.seconds is not None
        assert dir_bytes(tmp_path / f"w{workers}") == expected  # manifest included


def test_val_fraction_zero_gives_an_empty_val_split(posts, tok_dir, tmp_path):
    m = tokenize_to_shards(posts, tok_dir, tmp_path / "s", ShardConfig(val_fraction=0.0))
    assert m.splits["val"].docs == 0 and m.splits["val"].shards == []
    assert len(m.splits["train"].shards) == 1
    assert TokenShards(tmp_path / "s", "val").num_tokens == 0


def test_big_vocabulary_writes_uint32(posts, tmp_path):
    assert dtype_for_vocab(65536) == np.uint16 and dtype_for_vocab(65537) == np.uint32
    # a tokenizer with 70,000 ids: bytes, a few merges, and unused filler tokens
    from tokenizers import models, pre_tokenizers

    vocab = {s: i for i, s in enumerate(SPECIAL_TOKENS)}
    for ch in pre_tokenizers.ByteLevel.alphabet():
        vocab.setdefault(ch, len(vocab))
    merges = [("t", "h"), ("th", "e")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    while len(vocab) < 70_000:
        vocab[f"filler{len(vocab)}"] = len(vocab)
    inner = new_tokenizer()
    inner.model = models.BPE(vocab=vocab, merges=merges)
    inner.add_special_tokens(special_added_tokens())
    tok = save_tokenizer(inner, tmp_path / "bigtok")
    assert tok.vocab_size == 70_000 and tok.encode("the")[0] == vocab["the"]
    m = tokenize_to_shards(posts, tmp_path / "bigtok", tmp_path / "s", ShardConfig(val_fraction=0.05))
    assert m.dtype == "uint32"
    ts = TokenShards(tmp_path / "s", "train")
    assert ts.shards[0].tokens.dtype == np.uint32
    first = ts.documents()[0]
    text = next(r["text"] for r in pq.read_table(posts).to_pylist() if not is_val(r["post_id"], 0.05))
    assert first.tolist() == [DOC_ID, *tok.encode(text)]


def test_bad_inputs(posts, tok_dir, tmp_path):
    (tmp_path / "not_tok").mkdir()
    with pytest.raises(InputError, match="not a tokenizer directory"):
        tokenize_to_shards(posts, tmp_path / "not_tok", tmp_path / "s")
    no_id = write_posts(tmp_path / "no_id.parquet", {"text": ["hello"]})
    with pytest.raises(InputError, match="field 'post_id'"):
        tokenize_to_shards(no_id, tok_dir, tmp_path / "s")
    empty = write_posts(tmp_path / "empty.parquet", {"post_id": pa.array([], pa.string()),
                                                      "text": pa.array([], pa.string())})
    with pytest.raises(InputError, match="no posts with text"):
        tokenize_to_shards(empty, tok_dir, tmp_path / "s")
    blank = write_posts(tmp_path / "blank.parquet", {"post_id": ["1", "2"], "text": ["", None]})
    with pytest.raises(InputError, match="no posts with text"):
        tokenize_to_shards(blank, tok_dir, tmp_path / "s")
    assert not (tmp_path / "s").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".s.")]  # no temp dir left behind


def test_cli_tokenize(posts, tok_dir, tmp_path):
    out = tmp_path / "cli_shards"
    r = subprocess.run([sys.executable, "-m", "murmur.cli", "data", "tokenize", str(posts), "--tokenizer",
                        str(tok_dir), "-o", str(out), "--workers", "2", "tokens_per_shard=3000"],
                       capture_output=True, text=True, timeout=120, env={**os.environ})
    assert r.returncode == 0, r.stderr
    assert "train" in r.stdout and "val" in r.stdout
    assert json.loads((out / "manifest.json").read_text())["tokens_per_shard"] == 3000
    r = subprocess.run([sys.executable, "-m", "murmur.cli", "data", "tokenize", str(posts), "--tokenizer",
                        str(tmp_path), "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "murmur: error:" in r.stderr
