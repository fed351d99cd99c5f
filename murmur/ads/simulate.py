"""The simulated A/B test: murmur's targeting and ranking against random delivery, on the demo world.

Both arms get the same campaigns (one per advertiser: its ads as creatives, an interest audience
of its topic built from the posts, a CPC or CPM bid, a daily budget), the same page views (users by
activity, hours by the daily traffic curve, a context post each) and the same ad server with the
same audiences, frequency caps and pacing. Arm ``murmur`` ranks by pCTR × bid × quality and prices
by second price; arm ``random`` orders eligible campaigns at random and charges the bid. Clicks come
from the world's hidden click model (:class:`murmur.world.ads.ClickModel`) with common random
numbers per page view and slot, so the arms differ only by their choices. Each seed is a new draw of
campaigns, bids, budgets and traffic; the table reports the mean over seeds with a 95% confidence
interval (t distribution), and the lift of murmur over random paired by seed.
"""

from __future__ import annotations

import datetime as dt
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from murmur.ads.audiences import AudienceBuilder, AudienceCatalog
from murmur.ads.pctr import Featurizer, History, log_features, read_logs, train_pctr
from murmur.ads.server import DEFAULT_HOURLY, AdRequest, AdServer, ServerConfig
from murmur.ads.store import MICROS, Campaign, CampaignStore, Creative
from murmur.ads.vectors import UserVectors, build_user_vectors, read_posts, text_embedder
from murmur.config import knob
from murmur.errors import InputError
from murmur.world.ads import ClickModel
from murmur.world.truth import load_truth

ARMS = ("murmur", "random")
MIN_BUDGET = 0.10
METRICS = ("impressions", "clicks", "ctr", "spend", "ecpc", "delivery_ok", "supply_limited", "paced_ok", "max_over")


@dataclass(frozen=True)
class SimConfig:
    seeds: int = knob(5, "independent runs (campaigns, bids, budgets, traffic drawn anew)")
    days: int = knob(1, "simulated days per run")
    page_views: int = knob(10000, "page views a day")
    slots: int = knob(2, "ad slots a page view")
    cpm_share: float = knob(0.2, "share of campaigns bidding CPM (the rest bid CPC)")
    budget_fraction: float = knob(0.5, "daily budget as a share of what the campaign could spend in every auction "
                                       "it can enter, the others paced at their budgets")
    budget_rounds: int = knob(1, "probe days paced at the budgets so far that set the budgets (0: a share of the "
                                 "spend with every campaign unlimited)")
    min_share: float = knob(0.1, "interest audiences: least share of a user's posts on the topic")
    campaigns: int = knob(20, "campaigns a run (advertisers drawn among those whose topic has an audience)")
    frequency_cap: int = knob(4, "impressions per user per campaign per day")
    batch_minutes: int = knob(5, "page views scored together (pCTR in one call), in minutes of traffic")
    pacing_margin: float = knob(0.3, "pacing plans to spend each budget by the time 1 - margin of the day's traffic passed")
    pacing_learn: float = knob(0.5, "weight of the newest day in each campaign's learned supply curve (0: traffic curve only)")
    pacing_doubt: float = knob(0.0, "plan on a spend rate this many standard deviations of a campaign's charge count low")

    def check(self) -> None:
        """One line naming the first knob out of range (before any work is done)."""
        for name, ok, want in (("seeds", self.seeds >= 1, ">= 1"), ("days", self.days >= 1, ">= 1"),
                               ("page_views", self.page_views >= 1, ">= 1"), ("slots", 1 <= self.slots <= 10, "1-10"),
                               ("campaigns", self.campaigns >= 1, ">= 1"),
                               ("budget_fraction", 0 < self.budget_fraction <= 1, "in (0, 1]"),
                               ("budget_rounds", self.budget_rounds >= 0, ">= 0"),
                               ("pacing_learn", 0 <= self.pacing_learn <= 1, "0-1"),
                               ("pacing_doubt", 0 <= self.pacing_doubt <= 5, "0-5")):
            if not ok:
                raise InputError(f"{name} must be {want} (got {getattr(self, name)})", field=name)


