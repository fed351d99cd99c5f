"""The drafting turn: asking the chat model for one post or one reply, in exactly one place.

Shared by the drafter (murmur.search.drafts, ``prompt = "chat"``) and the fine-tuning data
(murmur.chat.data, kind ``drafts``), so the model is trained on exactly what it is asked::

    system: Write one post of at most 280 characters (a link counts 23) in Spanish. No personal data.
    user:   Write a post about tortilla de patatas in Spanish in the voice of @ana, who recently posted:
            - ...
    user:   Reply to this post in English:
            <the post replied to>

Pure text, no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from murmur.chat.grounded import LANG_NAMES


def lang_name(lang: str) -> str:
    """``es`` -> ``Spanish``; an unknown code stays as it is."""
    return LANG_NAMES.get(lang, lang)


def draft_system(lang: str) -> str:
    return (f"Write one post of at most 280 characters (a link counts 23) in {lang_name(lang)}. "
            "No personal data.")


def draft_messages(kind: str, lang: str, topic: str | None = None, parent: str | None = None,
                   voice: str | None = None, voice_posts: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The conversation a draft continues: a system line with the rules, then the request.

    ``kind`` is ``post`` (about ``topic``) or ``reply`` (to the text ``parent``, optionally about
    ``topic``); ``voice`` names an account whose ``voice_posts`` show how it writes.
    """
    name = lang_name(lang)
    if kind == "reply":
        about = f", about {topic}" if topic else ""
        ask = f"Reply to this post in {name}{about}:\n{' '.join((parent or '').split())}"
    else:
        ask = f"Write a post about {topic} in {name}."
    if voice is not None:
        lines = "\n".join(f"- {' '.join(p.split())}" for p in voice_posts)
        ask += f"\nWrite it in the voice of @{voice}" + (f", who recently posted:\n{lines}" if lines else ".")
    return [{"role": "system", "content": draft_system(lang)}, {"role": "user", "content": ask}]
