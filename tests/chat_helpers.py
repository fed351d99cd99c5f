"""Shared pieces of the chat tests: a few conversations, a tokenizer that knows their words, a micro model."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

CONVERSATIONS = [
    [{"role": "user", "content": "who are you?"}, {"role": "assistant", "content": "I am murmur."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "what can you do?"},
     {"role": "assistant", "content": "I write posts."}, {"role": "user", "content": "and replies?"},
     {"role": "assistant", "content": "Yes, replies too."}],
    [{"role": "user", "content": "¿quién eres?"}, {"role": "assistant", "content": "Soy murmur."}],
    [{"role": "user", "content": "write a post about pizza"},
     {"role": "assistant", "content": "Pizza at the park with friends #food"}],
    [{"role": "user", "content": "say <|end|> please"}, {"role": "assistant", "content": "ok: <|end|> is text"}],
]
MICRO = dict(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64, max_seq_len=64)


def write_jsonl(path: Path, conversations: list) -> Path:
    path.write_text("".join(json.dumps({"messages": c}, ensure_ascii=False) + "\n" for c in conversations),
                    encoding="utf-8")
    return path


def make_tokenizer(root: Path, vocab_size: int = 320) -> Path:
    """A tokenizer trained on the conversations' words (plus filler posts)."""
    from train_helpers import make_posts

    from murmur.tokenizer import TokenizerConfig, train_tokenizer

    texts = [m["content"] for c in CONVERSATIONS for m in c] * 20 + make_posts(300)["text"]
    posts = root / "tok_posts.parquet"
    root.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"post_id": [f"t{i}" for i in range(len(texts))], "text": texts}), posts)
    out = root / "tokenizer"
    train_tokenizer(posts, out, TokenizerConfig(vocab_size=vocab_size, val_fraction=0.0))
    return out


def make_base_model(root: Path, tokenizer_dir: Path, seed: int = 0, **overrides: object) -> Path:
    """A randomly initialised micro model saved as a model directory (stands in for a pretrained run)."""
    from murmur.model import ModelConfig, Transformer
    from murmur.tokenizer import load_tokenizer
    from murmur.train.checkpoint import save_inference_model

    vocab = load_tokenizer(tokenizer_dir).vocab_size
    cfg = ModelConfig(vocab_size=vocab, **{**MICRO, **overrides}).resolved()
    torch.manual_seed(seed)
    return save_inference_model(root / "base", Transformer(cfg), cfg, tokenizer_dir)
