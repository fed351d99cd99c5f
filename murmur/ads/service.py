"""The ads service: everything the HTTP routes and the CLI share, built once from an :class:`AdsConfig`.

It holds the user vectors, the audience catalog (and a builder for new audiences), the campaign
store, the pCTR model and the click history, and an :class:`~murmur.ads.server.AdServer` over the
live campaigns that is rebuilt whenever a campaign is added.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from murmur.ads.audiences import KINDS, Audience, AudienceBuilder, AudienceCatalog
from murmur.ads.pctr import Featurizer, History, history_from_logs, load_pctr
from murmur.ads.server import AdRequest, AdServer, DecisionLog, Placement, ServerConfig
from murmur.ads.store import MIN_AUDIENCE, Campaign, CampaignStore
from murmur.ads.vectors import build_user_vectors, read_posts, text_embedder
from murmur.config import knob
from murmur.errors import InputError

FLUSH_SECONDS = 10.0  # spend reaches the store at least this often while ads are served


@dataclass(frozen=True)
class AdsConfig:
    posts: str = knob("", "clean posts Parquet (`murmur data clean`): user vectors and audiences come from it")
    audiences: str = knob("audiences", "directory of audience files (NAME.parquet)")
    database: str = knob("sqlite:///ads.db", "campaign database URL (SQLite file, or postgresql+psycopg://...)")
    pctr: str = knob("", "pCTR model directory (`murmur ads pctr`)")
    logs: str = knob("", "impression/click logs directory (history features), e.g. `murmur ads world` output")
    follows: str = knob("", "follow graph Parquet (src, dst) for look-alike audiences")
    decisions: str = knob("", "decision log (JSON lines) to append to; empty: no log")
    audience_embedder: str = knob("default", "vectors new audiences are built from: default (search's packaged "
                                  "embedder, measured best), lsa, or an embedder directory")
    index: str = knob("", "search index directory whose post vectors the audiences reuse (skips embedding them)")
    vector_cache: str = knob("", "directory caching audience post vectors by post id (default: <audiences>/.vectors)")
    copy_prompt: str = knob("post", "how the served model is asked for ad copy: post (a post opening with the brief, "
                            "continued; measured better with the demo's model) or chat (the copy conversation of "
                            "the fine-tuning data)")


class AdsService:
    def __init__(self, cfg: AdsConfig, server_cfg: ServerConfig | None = None):
        import pyarrow.parquet as pq

        from murmur.ads.copy import check_prompt

        self.copy_prompt = check_prompt(cfg.copy_prompt, field="copy_prompt")
        if not cfg.posts:
            raise InputError("the ads service needs the clean posts (posts=...)", field="posts")
        if not cfg.pctr:
            raise InputError("the ads service needs a pCTR model (pctr=...)", field="pctr")
        posts = read_posts(cfg.posts, ("post_id", "author_id", "text", "lang", "created_at", "conversation_id"))
        self.vectors = build_user_vectors(posts)
        self.post_text = dict(zip(posts.column("post_id").to_pylist(), posts.column("text").to_pylist(), strict=True))
        follows = pq.read_table(cfg.follows, columns=["src", "dst"]) if cfg.follows else None
        if cfg.index or cfg.audience_embedder != "lsa":
            emb = None if cfg.index else text_embedder(cfg.audience_embedder)
            cache = Path(cfg.vector_cache) if cfg.vector_cache else Path(cfg.audiences) / ".vectors"
            self.audience_vectors = build_user_vectors(posts, emb, cache=cache, index=cfg.index or None)
        else:
            self.audience_vectors = self.vectors
        self.builder = AudienceBuilder(posts, self.audience_vectors, follows=follows)
        self.catalog = AudienceCatalog(Path(cfg.audiences))
        self.model, self.pctr_meta = load_pctr(Path(cfg.pctr))
        self.history = history_from_logs(Path(cfg.logs)) if cfg.logs else History(
            prior=float(self.pctr_meta.get("background_ctr", 0.02)))
        self.store = CampaignStore(cfg.database, audience_size=self.catalog.size,
                                   file_exists=lambda p: Path(p).is_file())
        self.server_cfg = server_cfg or ServerConfig()
        self.decisions = DecisionLog(cfg.decisions or None)
        self._lock = threading.Lock()
        self._recent: OrderedDict[tuple[str, int], Placement] = OrderedDict()
        self._last_flush = time.monotonic()
        self.reload()

    def reload(self) -> None:
        """Rebuild the ad server over the campaigns in the store (spend so far today is kept by the store)."""
        campaigns = [c for c in self.store.list() if c.status == "active"]
        server = AdServer(campaigns, self.catalog, self.vectors, Featurizer(self.vectors, self.history), self.model,
                          self.server_cfg, post_text=self.post_text, decision_log=self.decisions)
        with self._lock:
            if getattr(self, "server", None) is not None:  # the old server's spend goes to the store first
                self._flush_locked()
                server.adopt(self.server.learned())  # and what its pacer learned of each campaign's supply
            self._flushed: dict[tuple[int, dt.date], tuple[int, int, int]] = {}
            today = dt.datetime.now(dt.UTC).date()
            server.resume(today, {cid: v[0] for cid, v in self.store.spend(today).items()})
            self.server = server

    def _flush_locked(self) -> None:
        """Add the spend since the last flush to the store."""
        rows = []
        for cid, day, spend, imps, clicks in self.server.spend_rows():
            a, b, c = self._flushed.get((cid, day), (0, 0, 0))
            if (spend, imps, clicks) != (a, b, c):
                rows.append((cid, day, spend - a, imps - b, clicks - c))
                self._flushed[(cid, day)] = (spend, imps, clicks)
        if rows:
            self.store.add_spend(rows)
        self._last_flush = time.monotonic()

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def select(self, req: AdRequest) -> list[Placement]:
        placed = self.server.select(req)
        with self._lock:
            for p in placed:
                self._recent[(p.request_id, p.position)] = p
            while len(self._recent) > 100_000:
                self._recent.popitem(last=False)
            if time.monotonic() - self._last_flush > FLUSH_SECONDS:
                self._flush_locked()
        return placed

    def click(self, request_id: str, position: int) -> Placement:
        with self._lock:
            p = self._recent.get((request_id, position))
        if p is None:
            raise InputError(f"no recent ad {request_id!r} at position {position}", field="request_id")
        self.server.record_click(p)
        return p

    def create_campaign(self, c: Campaign) -> Campaign:
        out = self.store.create(c)
        self.reload()
        return out

    def audience_sizes(self) -> list[dict]:
        out = []
        for name in self.catalog.names():
            try:
                a = self.catalog.get(name)
            except InputError:
                continue
            if a.size >= MIN_AUDIENCE:
                out.append({"name": name, "kind": a.kind, "size": a.size})
        return out

    def build_audience(self, kind: str, name: str | None = None, topic: str | None = None,
                       keywords: list[str] | None = None, days: int | None = None,
                       accounts: list[str] | None = None, size: int | None = None, fraction: float | None = None,
                       min_similarity: float | None = None) -> dict:
        aud = build_audience(self.builder, kind, topic=topic, keywords=keywords, days=days, accounts=accounts,
                             size=size, fraction=fraction, min_similarity=min_similarity)
        if aud.size < MIN_AUDIENCE:
            raise InputError(f"the audience has fewer than {MIN_AUDIENCE} users; it cannot be reported or targeted",
                             field="kind")
        if name:
            self.catalog.put(name, aud)
        return {"name": name, "kind": kind, "size": aud.size}

    def copy(self, engine, brief: str, brand: str, url: str, audience: str, n: int = 8, seed: int = 0) -> dict:
        """Copy variants for a named audience through the engine, best pCTR first (see murmur.ads.copy)."""
        from murmur.ads.copy import copy_for_audience, validate_brief

        validate_brief(brief, brand, url, n)
        aud = self.catalog.get(audience)
        if aud.size < MIN_AUDIENCE:
            raise InputError(f"audience {audience!r} has fewer than {MIN_AUDIENCE} users", field="audience")
        out = copy_for_audience(engine, brief, brand, url, aud, self.vectors,
                                self.builder.posts.column("text").to_pylist(), Featurizer(self.vectors, self.history),
                                self.model, n, seed, self.copy_prompt)
        return {"object": "list", **out}

    def preview_delivery(self, campaign_id: int, views_per_hour: int = 40, seed: int = 0) -> dict:
        """A simulated day of one campaign on its own (its budget, cap and pacing; no other campaign, nothing
        charged for real): each hour ``views_per_hour`` page views by random audience members, clicks drawn
        at the model's pCTR. Hourly spend, impressions and clicks."""
        import numpy as np

        c = self.store.get(campaign_id)
        aud = self.catalog.get(c.audience)
        server = AdServer([c], self.catalog, self.vectors, Featurizer(self.vectors, self.history), self.model,
                          ServerConfig(seed=seed))
        rng = np.random.default_rng(seed)
        day = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        day = max(day, c.start.replace(hour=0, minute=0, second=0, microsecond=0))
        hours = []
        for h in range(24):
            spent0, imps, clicks = int(server.pacer.spent[0]), 0, 0
            for k in range(views_per_hour):
                now = day + dt.timedelta(hours=h, seconds=int(k * 3600 / views_per_hour))
                user = str(aud.user_ids[rng.integers(len(aud.user_ids))])
                for p in server.select(AdRequest(user_id=user, now=now, request_id=f"preview-{h}-{k}")):
                    imps += 1
                    if rng.random() < p.pctr:
                        clicks += 1
                        server.record_click(p)
            hours.append({"hour": h, "spend": (int(server.pacer.spent[0]) - spent0) / 1e6, "impressions": imps,
                          "clicks": clicks})
        return {"campaign_id": campaign_id, "daily_budget": c.daily_budget, "hours": hours}

    def close(self) -> None:
        self.flush()
        self.decisions.close()
        self.store.close()


