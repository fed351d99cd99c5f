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
campaign that has run more than ``ahead`` past its cumulative target waits for the next slot, unless
it already takes part in every auction (``p`` = 1: its supply is short, and waiting loses what it
cannot win back later).

A CPC campaign's spend comes in whole clicks, often a few dozen a day, so its realised spend is too
lumpy to read a rate from: one lucky click looks like a doubled rate and throttles the campaign for
hours. With ``smooth`` the rate is read from the *expected* spend of what it was shown (pCTR × the
click's price, :meth:`Pacer.expect`), scaled by how realised spend has compared with it (per
campaign, shrunk towards all campaigns' ratio: the pCTR model may be off for the traffic an
auction's winners get). And the count of clicks still needed is itself noisy: a campaign that needs
``n`` more charges plans for ``1 + noise_z / sqrt(n)`` times its remaining budget (the charge size is
its mean so far, the bid counted in as one charge), so few-click campaigns take part in more auctions
than their mean rate says, and many-impression CPM campaigns pace as before.

The calibration itself is read from the same few clicks: four lucky clicks in the first hour can read
as a supply nearly twice as rich as the pCTR says, and throttle the campaign for hours; when its clicks then
come at the pCTR's rate or below, what it sat out is lost. With ``calib_z`` the spend rate is planned
on the low side of what its charges so far can tell, ``1 - calib_z / sqrt(charges + 1)`` times the
calibrated rate (at least ``calib_floor`` of it): a campaign with few charges takes part in more
auctions early, where overspend is clamped anyway.

The traffic curve is the same for every campaign, but a campaign's own supply is not: its audience
reaches its frequency caps, rivals run out of budget and prices move, so a campaign may find most of
what it can buy in the morning. With ``learn`` the pacer keeps, across the days it serves, each
campaign's own *capacity curve*: per slot, what it could have spent had it taken part in every
auction it could enter (its auctions there times its spend per auction taken part in, shrunk towards
its day's mean), as shares of its day, averaged over days (the newest day weighing ``learn``; the
traffic curve is the prior, so the first day paces by traffic alone). Every plan above (the spend
rate per unit of supply taken part in, the traffic left, the targets) then runs on the campaign's own
curve instead of the traffic's, so a campaign whose audience dries up in the afternoon spends earlier.
The day's capacity itself (in realised spend: its expected spend times its calibration) is averaged
the same way, and ``p`` never falls below the share of it that the budget needs (``budget /
capacity``): a lucky click early in the day no longer throttles a campaign below what its supply
allows it to reach.

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
    unlimited: np.ndarray | None = None  # bool per campaign: its budget does not stop it (measurement replays only)
    smooth: bool = True             # spend rates from expected spend (pCTR x price) where known, not the clicks
    calib_prior: float = 0.25       # weight of the prior in the calibration, as a share of the budget
    wait_when_short: bool = False   # whether a campaign taking part in every auction (p = 1) still waits when ahead
    event_micros: np.ndarray | None = None  # the most one charge can be (the bid per click or impression)
    noise_z: float = 1.5            # plan for z standard deviations of the count of charges still needed
    learn: float = 0.0              # weight of the newest day in each campaign's capacity curve (0: traffic only)
    calib_z: float = 0.0            # plan on the spend rate this many standard deviations of its charge count low
    calib_floor: float = 0.25       # ... but never below this share of it
    spent: np.ndarray = field(init=False)
    spent_at_half: np.ndarray = field(init=False)  # spent by the end of the slot in which half the day's traffic passed
    expected: np.ndarray = field(init=False)
    p: np.ndarray = field(init=False)
    _w_spend: np.ndarray = field(init=False)
    _w_seen: np.ndarray = field(init=False)
    _slot_start_spend: np.ndarray = field(init=False)
    slot: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        n = len(self.budgets)
        if self.full is None:
            self.full = np.zeros(n, bool)
        if self.unlimited is None:
            self.unlimited = np.zeros(n, bool)
        # learned across days (kept by new_day): each campaign's supply curve, the traffic curve at first,
        # and what it could spend in a day in every auction (micros; unknown at first)
        self._set_share(np.tile(np.asarray(self.traffic_share, np.float64), (n, 1)))
        self._half_slot = int(np.searchsorted(np.cumsum(self.traffic_share), 0.5))  # half the traffic passed in it
        self.level = np.full(n, np.nan)
        self._reset_day()

    def _reset_day(self) -> None:
        """The state of one day: nothing spent, participation at ``p0`` (1 for ``full`` campaigns)."""
        n = len(self.budgets)
        self.slot = 0
        self._partial = False
        self._closed = False
        self._offered = np.zeros((n, len(self.traffic_share)))   # auctions it could enter, per slot
        self._entered = np.zeros((n, len(self.traffic_share)))   # of those, the ones it took part in
        self._slot_spend = np.zeros((n, len(self.traffic_share)))
        self.spent = np.zeros(n, np.int64)
        self.spent_at_half = np.zeros(n, np.int64)
        self.events = np.zeros(n, np.int64)
        self.expected = np.zeros(n)
        self.p = np.full(n, self.p0)
        self._w_spend = np.zeros(n)
        self._w_seen = np.zeros(n)
        self._slot_start_spend = np.zeros(n)
        self.p[self.full] = 1.0

    def end_day(self) -> None:
        """Close the day: its last slots passed, and with ``learn`` folded into each campaign's capacity curve
        (once)."""
        if self.learn > 0 and not self._closed:
            self._learn_day()
        self.advance(len(self.traffic_share))
        self._closed = True

    def new_day(self) -> None:
        self.end_day()
        self._reset_day()

    def _set_share(self, share: np.ndarray) -> None:
        """Each campaign's share of its day's supply per slot, and its cumulative curve (``cum[c, s]``: the
        share before slot ``s``)."""
        self.share = share
        self.cum = np.concatenate([np.zeros((len(share), 1)), np.cumsum(share, axis=1)], axis=1)

    def learned(self) -> tuple[np.ndarray, np.ndarray]:
        """What the pacer carries from day to day: each campaign's capacity shares per slot and day capacity."""
        return self.share.copy(), self.level.copy()

    def set_learned(self, learned: tuple[np.ndarray, np.ndarray]) -> None:
        self._set_share(learned[0].copy())
        self.level = learned[1].copy()

    def _learn_day(self, prior_auctions: float = 20.0) -> None:
        """Fold the day now ending into each campaign's capacity curve: per slot, the auctions it could enter
        times its spend per auction taken part in (shrunk towards its day's mean by ``prior_auctions``), as a
        share of its day. A campaign that could spend nothing, or a day begun mid-way (:meth:`resume`), keeps
        its curve."""
        self.advance(len(self.traffic_share))  # the last slots' spend
        if self._partial:
            return
        spend = np.maximum(self._slot_spend, 0.0)
        mean = spend.sum(1) / np.maximum(self._entered.sum(1), 1.0)
        value = (spend + prior_auctions * mean[:, None]) / (self._entered + prior_auctions)
        capacity = self._offered * value
        total = capacity.sum(1)
        ok = total > 0
        share = self.share.copy()
        share[ok] = (1 - self.learn) * share[ok] + self.learn * capacity[ok] / total[ok, None]
        self._set_share(share)
        level = total * self.calibration()
        self.level = np.where(ok, np.where(np.isnan(self.level), level, (1 - self.learn) * self.level
                                           + self.learn * level), self.level)

    def resume(self, spent: np.ndarray) -> None:
        """Start the day with ``spent`` already spent (e.g. before a restart): it counts as expected spend (the
        calibration) but not as the first slot's spend rate, and this day is not learned from."""
        self.spent[:] = spent
        self.expected[:] = spent
        self._slot_start_spend = self.expected.astype(np.float64) if self.smooth else self.spent.astype(np.float64)
        self._partial = True

    def advance(self, slot: int) -> None:
        """Move to ``slot`` (forward only), updating participation from the spend of the slots passed."""
        while self.slot < slot:
            s = self.slot
            # spend per unit of traffic taken part in, over recent slots (older slots weigh less: prices move
            # through the day as other campaigns slow down or run out)
            signal = self.expected if self.smooth else self.spent.astype(np.float64)
            self._w_spend = self.decay * self._w_spend + (signal - self._slot_start_spend)
            self._slot_spend[:, s] = signal - self._slot_start_spend
            self._w_seen = self.decay * self._w_seen + self.p * self.share[:, s]
            self._slot_start_spend = signal.copy()
            known = self._w_seen > 0
            rate = np.where(known, self.calibration() * self.doubt() * self._w_spend / np.maximum(self._w_seen, 1e-12),
                            np.nan)
            remaining = np.maximum(self.budgets - self.spent, 0)
            left = np.maximum(1.0 - self.margin - self.cum[:, s + 1], 1e-9)
            want = remaining * self.noise_factor(remaining) / np.maximum(np.nan_to_num(rate, nan=0.0) * left, 1e-9)
            p = np.where(known, np.clip(want, self.p_min, 1.0), self.p)
            if self.learn > 0:  # never below the share of its supply that its budget needs, by the days learned
                p = np.maximum(p, np.nan_to_num(np.minimum(self.budgets / np.maximum(self.level, 1.0), 1.0)))
            # catch up: a campaign more than ``behind`` short of its plan takes part in everything
            plan = self.budgets * np.minimum(1.0, self.cum[:, s + 1] / (1.0 - self.margin))
            self.p = np.where((self.spent < plan * (1.0 - self.behind)) | self.full, 1.0, p)
            if s == self._half_slot:
                self.spent_at_half = self.spent.copy()
            self.slot += 1

    def noise_factor(self, remaining: np.ndarray) -> np.ndarray:
        """1 + z / sqrt(the charges still needed): spend comes in whole clicks (or impressions), so a campaign
        that needs few more plans to take part in more auctions than its mean rate says (overspend is clamped,
        under-delivery cannot be made up). The charge size is the campaign's mean so far, one bid-sized charge
        counted in as a prior; without ``event_micros`` no factor."""
        if self.event_micros is None or self.noise_z <= 0:
            return np.ones(len(self.budgets))
        size = (self.spent + self.event_micros) / (self.events + 1)
        needed = np.maximum(remaining / np.maximum(size, 1.0), 1.0)
        return 1.0 + self.noise_z / np.sqrt(needed)

    def doubt(self) -> np.ndarray:
        """How far below its calibration a campaign's spend rate is read (module docstring): ``1 - calib_z /
        sqrt(charges + 1)``, at least ``calib_floor``; 1 without ``calib_z``."""
        if self.calib_z <= 0:
            return np.ones(len(self.budgets))
        return np.maximum(1.0 - self.calib_z / np.sqrt(self.events + 1.0), self.calib_floor)

    def calibration(self) -> np.ndarray:
        """Realised spend over expected spend per campaign, shrunk towards all campaigns' ratio (and that towards
        1): the pCTR that sets the expectation may be off for the traffic a campaign wins."""
        if not self.smooth:
            return np.ones(len(self.budgets))
        prior = max(float(self.budgets.sum()) * self.calib_prior, 1.0)
        overall = (float(self.spent.sum()) + prior) / (float(self.expected.sum()) + prior)
        own = np.maximum(self.budgets * self.calib_prior, 1.0)
        return (self.spent + own * overall) / (self.expected + own)

    def eligible(self, campaigns: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Which of ``campaigns`` (each able to enter this auction: targeted, under its frequency cap) may bid now
        (``u``: uniforms for the participation draw)."""
        slot = min(self.slot, len(self.traffic_share) - 1)
        done = self.cum[campaigns, slot + 1]
        target = self.budgets[campaigns] * np.minimum(1.0, done / (1.0 - self.margin))
        under_cap = (self.spent[campaigns] < self.budgets[campaigns]) | self.unlimited[campaigns]
        not_ahead = (self.spent[campaigns] <= target * (1.0 + self.ahead)) | self.full[campaigns]
        if not self.wait_when_short:
            not_ahead |= self.p[campaigns] >= 1.0
        ok = under_cap & not_ahead & (u < self.p[campaigns])
        self._offered[campaigns, slot] += 1
        self._entered[campaigns, slot] += ok
        return ok

    def affordable(self, campaign: int, micros: int) -> bool:
        """Whether a charge of ``micros`` (the auction's price for one event) fits in what is left."""
        return self.spent[campaign] + micros <= self.budgets[campaign] or bool(self.unlimited[campaign])

    def has_budget(self, campaign: int) -> bool:
        return bool(self.spent[campaign] < self.budgets[campaign] or self.unlimited[campaign])

    def room(self, campaign: int, micros: int) -> int:
        """The part of a charge of ``micros`` that fits in what is left (all of it when ``unlimited``)."""
        if self.unlimited[campaign]:
            return micros
        return min(micros, int(self.budgets[campaign] - self.spent[campaign]))

    def charge(self, campaign: int, micros: int, expected: bool = False) -> None:
        """Charge ``micros``; ``expected``: its expectation was already counted (:meth:`expect`)."""
        self.spent[campaign] += micros
        self.events[campaign] += 1
        if not expected:
            self.expected[campaign] += micros

    def expect(self, campaign: int, micros: float) -> None:
        """An event whose charge is still uncertain (a CPC impression: pCTR x price), counted in the spend
        rate now instead of when its click comes (few clicks a day make the realised spend too lumpy)."""
        self.expected[campaign] += micros


def slot_shares(hourly: np.ndarray, slot_minutes: int = 15) -> np.ndarray:
    """Traffic share per slot from a 24-value hourly curve (evenly spread within the hour)."""
    per_hour = 60 // slot_minutes
    h = np.asarray(hourly, dtype=np.float64) / np.sum(hourly)
    return np.repeat(h / per_hour, per_hour)
