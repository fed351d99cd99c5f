"""The loss guard: skip steps whose loss is NaN/inf or a spike, and say when to roll back.

The trainer computes each step's loss averaged over all processes *before* the optimizer step and
asks :meth:`LossGuard.check`. A bad step is skipped (gradients dropped, the weights untouched) and
the next attempt at the same step reads the next batch: the data a step reads is the batch at
index ``step + data_offset`` of the (seed, index) order, so skipping a batch is ``data_offset += 1``.
After ``max_skips`` bad steps in a row the guard asks for a rollback: reload the newest checkpoint
and set the offset so that its step reads the batch after the last bad one (PaLM's recipe: restart
before the spike, skip the batches around it). The guard's state is saved in every checkpoint, so a
resumed run makes the same decisions.

Pure Python (no torch): the decisions are plain arithmetic on floats and are unit-tested as such.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from murmur.train.config import GuardSection

MIN_HISTORY = 10  # accepted steps before spikes are looked for (or the whole window, if smaller)


class LossGuard:
    """Running mean of accepted losses, the skip streak, and the rollback count."""

    def __init__(self, cfg: GuardSection):
        self.cfg = cfg
        self.history: deque[float] = deque(maxlen=max(cfg.window, 1))
        self.streak = 0  # bad steps in a row
        self.rollbacks = 0
        self.skipped = 0  # bad steps over the whole run

    def mean(self) -> float | None:
        """The running mean of accepted losses, once there are enough of them to judge a spike."""
        if len(self.history) < min(MIN_HISTORY, self.history.maxlen or 1):
            return None
        return sum(self.history) / len(self.history)

    def check(self, loss: float, grad_norm: float | None = None) -> str | None:
        """Why this step must be skipped ("loss nan", "loss 9.1 > 2 x mean 3.2", ...), or None if it is fine."""
        if not math.isfinite(loss):
            return f"loss {loss}"
        if grad_norm is not None and not math.isfinite(grad_norm):
            return f"gradient norm {grad_norm}"
        mean = self.mean()
        if self.cfg.spike_factor > 0 and mean is not None and loss > self.cfg.spike_factor * mean:
            return f"loss {loss:.4f} > {self.cfg.spike_factor:g} x running mean {mean:.4f}"
        return None

    def new_data(self) -> None:
        """The task's data changes here (a curriculum's next stage): judge spikes by the new data's losses."""
        self.history.clear()

    def accept(self, loss: float) -> None:
        """Record a good step's loss (ends a streak of bad steps)."""
        self.history.append(loss)
        self.streak = 0

    def skip(self) -> bool:
        """Record a bad step; True when the streak reached ``max_skips`` and the run should roll back."""
        self.streak += 1
        self.skipped += 1
        return self.streak >= max(self.cfg.max_skips, 1)

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history), "streak": self.streak, "rollbacks": self.rollbacks,
                "skipped": self.skipped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history.clear()
        self.history.extend(state.get("history", []))
        self.streak = int(state.get("streak", 0))
        self.rollbacks = int(state.get("rollbacks", 0))
        self.skipped = int(state.get("skipped", 0))


def rollback_offset(checkpoint_step: int, last_bad_index: int) -> int:
    """The data offset after rolling back to ``checkpoint_step``: that step reads the batch after the
    last bad one, so every batch from the checkpoint's up to the spike is skipped, none repeated."""
    return last_bad_index + 1 - checkpoint_step
