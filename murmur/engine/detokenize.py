"""Token ids -> text, one token at a time, never splitting a character and never leaking a stop string.

A byte-level BPE token is a run of bytes, and an emoji or a CJK character often spans two or three
tokens. Decoding each token on its own would stream replacement characters; ``Detokenizer`` keeps
the bytes and lets Python's incremental UTF-8 decoder hold back an incomplete character until the
token that completes it arrives. ``StopMatcher`` then holds back any tail of the text that could
still grow into a stop string, so a stop string never reaches the client, even in pieces.
"""

from __future__ import annotations

import codecs
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's printable stand-ins for the 256 bytes (the ByteLevel pre-tokenizer), inverted."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, n = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def token_bytes_table(tokenizer: Any) -> list[bytes] | None:
    """The bytes of every token id for a byte-level BPE tokenizer (special tokens -> b""), else None.

    ``tokenizer`` is murmur's tokenizer (``.inner`` is a ``tokenizers.Tokenizer``) or a bare
    ``tokenizers.Tokenizer``. None means the vocabulary is not byte-level; callers fall back to
    decoding the whole text each time.
    """
    inner = getattr(tokenizer, "inner", tokenizer)
    if not hasattr(inner, "get_vocab_size") or not hasattr(inner, "id_to_token"):
        return None
    alphabet = _byte_level_alphabet()
    special = {t.content for t in inner.get_added_tokens_decoder().values() if t.special} \
        if hasattr(inner, "get_added_tokens_decoder") else set()
    table: list[bytes] = []
    for i in range(inner.get_vocab_size(with_added_tokens=True)):
        piece = inner.id_to_token(i)
        if piece is None or piece in special:
            table.append(b"")
            continue
        try:
            table.append(bytes(alphabet[c] for c in piece))
        except KeyError:
            return None
    return table


class Detokenizer:
    """Incremental decoding of one sequence: ``push(token_id) -> new text`` (possibly "")."""

    def __init__(self, tokenizer: Any, table: list[bytes] | None = None, special_ids: set[int] | None = None):
        self.tokenizer = tokenizer
        self.table = table
        self.special_ids = special_ids or set()
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._ids: list[int] = []
        self._text = ""

    def push(self, token_id: int) -> str:
        if self.table is not None:
            piece = self.table[token_id] if 0 <= token_id < len(self.table) else b""
            return self._utf8.decode(piece)
        if self.tokenizer is None:  # token ids only (a caller that has no tokenizer)
            return ""
        # Generic path: decode everything and emit the new suffix once it no longer ends mid-character.
        if token_id not in self.special_ids:
            self._ids.append(token_id)
        text = self.tokenizer.decode(self._ids)
        if text.endswith("\ufffd") or not text.startswith(self._text):
            return ""
        new, self._text = text[len(self._text):], text
        return new

    def flush(self) -> str:
        """Whatever is held back at the end of the sequence (an incomplete character -> U+FFFD)."""
        if self.table is not None:
            return self._utf8.decode(b"", final=True)
        if self.tokenizer is None:
            return ""
        text = self.tokenizer.decode(self._ids)
        new = text[len(self._text):] if text.startswith(self._text) else ""
        self._text = text
        return new


class StopMatcher:
    """Accumulate text; release what is safe to send and cut at the first stop string.

    ``feed(text) -> (releasable, stopped)``: ``releasable`` is new text that cannot be part of a stop
    string; when ``stopped`` is True the text ends just before the stop string, which is dropped.
    """

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.longest = max((len(s) for s in self.stops), default=0)
        self.text = ""
        self.sent = 0

    def feed(self, new: str) -> tuple[str, bool]:
        if not self.stops:
            self.text += new
            self.sent = len(self.text)
            return new, False
        start = max(0, len(self.text) - self.longest + 1)
        self.text += new
        hits = [i for i in (self.text.find(s, start) for s in self.stops) if i >= 0]
        if hits:
            cut = min(hits)
            self.text = self.text[:cut]
            out, self.sent = self.text[self.sent:], cut
            return out, True
        hold = 0
        for s in self.stops:  # the longest tail of the text that is a proper prefix of a stop string
            for k in range(min(len(s) - 1, len(self.text)), hold, -1):
                if self.text.endswith(s[:k]):
                    hold = k
                    break
        safe = max(self.sent, len(self.text) - hold)
        out, self.sent = self.text[self.sent:safe], safe
        return out, False

    def flush(self) -> str:
        """The held-back tail once the sequence ends without a stop string."""
        out, self.sent = self.text[self.sent:], len(self.text)
        return out
