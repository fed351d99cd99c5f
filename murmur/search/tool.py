"""``search_posts`` as a tool the chat server runs itself: the tool's OpenAI definition and a callable
that searches the index and returns the results twice: as numbered lines the model can quote and cite
(``text``), and as the same posts in the same order for clients (``items``: post_id, author_id,
created_at, text), so a page can open the post behind a citation [n].

The CLI builds it (``murmur serve --index``) and hands it to the server, which never imports search.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from murmur.chat.grounded import SEARCH_POSTS, numbered_posts
from murmur.errors import InputError
from murmur.search.retrieve import RetrieveConfig, make_request

MAX_K = 10


ITEM_FIELDS = ("post_id", "author_id", "created_at", "text")


@dataclass(frozen=True)
class ToolResult:
    """What a server-run tool returns: ``text`` for the model, ``items`` (JSON-ready dicts) for clients."""

    text: str
    items: list[dict[str, Any]] = field(default_factory=list)


def format_results(results: list[dict[str, Any]]) -> str:
    """The results as the model reads them: ``[n] text`` per line (the fine-tuning data's format)."""
    return numbered_posts([r["text"] for r in results])


class SearchPostsTool:
    """The callable the server runs for a ``search_posts`` call: arguments in, a :class:`ToolResult` out.

    Bad arguments raise ``InputError`` naming the argument (the server feeds the message back)."""

    name = "search_posts"
    spec = SEARCH_POSTS

    def __init__(self, index: Any, cfg: RetrieveConfig | None = None):
        self.index, self.cfg = index, cfg or RetrieveConfig()

    def search(self, arguments: Mapping[str, Any]) -> list[dict[str, Any]]:
        k = arguments.get("k", 5)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise InputError(f"must be an integer from 1 to {MAX_K}", field="k")
        mode = "hybrid" if getattr(self.index, "dense", None) is not None else "lexical"
        req = make_request(arguments.get("query"), mode=mode, k=k, lang=arguments.get("lang"),
                           hashtag=arguments.get("hashtag"), since=arguments.get("since"), cfg=self.cfg)
        return self.index.search(req, self.cfg)

    def __call__(self, arguments: Mapping[str, Any]) -> ToolResult:
        results = self.search(arguments)
        items = [{"n": n, **{f: r.get(f) for f in ITEM_FIELDS}} for n, r in enumerate(results, 1)]
        return ToolResult(format_results(results), items)
