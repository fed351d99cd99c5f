"""Ranking and pricing: expected value × quality, and a generalised second-price auction.

Every candidate is put in the same unit, its expected value per impression (``ev``): a CPC bid is
worth ``pCTR × bid``, a CPM bid ``bid / 1000``. Candidates are ranked by ``ev × quality``; the ad in
slot ``k`` pays the least that keeps it above the ad ranked ``k + 1`` (or the reserve price):
``ev_min = max(rank_{k+1} / quality_k, reserve)``, charged per click for CPC (``ev_min / pCTR``)
and per thousand impressions for CPM (``1000 × ev_min``), never more than its bid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Outcome:
    """Winners (indices into the candidate arrays, best first) and the price each pays in currency units:
    per click for CPC, per thousand impressions for CPM."""

    winners: np.ndarray
    prices: np.ndarray
    ranks: np.ndarray


def expected_value(is_cpc: np.ndarray, bid: np.ndarray, pctr: np.ndarray) -> np.ndarray:
    """Expected value per impression, in currency units."""
    return np.where(is_cpc, pctr * bid, bid / 1000.0)


def gsp(ev: np.ndarray, quality: np.ndarray, is_cpc: np.ndarray, bid: np.ndarray, pctr: np.ndarray,
        slots: int, reserve_ev: float = 0.0) -> Outcome:
    """Run one generalised second-price auction for ``slots`` positions."""
    rank = ev * quality
    eligible = np.flatnonzero(ev >= reserve_ev)
    order = eligible[np.argsort(-rank[eligible], kind="stable")]
    winners = order[:slots]
    prices = np.empty(len(winners))
    for k, i in enumerate(winners):
        nxt = rank[order[k + 1]] / quality[i] if k + 1 < len(order) else 0.0
        ev_min = max(nxt, reserve_ev)
        price = ev_min / max(pctr[i], 1e-9) if is_cpc[i] else 1000.0 * ev_min
        prices[k] = min(price, bid[i])
    return Outcome(winners, prices, rank[winners])


def first_price(order: np.ndarray, bid: np.ndarray, slots: int) -> Outcome:
    """Winners in a given order paying their bids (how the random-delivery arm of the A/B test charges)."""
    winners = order[:slots]
    return Outcome(winners, bid[winners].astype(np.float64), np.zeros(len(winners)))
