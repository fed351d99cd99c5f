"""Shared pieces for the ads tests: a tiny world, its clean posts and its ads world, built once a session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from murmur.data.clean import clean
from murmur.data.sources import ingest
from murmur.world.ads import AdsWorldConfig, generate_ads_world
from murmur.world.generate import WorldConfig, generate_world


@dataclass(frozen=True)
class AdsFixture:
    world: Path
    clean: Path
    ads: Path


def build(root: Path, users: int = 600, impressions_per_day: int = 6000, days: int = 5) -> AdsFixture:
    world = root / "world"
    generate_world(world, WorldConfig(users=users, seed=3, archive_users=0))
    ingest([str(world / "api")], root / "posts.parquet", progress=False)
    clean(root / "posts.parquet", root / "clean.parquet")
    generate_ads_world(world, root / "ads", AdsWorldConfig(seed=1, impressions_per_day=impressions_per_day, days=days))
    return AdsFixture(world, root / "clean.parquet", root / "ads")
