"""``search_posts`` as a tool the chat server runs itself: the tool's OpenAI definition and a callable
that searches the index and writes the results as numbered lines the model can quote and cite.

The CLI builds it (``murmur serve --index``) and hands it to the server, which never imports search.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from murmur.errors import InputError
from murmur.search.retrieve import RetrieveConfig, make_request

MAX_K = 10
SEARCH_POSTS = {"type": "function", "function": {
    "name": "search_posts",
    "description": "Search the network's posts; returns numbered posts [1], [2], ... to quote and cite.",
    "parameters": {"type": "object", "required": ["query"], "properties": {
        "query": {"type": "string", "description": "What to look for."},
        "k": {"type": "integer", "description": f"How many posts (1 to {MAX_K}, default 5)."},
        "lang": {"type": "string", "description": "Only posts in this language (ISO 639-1)."},
        "hashtag": {"type": "string", "description": "Only posts with this hashtag."},
        "since": {"type": "string", "description": "Only posts from this time on (ISO 8601)."}}}}}


def format_results(results: list[dict[str, Any]]) -> str:
    """One line per post: ``[n] @author (time): text``; "No posts found." when there are none."""
    if not results:
        return "No posts found."
    return "\n".join(f"[{i}] @{r['author_id']} ({r['created_at']}): {' '.join(r['text'].split())}"
                     for i, r in enumerate(results, 1))


class SearchPostsTool:
    """The callable the server runs for a ``search_posts`` call: arguments in, result text out.

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

    def __call__(self, arguments: Mapping[str, Any]) -> str:
        return format_results(self.search(arguments))