def build_audience(builder: AudienceBuilder, kind: str, topic: str | None = None, keywords: list[str] | None = None,
                   days: int | None = None, accounts: list[str] | None = None, ids: list[str] | None = None,
                   size: int | None = None, min_share: float = 0.2, fraction: float | None = None,
                   min_similarity: float | None = None) -> Audience:
    """One audience of ``kind`` with the parameters it needs (InputError naming a missing one). ``size``,
    ``fraction`` and ``min_similarity`` are the look-alike's knobs (:meth:`AudienceBuilder.lookalike`)."""
    if kind not in KINDS:
        raise InputError(f"kind must be one of {', '.join(KINDS)} (got {kind!r})", field="kind")
    if kind in ("interest", "topic") and not topic:
        raise InputError(f"a {kind} audience needs a topic", field="topic")
    if kind == "interest":
        return builder.interest(topic or "", min_share=min_share)
    if kind == "topic":
        return builder.conversation_topic(topic or "")
    if kind == "keyword":
        return builder.keyword(keywords or [], days)
    if kind == "lookalike":
        if not accounts:
            raise InputError("a look-alike audience needs accounts", field="accounts")
        return builder.lookalike(accounts, size=size, fraction=fraction, min_similarity=min_similarity)
    if not ids:
        raise InputError("a custom audience needs a list of user ids", field="ids")
    return builder.custom(ids)
