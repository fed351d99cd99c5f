"""The contrastive task: pairs of texts, in-batch negatives, InfoNCE; what embedding training runs.

Like :mod:`murmur.train.packing` for chat, nothing here knows where the pairs come from
(``murmur.embed.pairs`` builds them from posts). Starting point: a model directory's weights.

Data source: epoch ``e`` shuffles the pairs with a generator seeded by ``(seed, e)``; the stream of
pairs is the concatenation of the epochs, and global batch ``index`` is pairs ``index * G ..
index * G + G``; data-parallel process ``r`` of ``n`` takes every ``n``-th from ``r``. A curriculum
(``late``: a second pool of pairs from batch ``late_from`` on) reads batch ``index >= late_from`` as
batch ``index - late_from`` of the second pool's own stream (seeded by ``seed + 1``).

Loss (per micro-batch, as E5 and GTE train): each text becomes one unit vector
(:mod:`murmur.pooling`; queries and passages go through the model together, in length order, each
pass cut to its longest text, since posts are short and a batch padded to its longest wastes most
of its tokens); with ``s = q @ p.T / temperature``, the loss is the mean of the
cross-entropy of ``s`` over its rows (a query picks its passage among the batch's passages) and
over its columns (a passage picks its query). Other pairs of the batch are the negatives, except
pairs whose query is the same text (two posts with one hashtag): those are masked, not pushed apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from murmur.model import ModelConfig
from murmur.pooling import embed_by_length, pad_rows
from murmur.train.task import BatchPlan


@dataclass
class Pair:
    """Token ids of a query and its passage, and a key equal for pairs whose query is the same text."""

    query: np.ndarray
    passage: np.ndarray
    key: int


@dataclass
class PairBatch:
    q_tokens: torch.Tensor
    q_lengths: torch.Tensor
    p_tokens: torch.Tensor
    p_lengths: torch.Tensor
    keys: torch.Tensor
    weight: float = 1.0

    def to(self, device: torch.device) -> PairBatch:
        return PairBatch(self.q_tokens.to(device), self.q_lengths.to(device), self.p_tokens.to(device),
                         self.p_lengths.to(device), self.keys.to(device), self.weight)

    def __len__(self) -> int:
        return len(self.keys)


def make_pair_batch(pairs: Sequence[Pair], pad_id: int, weight: float = 1.0) -> PairBatch:
    q, ql = pad_rows([p.query for p in pairs], pad_id)
    d, dl = pad_rows([p.passage for p in pairs], pad_id)
    return PairBatch(q, ql, d, dl, torch.tensor([p.key for p in pairs], dtype=torch.int64), weight)


def info_nce(q: torch.Tensor, p: torch.Tensor, keys: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE over unit vectors q, p [B, dim]; pairs sharing a key are not negatives."""
    scores = q @ p.T / temperature
    same = (keys[:, None] == keys[None, :]) & ~torch.eye(len(keys), dtype=torch.bool, device=keys.device)
    scores = scores.masked_fill(same, float("-inf"))
    target = torch.arange(len(keys), device=q.device)
    return (F.cross_entropy(scores, target) + F.cross_entropy(scores.T, target)) / 2