@dataclass
class SimSetup:
    """What every run shares: the world, its click model, vectors, audiences and the pCTR model."""

    click_model: ClickModel
    vectors: UserVectors
    catalog: AudienceCatalog
    model: object
    history: History
    ads: dict[str, list]
    post_ids: np.ndarray
    post_texts: list[str]
    post_topic: np.ndarray
    activity: np.ndarray
    start: dt.date
    audience_of_topic: dict[str, str]
    pctr_report: object = None
    audience_vectors: UserVectors | None = None  # what the audiences were built from (default: ``vectors``)

    def __post_init__(self) -> None:
        self.text_to_ad = {t: i for i, t in enumerate(self.ads["text"])}
        if self.audience_vectors is None:
            self.audience_vectors = self.vectors

    @classmethod
    def build(cls, world: Path, ads_dir: Path, posts_path: Path, work: Path, min_share: float = 0.1,
              log: Callable[[str], None] = lambda s: None, audience_embedder: str | Path | None = "lsa",
              cache: Path | None = None, index: Path | None = None) -> SimSetup:
        """``audience_embedder`` (see :func:`murmur.ads.vectors.text_embedder`) gives the vectors the interest
        audiences are built from (``index``: a search index whose post vectors and embedder to use instead);
        the pCTR features and the server use the LSA vectors either way."""
        cm = ClickModel.load(ads_dir, world)
        posts = read_posts(posts_path, ("post_id", "author_id", "text", "lang", "created_at", "conversation_id"))
        log(f"embedding {posts.num_rows:,} posts")
        vectors = build_user_vectors(posts)
        post_text = dict(zip(posts.column("post_id").to_pylist(), posts.column("text").to_pylist(), strict=True))
        imps, ads_t = read_logs(ads_dir)
        log(f"training pCTR on {imps.num_rows:,} impressions")
        lf = log_features(imps, ads_t, vectors, post_text)
        model, report = train_pctr(lf)
        history = History(prior=lf.background)
        ad_text = dict(zip(ads_t.column("ad_id").to_pylist(), ads_t.column("text").to_pylist(), strict=True))
        history.add(imps.column("user_id").to_pylist(), [ad_text[a] for a in imps.column("ad_id").to_pylist()],
                    imps.column("clicked").to_numpy(zero_copy_only=False))
        truth = load_truth(world)
        emb = None if index is not None else text_embedder(audience_embedder)
        if index is not None:
            log(f"audience vectors from the search index {index}")
            aud_vectors = build_user_vectors(posts, None, cache=cache, index=index)
        elif emb is None:
            aud_vectors = vectors
        else:
            log(f"audience vectors: {emb.name} over {posts.num_rows:,} posts (cached in {cache})")
            aud_vectors = build_user_vectors(posts, emb, cache=cache)
        builder = AudienceBuilder(posts, aud_vectors, follows=truth.follows)
        catalog = AudienceCatalog(work / "audiences")
        ads = pq.read_table(ads_dir / "ads.parquet").to_pydict()
        aud_of: dict[str, str] = {}
        for topic in sorted(set(ads["topic"])):
            aud = builder.interest(topic, min_share=min_share)
            if aud.size >= 100:
                catalog.put(f"interest-{topic}", aud)
                aud_of[topic] = f"interest-{topic}"
        log(f"{len(aud_of)} interest audiences of 100+ users")
        if not aud_of:
            raise InputError("no topic has an interest audience of 100 users; simulate on a larger world")
        pids = posts.column("post_id").to_numpy(zero_copy_only=False).astype(str)
        topics = cm.topic_index(truth.topics_of(pids.tolist()))
        urows = truth.user_rows(cm.user_ids)
        act = truth.users["posts"].to_numpy(zero_copy_only=False)[urows].astype(np.float64)
        start = dt.date.fromisoformat(truth.config.get("start", "2024-05-01")) + dt.timedelta(
            days=int(imps.column("day").to_numpy().max()) + 1)
        return cls(cm, vectors, catalog, model, history, ads, pids, posts.column("text").to_pylist(), topics,
                   act, start, aud_of, report, aud_vectors)


