"""The piece-by-piece encoder gives the ids of ``tokenizers``' own ``encode_batch``, post for post."""

import json
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer, pre_tokenizers

from murmur.data import piece_encode
from murmur.data.piece_encode import PieceEncoder, supports
from murmur.data.sources import ingest
from murmur.tokenizer import TokenizerConfig, train_tokenizer
from murmur.world.generate import WorldConfig, generate_world

# the characters that decide the split: apostrophes and the contractions' letters, letters of several
# scripts, numbers of several kinds, every kind of white space, punctuation, emoji, combining marks,
# characters that case-fold to ASCII letters, and special-token strings
ALPHABET = list("'sStTmMdDrReEvVlLx") + ["'s", "'RE", "'ll", "'Ve", "'d"] + list(
    "aZéÉßñøłжЖ中日本語한국어アイ") + list("0123456789٣٤۵²³½Ⅻ") + list(
    " \t\n\r\x0b\x0c\x85\xa0\u1680\u2000\u2028\u2029\u202f\u3000\x1c\x1f") + list(
    "!?.,;:-_()[]{}\"#@$%&*+=/\\|~^`<>") + ["😀", "🎉", "👍🏽", "\u200d", "\u0301", "\u0308", "ſ", "K", "ﬆ", "ẗ",
                                        "İ", "<|doc|>", "<|end|>", "  ", "\r\n", " \n ", "https://ex.com/a?b=1"]


@pytest.fixture(scope="module")
def world_posts(tmp_path_factory):
    root = tmp_path_factory.mktemp("piece")
    generate_world(root / "world", WorldConfig(users=250, seed=7), progress=False)
    posts = root / "posts.parquet"
    ingest([str(root / "world" / "archives"), str(root / "world" / "api")], posts)
    train_tokenizer([posts], root / "tok", TokenizerConfig(vocab_size=2000))
    tok = Tokenizer.from_file(str(root / "tok" / "tokenizer.json"))
    tok.encode_special_tokens = True
    return pq.read_table(posts, columns=["text"]).column("text").combine_chunks(), tok


def reference(tok, texts):
    encs = tok.encode_batch(texts, add_special_tokens=False)
    return [e.ids for e in encs]


def per_text(flat, lens):
    ends = np.cumsum(lens)
    return [flat[e - n:e].tolist() for e, n in zip(ends, lens, strict=True)]


def test_world_posts_same_ids(world_posts):
    texts, tok = world_posts
    assert supports(tok.to_str())
    enc = PieceEncoder(tok)
    texts = texts.filter(pa.compute.is_valid(texts))
    assert len(texts) > 2000
    want = reference(tok, texts.to_pylist())
    for start in range(0, len(texts), 700):  # batch after batch: the table's pieces are reused
        flat, lens = enc.encode(texts.slice(start, 700))
        assert flat.dtype == np.uint32
        assert per_text(flat, lens) == want[start:start + 700]
    assert enc.used[2] > 0


@pytest.mark.parametrize("seed", range(4))
def test_random_text_same_ids(world_posts, seed):
    _, tok = world_posts
    rng = random.Random(seed)
    texts = ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 30))) for _ in range(3000)]
    texts += ["", " ", "\n", "'", "'s", "a'", "x'ſ", "'ﬆ", "'lé", "  a", "a  ", "1234567", "\r\n\r\n  x"]
    flat, lens = PieceEncoder(tok).encode(pa.array(texts, pa.large_string() if seed % 2 else pa.string()))
    assert per_text(flat, lens) == reference(tok, texts)


def test_table_cleared_when_full(world_posts, monkeypatch):
    texts, tok = world_posts
    texts = texts.filter(pa.compute.is_valid(texts)).slice(0, 1500)
    monkeypatch.setattr(piece_encode, "_SLOTS", 256)  # far fewer slots than pieces: cleared over and over
    monkeypatch.setattr(piece_encode, "_MAX_KEY_BYTES", 4096)
    enc = PieceEncoder(tok)
    want = reference(tok, texts.to_pylist())
    for start in range(0, len(texts), 50):
        flat, lens = enc.encode(texts.slice(start, 50))
        assert per_text(flat, lens) == want[start:start + 50]
    flat, lens = enc.encode(texts)  # one batch with more new pieces than the table holds: tokenizers' ids
    assert per_text(flat, lens) == want


def test_other_tokenizers_not_taken(world_posts):
    _, tok = world_posts
    other = Tokenizer.from_str(tok.to_str())
    other.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    assert not supports(other.to_str())
    cfg = json.loads(tok.to_str())
    cfg["model"]["dropout"] = 0.1
    assert not supports(json.dumps(cfg))
    assert not supports("not json")
