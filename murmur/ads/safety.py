"""Brand safety: no ad beside a post that the cleaner's rules flag.

The context post (or search query) is checked with the data cleaner's own rules
(:mod:`murmur.data.quality`'s spam patterns, :mod:`murmur.data.normalize`'s PII detectors) and a
configurable list of words advertisers do not want to appear beside. Returns the reason or None.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from murmur.data.normalize import scrub_pii
from murmur.data.quality import SPAM_PATTERN, QualityRules, quality_reason

UNSAFE_WORDS = ("porn", "nsfw", "gore", "terrorist", "massacre", "suicide", "nazi", "rape", "beheading")


@lru_cache(maxsize=4)
def _rules(words: tuple[str, ...]) -> tuple[QualityRules, re.Pattern[str] | None]:
    pattern = re.compile(r"\b(?:" + "|".join(map(re.escape, words)) + r")\b", re.I) if words else None
    return QualityRules(), pattern


def unsafe_reason(text: str | None, words: Sequence[str] = UNSAFE_WORDS) -> str | None:
    """``"spam"``, ``"pii"`` or ``"unsafe_words"`` when no ad may sit beside ``text``; None when it may."""
    if not text:
        return None
    rules, pattern = _rules(tuple(words))
    if quality_reason(text, rules) == SPAM_PATTERN:
        return "spam"
    if scrub_pii(text)[1] > 0:
        return "pii"
    if pattern is not None and pattern.search(text):
        return "unsafe_words"
    return None