def make_campaigns(setup: SimSetup, cfg: SimConfig, rng: np.random.Generator) -> list[Campaign]:
    """``cfg.campaigns`` advertisers (among those whose topic has an audience), each with its ads as
    creatives, a CPC or CPM bid and a placeholder budget (:func:`run_seed` sets the real one)."""
    by_adv: dict[str, list[int]] = {}
    for i, a in enumerate(setup.ads["advertiser_id"]):
        if setup.ads["topic"][i] in setup.audience_of_topic:
            by_adv.setdefault(a, []).append(i)
    names = sorted(by_adv)
    chosen = sorted(rng.choice(len(names), min(cfg.campaigns, len(names)), replace=False).tolist())
    start = dt.datetime(setup.start.year, setup.start.month, setup.start.day, tzinfo=dt.UTC)
    out = []
    for k in chosen:
        rows = by_adv[names[k]]
        topic = setup.ads["topic"][rows[0]]
        if rng.random() < cfg.cpm_share:
            bid_type, bid = "cpm", round(float(rng.uniform(2.0, 10.0)), 2)
        else:
            bid_type, bid = "cpc", round(float(rng.uniform(0.3, 1.5)), 2)
        creatives = tuple(Creative(setup.ads["text"][i], setup.ads["url"][i], setup.ads["lang"][i]) for i in rows)
        out.append(Campaign(advertiser_id=names[k], name=f"{setup.ads['brand'][rows[0]]} {topic}", objective="traffic",
                            daily_budget=1_000_000.0, bid_type=bid_type, bid=bid,
                            audience=setup.audience_of_topic[topic], creatives=creatives, start=start,
                            frequency_cap=cfg.frequency_cap))
    return out


@dataclass
class ArmResult:
    impressions: int = 0
    clicks: int = 0
    spend: float = 0.0
    delivery: list[float] = field(default_factory=list)  # spend / budget per campaign-day
    held: list[float] = field(default_factory=list)      # share of its auctions it sat out (pacing, budget)
    supply_limited: list[bool] = field(default_factory=list)  # short of 90% in every auction, more likely than not
    cpc: list[bool] = field(default_factory=list)        # per campaign-day: a CPC campaign
    budget: list[float] = field(default_factory=list)    # per campaign-day: its daily budget
    miss_chance: list[float] = field(default_factory=list)  # short of 90%: its chance to miss in every auction
    day: list[int] = field(default_factory=list)         # per campaign-day: the day of the run (0: the first)
    early: list[float] = field(default_factory=list)     # share of its spend made by half the day's traffic

    def metrics(self) -> dict[str, float]:
        d = np.array(self.delivery) if self.delivery else np.zeros(1)
        limited = np.array(self.supply_limited, bool) if self.supply_limited else np.zeros(len(d), bool)
        ok = (d >= 0.9) & (d <= 1.01)
        return {"impressions": self.impressions, "clicks": self.clicks,
                "ctr": self.clicks / max(1, self.impressions), "spend": self.spend,
                "ecpc": self.spend / max(1, self.clicks),
                "delivery_ok": float(np.mean(ok)),
                # the day replayed with this campaign in every auction it can enter (the others paced as before,
                # same traffic) more likely than not spends under 90% (its clicks drawn from the hidden model's
                # probabilities): its audience cannot absorb the budget at its bid, which no pacer fixes (a miss
                # above all the same)
                "supply_limited": float(np.mean(limited)),
                "paced_ok": float(np.mean(ok[~limited])) if (~limited).any() else 1.0,
                "max_over": float(d.max() - 1.0)}


@dataclass
class _Traffic:
    users: np.ndarray    # click-model user rows
    secs: np.ndarray     # seconds into the day, sorted
    ctx: np.ndarray      # post rows
    u: np.ndarray        # uniforms [views, slots] for the click draws
    z: np.ndarray        # normals [views, slots] for the click noise


def _traffic(setup: SimSetup, cfg: SimConfig, rng: np.random.Generator) -> _Traffic:
    n = cfg.page_views
    weights = (setup.activity + 1) / (setup.activity + 1).sum()
    hour_p = np.array(DEFAULT_HOURLY) / sum(DEFAULT_HOURLY)
    return _Traffic(rng.choice(len(weights), n, p=weights),
                    np.sort(rng.choice(24, n, p=hour_p) * 3600 + rng.integers(0, 3600, n)),
                    rng.integers(0, len(setup.post_ids), n), rng.random((n, cfg.slots)),
                    rng.standard_normal((n, cfg.slots)))


