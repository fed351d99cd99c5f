"""Ad selection: which ads a user sees beside a post or a search, and what each costs.

For each request (:class:`AdRequest`) the server

1. refuses to place ads beside an unsafe context (:mod:`murmur.ads.safety`);
2. takes the live campaigns whose audience holds the user (targeting);
3. drops those at their frequency cap for this user today, and those the pacer holds back
   (:mod:`murmur.ads.pacing`: budget spread through the day, never past it);
4. scores every creative of the rest by pCTR (:mod:`murmur.ads.pctr`, at position 0) and keeps each
   campaign's best;
5. ranks campaigns by expected value × quality (quality: 0.5 + 0.5 × the creative's similarity to the
   context, to the power ``quality_weight``) and prices them by a generalised second-price auction
   (:mod:`murmur.ads.auction`).

CPM campaigns are charged when the ad is served, CPC campaigns when :meth:`AdServer.record_click`
reports a click. Every decision (candidates, what filtered them, winners, prices) is written as one
JSON line to the decision log. Requests are served in batches (:meth:`AdServer.select_batch`): pCTR
is computed for the whole batch at once, then the auctions run one by one in order, so budgets,
caps and pacing see every earlier decision. ``policy="random"`` keeps everything but ranks at random
and charges the bid: the control arm of the A/B test.

Supply forecasting (``shadow``, murmur's policy): each auction is also run, for every campaign that
could have entered it (targeted, under its frequency cap as counted in this forecast) but did not take
part or was stopped by its budget, with that campaign added, as if it took part in every auction and
had no budget. Where it would have won a slot, a :class:`Shadow` is appended to :attr:`AdServer.shadow`:
what the campaign could have bought, one auction at a time, the others as they were (a single
campaign's deviation; what it would have taken from the others is not followed further). The
simulator sums their expected charges into each campaign's capacity, which sets its budget.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from murmur.ads.auction import Outcome, expected_value, first_price, gsp
from murmur.ads.audiences import AudienceCatalog
from murmur.ads.pacing import Pacer, slot_shares
from murmur.ads.pctr import Featurizer
from murmur.ads.safety import unsafe_reason
from murmur.ads.store import MICROS, Campaign
from murmur.ads.vectors import UserVectors
from murmur.config import knob
from murmur.errors import InputError

# Share of the day's traffic in each UTC hour (the demo world's posting rhythm); a network passes its own.
DEFAULT_HOURLY = (3, 2, 1.5, 1, 1, 1.5, 2.5, 4, 5, 5.5, 6, 6.5, 7, 6.5, 6, 6, 6, 6.5, 7.5, 8, 8, 7, 5.5, 4)
MAX_SLOTS = 10


@dataclass(frozen=True)
class ServerConfig:
    reserve_cpm: float = knob(1.0, "reserve price: the least expected value per 1000 impressions an ad must bring")
    quality_weight: float = knob(1.0, "exponent of the quality term (context relevance) in the rank score")
    slot_minutes: int = knob(15, "pacing slot length in minutes")
    pacing_p0: float = knob(0.2, "participation rate of a campaign before its spend rate is known")
    pacing_margin: float = knob(0.3, "pacing plans to spend each budget by the time 1 - margin of the day's traffic passed")
    pacing_learn: float = knob(0.5, "weight of the newest day in each campaign's learned supply curve (0: traffic curve only)")
    pacing_doubt: float = knob(0.0, "plan on a spend rate this many standard deviations of a campaign's charge count low "
                                    "(0: on its calibrated rate)")
    policy: str = knob("murmur", "murmur (pCTR ranking, second price) or random (random order, pay the bid)")
    seed: int = knob(0, "seed of the pacing draws (and of the random policy)")


@dataclass
class AdRequest:
    user_id: str
    context_text: str | None = None     # the post beside the ads, or the search query
    context_post_id: str | None = None  # looked up in the server's posts when no text is given
    slots: int = 1
    now: dt.datetime | None = None
    request_id: str = ""


@dataclass(frozen=True)
class Placement:
    request_id: str
    position: int
    campaign_id: int
    creative_id: int
    text: str
    url: str
    image: str | None
    bid_type: str
    pctr: float
    price: float            # per click (CPC) or per 1000 impressions (CPM), currency units
    campaign: int           # index inside the server

    def to_dict(self) -> dict:
        return {"request_id": self.request_id, "position": self.position, "campaign_id": self.campaign_id,
                "creative_id": self.creative_id, "text": self.text, "url": self.url, "image": self.image,
                "bid_type": self.bid_type, "pctr": round(self.pctr, 6), "price": round(self.price, 6)}


@dataclass(frozen=True)
class Shadow:
    """A slot a campaign would have won in every auction with no budget limit (see the module docstring)."""

    request_id: str
    campaign: int           # index inside the server
    position: int
    creative: int           # index into the server's creatives
    pctr: float
    price: float            # per click (CPC) or per 1000 impressions (CPM), currency units


class DecisionLog:
    """Append-only JSON lines, one per decision (buffered; :meth:`close` flushes)."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self._f: IO[str] | None = None
        self._lock = threading.Lock()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(self.path, "a", encoding="utf-8", buffering=1 << 16)

    def write(self, record: dict) -> None:
        if self._f is not None:
            with self._lock:
                self._f.write(json.dumps(record, separators=(",", ":")) + "\n")

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def _epoch(t: dt.datetime | None) -> float:
    return t.timestamp() if t is not None else float("inf")


