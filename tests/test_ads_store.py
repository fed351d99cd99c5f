"""Campaigns in a real database: SQLite (no service) and PostgreSQL (started here), through the same code."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import replace
from pathlib import Path

import pytest
from ads_helpers import Postgres

from murmur.ads.store import Campaign, CampaignStore, Creative, StoreError
from murmur.errors import InputError

START = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
SIZES = {"football_fans": 2500, "tiny": 40}


@pytest.fixture(scope="module")
def postgres():
    try:
        pg = Postgres()
    except (FileNotFoundError, OSError) as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not available: {e}")
    yield pg.url
    pg.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def store(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'ads.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres")
    s = CampaignStore(url, audience_size=SIZES.get, file_exists=lambda p: Path(p).exists())
    yield s
    if request.param == "postgresql":
        from murmur.ads.store import _Base

        _Base.metadata.drop_all(s.engine)
    s.close()


def campaign(**kw) -> Campaign:
    base = Campaign(advertiser_id="adv0001", name="Spring football", objective="traffic", daily_budget=50.0,
                    bid_type="cpc", bid=0.8, audience="football_fans", start=START, frequency_cap=3,
                    creatives=(Creative("The derby pass. #Football Shop now https://kalo.example/f",
                                        "https://kalo.example/f"),
                               Creative("El pase del derbi. https://kalo.example/f", "https://kalo.example/f", "es")))
    return replace(base, **kw)


def test_round_trip(store):
    c = store.create(campaign())
    assert c.id is not None and all(cr.id is not None for cr in c.creatives)
    got = store.get(c.id)
    assert got.daily_budget == 50.0 and got.bid == 0.8 and got.start == START and got.end is None
    assert [cr.lang for cr in got.creatives] == ["en", "es"]
    store.create(campaign(name="later", start=START + dt.timedelta(days=3)))
    assert [x.name for x in store.list(live_at=START + dt.timedelta(hours=1))] == ["Spring football"]
    store.set_status(c.id, "paused")
    assert store.list(live_at=START + dt.timedelta(days=4))[0].name == "later"


def test_spend_adds_up(store):
    c = store.create(campaign())
    day = START.date()
    store.add_spend([(c.id, day, 1_500_000, 10, 1)])
    store.add_spend([(c.id, day, 500_000, 5, 0), (c.id, day + dt.timedelta(days=1), 7, 1, 0)])
    assert store.spend(day) == {c.id: (2_000_000, 15, 1)}


@pytest.mark.parametrize("change, field", [
    ({"daily_budget": 0}, "daily_budget"),
    ({"daily_budget": -5.0}, "daily_budget"),
    ({"bid": 800000}, "bid"),               # micros given as dollars
    ({"bid": 80, "bid_type": "cpc"}, "bid"),  # cents given as dollars
    ({"currency": "usd"}, "currency"),
    ({"audience": "nobody"}, "audience"),
    ({"audience": "tiny"}, "audience"),
    ({"frequency_cap": 0}, "frequency_cap"),
    ({"end": START}, "end"),
    ({"creatives": ()}, "creatives"),
    ({"creatives": (Creative("x" * 300, "https://kalo.example/f"),)}, "creatives[0].text"),
    ({"creatives": (Creative("ok https://kalo.example/f", "https://kalo.example/f", image="/no/such.png"),)},
     "creatives[0].image"),
])
def test_bad_campaigns_are_refused_whole(store, change, field):
    with pytest.raises(InputError) as e:
        store.create(campaign(**change))
    assert e.value.field == field and "\n" not in str(e.value)
    assert store.count() == (0, 0)


def test_no_campaign_half_written(store):
    """A creative the database refuses (NOT NULL) rolls the campaign back with it."""
    bad = campaign(creatives=(Creative("fine https://kalo.example/f", "https://kalo.example/f"),
                              Creative(None, "https://kalo.example/f")))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="refused by the database"):
        store.create(bad, validate=False)
    assert store.count() == (0, 0)


@pytest.mark.parametrize("url", ["nosuchdb://x", "not a url", "postgresql+psycopg://u:secret@/db?host=/nonexistent"])
def test_broken_database_url(url):
    with pytest.raises(StoreError) as e:
        CampaignStore(url)
    assert "\n" not in str(e.value) and "secret" not in str(e.value)
