"""The packed-documents task: whole documents with a per-token loss mask, packed into rows.

What chat fine-tuning trains on (``murmur.chat.sft`` turns conversations into :class:`Example`s:
token ids, and per token whether the model learns to produce it), but nothing here knows about
chat. Starting point: a model directory's weights.

Data source: epoch ``e`` shuffles the examples with a generator seeded by ``(seed, e)`` and packs
them into rows of ``seq_len`` tokens (first fit, :func:`pack_rows`); the stream of rows is the
concatenation of the epochs, and global batch ``index`` is rows ``index * G .. index * G + G``.
Documents in a row do not see each other: positions restart at 0 for each, and the model's
``doc_ids`` argument makes attention block-diagonal, so each trains exactly as it would alone.

Loss: cross-entropy over the masked (trained) tokens only, averaged over all of them in an optimizer
step (not per row), so long answers weigh by their length: each micro-batch's weight is its share
of the step's trained tokens over every process.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from murmur.model import ModelConfig
from murmur.train.task import IGNORE_INDEX, BatchPlan, TokenBatch, lm_loss


@dataclass
class Example:
    """One document: ids and the per-token training mask (int32 / bool arrays)."""

    ids: np.ndarray
    trained: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_labels(self) -> int:
        """Targets with a loss: token ``i + 1`` is a target of position ``i`` when it is trained."""
        return int(self.trained[1:].sum())


def pack_rows(lengths: Sequence[int], capacity: int, order: Sequence[int], window: int = 64) -> list[list[int]]:
    """Group document indices (taken in ``order``) into rows of at most ``capacity`` tokens.

    First fit over the ``window`` most recently opened rows: a document goes into the first open
    row with room, else opens a new one; when more than ``window`` rows are open the oldest is
    closed. Every index appears in exactly one row, in ``order`` within it.
    """
    done: list[list[int]] = []
    open_rows: list[tuple[list[int], list[int]]] = []  # ([free tokens], indices)
    for i in order:
        n = lengths[i]
        if n > capacity:
            raise ValueError(f"document {i} has {n} tokens, more than a row of {capacity}")
        for free, items in open_rows:
            if free[0] >= n:
                free[0] -= n
                items.append(i)
                break
        else:
            open_rows.append(([capacity - n], [i]))
            if len(open_rows) > window:
                done.append(open_rows.pop(0)[1])
    done.extend(items for _, items in open_rows)
    return done


def make_batch(examples: Sequence[Example], rows: Sequence[Sequence[int]], seq_len: int, pad_id: int,
               weight: float = 1.0) -> TokenBatch:
    """Lay out ``rows`` (lists of example indices) as a :class:`TokenBatch` with positions and document ids.

    Labels are the next token where it is a trained token of the same document, else ``IGNORE_INDEX``;
    padding after the last document is a document of its own.
    """
    R = len(rows)
    tokens = np.full((R, seq_len), pad_id, dtype=np.int64)
    labels = np.full((R, seq_len), IGNORE_INDEX, dtype=np.int64)
    positions = np.zeros((R, seq_len), dtype=np.int64)
    doc = np.zeros((R, seq_len), dtype=np.int64)
    for r, row in enumerate(rows):
        at = 0
        for d, i in enumerate(row):
            ex = examples[i]
            n = len(ex)
            tokens[r, at:at + n] = ex.ids
            labels[r, at:at + n - 1] = np.where(ex.trained[1:], ex.ids[1:], IGNORE_INDEX)
            positions[r, at:at + n] = np.arange(n)
            doc[r, at:at + n] = d
            at += n
        positions[r, at:] = np.arange(seq_len - at)
        doc[r, at:] = len(row)
    t = [torch.from_numpy(a) for a in (tokens, labels, positions, doc)]
    return TokenBatch(t[0], t[1], t[2], t[3], weight)


class PackedStream:
    """The training rows of every epoch, in order; the rows of step ``s`` depend only on (seed, s).

    Epoch ``e`` shuffles the examples with a generator seeded by ``(seed, e)`` and packs them;
    the stream is the concatenation of the epochs. Only row counts of past epochs are kept.
    """

    def __init__(self, examples: Sequence[Example], seq_len: int, seed: int, pack: bool = True):
        self.examples, self.seq_len, self.seed, self.pack = examples, seq_len, seed, pack
        self.lengths = [len(e) for e in examples]
        self._counts: list[int] = []
        self._cache: dict[int, list[list[int]]] = {}

    def epoch_rows(self, epoch: int) -> list[list[int]]:
        if epoch not in self._cache:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.examples)).tolist()
            rows = pack_rows(self.lengths, self.seq_len, order) if self.pack else [[i] for i in order]
            if len(self._cache) >= 2:
                self._cache.pop(min(self._cache))
            self._cache[epoch] = rows
        return self._cache[epoch]

    def rows_in_epoch(self, epoch: int) -> int:
        while len(self._counts) <= epoch:
            self._counts.append(len(self.epoch_rows(len(self._counts))))
        return self._counts[epoch]

    def locate(self, row: int) -> tuple[int, int]:
        """(epoch, index within it) of global row ``row``."""
        epoch = 0
        while row >= self.rows_in_epoch(epoch):
            row -= self.rows_in_epoch(epoch)
            epoch += 1
        return epoch, row

    def rows(self, start: int, count: int) -> list[list[int]]:
        out: list[list[int]] = []
        epoch, i = self.locate(start)
        while len(out) < count:
            rows = self.epoch_rows(epoch)
            out.extend(rows[i: i + count - len(out)])
            epoch, i = epoch + 1, 0
        return out

    def epochs_at(self, rows_done: int) -> float:
        """How many passes over the data ``rows_done`` rows make (fractional)."""
        epoch, i = self.locate(rows_done)
        return epoch + i / max(self.rows_in_epoch(epoch), 1)


class PackedTask:
    """Packed documents with a loss mask, starting from given weights (see the module doc)."""

    name = "sft"

    def __init__(self, model_cfg: ModelConfig, weights: dict[str, torch.Tensor], tokenizer: Any,
                 tokenizer_dir: str | Path, train: Sequence[Example], val: Sequence[Example], seq_len: int,
                 seed: int = 0, pack: bool = True, fingerprint: dict[str, Any] | None = None,
                 source: str = "", about: str = ""):
        self.model_cfg, self.tokenizer, self.tokenizer_dir = model_cfg, tokenizer, Path(tokenizer_dir)
        self.train_examples, self.val_examples = list(train), list(val)
        self.seq_len, self.pack = seq_len, pack
        self.stream = PackedStream(self.train_examples, seq_len, seed, pack)
        self._weights: dict[str, torch.Tensor] | None = weights
        self._fingerprint = fingerprint or {}
        self.source, self.about = source, about

    def initial_weights(self) -> dict[str, torch.Tensor] | None:
        weights, self._weights = self._weights, None  # handed over once; the trainer's model holds them
        return weights

    def rows_per_epoch(self) -> int:
        return self.stream.rows_in_epoch(0)

    def epochs_at(self, rows: int) -> float:
        return self.stream.epochs_at(rows)

    def _split(self, examples: Sequence[Example], rows: list[list[int]], plan: BatchPlan, total: int
               ) -> list[TokenBatch]:
        mine = plan.my_rows(rows)
        out = []
        for i in range(0, len(mine), plan.micro_batch):
            part = mine[i:i + plan.micro_batch]
            n = sum(examples[j].n_labels for row in part for j in row)
            out.append(make_batch(examples, part, self.seq_len, self.tokenizer.pad_id, n / max(total, 1)))
        return out

    def batches(self, index: int, plan: BatchPlan) -> list[TokenBatch]:
        rows = self.stream.rows(index * plan.global_batch, plan.global_batch)
        total = sum(self.train_examples[j].n_labels for row in rows for j in row)
        return self._split(self.train_examples, rows, plan, total)

    def eval_batches(self, plan: BatchPlan, count: int) -> list[TokenBatch]:
        if not self.val_examples or count <= 0:
            return []
        order = range(len(self.val_examples))
        lengths = [len(e) for e in self.val_examples]
        rows = pack_rows(lengths, self.seq_len, order) if self.pack else [[i] for i in order]
        rows = rows[: plan.micro_batch * count]
        rows = rows[: len(rows) - len(rows) % plan.dp_size]  # the same number of passes on every process
        return self._split(self.val_examples, rows, plan, 1)

    def loss(self, model: nn.Module, batch: TokenBatch) -> torch.Tensor:
        return lm_loss(model, batch)

    def eval_count(self, batch: TokenBatch) -> int:
        return batch.n_labels

    def bits_per_byte(self, val_loss: float) -> None:
        return None

    def fingerprint(self) -> dict[str, Any]:
        return dict(self._fingerprint)

    def describe(self) -> str:
        rows = self.rows_per_epoch()
        tokens = sum(len(e) for e in self.train_examples)
        fill = tokens / max(rows * self.seq_len, 1)
        about = f"; {self.about}" if self.about else ""
        return (f"{len(self.train_examples):,} train / {len(self.val_examples):,} val documents{about}; "
                f"{rows:,} rows of {self.seq_len} per epoch ({fill:.0%} filled)")

    def start(self) -> str:
        return f"from {self.source}" if self.source else "from the given weights"
