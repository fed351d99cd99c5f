"""Which training windows each step reads, and which of them each process takes.

The global batch of step ``s`` is a pure function of ``(seed, s)``: ``window_starts`` draws its
``global_batch`` start offsets from a generator seeded by both, and ``rank_rows`` hands process
``rank`` of ``world`` every ``world``-th row. The union over ranks is therefore the same set of
windows for any world size, so a run resumed on a different number of GPUs neither repeats nor
skips data, and the only sampler state a checkpoint needs is the step.

This module is the one place for that logic (the trainer's data loader builds on it).
"""

from __future__ import annotations

import numpy as np

from murmur.errors import ConfigError, InputError


def window_starts(seed: int, step: int, global_batch: int, num_tokens: int, seq_len: int) -> np.ndarray:
    """Start offsets (int64, length ``global_batch``) of step ``step``'s windows of ``seq_len + 1`` tokens.

    A window holds inputs and shifted targets, so it needs ``seq_len + 1`` tokens of the stream.
    """
    high = num_tokens - seq_len - 1
    if high < 0:
        raise InputError(f"split has {num_tokens} tokens, fewer than one window of {seq_len + 1}")
    if global_batch < 0 or step < 0 or seed < 0:
        raise ConfigError(f"seed ({seed}), step ({step}) and global_batch ({global_batch}) must be >= 0")
    rng = np.random.Generator(np.random.PCG64([seed, step]))
    return rng.integers(0, high + 1, size=global_batch, dtype=np.int64)


def rank_rows(global_batch: int, rank: int, world: int) -> np.ndarray:
    """Indices of the global batch's rows that data-parallel process ``rank`` of ``world`` takes.

    Rows ``rank::world`` (strided, so every rank's share is spread over the batch). ``world`` must
    divide ``global_batch`` so every rank gets the same number of rows and gradients average
    exactly as over the whole batch.
    """
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"rank {rank} is not in a world of {world} processes")
    if global_batch % world:
        raise ConfigError(f"global batch of {global_batch} windows does not divide among {world} data-parallel "
                          f"processes; make it a multiple of {world}")
    return np.arange(rank, global_batch, world, dtype=np.int64)


def rank_window_starts(seed: int, step: int, global_batch: int, num_tokens: int, seq_len: int,
                       rank: int = 0, world: int = 1) -> np.ndarray:
    """The start offsets this process reads at ``step`` (its rows of the global batch, in order)."""
    return window_starts(seed, step, global_batch, num_tokens, seq_len)[rank_rows(global_batch, rank, world)]
