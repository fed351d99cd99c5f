"""The data a step reads does not depend on the number of processes."""

import numpy as np
import pytest

from murmur.errors import ConfigError, InputError
from murmur.train.sampler import rank_rows, rank_window_starts, window_starts


def test_window_starts_deterministic_and_in_range():
    a = window_starts(7, 3, 64, 10_000, 128)
    b = window_starts(7, 3, 64, 10_000, 128)
    assert a.dtype == np.int64 and len(a) == 64
    assert np.array_equal(a, b)
    assert a.min() >= 0 and a.max() <= 10_000 - 129
    assert not np.array_equal(a, window_starts(7, 4, 64, 10_000, 128))
    assert not np.array_equal(a, window_starts(8, 3, 64, 10_000, 128))


def test_union_over_ranks_is_the_same_for_any_world():
    """Resuming on 1, 2 or 4 processes reads exactly the same windows at every step."""
    for step in range(20):
        full = window_starts(0, step, 16, 5_000, 32)
        for world in (1, 2, 4):
            parts = [rank_window_starts(0, step, 16, 5_000, 32, r, world) for r in range(world)]
            assert sum(len(p) for p in parts) == 16
            assert sorted(np.concatenate(parts).tolist()) == sorted(full.tolist())
            rows = np.concatenate([rank_rows(16, r, world) for r in range(world)])
            assert sorted(rows.tolist()) == list(range(16))  # every row taken exactly once


def test_rank_rows_errors():
    with pytest.raises(ConfigError, match="multiple of 4"):
        rank_rows(6, 0, 4)
    with pytest.raises(ConfigError):
        rank_rows(8, 4, 4)
    with pytest.raises(InputError, match="fewer than one window"):
        window_starts(0, 0, 4, 10, 32)
