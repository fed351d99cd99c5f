"""Pretraining: the trainer, data order, parallelism, checkpoints, optimizer and metrics.

``from murmur.train import train, TrainConfig`` works; the heavy modules (torch) load on first use,
so importing the config alone stays instant.
"""

from __future__ import annotations

import os
from typing import Any

# OpenMP threads that spin while waiting for work make CPU training several times slower when other
# processes share the cores (measured: 4-7x on a busy 2-core machine), for a few percent on an idle
# one. Sleeping waits are the better default; it takes effect when torch is imported after this
# module (as in `murmur train`), and an explicit OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_EXPORTS = {
    "TrainConfig": "murmur.train.config",
    "train": "murmur.train.trainer",
    "Trainer": "murmur.train.trainer",
    "TrainResult": "murmur.train.trainer",
    "unigram_bits_per_byte": "murmur.train.data",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'murmur.train' has no attribute {name!r}")


__all__ = list(_EXPORTS)
