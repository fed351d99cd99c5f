"""Budget pacing: spread each campaign's daily budget over the day, never spending past it.

The day is split into slots (15 minutes by default) and the share of the day's traffic in each
slot is forecast from the hourly traffic curve. A campaign takes part in an auction with
probability ``p`` (probabilistic throttling, as LinkedIn describes it, KDD 2014). After each slot
``p`` is set so that the budget left would be spent over the traffic left at the campaign's recent
spend rate: spend per unit of traffic it took part in, over the slots passed with older slots
weighing less (``decay`` per slot), because prices move through the day as other campaigns slow
down or run out and audiences reach their frequency caps. The plan aims to spend the budget by the
time ``1 - margin`` of the day's traffic has passed: overspend is impossible (spend stops at the
budget) but under-delivery cannot be made up, so the safety margin absorbs forecast error and the
late-day catch-up is built in (``p`` rises to 1 as the planned traffic runs out); a campaign more than
``behind`` short of its plan takes part in every auction until it is back on it. Within a slot a
campaign that has run more than ``ahead`` past its cumulative target waits for the next slot.

A campaign marked ``full`` is not paced: it takes part in every auction while its budget lasts
(accelerated delivery). The simulator uses it to tell a pacing miss from a campaign whose audience
cannot absorb its budget at all.

Charges are clamped to what is left, so a campaign is never charged past its daily budget. An
impression whose price (CPM) would pass the budget is not shown; a CPC ad is shown while any budget
is left and its last click is charged only what is left.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Pacer:
    budgets: np.ndarray            # micros per campaign for the day
    traffic_share: np.ndarray      # share of the day's traffic in each slot (sums to 1)
    p0: float = 0.2
    ahead: float = 0.1
    p_min: float = 0.01
    decay: float = 0.9
    margin: float = 0.3
    behind: float = 0.25
    full: np.ndarray | None = None  # bool per campaign: no pacing, every auction while budget lasts
    spent: np.ndarray = field(init=False)
    p: np.ndarray = field(init=False)
    _w_spend: np.ndarray = field(init=False)
    _w_seen: np.ndarray = field(init=False)
    _slot_start_spend: np.ndarray = field(init=False)
    slot: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        n = len(self.budgets)
        self.spent = np.zeros(n, np.int64)
        self.p = np.full(n, self.p0)
        self._w_spend = np.zeros(n)
        self._w_seen = np.zeros(n)
        self._slot_start_spend = np.zeros(n, np.int64)
        self.cum = np.concatenate([[0.0], np.cumsum(self.traffic_share)])
        if self.full is None:
            self.full = np.zeros(n, bool)
        self.p[self.full] = 1.0

    def new_day(self) -> None:
        self.__post_init__()
        self.slot = 0

    def advance(self, slot: int) -> None:
        """Move to ``slot`` (forward only), updating participation from the spend of the slots passed."""
        while self.slot < slot:
            s = self.slot
            # spend per unit of traffic taken part in, over recent slots (older slots weigh less: prices move
            # through the day as other campaigns slow down or run out)
            self._w_spend = self.decay * self._w_spend + (self.spent - self._slot_start_spend)
            self._w_seen = self.decay * self._w_seen + self.p * self.traffic_share[s]
            self._slot_start_spend = self.spent.copy()
            known = self._w_seen > 0
            rate = np.where(known, self._w_spend / np.maximum(self._w_seen, 1e-12), np.nan)
            remaining = np.maximum(self.budgets - self.spent, 0)
            left = max(1.0 - self.margin - self.cum[s + 1], 1e-9)
            want = remaining / np.maximum(np.nan_to_num(rate, nan=0.0) * left, 1e-9)
            p = np.where(known, np.clip(want, self.p_min, 1.0), self.p)
            # catch up: a campaign more than ``behind`` short of its plan takes part in everything
            plan = self.budgets * min(1.0, self.cum[s + 1] / (1.0 - self.margin))
            self.p = np.where((self.spent < plan * (1.0 - self.behind)) | self.full, 1.0, p)
            self.slot += 1

    def eligible(self, campaigns: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Which of ``campaigns`` may bid now (``u``: uniforms for the participation draw)."""
        done = self.cum[min(self.slot + 1, len(self.cum) - 1)]
        target = self.budgets[campaigns] * min(1.0, done / (1.0 - self.margin))
        under_cap = self.spent[campaigns] < self.budgets[campaigns]
        not_ahead = (self.spent[campaigns] <= target * (1.0 + self.ahead)) | self.full[campaigns]
        return under_cap & not_ahead & (u < self.p[campaigns])

    def affordable(self, campaign: int, micros: int) -> bool:
        """Whether a charge of ``micros`` (the auction's price for one event) fits in what is left."""
        return self.spent[campaign] + micros <= self.budgets[campaign]

    def has_budget(self, campaign: int) -> bool:
        return bool(self.spent[campaign] < self.budgets[campaign])

    def charge(self, campaign: int, micros: int) -> None:
        self.spent[campaign] += micros


def slot_shares(hourly: np.ndarray, slot_minutes: int = 15) -> np.ndarray:
    """Traffic share per slot from a 24-value hourly curve (evenly spread within the hour)."""
    per_hour = 60 // slot_minutes
    h = np.asarray(hourly, dtype=np.float64) / np.sum(hourly)
    return np.repeat(h / per_hour, per_hour)
