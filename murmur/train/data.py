"""Training and validation batches as tensors, over the window order of :mod:`murmur.train.sampler`.

At step ``s`` the global batch of ``G`` windows has start offsets drawn from a generator seeded by
``(seed, s)``; data-parallel process ``rank`` of ``world`` takes rows ``rank::world``. That logic lives
in :mod:`murmur.train.sampler` only; this module turns its offsets into tensors. The data a
step sees thus never depends on the number of processes or on where a run was resumed, and the
"sampler position" stored in a checkpoint is the step (plus the loss guard's data offset, when it
skipped batches: the trainer reads batch ``step + offset``). Windows may cross post boundaries;
every post starts with the document token, so the model learns where posts begin.

Validation uses fixed, evenly spaced windows over the val split, identical at every evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from murmur.data.shards_format import TokenShards
from murmur.errors import InputError
from murmur.train.sampler import rank_window_starts


def _stack(shards: TokenShards, starts: np.ndarray, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows = np.stack([shards.read(int(s), seq_len + 1) for s in starts])
    t = torch.from_numpy(rows)
    return t[:, :-1], t[:, 1:]


@dataclass
class WindowSampler:
    """Random training windows for each step; deterministic in (seed, step)."""

    shards: TokenShards
    seq_len: int
    global_batch: int  # windows per optimizer step, over all processes
    seed: int = 0

    def __post_init__(self) -> None:
        if self.shards.num_tokens < self.seq_len + 1:
            raise InputError(f"the {self.shards.split} split has {self.shards.num_tokens} tokens, fewer than one "
                             f"window of {self.seq_len + 1}; lower data.seq_len or add data", self.shards.directory)

    def starts(self, step: int, rank: int = 0, world: int = 1) -> np.ndarray:
        """Start offsets of the windows this process reads at ``step`` (:func:`sampler.rank_window_starts`)."""
        return rank_window_starts(self.seed, step, self.global_batch, self.shards.num_tokens, self.seq_len,
                                  rank, world)

    def step_batch(self, step: int, rank: int = 0, world: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets), each [global_batch / world, seq_len] int64, for this process at ``step``."""
        return _stack(self.shards, self.starts(step, rank, world), self.seq_len)

    def micro_batches(self, step: int, micro_batch: int, rank: int = 0, world: int = 1
                      ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """This process's part of step ``step``, split into micro-batches of ``micro_batch`` rows."""
        x, y = self.step_batch(step, rank, world)
        return [(x[i:i + micro_batch], y[i:i + micro_batch]) for i in range(0, len(x), micro_batch)]


def eval_windows(shards: TokenShards, seq_len: int, count: int) -> np.ndarray:
    """Start offsets of ``count`` evenly spaced validation windows (fewer if the split is short)."""
    high = shards.num_tokens - seq_len - 1
    if high < 0:
        raise InputError(f"the val split has {shards.num_tokens} tokens, fewer than one window of "
                         f"{seq_len + 1}; lower data.seq_len or add data", shards.directory)
    count = max(1, min(count, high // seq_len + 1))
    return np.linspace(0, high, count).astype(np.int64)


def eval_batches(shards: TokenShards, seq_len: int, micro_batch: int, batches: int, rank: int = 0,
                 world: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """This process's share of the fixed validation windows, as micro-batches.

    The windows are rounded down to a multiple of ``world`` (when there are that many), so every
    process runs the same number of forward passes: under FSDP or TP each pass is a collective.
    """
    starts = eval_windows(shards, seq_len, micro_batch * batches)
    if len(starts) >= world:
        starts = starts[: len(starts) - len(starts) % world]
    starts = starts[rank::world]
    out = []
    for i in range(0, len(starts), micro_batch):
        out.append(_stack(shards, starts[i:i + micro_batch], seq_len))
    return out


def split_bytes(shards: TokenShards, tokenizer: object | None = None) -> int | None:
    """UTF-8 bytes of the posts in a split: from the manifest, else by decoding (None if neither can)."""
    info = shards.manifest["splits"][shards.split]
    if "bytes" in info:
        return int(info["bytes"])
    if tokenizer is None:
        return None
    total = 0
    for doc in shards.documents():
        total += len(tokenizer.decode(doc[1:]).encode("utf-8"))  # type: ignore[attr-defined]
    return total


def bits_per_byte(loss_nats: float, tokens: int, n_bytes: int | None) -> float | None:
    """Cross-entropy in nats per token -> bits per UTF-8 byte of text (tokens/bytes from one split)."""
    if not n_bytes:
        return None
    return loss_nats * tokens / n_bytes / math.log(2)


def token_counts(shards: TokenShards, chunk: int = 1 << 24) -> np.ndarray:
    """How often each id occurs in a split (int64 [vocab_size])."""
    counts = np.zeros(shards.vocab_size, dtype=np.int64)
    for shard in shards.shards:
        for i in range(0, len(shard.tokens), chunk):
            part = np.asarray(shard.tokens[i:i + chunk])
            counts += np.bincount(part, minlength=shards.vocab_size)[: shards.vocab_size]
    return counts


def unigram_bits_per_byte(shards_dir: str | Path, tokenizer_dir: str | Path | None = None) -> float:
    """The unigram baseline: train-split token frequencies (add-one smoothed) scored on val, in bits/byte.

    A language model that has learnt anything beyond word frequencies scores well below it.
    """
    train, val = TokenShards(shards_dir, "train"), TokenShards(shards_dir, "val")
    tokenizer = None
    if "bytes" not in val.manifest["splits"]["val"]:
        from murmur.tokenizer import load_tokenizer

        source = tokenizer_dir or val.manifest.get("tokenizer")
        if not source:
            raise InputError("the manifest has no byte counts; pass the tokenizer directory", shards_dir)
        tokenizer = load_tokenizer(source)
    counts = token_counts(train).astype(np.float64) + 1.0
    log2p = np.log2(counts / counts.sum())
    val_counts = token_counts(val)
    bits = -float((val_counts * log2p).sum())
    n_bytes = split_bytes(val, tokenizer)
    if not n_bytes:
        raise InputError("the val split has no text bytes", shards_dir)
    return bits / n_bytes
