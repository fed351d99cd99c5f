"""The ads HTTP routes: a plain FastAPI ``APIRouter`` that ``murmur serve`` mounts (it never imports
murmur.serve; bad input raises ``InputError`` with ``field`` naming the request parameter).

- ``POST /v1/ads/select``     the ads for a user beside a post or a search query
- ``POST /v1/ads/click``      report a click on a served ad (charges a CPC campaign)
- ``GET  /v1/ads/audiences``  audience names, kinds and sizes (sizes only, never members)
- ``POST /v1/ads/audiences``  build an audience (optionally save it under a name); answers its size
- ``POST /v1/ads/copy``       ad copy variants for an audience, through the server's engine
- ``GET  /v1/ads/campaigns``, ``POST /v1/ads/campaigns``  list and launch campaigns
- ``GET  /v1/ads/campaigns/{id}/preview``  a simulated day of one campaign alone (hourly spend,
  impressions, clicks at the model's pCTR); nothing is charged
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from murmur.ads.server import MAX_SLOTS, AdRequest
from murmur.ads.service import AdsService
from murmur.ads.store import MAX_BRIEF, Campaign, Creative
from murmur.engine import Engine
from murmur.engine.http import current_engine
from murmur.errors import InputError

WEB_DIR = Path(__file__).resolve().parent / "web"  # the ads studio page; ``murmur serve`` mounts it at /ads


class SelectBody(BaseModel):
    user_id: str = Field(min_length=1, max_length=64)
    context_post_id: str | None = Field(None, max_length=64)
    context_text: str | None = Field(None, max_length=MAX_BRIEF)
    query: str | None = Field(None, max_length=512)
    slots: int = Field(1, ge=1, le=MAX_SLOTS)


class ClickBody(BaseModel):
    request_id: str = Field(min_length=1, max_length=64)
    position: int = Field(0, ge=0, le=MAX_SLOTS)


class AudienceBody(BaseModel):
    kind: Literal["interest", "keyword", "topic", "lookalike"]
    name: str | None = Field(None, max_length=100)
    topic: str | None = Field(None, max_length=100)
    keywords: list[str] | None = Field(None, max_length=100)
    days: int | None = Field(None, ge=1, le=3650)
    accounts: list[str] | None = Field(None, max_length=1000)
    size: int | None = None             # look-alike knobs, checked by the builder (400 naming the field)
    fraction: float | None = None
    min_similarity: float | None = None


class CopyBody(BaseModel):
    brief: str = Field(min_length=1, max_length=MAX_BRIEF)
    brand: str = Field(min_length=1, max_length=50)
    url: str = Field(min_length=1, max_length=2048)
    audience: str = Field(min_length=1, max_length=100)
    n: int = Field(8, ge=1, le=32)
    seed: int = Field(0, ge=0, le=2**31)


class CreativeBody(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_BRIEF)
    url: str = Field(min_length=1, max_length=2048)
    lang: str = Field("en", max_length=8)
    image: str | None = Field(None, max_length=2048)


class CampaignBody(BaseModel):
    advertiser_id: str
    name: str
    objective: str = "traffic"
    daily_budget: float
    currency: str = "USD"
    bid_type: str = "cpc"
    bid: float
    audience: str
    creatives: list[CreativeBody] = Field(min_length=1, max_length=50)
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    frequency_cap: int = 3


def build_router(service: AdsService) -> APIRouter:
    router = APIRouter(prefix="/v1/ads", tags=["ads"])

    @router.post("/select")
    def select(body: SelectBody) -> dict:
        if body.context_text is not None and body.query is not None:
            raise InputError("give context_text or query, not both", field="query")
        placed = service.select(AdRequest(user_id=body.user_id, context_text=body.query or body.context_text,
                                          context_post_id=body.context_post_id, slots=body.slots))
        return {"object": "list", "data": [p.to_dict() for p in placed]}

    @router.post("/click")
    def click(body: ClickBody) -> dict:
        p = service.click(body.request_id, body.position)
        return {"ok": True, "campaign_id": p.campaign_id}

    @router.get("/audiences")
    def audiences() -> dict:
        return {"object": "list", "data": service.audience_sizes()}

    @router.post("/audiences")
    def build(body: AudienceBody) -> dict:
        return service.build_audience(body.kind, name=body.name, topic=body.topic, keywords=body.keywords,
                                      days=body.days, accounts=body.accounts, size=body.size,
                                      fraction=body.fraction, min_similarity=body.min_similarity)

    @router.post("/copy")
    def copy(body: CopyBody, engine: Annotated[Engine, Depends(current_engine)]) -> dict:
        return service.copy(engine, body.brief, body.brand, body.url, body.audience, body.n, body.seed)

    @router.get("/campaigns")
    def campaigns() -> dict:
        return {"object": "list", "data": [c.to_dict() for c in service.store.list()]}

    @router.get("/campaigns/{campaign_id}/preview")
    def preview(campaign_id: int, views_per_hour: int = 40) -> dict:
        if not 1 <= views_per_hour <= 1000:
            raise InputError("views_per_hour must be 1-1000", field="views_per_hour")
        return service.preview_delivery(campaign_id, views_per_hour)

    @router.post("/campaigns")
    def launch(body: CampaignBody) -> dict:
        c = Campaign(advertiser_id=body.advertiser_id, name=body.name, objective=body.objective,
                     daily_budget=body.daily_budget, currency=body.currency, bid_type=body.bid_type, bid=body.bid,
                     audience=body.audience, start=body.start or dt.datetime.now(dt.UTC), end=body.end,
                     frequency_cap=body.frequency_cap,
                     creatives=tuple(Creative(cr.text, cr.url, cr.lang, cr.image) for cr in body.creatives))
        return service.create_campaign(c).to_dict()

    return router
