"""A tiny demo world's clean posts for the search tests (built once per test session)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq


def tiny_corpus(root: Path, users: int = 120, rows: int | None = None) -> tuple[Path, Path]:
    """(world directory, clean.parquet) of a small world; ``rows`` keeps only the first posts."""
    from murmur.data.clean import clean
    from murmur.data.sources import ingest
    from murmur.world.generate import WorldConfig, generate_world

    world = root / "world"
    generate_world(world, WorldConfig(users=users, seed=3), progress=False)
    ingest([str(world)], root / "posts.parquet", progress=False)
    clean(root / "posts.parquet", root / "clean.parquet")
    path = root / "clean.parquet"
    if rows is not None:
        t = pq.read_table(path)
        path = root / f"clean-{rows}.parquet"
        pq.write_table(t.slice(0, rows), path)
    return world, path


def story_index(root: Path, stories: int = 4) -> tuple[Path, Path]:
    """(world directory, lexical index) of a 10-day world of 150 accounts with ``stories`` stories (0: flat)."""
    from murmur.data.clean import clean
    from murmur.data.sources import ingest
    from murmur.search.index import build_index
    from murmur.world.generate import WorldConfig, generate_world

    generate_world(root / "world", WorldConfig(users=150, seed=3, days=10, stories=stories, archive_users=5),
                   progress=False)
    ingest([str(root / "world")], root / "posts.parquet", progress=False)
    clean(root / "posts.parquet", root / "clean.parquet")
    build_index(root / "clean.parquet", root / "idx", None, progress=False)
    return root / "world", root / "idx"
