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


def search_answer_messages(question: str, query: str, texts: Sequence[str], lang: str) -> list[dict[str, Any]]:
    """The conversation an answer continues: system line, question, a ``search_posts`` call, results."""
    call = {"id": "call_0", "type": "function", "function": {
        "name": "search_posts", "arguments": json.dumps({"query": query}, ensure_ascii=False)}}
    return [{"role": "system", "content": answer_system(lang)}, {"role": "user", "content": question},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_0", "content": numbered_posts(texts)}]
