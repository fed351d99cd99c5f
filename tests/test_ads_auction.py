"""Ranking, pricing, pacing, brand safety and the pCTR metrics: small exact cases."""

from __future__ import annotations

import numpy as np
import pytest

from murmur.ads.auction import expected_value, gsp
from murmur.ads.pacing import Pacer, slot_shares
from murmur.ads.pctr import auc, entropy, evaluate
from murmur.ads.safety import unsafe_reason


def test_gsp_ranks_by_value_and_charges_the_least_that_keeps_the_rank():
    is_cpc = np.array([True, True, False])
    bid = np.array([1.0, 2.0, 30.0])         # $1 CPC, $2 CPC, $30 CPM
    pctr = np.array([0.05, 0.01, 0.0])
    ev = expected_value(is_cpc, bid, pctr)   # 0.05, 0.02, 0.03 per impression
    out = gsp(ev, np.ones(3), is_cpc, bid, pctr, slots=2, reserve_ev=0.001)
    assert out.winners.tolist() == [0, 2]
    assert out.prices[0] == pytest.approx(0.03 / 0.05)  # per click: the CPM ad's value / own pCTR
    assert out.prices[1] == pytest.approx(1000 * 0.02)  # per mille: the third ad's value
    assert (out.prices <= bid[out.winners] + 1e-12).all()
    # the last winner with nobody below pays the reserve
    alone = gsp(ev[:1], np.ones(1), is_cpc[:1], bid[:1], pctr[:1], slots=1, reserve_ev=0.001)
    assert alone.prices[0] == pytest.approx(0.001 / 0.05)
    # quality moves the rank: a relevant ad beats a richer irrelevant one
    q = gsp(ev, np.array([0.5, 1.0, 1.0]), is_cpc, bid, pctr, slots=1)
    assert q.winners.tolist() == [2]
    assert gsp(ev, np.ones(3), is_cpc, bid, pctr, slots=3, reserve_ev=0.04).winners.tolist() == [0]


