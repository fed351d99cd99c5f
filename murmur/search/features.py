"""Everything search brings to a server, built once for `murmur serve --index` and the demo.

The server (murmur.serve) never imports search: the command line hands it what :func:`server_features`
returns — the search, posts, embeddings, answers, trends and drafts routes, the `/search/` page and the `search_posts`
tool the chat runs itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Features:
    routers: list[Any] = field(default_factory=list)
    pages: dict[str, Path] = field(default_factory=dict)
    tools: list[Any] = field(default_factory=list)


def server_features(index: str | Path, embedder: str | Path | None = None, trends: Any = None) -> Features:
    """The routes, page and chat tool over the search index in ``index`` (``embedder``: its default if
    None; ``trends``: the TrendConfig of /v1/trends, its defaults if None)."""
    from murmur.search.answer import Answerer
    from murmur.search.answer import build_router as answers_router
    from murmur.search.drafts import Drafter
    from murmur.search.drafts import build_router as drafts_router
    from murmur.search.embed import load_embedder
    from murmur.search.index import SearchIndex
    from murmur.search.router import WEB_DIR, build_router
    from murmur.search.tool import SearchPostsTool
    from murmur.search.trends import Trends
    from murmur.search.trends import build_router as trends_router

    search_index = SearchIndex(index, embedder=load_embedder(embedder) if embedder else None)
    return Features(routers=[build_router(search_index), answers_router(Answerer(search_index)),
                             trends_router(Trends(search_index, trends)), drafts_router(Drafter(search_index))],
                    pages={"/search": WEB_DIR}, tools=[SearchPostsTool(search_index)])
