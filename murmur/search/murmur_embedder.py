"""murmur's own embedder at search time: a model directory with ``embedder.json`` (``murmur embed train``).

The vectors are computed exactly as in training (:mod:`murmur.pooling`); texts are batched in
length order so little padding is run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from murmur.pooling import embed_rows, pad_rows, read_meta, text_ids
from murmur.search.embed import Batcher, intra_op_threads


class _TokenCounter:
    """``tokenizer(text)["input_ids"]``, the shape the embeddings route counts usage with."""

    def __init__(self, tokenizer: Any, max_tokens: int, pooling: str):
        self.tokenizer, self.max_tokens, self.pooling = tokenizer, max_tokens, pooling

    def __call__(self, text: str) -> dict[str, list[int]]:
        return {"input_ids": text_ids(self.tokenizer, text, self.max_tokens, self.pooling).tolist()}


class MurmurEmbedder:
    """A murmur model, pooled as its ``embedder.json`` says; unit-length float32 vectors."""

    def __init__(self, path: Path, model: torch.nn.Module, tokenizer: Any, pooling: str, max_tokens: int, name: str,
                 batch_size: int = 64):
        self.path, self.model, self.murmur_tokenizer = path, model, tokenizer
        self.pooling, self.max_tokens, self.name, self.batch_size = pooling, max_tokens, name, batch_size
        self.dim = int(model.cfg.dim)
        self.tokenizer = _TokenCounter(tokenizer, max_tokens, pooling)
        self._batcher = Batcher(self._encode)  # one forward at a time: torch already uses every core

    @classmethod
    def load(cls, path: str | Path) -> MurmurEmbedder:
        from murmur.modeldir import load_model

        path = Path(path).resolve()
        meta = read_meta(path)
        model, tokenizer, _ = load_model(path)
        return cls(path, model, tokenizer, meta.pooling, meta.max_tokens, meta.name)

    def encode(self, texts: Sequence[str], kind: str = "passage") -> np.ndarray:
        return self._batcher(texts, kind)

    def _encode(self, texts: list[str], kind: str) -> np.ndarray:
        rows = [text_ids(self.murmur_tokenizer, t, self.max_tokens, self.pooling) for t in texts]
        order = np.argsort([len(r) for r in rows], kind="stable")
        out = np.zeros((len(rows), self.dim), np.float32)
        with torch.inference_mode(), intra_op_threads(len(rows)):
            for i in range(0, len(order), self.batch_size):
                idx = order[i:i + self.batch_size]
                tokens, lengths = pad_rows([rows[j] for j in idx], self.murmur_tokenizer.pad_id)
                out[idx] = embed_rows(self.model, tokens, lengths, self.pooling).numpy()
        return out