class PairStream:
    """The pairs of every epoch in order; the pairs of global batch ``i`` depend only on (seed, i)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed
        self._order: dict[int, np.ndarray] = {}

    def order(self, epoch: int) -> np.ndarray:
        if epoch not in self._order:
            if len(self._order) >= 2:
                self._order.pop(min(self._order))
            self._order[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return self._order[epoch]

    def take(self, start: int, count: int) -> list[int]:
        out: list[int] = []
        while len(out) < count:
            epoch, i = divmod(start + len(out), self.n)
            out.extend(self.order(epoch)[i:i + count - len(out)].tolist())
        return out


class ContrastiveTask:
    """Pairs with in-batch negatives, starting from given weights (see the module doc)."""

    name = "embed"

    def __init__(self, model_cfg: ModelConfig, weights: dict[str, torch.Tensor], tokenizer: Any,
                 tokenizer_dir: str | Path, train: Sequence[Pair], val: Sequence[Pair], max_tokens: int,
                 pooling: str, temperature: float, seed: int = 0, fingerprint: dict[str, Any] | None = None,
                 source: str = "", about: str = "", late: Sequence[Pair] = (), late_from: int = 0):
        self.model_cfg, self.tokenizer, self.tokenizer_dir = model_cfg, tokenizer, Path(tokenizer_dir)
        self.train_pairs, self.val_pairs = list(train), list(val)
        self.seq_len, self.pooling, self.temperature = max_tokens, pooling, temperature
        self.stream = PairStream(len(self.train_pairs), seed)
        self.late_pairs, self.late_from = list(late), late_from
        self.late_stream = PairStream(len(self.late_pairs), seed + 1)
        self.data_changes = (late_from,) if self.late_pairs else ()  # the trainer's loss guard starts over there
        self._weights: dict[str, torch.Tensor] | None = weights
        self._fingerprint = fingerprint or {}
        self.source, self.about = source, about

    def initial_weights(self) -> dict[str, torch.Tensor] | None:
        weights, self._weights = self._weights, None
        return weights

    def rows_per_epoch(self) -> int:
        return len(self.train_pairs)

    def epochs_at(self, rows: int) -> float:
        return rows / max(len(self.train_pairs), 1)

    def _split(self, pairs: Sequence[Pair], plan: BatchPlan, total: int) -> list[PairBatch]:
        mine = plan.my_rows(list(pairs))
        return [make_pair_batch(mine[i:i + plan.micro_batch], self.tokenizer.pad_id,
                                len(mine[i:i + plan.micro_batch]) / max(total, 1))
                for i in range(0, len(mine), plan.micro_batch)]

    def batches(self, index: int, plan: BatchPlan) -> list[PairBatch]:
        if self.late_pairs and index >= self.late_from:
            ids = self.late_stream.take((index - self.late_from) * plan.global_batch, plan.global_batch)
            return self._split([self.late_pairs[i] for i in ids], plan, plan.global_batch)
        ids = self.stream.take(index * plan.global_batch, plan.global_batch)
        return self._split([self.train_pairs[i] for i in ids], plan, plan.global_batch)

    def eval_batches(self, plan: BatchPlan, count: int) -> list[PairBatch]:
        rows = self.val_pairs[: plan.micro_batch * plan.dp_size * max(count, 0)]
        rows = rows[: len(rows) - len(rows) % (plan.micro_batch * plan.dp_size)] or \
            rows[: len(rows) - len(rows) % plan.dp_size]  # the same passes on every process
        return self._split(rows, plan, 1) if rows else []

    def loss(self, model: nn.Module, batch: PairBatch) -> torch.Tensor:
        width = max(batch.q_tokens.shape[1], batch.p_tokens.shape[1])
        pad = self.tokenizer.pad_id
        tokens = torch.cat([F.pad(batch.q_tokens, (0, width - batch.q_tokens.shape[1]), value=pad),
                            F.pad(batch.p_tokens, (0, width - batch.p_tokens.shape[1]), value=pad)])
        vecs = embed_by_length(model, tokens, torch.cat([batch.q_lengths, batch.p_lengths]), self.pooling)
        return info_nce(vecs[:len(batch)], vecs[len(batch):], batch.keys, self.temperature)

    def eval_count(self, batch: PairBatch) -> int:
        return len(batch)

    def bits_per_byte(self, val_loss: float) -> None:
        return None

    def fingerprint(self) -> dict[str, Any]:
        return dict(self._fingerprint)

    def describe(self) -> str:
        about = f" ({self.about})" if self.about else ""
        if self.late_pairs:
            about += f"; from step {self.late_from + 1}: {len(self.late_pairs):,} train pairs"
        return (f"{len(self.train_pairs):,} train / {len(self.val_pairs):,} val pairs{about}; {self.pooling} pooling, "
                f"temperature {self.temperature}")

    def start(self) -> str:
        return f"from {self.source}" if self.source else "from the given weights"
