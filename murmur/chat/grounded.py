"""The search-and-answer turn: a question, a ``search_posts`` call, its numbered results.

Shared by the server (murmur.search.answer, murmur.search.tool) and the fine-tuning data
(murmur.chat.data), so the model is trained on exactly what it is shown. Pure text, no torch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

LANG_NAMES = {"en": "English", "es": "Spanish", "fr": "French", "de": "German", "pt": "Portuguese",
              "it": "Italian", "nl": "Dutch", "ja": "Japanese", "ko": "Korean", "zh": "Chinese", "ar": "Arabic",
              "ru": "Russian", "tr": "Turkish", "id": "Indonesian", "hi": "Hindi", "pl": "Polish"}


# The built-in search tool as offered to the model (OpenAI's tool shape). Kept short: the tool list
# opens every prompt that offers it. ``k`` is 1..10 (default 5); ``since`` is an ISO 8601 time.
SEARCH_POSTS = {"type": "function", "function": {
    "name": "search_posts", "description": "Search posts; returns numbered posts to cite as [n].",
    "parameters": {"type": "object", "required": ["query"], "properties": {
        "query": {"type": "string"}, "k": {"type": "integer"}, "lang": {"type": "string"},
        "hashtag": {"type": "string"}, "since": {"type": "string"}}}}}


def numbered_posts(texts: Sequence[str]) -> str:
    """Search results as the model reads them: ``[n] text`` per line; "No posts found." if none."""
    if not texts:
        return "No posts found."
    return "\n".join(f"[{i}] {' '.join(t.split())}" for i, t in enumerate(texts, 1))


def answer_system(lang: str) -> str:
    """The system line of a cited answer in ``lang`` (a code; unknown: the question's language)."""
    name = LANG_NAMES.get(lang)
    where = f" in {name}" if name else " in the question's language"
    return f"Answer from the posts found{where}. Cite each post you use as [n]."


def search_answer_messages(question: str, query: str, texts: Sequence[str], lang: str, system: bool = True
                           ) -> list[dict[str, Any]]:
    """The conversation an answer continues: system line (unless ``system`` is false: a chat client's
    request, which offers the tool instead), question, a ``search_posts`` call, results."""
    call = {"id": "call_0", "type": "function", "function": {
        "name": "search_posts", "arguments": json.dumps({"query": query}, ensure_ascii=False)}}
    return [*([{"role": "system", "content": answer_system(lang)}] if system else []),
            {"role": "user", "content": question},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_0", "content": numbered_posts(texts)}]
