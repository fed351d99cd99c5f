"""Budget pacing: spread each campaign's daily budget over the day, never spending past it.

The day is split into slots (15 minutes by default) and the share of the day's traffic in each
slot is forecast from the traffic curve. A campaign takes part in an auction with probability
``p``; after each slot ``p`` is set so that the budget left would be spent over the traffic left
at the rate the campaign reached per unit of traffic so far (LinkedIn's approach, KDD 2014: throttle
a campaign whose spend runs ahead of its forecast share). Within a slot a campaign that has run
more than ``ahead`` past its cumulative target waits for the next slot, and an ad whose auction
price (per click, or per impression) would take its campaign past the budget is not shown. Charges
are clamped to what is left, so a campaign is never charged past its daily budget even when clicks
on ads shown earlier arrive late.
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
    spent: np.ndarray = field(init=False)
    p: np.ndarray = field(init=False)
    _rate: np.ndarray = field(init=False)
    _slot_start_spend: np.ndarray = field(init=False)
    slot: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        n = len(self.budgets)
        self.spent = np.zeros(n, np.int64)
        self.p = np.full(n, self.p0)
        self._rate = np.full(n, np.nan)
        self._slot_start_spend = np.zeros(n, np.int64)
        self.cum = np.concatenate([[0.0], np.cumsum(self.traffic_share)])

    def new_day(self) -> None:
        self.__post_init__()
        self.slot = 0

    def advance(self, slot: int) -> None:
        """Move to ``slot`` (forward only), updating participation from the spend of the slots passed."""
        while self.slot < slot:
            s = self.slot
            share = self.traffic_share[s]
            spent_here = self.spent - self._slot_start_spend
            if share > 0:
                obs = spent_here / np.maximum(self.p * share, 1e-9)
                seen = self.p > 0
                self._rate = np.where(seen & np.isnan(self._rate), obs,
                                      np.where(seen, 0.5 * self._rate + 0.5 * obs, self._rate))
            remaining = np.maximum(self.budgets - self.spent, 0)
            left = max(1.0 - self.cum[s + 1], 1e-9)
            want = remaining / np.maximum(np.nan_to_num(self._rate, nan=0.0) * left, 1e-9)
            self.p = np.where(np.isnan(self._rate), self.p, np.clip(want, 0.01, 1.0))
            self._slot_start_spend = self.spent.copy()
            self.slot += 1

    def eligible(self, campaigns: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Which of ``campaigns`` may bid now (``u``: uniforms for the participation draw)."""
        target = self.budgets[campaigns] * self.cum[min(self.slot + 1, len(self.cum) - 1)]
        under_cap = self.spent[campaigns] < self.budgets[campaigns]
        not_ahead = self.spent[campaigns] <= target * (1.0 + self.ahead)
        return under_cap & not_ahead & (u < self.p[campaigns])

    def affordable(self, campaign: int, micros: int) -> bool:
        """Whether a charge of ``micros`` (the auction's price for one event) fits in what is left."""
        return self.spent[campaign] + micros <= self.budgets[campaign]

    def charge(self, campaign: int, micros: int) -> None:
        self.spent[campaign] += micros


def slot_shares(hourly: np.ndarray, slot_minutes: int = 15) -> np.ndarray:
    """Traffic share per slot from a 24-value hourly curve (evenly spread within the hour)."""
    per_hour = 60 // slot_minutes
    h = np.asarray(hourly, dtype=np.float64) / np.sum(hourly)
    return np.repeat(h / per_hour, per_hour)
