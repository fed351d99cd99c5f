"""The pretraining task: a model of a named shape, from random weights, on random windows of token shards.

Data source: global batch ``index`` is ``global_batch`` windows whose start offsets come from a
generator seeded by ``(seed, index)`` (:mod:`murmur.train.sampler`); data-parallel process ``r`` of
``n`` takes rows ``r::n``. Loss: next-token cross-entropy over every token. Validation: fixed, evenly
spaced windows of the val split, also reported in bits per byte.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from murmur.data.shards_format import TokenShards
from murmur.errors import ConfigError, InputError
from murmur.model import ModelConfig, preset
from murmur.train.config import TrainConfig
from murmur.train.data import WindowSampler, bits_per_byte, eval_batches, split_bytes
from murmur.train.task import BatchPlan, TokenBatch, lm_loss


def model_config(cfg: TrainConfig, vocab_size: int) -> ModelConfig:
    """The model shape: the preset, the section's overrides, and the tokenizer's vocabulary."""
    overrides = cfg.model.overrides()
    vocab = overrides.pop("vocab_size", vocab_size)
    if vocab < vocab_size:
        raise ConfigError(f"model.vocab_size ({vocab}) is smaller than the tokenizer's vocabulary ({vocab_size})")
    try:
        mcfg = preset(cfg.model.preset, vocab_size=vocab, **overrides)
    except TypeError as e:
        raise ConfigError(f"model: {e}") from None
    if cfg.data.seq_len > mcfg.max_seq_len:
        raise ConfigError(f"data.seq_len ({cfg.data.seq_len}) is longer than the model's max_seq_len "
                          f"({mcfg.max_seq_len}); lower data.seq_len or raise model.max_seq_len")
    return mcfg


def load_shard_tokenizer(source: str, shards: TokenShards) -> tuple[Path, Any]:
    """The tokenizer in ``source`` (or the one the manifest names), checked against the shards."""
    from murmur.tokenizer import load_tokenizer

    source = source or shards.manifest.get("tokenizer", "")
    if not source:
        raise ConfigError("data.tokenizer is not set and the shard manifest does not name a tokenizer")
    tok = load_tokenizer(source)
    if tok.vocab_size != shards.vocab_size:
        raise InputError(f"the tokenizer in {source} has {tok.vocab_size:,} tokens but the shards were made with "
                         f"a vocabulary of {shards.vocab_size:,}; use the tokenizer the shards were made with",
                         shards.directory / "manifest.json", field="vocab_size")
    want = shards.manifest.get("tokenizer_sha256")
    if want and tok.sha256 != want:
        raise InputError(f"the tokenizer in {source} is not the one the shards were made with "
                         "(tokenizer_sha256 differs)", shards.directory / "manifest.json", field="tokenizer_sha256")
    return Path(tok.path or source), tok


class PretrainTask:
    """Random windows of token shards, next-token loss (see the module doc and :mod:`murmur.train.task`)."""

    name = "train"

    def __init__(self, cfg: TrainConfig):
        if not cfg.data.shards:
            raise ConfigError("data.shards is not set (the directory `murmur data tokenize` wrote)")
        self.cfg = cfg
        self.train_shards = TokenShards(cfg.data.shards, "train")
        self.val_shards = TokenShards(cfg.data.shards, "val")
        self.tokenizer_dir, self.tokenizer = load_shard_tokenizer(cfg.data.tokenizer, self.train_shards)
        self.model_cfg = model_config(cfg, self.train_shards.vocab_size)
        self.seq_len = cfg.data.seq_len
        self.val_bytes = split_bytes(self.val_shards, self.tokenizer)
        self._sampler = WindowSampler(self.train_shards, self.seq_len, 1, cfg.seed)  # checks the split's size

    def initial_weights(self) -> None:
        return None

    def rows_per_epoch(self) -> int:
        return max(1, self.train_shards.num_tokens // self.seq_len)

    def epochs_at(self, rows: int) -> float:
        return rows / self.rows_per_epoch()

    def sampler(self, global_batch: int) -> WindowSampler:
        if self._sampler.global_batch != global_batch:
            self._sampler = WindowSampler(self.train_shards, self.seq_len, global_batch, self.cfg.seed)
        return self._sampler

    def batches(self, index: int, plan: BatchPlan) -> list[TokenBatch]:
        parts = self.sampler(plan.global_batch).micro_batches(index, plan.micro_batch, plan.dp_rank, plan.dp_size)
        return [TokenBatch(x, y, weight=len(x) / plan.global_batch) for x, y in parts]

    def eval_batches(self, plan: BatchPlan, count: int) -> list[TokenBatch]:
        parts = eval_batches(self.val_shards, self.seq_len, plan.micro_batch, max(count, 1), plan.dp_rank,
                             plan.dp_size)
        return [TokenBatch(x, y) for x, y in parts]

    def loss(self, model: nn.Module, batch: TokenBatch) -> torch.Tensor:
        return lm_loss(model, batch)

    def eval_count(self, batch: TokenBatch) -> int:
        return batch.labels.numel()

    def bits_per_byte(self, val_loss: float) -> float | None:
        return bits_per_byte(val_loss, self.val_shards.num_tokens, self.val_bytes)

    def fingerprint(self) -> dict[str, Any]:
        return {}

    def describe(self) -> str:
        return f"model {self.cfg.model.preset}; {self.train_shards.num_tokens:,} train tokens"

    def start(self) -> str:
        return "from scratch"
