"""Shared fixtures for the training and generation tests: a small learnable corpus, tokenizer and shards."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

PEOPLE = ["ana", "bo", "chen", "dee", "eli", "fay"]
FOODS = ["pizza", "ramen", "tacos", "salad", "curry"]
PLACES = ["the park", "work", "home", "the beach", "school"]
TEMPLATES = [
    "{p} loves {f} at {l} #food",
    "just had {f} with {p} at {l}",
    "{p}: going to {l} today, who wants {f}?",
    "no {f} at {l} again... sad #monday",
]


def make_posts(n: int, seed: int = 0) -> dict[str, list]:
    """Short templated posts: easy to learn, so a few steps visibly lower the loss."""
    rng = random.Random(seed)
    texts = [rng.choice(TEMPLATES).format(p=rng.choice(PEOPLE), f=rng.choice(FOODS), l=rng.choice(PLACES))
             for _ in range(n)]
    return {"post_id": [f"p{seed}-{i}" for i in range(n)], "text": texts}


def build_corpus(root: Path, n_posts: int = 1500, vocab_size: int = 320, seed: int = 0) -> tuple[Path, Path]:
    """Write posts, train a tokenizer and tokenize to shards; returns (shards_dir, tokenizer_dir)."""
    from murmur.data.shards import ShardConfig, tokenize_to_shards
    from murmur.tokenizer import TokenizerConfig, train_tokenizer

    root.mkdir(parents=True, exist_ok=True)
    posts = root / "posts.parquet"
    pq.write_table(pa.table(make_posts(n_posts, seed)), posts)
    tok_dir, shards_dir = root / "tokenizer", root / "shards"
    train_tokenizer(posts, tok_dir, TokenizerConfig(vocab_size=vocab_size))
    tokenize_to_shards(posts, tok_dir, shards_dir, ShardConfig(val_fraction=0.1))
    return shards_dir, tok_dir


def micro_overrides(shards: Path, tokenizer: Path, out: Path, steps: int = 6, **extra: object) -> list[str]:
    """Overrides for a micro model (dim 32, 2 layers) that trains in well under a second."""
    base = {
        "out": str(out), "steps": steps, "seed": 0, "dtype": "fp32", "log_every": 1,
        "data.shards": str(shards), "data.tokenizer": str(tokenizer), "data.seq_len": 32,
        "model.preset": "tiny", "model.dim": 32, "model.n_layers": 2, "model.n_heads": 2, "model.n_kv_heads": 1,
        "model.ffn_dim": 64, "model.max_seq_len": 64,
        "optim.lr": 3e-3, "schedule.warmup": 2, "batch.micro_batch": 4, "batch.tokens_per_step": 256,
        "eval.every": 0, "eval.batches": 2, "eval.samples": 0, "checkpoint.every": 0, "checkpoint.keep_last": 2,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]
