"""Pretraining: the trainer, data order, parallelism, checkpoints, optimizer and metrics.

``from murmur.train import train, TrainConfig`` works; the heavy modules (torch) load on first use,
so importing the config alone stays instant.
"""

from __future__ import annotations

from typing import Any

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
