"""Campaigns in a real database through SQLAlchemy 2: SQLite by default, PostgreSQL in production.

The same code runs on both (``sqlite:///ads.db`` needs no service; ``postgresql+psycopg://...`` is a
production deployment). Money is stored as integer micros of the campaign's currency (1 USD =
1,000,000 micros), as ad APIs do, so sums never drift. A campaign and its creatives are written in
one transaction: either all of it is there or none of it.

Tables: ``campaigns`` (one row per campaign), ``creatives`` (its ads), ``spend`` (per campaign and
day: spend, impressions, clicks; the ad server adds to it).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    func,
    select,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from murmur.data.normalize import tweet_length
from murmur.errors import InputError, MurmurError

MICROS = 1_000_000
OBJECTIVES = ("traffic", "engagement", "awareness")
BID_TYPES = ("cpc", "cpm")
CURRENCIES = ("USD", "EUR")
STATUSES = ("active", "paused")
# Plausible bids in currency units: a bid outside these is almost always given in the wrong unit
# (cents or micros instead of dollars), and is refused rather than charged.
BID_RANGE = {"cpc": (0.01, 50.0), "cpm": (0.10, 500.0)}
MAX_DAILY_BUDGET = 10_000_000.0
MIN_AUDIENCE = 100
MAX_TEXT = 280
MAX_BRIEF = 2000
_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class StoreError(MurmurError):
    """The campaign database cannot be reached or used."""


class _Base(DeclarativeBase):
    pass


class CampaignRow(_Base):
    __tablename__ = "campaigns"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    advertiser_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    objective: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    daily_budget_micros: Mapped[int] = mapped_column(BigInteger)
    bid_type: Mapped[str] = mapped_column(String(3))
    bid_micros: Mapped[int] = mapped_column(BigInteger)
    audience: Mapped[str] = mapped_column(String(200))
    start: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    end: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    frequency_cap: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(8), default="active")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    creatives: Mapped[list[CreativeRow]] = relationship(back_populates="campaign", order_by="CreativeRow.id",
                                                        cascade="all, delete-orphan")
    __table_args__ = (
        CheckConstraint("daily_budget_micros > 0", name="budget_positive"),
        CheckConstraint("bid_micros > 0", name="bid_positive"),
        CheckConstraint("frequency_cap > 0", name="cap_positive"),
        CheckConstraint("bid_type in ('cpc', 'cpm')", name="bid_type_known"),
    )


class CreativeRow(_Base):
    __tablename__ = "creatives"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(Text)
    url: Mapped[str] = mapped_column(String(2048))
    lang: Mapped[str] = mapped_column(String(8))
    image: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    campaign: Mapped[CampaignRow] = relationship(back_populates="creatives")


class SpendRow(_Base):
    __tablename__ = "spend"
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    spend_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    impressions: Mapped[int] = mapped_column(BigInteger, default=0)
    clicks: Mapped[int] = mapped_column(BigInteger, default=0)


@dataclass(frozen=True)
class Creative:
    """One ad of a campaign: its copy, landing URL, language, and an optional image file."""

    text: str
    url: str
    lang: str = "en"
    image: str | None = None
    id: int | None = None


@dataclass(frozen=True)
class Campaign:
    """A campaign as the ad server and the API see it (money in currency units; micros inside the store)."""

    advertiser_id: str
    name: str
    objective: str
    daily_budget: float
    bid_type: str
    bid: float
    audience: str
    creatives: tuple[Creative, ...]
    start: dt.datetime
    end: dt.datetime | None = None
    frequency_cap: int = 3
    currency: str = "USD"
    status: str = "active"
    id: int | None = None
    created_at: dt.datetime | None = None

    @property
    def daily_budget_micros(self) -> int:
        return round(self.daily_budget * MICROS)

    @property
    def bid_micros(self) -> int:
        return round(self.bid * MICROS)

    def live_at(self, when: dt.datetime) -> bool:
        return self.status == "active" and self.start <= when and (self.end is None or when < self.end)

    def to_dict(self) -> dict:
        return {"id": self.id, "advertiser_id": self.advertiser_id, "name": self.name, "objective": self.objective,
                "daily_budget": self.daily_budget, "currency": self.currency, "bid_type": self.bid_type,
                "bid": self.bid, "audience": self.audience, "frequency_cap": self.frequency_cap,
                "start": self.start.isoformat(), "end": self.end.isoformat() if self.end else None,
                "status": self.status,
                "creatives": [{"id": c.id, "text": c.text, "url": c.url, "lang": c.lang, "image": c.image}
                              for c in self.creatives]}


def _utc(when: dt.datetime) -> dt.datetime:
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def validate_campaign(c: Campaign, audience_size: Callable[[str], int | None] | None = None,
                      file_exists: Callable[[str], bool] | None = None) -> None:
    """Refuse a campaign that cannot run as given, naming the field. ``audience_size`` returns the
    size of a named audience (None when unknown); ``file_exists`` checks creative images."""
    if not _ID_RE.match(c.advertiser_id or ""):
        raise InputError("advertiser_id must be 1-64 letters, digits or _.:-", field="advertiser_id")
    if not c.name or len(c.name) > 200:
        raise InputError("name must be 1-200 characters", field="name")
    if c.objective not in OBJECTIVES:
        raise InputError(f"objective must be one of {', '.join(OBJECTIVES)} (got {c.objective!r})", field="objective")
    if c.currency not in CURRENCIES:
        raise InputError(f"currency must be one of {', '.join(CURRENCIES)} (got {c.currency!r})", field="currency")
    if not isinstance(c.daily_budget, int | float) or not c.daily_budget > 0:
        raise InputError(f"daily_budget must be > 0 {c.currency} (got {c.daily_budget})", field="daily_budget")
    if c.daily_budget > MAX_DAILY_BUDGET:
        raise InputError(f"daily_budget {c.daily_budget:g} is over {MAX_DAILY_BUDGET:,.0f} {c.currency}: "
                         f"give it in {c.currency}, not cents or micros", field="daily_budget")
    if c.bid_type not in BID_TYPES:
        raise InputError(f"bid_type must be cpc or cpm (got {c.bid_type!r})", field="bid_type")
    lo, hi = BID_RANGE[c.bid_type]
    if not isinstance(c.bid, int | float) or not c.bid > 0:
        raise InputError(f"bid must be > 0 {c.currency} (got {c.bid})", field="bid")
    if not lo <= c.bid <= hi:
        unit = "cents or micros" if c.bid > hi else "micros of a unit"
        raise InputError(f"a {c.bid_type.upper()} bid of {c.bid:g} {c.currency} is outside {lo:g}-{hi:g}: give the "
                         f"bid in {c.currency} (e.g. {lo * 50:g}), not {unit}", field="bid")
    if not isinstance(c.frequency_cap, int) or c.frequency_cap < 1:
        raise InputError(f"frequency_cap must be a whole number >= 1 (got {c.frequency_cap})", field="frequency_cap")
    if c.end is not None and _utc(c.end) <= _utc(c.start):
        raise InputError("end must be after start", field="end")
    if c.status not in STATUSES:
        raise InputError(f"status must be active or paused (got {c.status!r})", field="status")
    if audience_size is not None:
        size = audience_size(c.audience)
        if size is None:
            raise InputError(f"unknown audience {c.audience!r}", field="audience")
        if size < MIN_AUDIENCE:
            raise InputError(f"audience {c.audience!r} has fewer than {MIN_AUDIENCE} users and cannot be targeted",
                             field="audience")
    if not c.creatives:
        raise InputError("a campaign needs at least one creative", field="creatives")
    for i, cr in enumerate(c.creatives):
        where = f"creatives[{i}]"
        if not cr.text or not cr.text.strip():
            raise InputError("creative text is empty", field=f"{where}.text")
        if tweet_length(cr.text) > MAX_TEXT:
            raise InputError(f"creative text is {tweet_length(cr.text)} characters (links count 23); the limit "
                             f"is {MAX_TEXT}", field=f"{where}.text")
        if not re.match(r"^https?://[^\s/]+\.[^\s]+$", cr.url or ""):
            raise InputError(f"creative url {cr.url!r} is not an http(s) URL", field=f"{where}.url")
        if cr.image is not None and file_exists is not None and not file_exists(cr.image):
            raise InputError(f"creative image {cr.image!r} does not exist", field=f"{where}.image")


def _to_campaign(row: CampaignRow) -> Campaign:
    end = _utc(row.end) if row.end is not None else None
    return Campaign(
        id=row.id, advertiser_id=row.advertiser_id, name=row.name, objective=row.objective,
        daily_budget=row.daily_budget_micros / MICROS, bid_type=row.bid_type, bid=row.bid_micros / MICROS,
        audience=row.audience, start=_utc(row.start), end=end, frequency_cap=row.frequency_cap,
        currency=row.currency, status=row.status, created_at=_utc(row.created_at),
        creatives=tuple(Creative(id=cr.id, text=cr.text, url=cr.url, lang=cr.lang, image=cr.image)
                        for cr in row.creatives))


def open_engine(url: str) -> Engine:
    """An SQLAlchemy engine for ``url`` with its tables created; StoreError (one line) when it cannot be."""
    try:
        engine = create_engine(url, pool_pre_ping=True)
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ValueError) as e:
        raise StoreError(f"bad database URL {_redact(url)!r}: {str(e).splitlines()[0]}") from None
    except ImportError as e:
        raise StoreError(f"database URL {_redact(url)!r} needs a driver that is not installed: {e}") from None
    try:
        _Base.metadata.create_all(engine)
    except sa_exc.SQLAlchemyError as e:
        engine.dispose()
        msg = str(getattr(e, "orig", e) or e).strip().splitlines()
        raise StoreError(f"cannot open the campaign database {_redact(url)!r}: {msg[0] if msg else type(e).__name__}") from None
    return engine


def _redact(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


@dataclass
class CampaignStore:
    """Campaigns, creatives and spend in one database (``url``: any SQLAlchemy URL)."""

    url: str = "sqlite:///ads.db"
    audience_size: Callable[[str], int | None] | None = None
    file_exists: Callable[[str], bool] | None = None
    engine: Engine = field(init=False)

    def __post_init__(self) -> None:
        self.engine = open_engine(self.url)

    def close(self) -> None:
        self.engine.dispose()

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def create(self, c: Campaign, validate: bool = True) -> Campaign:
        """Validate and insert a campaign with its creatives in one transaction; returns it with ids."""
        if validate:
            validate_campaign(c, self.audience_size, self.file_exists)
        row = CampaignRow(
            advertiser_id=c.advertiser_id, name=c.name, objective=c.objective, currency=c.currency,
            daily_budget_micros=c.daily_budget_micros, bid_type=c.bid_type, bid_micros=c.bid_micros,
            audience=c.audience, start=_utc(c.start), end=_utc(c.end) if c.end else None,
            frequency_cap=c.frequency_cap, status=c.status, created_at=dt.datetime.now(dt.UTC),
            creatives=[CreativeRow(text=cr.text, url=cr.url, lang=cr.lang, image=cr.image) for cr in c.creatives])
        try:
            with self._session() as s, s.begin():
                s.add(row)
                s.flush()
                out = _to_campaign(row)
        except sa_exc.IntegrityError as e:
            raise InputError(f"campaign refused by the database: {str(e.orig).strip().splitlines()[0]}") from None
        except sa_exc.OperationalError as e:
            raise StoreError(f"campaign database error: {str(e.orig).strip().splitlines()[0]}") from None
        return out

    def get(self, campaign_id: int) -> Campaign:
        with self._session() as s:
            row = s.get(CampaignRow, campaign_id)
            if row is None:
                raise InputError(f"no campaign {campaign_id}", field="campaign_id")
            return _to_campaign(row)

    def list(self, live_at: dt.datetime | None = None) -> list[Campaign]:
        with self._session() as s:
            rows = s.scalars(select(CampaignRow).order_by(CampaignRow.id)).all()
            out = [_to_campaign(r) for r in rows]
        return [c for c in out if live_at is None or c.live_at(_utc(live_at))]

    def set_status(self, campaign_id: int, status: str) -> None:
        if status not in STATUSES:
            raise InputError(f"status must be active or paused (got {status!r})", field="status")
        with self._session() as s, s.begin():
            row = s.get(CampaignRow, campaign_id)
            if row is None:
                raise InputError(f"no campaign {campaign_id}", field="campaign_id")
            row.status = status

    def add_spend(self, rows: list[tuple[int, dt.date, int, int, int]]) -> None:
        """Add (campaign_id, day, spend_micros, impressions, clicks) to the daily totals, in one transaction."""
        with self._session() as s, s.begin():
            for cid, day, micros, imps, clicks in rows:
                row = s.get(SpendRow, (cid, day), with_for_update=True)
                if row is None:
                    s.add(SpendRow(campaign_id=cid, day=day, spend_micros=micros, impressions=imps, clicks=clicks))
                    s.flush()
                else:
                    row.spend_micros += micros
                    row.impressions += imps
                    row.clicks += clicks

    def spend(self, day: dt.date) -> dict[int, tuple[int, int, int]]:
        """campaign id -> (spend micros, impressions, clicks) on ``day``."""
        with self._session() as s:
            rows = s.execute(select(SpendRow.campaign_id, SpendRow.spend_micros, SpendRow.impressions, SpendRow.clicks)
                             .where(SpendRow.day == day)).all()
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def count(self) -> tuple[int, int]:
        """(campaigns, creatives) in the store."""
        with self._session() as s:
            return (s.scalar(select(func.count()).select_from(CampaignRow)) or 0,
                    s.scalar(select(func.count()).select_from(CreativeRow)) or 0)
