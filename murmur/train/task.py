"""What the one trainer varies: a training *task* is a data source plus a loss function.

:class:`murmur.train.trainer.Trainer` owns everything a run shares (processes and layouts, the
optimizer and schedule, the loss guard, checkpoints and exact resume, evaluation, metrics, the
final model). A task supplies the rest, as torchtitan varies the parts of its one trainer:

- **where the model starts**: its :class:`~murmur.model.ModelConfig`, its tokenizer, and the
  weights to start from (``None``: a fresh seeded init, as in pretraining; a model directory's
  weights for fine-tuning);
- **the data source**: :meth:`Task.batches` returns this process's micro-batches of global batch
  ``index``. It must depend on ``(seed, index)`` and the :class:`BatchPlan` only, so a checkpoint's
  position is the index alone, a resumed run reads exactly what the uninterrupted one would, and
  the rows of all processes together are the same whatever their number. Each micro-batch carries
  its ``weight``: its share of the step's objective over every process (they sum to 1);
- **where its data changes on purpose** (optional ``data_changes``: batch indices, e.g. a
  curriculum's next stage): the loss guard starts its running mean over there, so a new stage's
  higher loss is not taken for a divergence;
- **the loss**: :meth:`Task.loss` is the mean loss of one micro-batch, computed with the (possibly
  sharded, compiled) model. The trainer backpropagates ``loss * weight * dp_size`` (data-parallel
  gradient reduction averages) so the step minimises the task's objective exactly as one process
  would.

Two tasks exist: pretraining (:class:`murmur.train.data.PretrainTask`: random windows of token
shards, next-token loss) and chat fine-tuning (:class:`murmur.train.packing.PackedTask`: whole
documents packed into rows, block-diagonal attention, loss on the masked tokens only). A third,
such as contrastive embedding training on pairs with in-batch negatives, is a new data source and
loss function: a class with these methods, handed to ``Trainer(cfg, task)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from murmur.model import ModelConfig

IGNORE_INDEX = -100  # Transformer.forward's default ignore_index: no loss on this target


@dataclass(frozen=True)
class BatchPlan:
    """How a step's global batch is cut: rows per step over all processes, rows per pass, and this
    process's data-parallel rank among ``dp_size`` (tensor-parallel ranks share a rank)."""

    global_batch: int
    micro_batch: int
    dp_rank: int = 0
    dp_size: int = 1

    def my_rows(self, rows: list[Any]) -> list[Any]:
        """This process's share of a step's rows: every ``dp_size``-th from ``dp_rank``."""
        return rows[self.dp_rank::self.dp_size]


@dataclass
class TokenBatch:
    """Rows of tokens and their targets, each [rows, seq_len]; what both language-model tasks feed.

    ``positions`` and ``doc_ids`` are set for packed rows (positions restart at 0 per document,
    attention stays within a document); ``weight`` is the batch's share of its step's objective.
    """

    tokens: torch.Tensor
    labels: torch.Tensor
    positions: torch.Tensor | None = None
    doc_ids: torch.Tensor | None = None
    weight: float = 1.0

    @property
    def n_labels(self) -> int:
        """Targets that carry a loss."""
        return int((self.labels != IGNORE_INDEX).sum())

    def to(self, device: torch.device) -> TokenBatch:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return TokenBatch(move(self.tokens), move(self.labels), move(self.positions), move(self.doc_ids),
                          self.weight)


def lm_loss(model: nn.Module, batch: TokenBatch) -> torch.Tensor:
    """Mean next-token cross-entropy over the batch's targets (packed documents kept apart)."""
    if batch.doc_ids is None and batch.positions is None:
        return model(batch.tokens, batch.labels)
    return model(batch.tokens, batch.labels, positions=batch.positions, doc_ids=batch.doc_ids,
                 ignore_index=IGNORE_INDEX)


class Task(Protocol):
    """A training task: the variation point of :class:`murmur.train.trainer.Trainer` (module doc)."""

    name: str                 # "train", "sft": the log lines' prefix
    model_cfg: ModelConfig
    tokenizer: Any
    tokenizer_dir: Path       # copied into the final model directory
    seq_len: int              # tokens per row

    def initial_weights(self) -> dict[str, torch.Tensor] | None:
        """Whole (unsharded) weights to start from, or None for the seeded random init."""

    def rows_per_epoch(self) -> int:
        """Rows in one pass over the training data (sets ``steps`` from ``epochs``)."""

    def epochs_at(self, rows: int) -> float:
        """Passes over the training data that ``rows`` rows make."""

    def batches(self, index: int, plan: BatchPlan) -> list[Any]:
        """This process's micro-batches of global batch ``index`` (each with ``weight`` and ``to``)."""

    def eval_batches(self, plan: BatchPlan, count: int) -> list[Any]:
        """This process's fixed validation micro-batches (the same number on every process)."""

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """The mean loss of one micro-batch."""

    def eval_count(self, batch: Any) -> int:
        """What a validation batch's mean loss averages over (its weight in the validation loss)."""

    def bits_per_byte(self, val_loss: float) -> float | None:
        """The validation loss in bits per byte of text, where the task can tell."""

    def fingerprint(self) -> dict[str, Any]:
        """Identifies the training data; saved in checkpoints and compared on resume."""

    def describe(self) -> str:
        """The data part of the run's first log line."""

    def start(self) -> str:
        """Where a run without a checkpoint starts ("from scratch", "from runs/base")."""