def _serve_day(server: AdServer, setup: SimSetup, cfg: SimConfig, t: _Traffic, base: dt.datetime, tag: str,
               res: ArmResult, watch: int | None = None, exposure: list | None = None,
               capacity: np.ndarray | None = None) -> None:
    """Serve a day of page views in time order, drawing clicks from the hidden click model. ``watch``: a
    campaign whose impressions are appended to ``exposure`` as (true click probability, price, CPC).
    ``capacity`` (one per campaign): the server forecasts supply (:attr:`AdServer.shadow`) and each
    campaign's expected charge (under the hidden model: a CPC slot's true click probability times its
    price, a CPM slot's price) over the slots it would have won in every auction is added to it."""
    cm = setup.click_model
    text_to_ad = setup.text_to_ad
    batch = cfg.batch_minutes * 60
    if capacity is not None:
        server.shadow = []
    n, lo = len(t.users), 0
    while lo < n:
        hi = int(np.searchsorted(t.secs, (t.secs[lo] // batch + 1) * batch))
        reqs = [AdRequest(user_id=str(cm.user_ids[t.users[v]]), context_text=setup.post_texts[t.ctx[v]],
                          slots=cfg.slots, now=base + dt.timedelta(seconds=int(t.secs[v])), request_id=f"{tag}-{v}")
                for v in range(lo, hi)]
        for v, placed in zip(range(lo, hi), server.select_batch(reqs), strict=True):
            if not placed:
                continue
            k = len(placed)
            ads = np.array([text_to_ad[p.text] for p in placed])
            logit = cm.logit(np.full(k, t.users[v]), cm.ad_topic[ads], cm.ad_lang[ads], cm.appeal[ads],
                             cm.ad_effect[ads], np.arange(k), np.full(k, t.secs[v] // 3600),
                             np.full(k, setup.post_topic[t.ctx[v]]))
            clicked = cm.draw_clicks(logit, t.u[v, :k], t.z[v, :k])
            res.impressions += k
            if exposure is not None:
                prob = cm.probability(logit, t.z[v, :k])
                exposure += [(float(q), p.price if p.bid_type == "cpc" else p.price / 1000, p.bid_type == "cpc")
                             for p, q in zip(placed, prob.tolist(), strict=True) if p.campaign == watch]
            for p, c in zip(placed, clicked.tolist(), strict=True):
                if c:
                    res.clicks += 1
                    server.record_click(p)
        if capacity is not None and server.shadow:
            _add_capacity(server, setup, t, capacity, lo)
        lo = hi
    server.end_day()


def _add_capacity(server: AdServer, setup: SimSetup, t: _Traffic, capacity: np.ndarray, lo: int) -> None:
    """Add the expected charge of each slot the server's supply forecast holds (a batch's, from page view
    ``lo`` on; request ids end in the page view's number) to its campaign's ``capacity``, and empty it."""
    cm = setup.click_model
    sh = server.shadow
    assert sh is not None
    v = np.array([int(x.request_id.rsplit("-", 1)[1]) for x in sh])
    assert (v >= lo).all()
    c = np.array([x.campaign for x in sh])
    pos = np.array([x.position for x in sh])
    ads = np.array([setup.text_to_ad[server.cr[x.creative].text] for x in sh])
    logit = cm.logit(t.users[v], cm.ad_topic[ads], cm.ad_lang[ads], cm.appeal[ads], cm.ad_effect[ads], pos,
                     t.secs[v] // 3600, setup.post_topic[t.ctx[v]])
    prob = cm.probability(logit, t.z[v, pos])
    price = np.array([x.price for x in sh])
    np.add.at(capacity, c, np.where(server.is_cpc[c], prob * price, price / 1000))
    sh.clear()


def _server(setup: SimSetup, campaigns: list[Campaign], arm: str, seed: int, log_path: Path | None,
            cfg: SimConfig | None = None) -> AdServer:
    from murmur.ads.server import DecisionLog

    server_cfg = ServerConfig(policy=arm, seed=seed)
    if cfg is not None:
        server_cfg = replace(server_cfg, pacing_margin=cfg.pacing_margin, pacing_learn=cfg.pacing_learn,
                             pacing_doubt=cfg.pacing_doubt)
    return AdServer(campaigns, setup.catalog, setup.vectors, Featurizer(setup.vectors, setup.history),
                    setup.model if arm == "murmur" else None, server_cfg, decision_log=DecisionLog(log_path))


def _day_state(server: AdServer) -> tuple[tuple, dict]:
    """What a server carries into a day: what its pacer learned of each campaign's supply, its random state."""
    return server.pacer.learned(), server.rng.bit_generator.state


def _supply_limited(setup: SimSetup, cfg: SimConfig, campaigns: list[Campaign], arm: str, seed: int,
                    traffic: _Traffic, base: dt.datetime, tag: str, delivery: np.ndarray,
                    state: tuple[tuple, dict] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Which campaigns short of 90% of their budget on this day could not have reached it with any pacing,
    and each short campaign's chance to miss in every auction (NaN for the others). The day is replayed
    (same traffic, same draws) with that one campaign in every auction it can enter and no budget limit
    (until it reaches its budget the day is the same), the others paced as before: what it is shown is
    the most it could have been shown. Its clicks are then drawn anew from the hidden click model's
    probabilities for those impressions (:func:`miss_chance`), the chance that a pacer that knew
    everything but the clicks' coin flips would miss it. A campaign is supply-limited when that chance
    is at least a half: even in every auction it more likely misses than not. ``state``: the server's at the
    start of the day (:func:`_day_state`), so a later day of a run replays with what it had learned."""
    out = np.zeros(len(delivery), bool)
    chance = np.full(len(delivery), np.nan)
    for c in np.flatnonzero(delivery < 0.9).tolist():
        server = _server(setup, campaigns, arm, seed, None, cfg)
        if state is not None:
            server.pacer.set_learned(state[0])
            server.rng.bit_generator.state = state[1]
        server.pacer.full[c] = True
        server.pacer.unlimited[c] = True
        exposure: list = []
        _serve_day(server, setup, cfg, traffic, base, tag, ArmResult(), watch=c, exposure=exposure)
        chance[c] = miss_chance(exposure, float(server.pacer.budgets[c]) / MICROS,
                                np.random.default_rng([seed, c, 0x5E]))
        out[c] = chance[c] >= 0.5
    return out, chance


def miss_chance(exposure: list[tuple[float, float, bool]], budget: float, rng: np.random.Generator,
                draws: int = 4000) -> float:
    """The chance that a campaign shown ``exposure`` (click probability, price, CPC) spends under 90% of
    ``budget``: CPC impressions charge their price on a click drawn with its probability, CPM ones always."""
    if not exposure:
        return 1.0
    prob, price, cpc = (np.array(x) for x in zip(*exposure, strict=True))
    fixed = float(price[~cpc.astype(bool)].sum())
    q, pr = prob[cpc.astype(bool)], price[cpc.astype(bool)]
    spend = np.full(draws, fixed)
    for lo in range(0, len(q), 512):  # in blocks: draws x impressions stays small
        spend += (rng.random((draws, len(q[lo:lo + 512]))) < q[lo:lo + 512]) @ pr[lo:lo + 512]
    return float(np.mean(spend < 0.9 * budget))


def budgets_for(setup: SimSetup, cfg: SimConfig, campaigns: list[Campaign], seed: int, traffic: _Traffic,
                base: dt.datetime) -> np.ndarray:
    """Each campaign's daily budget (currency units): ``budget_fraction`` of what it could spend in a day
    taking part in every auction it can enter while the others are paced at their budgets, so budgets
    bind in both arms and a good pacer can reach them. Found on a probe day of its own traffic: first
    with every campaign unlimited, then ``budget_rounds`` times with every campaign paced at the budgets
    found so far. Prices fall as campaigns are paced (a second price is the next bidder's, and fewer
    bid), so what a campaign can spend among paced rivals is well under what it spends when all are
    unlimited (0.5-0.95 of it for most CPC campaigns on the demo world). A paced round's capacity per
    campaign: its expected charge (under the hidden click model) over the slots the server's supply
    forecast says it would have won in every auction it could enter with no budget limit, the others as
    they were (:attr:`AdServer.shadow`)."""
    probe = _server(setup, campaigns, "murmur", seed, None, cfg)
    _serve_day(probe, setup, cfg, traffic, base, "probe", ArmResult())
    budgets = cfg.budget_fraction * probe.daily[0][1] / MICROS
    for _ in range(cfg.budget_rounds):
        paced = [replace(c, daily_budget=max(round(float(b), 2), MIN_BUDGET))
                 for c, b in zip(campaigns, budgets, strict=True)]
        capacity = np.zeros(len(paced))
        _serve_day(_server(setup, paced, "murmur", seed, None, cfg), setup, cfg, traffic, base, "probe",
                   ArmResult(), capacity=capacity)
        budgets = cfg.budget_fraction * capacity
    return budgets


def run_seed(setup: SimSetup, cfg: SimConfig, seed: int, work: Path, store_url: str | None = None,
             decisions: Path | None = None) -> dict[str, ArmResult]:
    """One run: draw campaigns, set their budgets from probe days (:func:`budgets_for`, on other traffic),
    then serve both arms the same days and draw clicks from the hidden model."""
    rng = np.random.default_rng([seed, 0x51])
    campaigns = make_campaigns(setup, cfg, rng)
    base0 = dt.datetime(setup.start.year, setup.start.month, setup.start.day, tzinfo=dt.UTC)
    budgets = budgets_for(setup, cfg, campaigns, seed, _traffic(setup, cfg, np.random.default_rng([seed, 0xB0])),
                          base0)
    # a campaign that can spend next to nothing is left out of the run
    campaigns = [replace(c, daily_budget=round(float(b), 2)) for c, b in zip(campaigns, budgets, strict=True)
                 if b >= MIN_BUDGET]
    if not campaigns:
        raise InputError("no campaign could spend a budget on this traffic; raise page_views")
    store = CampaignStore(store_url or f"sqlite:///{work / f'campaigns-{seed}.db'}", audience_size=setup.catalog.size)
    try:
        campaigns = [store.create(c) for c in campaigns]
        servers = {arm: _server(setup, campaigns, arm, seed, decisions / f"{arm}-{seed}.jsonl" if decisions else None,
                                cfg) for arm in ARMS}
        results = {arm: ArmResult() for arm in ARMS}
        days, states = [], {arm: [] for arm in ARMS}
        for day in range(cfg.days):
            days.append(_traffic(setup, cfg, rng))
            for arm in ARMS:
                states[arm].append(_day_state(servers[arm]))
                _serve_day(servers[arm], setup, cfg, days[-1], base0 + dt.timedelta(days=day), f"{seed}-{day}",
                           results[arm])
        for arm in ARMS:
            server = servers[arm]
            for day, ((_, spend, _, _), (held, auctions), early) in enumerate(zip(server.daily, server.held_daily,
                                                                                   server.early_daily, strict=True)):
                delivery = spend / server.pacer.budgets
                results[arm].spend += float(spend.sum()) / MICROS
                results[arm].delivery.extend(delivery.tolist())
                results[arm].cpc.extend(server.is_cpc.tolist())
                results[arm].budget.extend((server.pacer.budgets / MICROS).tolist())
                results[arm].held.extend((held / np.maximum(auctions, 1)).tolist())
                results[arm].early.extend(early.tolist())
                limited, chance = _supply_limited(setup, cfg, campaigns, arm, seed, days[day],
                                                  base0 + dt.timedelta(days=day), f"{seed}-{day}", delivery,
                                                  states[arm][day])
                results[arm].supply_limited.extend(limited.tolist())
                results[arm].day.extend([day] * len(delivery))
                results[arm].miss_chance.extend(chance.tolist())
            if arm == "murmur":
                store.add_spend(server.spend_rows())
            server.decision_log.close()
        return results
    finally:
        store.close()


def _ci(values: np.ndarray) -> tuple[float, float]:
    """Mean and half-width of its 95% confidence interval (t distribution)."""
    from scipy import stats

    n = len(values)
    mean = float(np.mean(values))
    if n < 2:
        return mean, float("nan")
    return mean, float(stats.t.ppf(0.975, n - 1) * np.std(values, ddof=1) / math.sqrt(n))


@dataclass
class SimReport:
    per_seed: list[dict[str, dict[str, float]]]
    # every campaign-day: {"seed", "arm", "delivery" (spend / budget), "supply_limited", "cpc", "budget",
    # "held" (share of the auctions it could enter that it sat out), "miss_chance", "day", "early" (share of its
    # spend made by the time half the day's traffic had passed; NaN when it spent nothing)}
    campaign_days: list[dict] = field(default_factory=list)

    def delivery(self, arm: str = "murmur", days: range | None = None) -> dict[str, float]:
        """The distribution of spend / budget over the campaign-days of ``arm`` (``days``: of those days of each
        run only, 0 the first): quantiles, the share within ±10% and at most 1% over, how the misses split
        (supply-limited or the pacer's), the largest overspend."""
        rows = [r for r in self.campaign_days if r["arm"] == arm and (days is None or r.get("day", 0) in days)]
        if not rows:
            return {}
        d = np.array([r["delivery"] for r in rows])
        lim = np.array([r["supply_limited"] for r in rows], bool)
        held = np.array([r.get("held", 1.0) for r in rows])
        chance = np.array([r.get("miss_chance", np.nan) for r in rows], dtype=np.float64)
        ok = (d >= 0.9) & (d <= 1.01)
        q = np.quantile(d, [0.0, 0.05, 0.25, 0.5, 0.75, 1.0])
        early = np.array([r.get("early", np.nan) for r in rows], dtype=np.float64)
        early = early[np.isfinite(early)]
        eq = np.quantile(early, [0.1, 0.5, 0.9]) if len(early) else np.full(3, np.nan)
        short_feasible = (d < 0.9) & ~lim
        feasible = d[~lim]
        return {"campaign_days": len(d), "min": q[0], "p5": q[1], "p25": q[2], "median": q[3], "p75": q[4],
                "max": q[5], "ok": float(ok.mean()), "under": int((d < 0.9).sum()),
                "early_p10": eq[0], "early_median": eq[1], "early_p90": eq[2],
                "under_supply_limited": int(((d < 0.9) & lim).sum()),
                # short, not supply-limited, yet the pacer held it out of under 5% of its auctions: it took part
                # in nearly everything and its clicks fell short (see ``feasible_under_noise``)
                "under_took_part": int(((d < 0.9) & ~lim & (held < 0.05)).sum()),
                "under_paced": int(((d < 0.9) & ~lim & (held >= 0.05)).sum()),
                # the misses a pacer that knew everything but the clicks' coin flips would expect among these
                # days: each short day's chance to miss even in every auction (NaN-free: only short days have one)
                "under_noise": float(np.nansum(np.where(d < 0.9, chance, 0.0))),
                "feasible_under": int(short_feasible.sum()),
                "feasible_under_noise": float(np.nansum(np.where(short_feasible, chance, 0.0))),
                "over": int((d > 1.01).sum()), "max_over": float(d.max() - 1.0),
                "feasible": len(feasible), "feasible_ok": float(ok[~lim].mean()) if len(feasible) else float("nan"),
                "feasible_min": float(feasible.min()) if len(feasible) else float("nan")}

    def delivery_table(self) -> str:
        rows = [f"{'spend / budget per campaign-day':<34} {'murmur':>10} {'random':>10}"]
        ds = {arm: self.delivery(arm) for arm in ARMS}
        if not all(ds.values()):
            return ""
        for key, label, fmt in [("campaign_days", "campaign-days", "{:,}"), ("min", "minimum", "{:.1%}"),
                                ("p5", "5th percentile", "{:.1%}"), ("p25", "25th percentile", "{:.1%}"),
                                ("median", "median", "{:.1%}"), ("max", "maximum", "{:.2%}"),
                                ("ok", "within -10%..+1%", "{:.1%}"), ("under", "under 90%", "{:,}"),
                                ("under_supply_limited", "  of which supply-limited", "{:,}"),
                                ("under_took_part", "  in >95% of its auctions", "{:,}"),
                                ("under_paced", "  held back by the pacer", "{:,}"),
                                ("under_noise", "  expected in every auction", "{:.1f}"),
                                ("feasible_under", "under 90%, not supply-limited", "{:,}"),
                                ("feasible_under_noise", "  expected in every auction", "{:.1f}"),
                                ("over", "over by more than 1%", "{:,}"),
                                ("feasible_ok", "within, not supply-limited", "{:.1%}"),
                                ("feasible_min", "minimum, not supply-limited", "{:.1%}"),
                                ("early_p10", "spent by half the traffic, p10", "{:.1%}"),
                                ("early_median", "  median", "{:.1%}"), ("early_p90", "  90th percentile", "{:.1%}")]:
            rows.append(f"{label:<34} " + " ".join(f"{fmt.format(ds[arm][key]):>10}" for arm in ARMS))
        return "\n".join(rows)

    def summary(self) -> dict[str, dict[str, tuple[float, float]]]:
        out: dict[str, dict[str, tuple[float, float]]] = {}
        for arm in ARMS:
            out[arm] = {m: _ci(np.array([s[arm][m] for s in self.per_seed])) for m in METRICS}
        out["lift"] = {m: _ci(np.array([s["murmur"][m] / s["random"][m] - 1 if s["random"][m] else np.nan
                                        for s in self.per_seed])) for m in ("clicks", "ctr", "spend")}
        return out

    def table(self) -> str:
        s = self.summary()
        fmt = {"impressions": "{:,.0f}", "clicks": "{:,.0f}", "ctr": "{:.3%}", "spend": "{:,.2f}", "ecpc": "{:.3f}",
               "delivery_ok": "{:.0%}", "supply_limited": "{:.0%}", "paced_ok": "{:.0%}", "max_over": "{:+.2%}"}
        rows = [f"{'metric':<12} {'murmur':>26} {'random':>26}"]
        for m in METRICS:
            cells = []
            for arm in ARMS:
                mean, hw = s[arm][m]
                cells.append(f"{fmt[m].format(mean)} ± {fmt[m].format(hw) if not math.isnan(hw) else '-'}")
            rows.append(f"{m:<12} {cells[0]:>26} {cells[1]:>26}")
        for m in ("clicks", "ctr", "spend"):
            mean, hw = s["lift"][m]
            rows.append(f"lift {m:<7} {mean:+.1%} ± {hw:.1%}" if not math.isnan(hw) else f"lift {m:<7} {mean:+.1%}")
        dist = self.delivery_table()
        return "\n".join(rows) + ("\n\n" + dist if dist else "")


def simulate(setup: SimSetup, cfg: SimConfig, work: Path | None = None, store_url: str | None = None,
             decisions: Path | None = None, log: Callable[[str], None] = lambda s: None) -> SimReport:
    cfg.check()
    per_seed, days = [], []
    with tempfile.TemporaryDirectory(prefix="murmur-ads-sim-") as tmp:
        for seed in range(cfg.seeds):
            res = run_seed(setup, cfg, seed, Path(work or tmp), store_url, decisions)
            per_seed.append({arm: r.metrics() for arm, r in res.items()})
            days += [{"seed": seed, "arm": arm, "delivery": d, "supply_limited": bool(lim), "cpc": bool(cpc),
                      "budget": b, "held": h, "miss_chance": mc, "day": day, "early": e}
                     for arm, r in res.items()
                     for d, lim, cpc, b, h, mc, day, e in zip(r.delivery, r.supply_limited, r.cpc, r.budget, r.held,
                                                              r.miss_chance, r.day, r.early, strict=True)]
            m, r = per_seed[-1]["murmur"], per_seed[-1]["random"]
            log(f"seed {seed}: murmur CTR {m['ctr']:.3%} clicks {m['clicks']:,} spend {m['spend']:,.2f} | "
                f"random CTR {r['ctr']:.3%} clicks {r['clicks']:,} spend {r['spend']:,.2f}")
    return SimReport(per_seed, days)