def test_pacer_spreads_the_budget_and_never_overspends():
    rng = np.random.default_rng(0)
    shares = slot_shares(np.ones(24))
    budgets = np.array([100_000_000, 5_000_000], dtype=np.int64)   # $100 and $5
    pacer = Pacer(budgets, shares)
    spent_by_hour = np.zeros((24, 2))
    for slot in range(96):
        pacer.advance(slot)
        for _ in range(200):  # each campaign could spend $0.50 an auction: far more than its budget
            for c in (0, 1):
                if pacer.eligible(np.array([c]), rng.random(1))[0] and pacer.affordable(c, 500_000):
                    pacer.charge(c, 500_000)
        spent_by_hour[slot // 4] = pacer.spent
    assert (pacer.spent <= budgets).all()
    assert (pacer.spent >= 0.9 * budgets).all()
    # spread through the day, not spent in the first hours: planned over the first 70% of the traffic
    # (the safety margin), at most 10% ahead of that plan
    assert pacer.margin == 0.3
    assert spent_by_hour[5, 0] <= 1.1 * (6 / 24) / 0.7 * budgets[0] + 500_000  # + the charge that crossed it
    assert spent_by_hour[11, 0] <= 1.1 * (12 / 24) / 0.7 * budgets[0] + 500_000
    assert spent_by_hour[14, 0] < budgets[0]  # the plan ends at 70% of the day (16.8 h), 10% ahead at most
    # what it had spent when half the day's traffic had passed (noon here): as planned, 10% ahead at most
    pacer.end_day()
    assert spent_by_hour[10, 0] <= pacer.spent_at_half[0] <= spent_by_hour[12, 0]
    assert 0.9 * 0.5 / 0.7 * budgets[0] <= pacer.spent_at_half[0] <= 1.1 * 0.5 / 0.7 * budgets[0] + 500_000


def test_an_unpaced_campaign_takes_every_auction_until_its_budget_is_spent():
    shares = slot_shares(np.ones(24))
    budgets = np.array([10_000_000, 10_000_000], dtype=np.int64)
    pacer = Pacer(budgets, shares, full=np.array([True, False]))
    entered = np.zeros(2, np.int64)
    rng = np.random.default_rng(0)
    for slot in range(96):
        pacer.advance(slot)
        for _ in range(20):
            ok = pacer.eligible(np.array([0, 1]), rng.random(2))
            entered += ok
            for c in np.flatnonzero(ok):
                if pacer.affordable(c, 10_000):
                    pacer.charge(c, 10_000)
        if slot == 11:  # three hours in: the unpaced one took all 240 auctions, the paced one its plan's share
            assert entered[0] == 240 and entered[1] <= 1.1 * 1000 * (3 / 24) / (1 - pacer.margin) + 20
    assert pacer.spent[0] == budgets[0] and pacer.spent[1] <= budgets[1]
    assert entered[0] == 1000  # every auction until its budget ran out, none after
    pacer.new_day()  # the mark survives the day's reset
    assert pacer.full.tolist() == [True, False] and pacer.p[0] == 1.0


def test_the_pacer_learns_a_campaign_whose_supply_is_all_in_the_morning():
    # campaign 0 can only be shown before noon (its audience is asleep or capped after), campaign 1 all day;
    # each could spend far more than its budget. Day 1 paces both by the traffic curve: 0 spends too slowly
    # and its supply ends at noon. Day 2 plans 0 along what it learned and spends its budget in the morning.
    shares = slot_shares(np.ones(24))
    budgets = np.array([20_000_000, 20_000_000], dtype=np.int64)

    def day(pacer: Pacer, rng: np.random.Generator) -> np.ndarray:
        by_noon = np.zeros(2)
        for slot in range(96):
            pacer.advance(slot)
            for _ in range(20):
                for c in ((0, 1) if slot < 48 else (1,)):
                    if pacer.eligible(np.array([c]), rng.random(1))[0] and pacer.affordable(c, 100_000):
                        pacer.charge(c, 100_000)
            if slot == 47:
                by_noon = pacer.spent / budgets
        pacer.end_day()
        return by_noon, pacer.spent / budgets

    learned, fixed = Pacer(budgets, shares, learn=0.7), Pacer(budgets, shares)
    rng = np.random.default_rng(0)
    noon1, end1 = day(learned, rng)
    assert end1[0] < 0.8 and end1[1] >= 0.9  # paced by traffic, 0 runs out of supply at noon
    # the learned curve: all of campaign 0's capacity before noon (weighing 0.7 against the traffic curve's half),
    # campaign 1's spread through the day
    assert learned.cum[0, 48] == pytest.approx(0.7 + 0.3 * 0.5) and abs(learned.cum[1, 48] - 0.5) < 0.1
    assert learned.cum[0, -1] == pytest.approx(1.0) and learned.share.min() >= 0
    # and its day's capacity: 48 slots x 20 auctions x 0.10 a charge; the budget needs a fifth of it
    assert learned.level[0] == pytest.approx(48 * 20 * 100_000)
    learned.new_day()
    assert learned.cum[0, 48] == pytest.approx(0.85)  # the curve survives the day's reset
    noon2, end2 = day(learned, rng)
    assert noon2[0] >= 0.9 and end2[0] >= 0.9 and end2[1] >= 0.9 and (end2 <= 1).all()
    # without learning, day 2 repeats day 1
    day(fixed, np.random.default_rng(0))
    fixed.new_day()
    assert day(fixed, np.random.default_rng(1))[1][0] < 0.8
    # the server's knob: a weight, 0-1; anything else is one line naming it
    from murmur.ads.server import AdServer, ServerConfig
    from murmur.errors import InputError

    with pytest.raises(InputError) as e:
        AdServer([], None, None, None, object(), ServerConfig(pacing_learn=1.5))  # type: ignore[arg-type]
    assert e.value.field == "pacing_learn"


def test_an_unlimited_campaign_is_charged_in_full_past_its_budget():
    # the measurement replays' mark: what a campaign would be shown in every auction, its budget no limit
    pacer = Pacer(np.array([100, 100], np.int64), slot_shares(np.ones(24)), full=np.array([True, True]),
                  unlimited=np.array([True, False]))
    pacer.advance(1)
    for c in (0, 1):
        pacer.charge(c, pacer.room(c, 150))
    assert pacer.spent.tolist() == [150, 100]
    assert pacer.has_budget(0) and not pacer.has_budget(1) and pacer.affordable(0, 10)
    assert pacer.eligible(np.array([0, 1]), np.zeros(2)).tolist() == [True, False]


def test_the_chance_to_miss_in_every_auction():
    from murmur.ads.simulate import miss_chance

    rng = np.random.default_rng(0)
    assert miss_chance([(0.0, 0.005, False)] * 200, 1.0, rng) == 0.0  # CPM: 200 impressions at 0.005 pay 1.0
    assert miss_chance([(0.0, 0.005, False)] * 100, 1.0, rng) == 1.0  # 0.5 of 1.0, short whatever happens
    assert miss_chance([(1.0, 0.1, True)] * 10, 1.0, rng) == 0.0    # clicks for sure: 10 x 0.1
    assert miss_chance([], 1.0, rng) == 1.0
    # 20 impressions at a 50% click rate, 0.1 a click, budget 1.0: short below 9 clicks, P(Bin(20, .5) <= 8)
    from scipy import stats

    assert miss_chance([(0.5, 0.1, True)] * 20, 1.0, rng) == pytest.approx(stats.binom.cdf(8, 20, 0.5), abs=0.03)


def test_metrics():
    y = np.array([0, 0, 1, 1, 0, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    from sklearn.metrics import roc_auc_score

    assert auc(y, p) == pytest.approx(roc_auc_score(y, p))
    flat = evaluate(y.astype(float), np.full(6, 0.5), 0.5)
    assert flat["ne"] == pytest.approx(1.0) and flat["calibration"] == pytest.approx(1.0)
    assert entropy(0.5) == pytest.approx(np.log(2))


@pytest.mark.parametrize("text, reason", [
    ("What a goal in the last minute, the derby was electric", None),
    ("Huge crypto giveaway, send 1 btc and get 2 back, giveaway ends soon", "spam"),
    ("Call me on +1 415 555 0134 about the flat", "pii"),
    ("That beheading video should not be on here", "unsafe_words"),
])
def test_brand_safety_uses_the_cleaners_rules(text, reason):
    assert unsafe_reason(text) == reason


def _lumpy_day(pacer: Pacer, rng: np.random.Generator, shares: np.ndarray, auctions: int, ctr: float, cpc: int,
               fade: float) -> float:
    """A CPC campaign's day: ``auctions`` chances spread as the traffic, each a click with probability ``ctr``
    (fewer later in the day by ``fade``, as audiences reach their frequency caps); spend / budget at the end."""
    pacer.new_day()
    for slot in range(len(shares)):
        pacer.advance(slot)
        late = slot / len(shares)
        for _ in range(rng.poisson(auctions * shares[slot] * (1 + fade * (0.5 - late)))):
            if pacer.eligible(np.array([0]), rng.random(1))[0] and pacer.has_budget(0):
                pacer.expect(0, ctr * cpc)
                if rng.random() < ctr:
                    pacer.charge(0, min(cpc, int(pacer.budgets[0] - pacer.spent[0])), expected=True)
    return float(pacer.spent[0] / pacer.budgets[0])


@pytest.mark.slow
def test_small_cpc_budgets_land_about_as_often_as_unpaced_ones():
    """About 20 clicks a day, 1.4x the supply the budget needs, fading through the day (audiences reach their
    caps): the pacer lands the day within 10% nearly as often as no pacing at all; the plain plan (realised
    spend as the rate, no allowance for the clicks' count noise, waiting when ahead) misses far more often."""
    from murmur.ads.server import DEFAULT_HOURLY

    shares = slot_shares(np.array(DEFAULT_HOURLY))
    budget, cpc, ctr = 5_000_000, 250_000, 0.1
    auctions = int(1.4 * budget / cpc / ctr)

    def hits(**kw) -> float:
        rng = np.random.default_rng(7)
        pacer = Pacer(np.array([budget], np.int64), shares, event_micros=np.array([cpc]), **kw)
        d = np.array([_lumpy_day(pacer, rng, shares, auctions, ctr, cpc, fade=1.0) for _ in range(150)])
        assert (d <= 1.0).all()  # never over
        return float(np.mean(d >= 0.9))

    unpaced = hits(full=np.array([True]))
    paced = hits()
    plain = hits(smooth=False, noise_z=0.0, wait_when_short=True)
    assert paced >= unpaced - 0.05 and plain <= unpaced - 0.07, (unpaced, paced, plain)


def test_expected_spend_and_waiting():
    shares = slot_shares(np.ones(24))
    pacer = Pacer(np.array([10_000_000, 10_000_000], np.int64), shares, event_micros=np.array([500_000, 5_000]))
    pacer.expect(0, 50_000)                   # a CPC impression: pCTR 0.1 x 0.50
    pacer.charge(0, 500_000, expected=True)   # its click: counted in the expectation already
    pacer.charge(1, 5_000)                    # a CPM impression: charged and expected at once
    assert pacer.expected.tolist() == [50_000, 5_000] and pacer.spent.tolist() == [500_000, 5_000]
    # realised 10x the expectation for campaign 0, shrunk towards all campaigns' ratio
    cal = pacer.calibration()
    assert 1.0 < cal[1] < cal[0] < 10.0
    # fewer charges still needed (bigger ones) -> a larger allowance for their count noise
    f = pacer.noise_factor(np.array([9_500_000, 9_995_000]))
    assert f[0] > f[1] > 1.0
    # far ahead of its plan: a throttled campaign waits, one taking part in everything does not
    pacer.p[:] = [0.5, 1.0]
    pacer.spent[:] = 9_000_000
    assert pacer.eligible(np.array([0, 1]), np.zeros(2)).tolist() == [False, True]


def test_a_few_lucky_clicks_do_not_throttle_a_doubtful_plan():
    """Three clicks at 1.00 in the first hour, more than the pCTR (0.01 a view) expects of the views it took
    part in: the calibrated rate reads a supply richer than it is and throttles the campaign; with ``calib_z``
    the plan reads the rate on the low side of what three charges can tell, and takes part in more auctions.
    The doubt fades as charges come (CPM impressions)."""
    shares = slot_shares(np.ones(24))

    def p_after_lucky_hour(z: float) -> float:
        pacer = Pacer(np.array([20_000_000], np.int64), shares, event_micros=np.array([1_000_000]), calib_z=z)
        for slot in range(4):
            pacer.advance(slot)
            for _ in range(100):
                if pacer.eligible(np.array([0]), np.zeros(1))[0]:
                    pacer.expect(0, 10_000)  # pCTR 0.01 x 1.00
        for _ in range(3):
            pacer.charge(0, 1_000_000, expected=True)
        pacer.advance(4)
        return float(pacer.p[0])

    plain, doubtful = p_after_lucky_hour(0.0), p_after_lucky_hour(1.5)
    assert doubtful >= 2 * plain and doubtful > 0.5, (plain, doubtful)
    pacer = Pacer(np.array([1, 1], np.int64), shares, calib_z=1.5)
    pacer.events[:] = [3, 10_000]
    assert pacer.doubt()[0] == pytest.approx(0.25) and pacer.doubt()[1] == pytest.approx(0.985, abs=1e-3)
    assert Pacer(np.array([1], np.int64), shares).doubt().tolist() == [1.0]


@pytest.mark.parametrize("knob, value, say", [("pacing_learn", 1.5, "0-1"), ("pacing_doubt", -1.0, "0-5"),
                                              ("pacing_doubt", 6.0, "0-5")])
def test_the_server_refuses_pacing_knobs_out_of_range(knob, value, say):
    from murmur.ads.server import AdServer, ServerConfig
    from murmur.errors import InputError

    with pytest.raises(InputError, match=f"{knob} must be {say}"):
        AdServer([], None, None, None, object(), ServerConfig(**{knob: value}))