@dataclass
class AdServer:
    campaigns: list[Campaign]
    catalog: AudienceCatalog
    vectors: UserVectors
    featurizer: Featurizer
    model: object | None                      # a pCTR model with predict(x); None only for the random policy
    cfg: ServerConfig = field(default_factory=ServerConfig)
    hourly: Sequence[float] = DEFAULT_HOURLY
    post_text: dict[str, str] = field(default_factory=dict)
    decision_log: DecisionLog = field(default_factory=lambda: DecisionLog(None))

    def __post_init__(self) -> None:
        if self.cfg.policy not in ("murmur", "random"):
            raise InputError(f"policy must be murmur or random (got {self.cfg.policy!r})", field="policy")
        if self.cfg.policy == "murmur" and self.model is None:
            raise InputError("the murmur policy needs a pCTR model", field="model")
        for name, top in (("pacing_learn", 1.0), ("pacing_doubt", 5.0)):
            if not 0.0 <= getattr(self.cfg, name) <= top:
                raise InputError(f"{name} must be 0-{top:g} (got {getattr(self.cfg, name)})", field=name)
        cs = self.campaigns
        n = len(cs)
        self.rng = np.random.default_rng(self.cfg.seed)
        self.is_cpc = np.array([c.bid_type == "cpc" for c in cs], dtype=bool)
        self.bid = np.array([c.bid for c in cs], dtype=np.float64)
        self.cap = np.array([c.frequency_cap for c in cs], dtype=np.int64)
        self.start = np.array([c.start.timestamp() for c in cs])
        self.end = np.array([_epoch(c.end) for c in cs])
        self.active = np.array([c.status == "active" for c in cs], dtype=bool)
        budgets = np.array([c.daily_budget_micros for c in cs], dtype=np.int64)
        event = np.round(np.where(self.is_cpc, self.bid, self.bid / 1000) * MICROS)
        self.pacer = Pacer(budgets, slot_shares(np.array(self.hourly), self.cfg.slot_minutes),
                           p0=self.cfg.pacing_p0, margin=self.cfg.pacing_margin, event_micros=event,
                           learn=self.cfg.pacing_learn, calib_z=self.cfg.pacing_doubt)
        # targeting: user row -> campaigns whose audience holds the user (CSR)
        pairs_u, pairs_c = [], []
        for i, c in enumerate(cs):
            rows = self.vectors.rows(self.catalog.get(c.audience).user_ids)
            rows = rows[rows >= 0]
            pairs_u.append(rows)
            pairs_c.append(np.full(len(rows), i, np.int32))
        u = np.concatenate(pairs_u) if pairs_u else np.zeros(0, np.int64)
        cc = np.concatenate(pairs_c) if pairs_c else np.zeros(0, np.int32)
        order = np.argsort(u, kind="stable")
        self.t_ptr = np.concatenate([[0], np.cumsum(np.bincount(u, minlength=len(self.vectors.user_ids)))])
        self.t_campaigns = cc[order]
        # creatives, flattened
        self.cr_campaign = np.array([i for i, c in enumerate(cs) for _ in c.creatives], dtype=np.int64)
        self.cr = [cr for c in cs for cr in c.creatives]
        self.cr_ptr = np.concatenate([[0], np.cumsum([len(c.creatives) for c in cs])]).astype(np.int64)
        texts = [cr.text for cr in self.cr]
        self.cr_vec = self.vectors.embedder.encode(texts) if texts else np.zeros((0, self.vectors.matrix.shape[1]))
        self.cr_lang = [cr.lang for cr in self.cr]
        self.freq: dict[tuple[int, int], int] = defaultdict(int)
        self.day: dt.date | None = None
        self.spend_today = np.zeros(n, np.int64)
        self.imps_today = np.zeros(n, np.int64)
        self.clicks_today = np.zeros(n, np.int64)
        self.held_today = np.zeros(n, np.int64)   # auctions a campaign sat out because of pacing or its budget
        self.daily: list[tuple[dt.date, np.ndarray, np.ndarray, np.ndarray]] = []
        self.auctions_today = np.zeros(n, np.int64)  # auctions it could enter (targeted, under its frequency cap)
        self.held_daily: list[tuple[np.ndarray, np.ndarray]] = []
        self.early_daily: list[np.ndarray] = []  # per day: share of each campaign's spend made by half the traffic
        # supply forecasting (module docstring): None, or a list the auctions append Shadow slots to
        self.shadow: list[Shadow] | None = None
        self._shadow_freq: dict[tuple[int, int], int] = defaultdict(int)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ time
    def _at(self, now: dt.datetime) -> None:
        day = now.date()
        if day != self.day:
            if self.day is not None:
                self._close_day()
            self.day = day
            self.pacer.new_day()
            self.freq.clear()
            self._shadow_freq.clear()
            self.spend_today[:] = 0
            self.imps_today[:] = 0
            self.clicks_today[:] = 0
            self.held_today[:] = 0
            self.auctions_today[:] = 0
        minutes = now.hour * 60 + now.minute
        self.pacer.advance(minutes // self.cfg.slot_minutes)

    def resume(self, day: dt.date, spent_micros: dict[int, int]) -> None:
        """Start ``day`` with what each campaign (by id) has already spent today, e.g. from the store."""
        self._at(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC))
        self.pacer.resume(np.array([spent_micros.get(int(c.id or -1), 0) for c in self.campaigns], np.int64))

    def learned(self) -> dict[int, tuple[np.ndarray, float]]:
        """What the pacer learned of each campaign's supply over the days served (its capacity per slot, as
        shares, and its day's capacity), by campaign id."""
        share, level = self.pacer.learned()
        return {int(c.id if c.id is not None else -1): (share[i], float(level[i]))
                for i, c in enumerate(self.campaigns)}

    def adopt(self, learned: dict[int, tuple[np.ndarray, float]]) -> None:
        """Take over what an earlier server over (some of) the same campaigns learned (:meth:`learned`)."""
        share, level = self.pacer.learned()
        for i, c in enumerate(self.campaigns):
            row = learned.get(int(c.id if c.id is not None else -1))
            if row is not None and len(row[0]) == share.shape[1]:
                share[i], level[i] = row
        self.pacer.set_learned((share, level))

    def end_day(self) -> None:
        """Close the current day's books (the simulator calls it after the last request of a day)."""
        if self.day is not None:
            self._close_day()
            self.day = None

    def _close_day(self) -> None:
        self.pacer.end_day()
        self.daily.append((self.day, self.spend_today.copy(), self.imps_today.copy(), self.clicks_today.copy()))
        self.held_daily.append((self.held_today.copy(), self.auctions_today.copy()))
        spent = self.pacer.spent
        self.early_daily.append(np.where(spent > 0, self.pacer.spent_at_half / np.maximum(spent, 1), np.nan))

    # ------------------------------------------------------------------ selection
    def candidates(self, user_row: int, when: float) -> np.ndarray:
        if user_row < 0:
            return np.zeros(0, np.int64)
        cs = self.t_campaigns[self.t_ptr[user_row]:self.t_ptr[user_row + 1]].astype(np.int64)
        live = self.active[cs] & (self.start[cs] <= when) & (when < self.end[cs])
        return cs[live]

    def select(self, req: AdRequest) -> list[Placement]:
        return self.select_batch([req])[0]

    def select_batch(self, reqs: Sequence[AdRequest]) -> list[list[Placement]]:
        with self._lock:
            return self._select_batch(reqs)

    def _select_batch(self, reqs: Sequence[AdRequest]) -> list[list[Placement]]:
        for r in reqs:
            if not 1 <= r.slots <= MAX_SLOTS:
                raise InputError(f"slots must be 1-{MAX_SLOTS} (got {r.slots})", field="slots")
            if r.now is None:
                r.now = dt.datetime.now(dt.UTC)
            if not r.request_id:
                r.request_id = uuid.uuid4().hex[:16]
        user_rows = self.vectors.rows([r.user_id for r in reqs])
        texts = [r.context_text if r.context_text is not None else self.post_text.get(r.context_post_id or "")
                 for r in reqs]
        unsafe = [unsafe_reason(t) for t in texts]
        cands = [self.candidates(int(u), r.now.timestamp()) if bad is None else np.zeros(0, np.int64)
                 for r, u, bad in zip(reqs, user_rows, unsafe, strict=True)]
        # every creative of every candidate campaign, scored at once
        rows_req, rows_cr = [], []
        for i, cs in enumerate(cands):
            for c in cs.tolist():
                crs = np.arange(self.cr_ptr[c], self.cr_ptr[c + 1])
                rows_req.append(np.full(len(crs), i))
                rows_cr.append(crs)
        req_idx = np.concatenate(rows_req) if rows_req else np.zeros(0, np.int64)
        cr_idx = np.concatenate(rows_cr) if rows_cr else np.zeros(0, np.int64)
        ctx = np.zeros((len(reqs), self.cr_vec.shape[1]), np.float32)
        with_text = [i for i, t in enumerate(texts) if t]
        if with_text and len(req_idx):
            ctx[with_text] = self.vectors.embedder.encode([texts[i] for i in with_text], "query")
        sim_ctx = np.einsum("ij,ij->i", ctx[req_idx], self.cr_vec[cr_idx]) if len(req_idx) else np.zeros(0)
        if self.cfg.policy == "murmur" and len(req_idx):
            x = self.featurizer.features(
                user_rows[req_idx], [reqs[i].user_id for i in req_idx.tolist()], self.cr_vec[cr_idx],
                [self.cr[j].text for j in cr_idx.tolist()], [self.cr_lang[j] for j in cr_idx.tolist()], ctx[req_idx],
                np.array([reqs[i].now.hour for i in req_idx.tolist()]), np.zeros(len(req_idx)))
            pctr = np.asarray(self.model.predict(x), dtype=np.float64)  # type: ignore[union-attr]
        else:
            pctr = np.full(len(req_idx), np.nan)
        bounds = np.searchsorted(req_idx, np.arange(len(reqs) + 1))
        out = []
        for i, r in enumerate(reqs):
            sl = slice(bounds[i], bounds[i + 1])
            out.append(self._auction(r, int(user_rows[i]), unsafe[i], cr_idx[sl], pctr[sl], sim_ctx[sl]))
        return out

    def _auction(self, r: AdRequest, user_row: int, unsafe: str | None, cr_idx: np.ndarray, pctr: np.ndarray,
                 sim_ctx: np.ndarray) -> list[Placement]:
        assert r.now is not None
        self._at(r.now)
        log = {"ts": r.now.isoformat(), "request_id": r.request_id, "user_id": r.user_id, "slots": r.slots,
               "policy": self.cfg.policy}
        if unsafe is not None:
            self.decision_log.write({**log, "outcome": "unsafe_context", "reason": unsafe})
            return []
        camp = self.cr_campaign[cr_idx]
        uniq = np.unique(camp)
        log["candidates"] = int(len(uniq))
        capped = np.array([self.freq.get((int(c), user_row), 0) >= self.cap[c] for c in uniq], dtype=bool)
        ok = ~capped
        paced = np.zeros(len(uniq), bool)
        if len(uniq):
            u = self.rng.random(len(uniq))
            paced[ok] = self.pacer.eligible(uniq[ok], u[ok])
        log["frequency_capped"] = int(capped.sum())
        log["paced_out"] = int((ok & ~paced).sum())
        self.held_today[uniq[ok & ~paced]] += 1
        self.auctions_today[uniq[ok]] += 1
        keep = uniq[ok & paced]
        shadow = self.shadow is not None and self.cfg.policy == "murmur"
        if len(keep) == 0 and not shadow:
            self.decision_log.write({**log, "outcome": "no_ads"})
            return []
        # each campaign's best creative
        best = np.empty(len(keep), np.int64)
        for k, c in enumerate(keep.tolist()):
            m = np.flatnonzero(camp == c)
            best[k] = m[np.argmax(pctr[m])] if self.cfg.policy == "murmur" else m[self.rng.integers(len(m))]
        slots = min(r.slots, len(keep))
        if self.cfg.policy == "murmur":
            p = pctr[best]
            res = self._gsp(keep, best, pctr, sim_ctx, slots)
            if shadow:
                self._shadow_auctions(r, user_row, uniq, keep, camp, cr_idx, pctr, sim_ctx, best, res)
            if len(keep) == 0:
                self.decision_log.write({**log, "outcome": "no_ads"})
                return []
        else:
            p = np.full(len(keep), np.nan)
            res = first_price(self.rng.permutation(len(keep)), self.bid[keep], slots)
        placements: list[Placement] = []
        for w, price in zip(res.winners.tolist(), res.prices.tolist(), strict=True):
            c = int(keep[w])
            event = round(price * MICROS) if self.is_cpc[c] else round(price * MICROS / 1000)
            # a click's price may pass what is left (the charge is clamped to it); an impression's may not
            if not (self.pacer.has_budget(c) if self.is_cpc[c] else self.pacer.affordable(c, event)):
                self.held_today[c] += 1
                continue
            pos = len(placements)
            cr = self.cr[int(cr_idx[best[w]])]
            self.freq[(c, user_row)] += 1
            self.imps_today[c] += 1
            if not self.is_cpc[c]:
                self._charge(c, round(price * MICROS / 1000))
            elif np.isfinite(p[w]):
                self.pacer.expect(c, float(p[w]) * event)
            placements.append(Placement(r.request_id, pos, int(self.campaigns[c].id or c), int(cr.id or 0), cr.text,
                                        cr.url, cr.image, self.campaigns[c].bid_type, float(p[w]), float(price), c))
        log["outcome"] = "served"
        log["winners"] = [{"campaign_id": pl.campaign_id, "creative_id": pl.creative_id, "position": pl.position,
                           "pctr": None if np.isnan(pl.pctr) else round(pl.pctr, 6), "price": round(pl.price, 6),
                           "bid_type": pl.bid_type} for pl in placements]
        self.decision_log.write(log)
        return placements

    def _gsp(self, cands: np.ndarray, idx: np.ndarray, pctr: np.ndarray, sim_ctx: np.ndarray, slots: int) -> Outcome:
        """murmur's auction among campaigns ``cands``, each with its creative at row ``idx`` of ``pctr`` and
        ``sim_ctx``: ranked by expected value x quality, priced by second price over the reserve."""
        p = pctr[idx]
        quality = (0.5 + 0.5 * np.clip(sim_ctx[idx], 0.0, 1.0)) ** self.cfg.quality_weight
        return gsp(expected_value(self.is_cpc[cands], self.bid[cands], p), quality, self.is_cpc[cands],
                   self.bid[cands], p, slots, self.cfg.reserve_cpm / 1000.0)

    def _shadow_auctions(self, r: AdRequest, user_row: int, uniq: np.ndarray, keep: np.ndarray, camp: np.ndarray,
                         cr_idx: np.ndarray, pctr: np.ndarray, sim_ctx: np.ndarray, best: np.ndarray,
                         res: Outcome) -> None:
        """Supply forecasting (module docstring): the slot each campaign that could enter this auction would win
        had it taken part with no budget limit, the others as they are; appended to :attr:`shadow`."""
        assert self.shadow is not None
        won = {int(keep[w]): (k, float(price)) for k, (w, price) in enumerate(zip(res.winners.tolist(),
                                                                                 res.prices.tolist(), strict=True))}
        for c in uniq.tolist():
            if self._shadow_freq[(c, user_row)] >= self.cap[c]:
                continue
            if c in won:
                pos, price = won[c]
                i = best[int(np.flatnonzero(keep == c)[0])]
            elif c in keep:
                continue  # it took part and lost
            else:
                m = np.flatnonzero(camp == c)
                i = m[np.argmax(pctr[m])]
                out = self._gsp(np.append(keep, c), np.append(best, i), pctr, sim_ctx, min(r.slots, len(keep) + 1))
                at = np.flatnonzero(out.winners == len(keep))
                if not len(at):
                    continue
                pos, price = int(at[0]), float(out.prices[at[0]])
            self._shadow_freq[(c, user_row)] += 1
            self.shadow.append(Shadow(r.request_id, c, pos, int(cr_idx[i]), float(pctr[i]), price))

    def _charge(self, c: int, micros: int, expected: bool = False) -> None:
        micros = self.pacer.room(c, micros)  # never past the budget
        if micros > 0:
            self.pacer.charge(c, micros, expected)
            self.spend_today[c] += micros

    def record_click(self, pl: Placement) -> None:
        """A click on a served ad: charges a CPC campaign its second price."""
        with self._lock:
            self.clicks_today[pl.campaign] += 1
            if self.is_cpc[pl.campaign]:
                self._charge(pl.campaign, round(pl.price * MICROS), expected=bool(np.isfinite(pl.pctr)))
            self.decision_log.write({"event": "click", "request_id": pl.request_id, "campaign_id": pl.campaign_id,
                                     "creative_id": pl.creative_id, "price": round(pl.price, 6)})

    def spend_rows(self) -> list[tuple[int, dt.date, int, int, int]]:
        """Per campaign and day: (campaign id, day, spend micros, impressions, clicks), for the store."""
        days = list(self.daily)
        if self.day is not None:
            days.append((self.day, self.spend_today, self.imps_today, self.clicks_today))
        return [(int(self.campaigns[c].id or c), d, int(s[c]), int(im[c]), int(cl[c]))
                for d, s, im, cl in days for c in range(len(self.campaigns)) if im[c] or s[c]]
