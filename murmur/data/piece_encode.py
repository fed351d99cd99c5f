"""murmur's tokenizer over a batch of posts, piece by piece, with each piece's tokens kept for reuse.

The tokenizer (:mod:`murmur.tokenizer`) splits a text into pieces with the Llama-3 regex, maps each
piece's bytes to byte-level characters and runs the BPE model on each piece alone: a text's tokens are
its pieces' tokens laid end to end. ``tokenizers``' ``encode_batch`` spends most of its time around the
BPE model (~35 µs of CPU per post here: the regex engine, the offset bookkeeping of every
transformation, one ``Encoding`` object per post), while the posts of a corpus repeat the same pieces.
:class:`PieceEncoder` splits a whole Arrow batch with the same regex written out as a compiled loop
(``murmur.data.jit``), looks each piece up in a table of pieces already seen (compared byte for byte;
bounded, cleared when full) and asks the BPE model (``Tokenizer.model.tokenize``) only for new pieces.

Same ids by construction:

- The split follows the regex's own rules (leftmost alternative first, greedy repeats, the look-ahead
  of ``\\s+(?!\\S)``), alternative by alternative (see ``_split_post``).
- Which code points are letters (``\\p{L}``), numbers (``\\p{N}``) and white space (``\\s``) is asked of
  the tokenizer's own regex engine (Oniguruma, inside ``tokenizers``), the first time a code point is met,
  so no second Unicode database is involved.
- The one case-insensitive part (``'s``, ``'T``...) is decided here for ASCII letters only; a post with an
  apostrophe before a non-ASCII character (where Unicode case folding could apply) is encoded by
  ``tokenizers`` itself, as is every post when the tokenizer is not exactly murmur's (another
  pre-tokenizer, a normaliser, BPE dropout).

``tests/test_piece_encode.py`` holds it to ``encode_batch`` on a world's posts and on random text built
from the characters that decide the split.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from murmur.data.jit import jit

# classes of a code point, as the split regex sees it
OTHER, LETTER, NUMBER, SPACE, NEWLINE, PENDING, UNKNOWN = 0, 1, 2, 3, 4, 254, 255  # NEWLINE: \r or \n (also \s)
FALLBACK = -1  # a post's piece count when tokenizers encodes it itself

_SLOTS = 1 << 19  # table slots (a power of two); cleared when half full
_MAX_KEY_BYTES = 16 << 20  # bytes of pieces kept (and as many token ids at most)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map (what ``pre_tokenizers.ByteLevel`` applies)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs, strict=True)}


_BYTE_LEVEL = str.maketrans({chr(b): c for b, c in _bytes_to_unicode().items()})  # latin-1 char -> byte-level char


def supports(tokenizer_json: str) -> bool:
    """Whether ``tokenizer_json`` is murmur's tokenizer exactly as this module splits it: no normaliser,
    the Llama-3 split then byte-level mapping, a BPE model without dropout, only special added tokens."""
    from murmur.tokenizer import SPLIT_PATTERN

    try:
        cfg = json.loads(tokenizer_json)
    except ValueError:
        return False
    model = cfg.get("model") or {}
    expected_pre = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": SPLIT_PATTERN}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    return (cfg.get("normalizer") is None and cfg.get("pre_tokenizer") == expected_pre
            and model.get("type") == "BPE" and model.get("dropout") is None
            and not model.get("continuing_subword_prefix") and not model.get("end_of_word_suffix")
            and not model.get("byte_fallback")
            and all(t.get("special") for t in cfg.get("added_tokens") or []))


class PieceEncoder:
    """Encodes Arrow string arrays like ``Tokenizer.encode_batch(texts, add_special_tokens=False)``
    of murmur's tokenizer with special-token strings encoded as plain text (``encode_special_tokens``)."""

    def __init__(self, tokenizer: Any):
        self.tok = tokenizer  # a tokenizers.Tokenizer with encode_special_tokens = True
        self.classes = np.full(0x110000, UNKNOWN, dtype=np.uint8)
        self._clear()

    def _clear(self) -> None:
        self.slot_hash = np.zeros(_SLOTS, dtype=np.uint64)
        self.slot_key = np.full(_SLOTS, -1, dtype=np.int64)  # offset of the piece's bytes; -1: empty
        self.slot_klen = np.zeros(_SLOTS, dtype=np.int32)
        self.slot_ids = np.zeros(_SLOTS, dtype=np.int64)  # offset of the piece's token ids
        self.slot_ilen = np.zeros(_SLOTS, dtype=np.int32)
        self.keys = np.zeros(1 << 20, dtype=np.uint8)
        self.ids = np.zeros(1 << 18, dtype=np.uint32)
        self.used = np.zeros(3, dtype=np.int64)  # key bytes, ids, filled slots

    def encode(self, texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of non-null ``texts``: (flat ids as uint32, ids per text)."""
        n = len(texts)
        buffers = texts.buffers()
        wide = pa.types.is_large_string(texts.type)
        offsets = np.frombuffer(buffers[1], dtype=np.int64 if wide else np.int32)[texts.offset:texts.offset + n + 1]
        offsets = offsets.astype(np.int64)
        data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
        unknown = _unknown_code_points(data, offsets, self.classes)
        if len(unknown):
            self._learn(unknown)
        batch_bytes = int(offsets[-1] - offsets[0]) if n else 0
        for _ in range(2):
            if self.used[0] + batch_bytes > len(self.keys):
                if self.used[0] + batch_bytes > _MAX_KEY_BYTES:
                    self._clear()
                self.keys = _grown(self.keys, int(self.used[0]) + batch_bytes)
            piece_slot = np.empty(max(batch_bytes, 1), dtype=np.int64)
            counts = np.empty(n, dtype=np.int64)
            new = np.empty(max(batch_bytes, 1), dtype=np.int64)
            n_new = _split_batch(data, offsets, self.classes, self.slot_hash, self.slot_key, self.slot_klen,
                                 self.keys, self.used, piece_slot, counts, new)
            if n_new >= 0:
                break
            self._clear()  # the table filled up mid-batch: start the batch again on an empty table
        else:  # more new pieces in one batch than the table holds: tokenizers encodes it
            counts[:] = FALLBACK
            n_new = 0
        if n_new:
            self._tokenize_new(new[:n_new])
        flat, lens = _gather(piece_slot, counts, self.slot_ids, self.slot_ilen, self.ids)
        fallback = np.flatnonzero(counts == FALLBACK)
        if len(fallback):
            flat, lens = self._splice(flat, lens, fallback, texts)
        return flat, lens

    def _tokenize_new(self, slots: np.ndarray) -> None:
        model = self.tok.model
        keys = self.keys
        parts = []
        total = int(self.used[1])
        for s in slots.tolist():
            k = int(self.slot_key[s])
            piece = keys[k:k + int(self.slot_klen[s])].tobytes().decode("latin-1").translate(_BYTE_LEVEL)
            ids = [t.id for t in model.tokenize(piece)]
            self.slot_ids[s], self.slot_ilen[s] = total, len(ids)
            total += len(ids)
            parts.append(ids)
        if total > len(self.ids):
            self.ids = _grown(self.ids, total)
        start = int(self.used[1])
        self.ids[start:total] = np.fromiter((i for p in parts for i in p), dtype=np.uint32, count=total - start)
        self.used[1] = total

    def _splice(self, flat: np.ndarray, lens: np.ndarray, fallback: np.ndarray,
                texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """Put ``tokenizers``' own ids for the ``fallback`` posts in their places."""
        encs = self.tok.encode_batch(texts.take(pa.array(fallback)).to_pylist(), add_special_tokens=False)
        lens = lens.copy()
        lens[fallback] = [len(e.ids) for e in encs]
        ends = np.cumsum(lens)
        out = np.empty(int(ends[-1]), dtype=np.uint32)
        is_fast = np.ones(len(lens), dtype=bool)
        is_fast[fallback] = False
        fast_positions = np.repeat(is_fast, lens)
        out[fast_positions] = flat
        out[~fast_positions] = np.fromiter((i for e in encs for i in e.ids), dtype=np.uint32,
                                           count=int(lens[fallback].sum()))
        return out, lens

    def _learn(self, cps: np.ndarray) -> None:
        """Classes of new code points, asked of the tokenizer's regex engine (Oniguruma)."""
        from tokenizers import Regex, pre_tokenizers

        text = "".join(map(chr, cps.tolist()))
        classes = np.full(len(cps), OTHER, dtype=np.uint8)
        for cls, pattern in ((LETTER, r"\p{L}"), (NUMBER, r"\p{N}"), (SPACE, r"\s")):
            rest = pre_tokenizers.Split(Regex(pattern), behavior="removed").pre_tokenize_str(text)
            kept = set("".join(piece for piece, _ in rest))
            classes[[ch not in kept for ch in text]] = cls
        classes[(cps == 10) | (cps == 13)] = NEWLINE
        self.classes[cps] = classes


def _grown(a: np.ndarray, need: int) -> np.ndarray:
    out = np.zeros(max(need, 2 * len(a)), dtype=a.dtype)
    out[:len(a)] = a
    return out


@jit
def _unknown_code_points(data, offsets, classes):  # pragma: no cover - compiled by numba
    """The distinct code points of the batch whose class is not known yet (marked ``PENDING`` in
    ``classes`` as they are found)."""
    found = np.empty(len(data), dtype=np.int64)
    n = 0
    i = offsets[0]
    end = offsets[len(offsets) - 1]
    while i < end:  # the texts lie end to end: one pass over their bytes
        b = data[i]
        if b < 0x80:
            c, w = np.int64(b), 1
        elif b < 0xE0:
            c, w = ((np.int64(b) & 0x1F) << 6) | (np.int64(data[i + 1]) & 0x3F), 2
        elif b < 0xF0:
            c, w = (((np.int64(b) & 0x0F) << 12) | ((np.int64(data[i + 1]) & 0x3F) << 6)
                    | (np.int64(data[i + 2]) & 0x3F)), 3
        else:
            c, w = (((np.int64(b) & 0x07) << 18) | ((np.int64(data[i + 1]) & 0x3F) << 12)
                    | ((np.int64(data[i + 2]) & 0x3F) << 6) | (np.int64(data[i + 3]) & 0x3F)), 4
        if classes[c] == 255:
            classes[c] = 254
            found[n] = c
            n += 1
        i += w
    return found[:n]


@jit
def _split_batch(data, offsets, classes, slot_hash, slot_key, slot_klen, keys, used, piece_slot, counts,
                 new):  # pragma: no cover - compiled by numba
    """Split every text, find each piece in the table (inserting new ones, their token ids still to be
    filled). ``piece_slot``: the table slot of each piece, text after text; ``counts``: pieces per text
    (-1: the text goes to ``tokenizers``); ``new``: slots inserted. Returns how many were inserted, or -1
    when the table is half full (nothing of this batch is then usable)."""
    n_texts = len(offsets) - 1
    mask = len(slot_hash) - 1
    longest = 0
    for t in range(n_texts):
        longest = max(longest, offsets[t + 1] - offsets[t])
    cps = np.empty(longest + 1, dtype=np.int64)
    pos = np.empty(longest + 2, dtype=np.int64)
    cls = np.empty(longest + 1, dtype=np.uint8)
    bounds = np.empty(longest + 1, dtype=np.int64)
    p = 0
    n_new = 0
    for t in range(n_texts):
        n = 0  # decode the text's UTF-8 (valid: Arrow checks it): code points and their byte offsets
        i = offsets[t]
        while i < offsets[t + 1]:
            b = data[i]
            if b < 0x80:
                c, w = np.int64(b), 1
            elif b < 0xE0:
                c, w = ((np.int64(b) & 0x1F) << 6) | (np.int64(data[i + 1]) & 0x3F), 2
            elif b < 0xF0:
                c, w = (((np.int64(b) & 0x0F) << 12) | ((np.int64(data[i + 1]) & 0x3F) << 6)
                        | (np.int64(data[i + 2]) & 0x3F)), 3
            else:
                c, w = (((np.int64(b) & 0x07) << 18) | ((np.int64(data[i + 1]) & 0x3F) << 12)
                        | ((np.int64(data[i + 2]) & 0x3F) << 6) | (np.int64(data[i + 3]) & 0x3F)), 4
            cps[n] = c
            cls[n] = classes[c]
            pos[n] = i
            n += 1
            i += w
        pos[n] = offsets[t + 1]
        # the pieces, as the split regex cuts them: their ends (code point indices) in bounds
        m = 0
        i = 0
        while i < n:
            c = cls[i]
            # (?i:'s|'t|'re|'ve|'m|'ll|'d)
            if cps[i] == 39 and i + 1 < n:
                if cps[i + 1] >= 128:  # Unicode case folding could apply: tokenizers decides
                    m = -1
                    break
                a = cps[i + 1] + 32 if 65 <= cps[i + 1] <= 90 else cps[i + 1]
                if a == 115 or a == 116 or a == 109 or a == 100:  # s t m d
                    i += 2
                    bounds[m] = i
                    m += 1
                    continue
                if i + 2 < n and (a == 114 or a == 118 or a == 108):
                    if cps[i + 2] >= 128:
                        m = -1
                        break
                    b = cps[i + 2] + 32 if 65 <= cps[i + 2] <= 90 else cps[i + 2]
                    if (a == 114 and b == 101) or (a == 118 and b == 101) or (a == 108 and b == 108):  # re ve ll
                        i += 3
                        bounds[m] = i
                        m += 1
                        continue
            # [^\r\n\p{L}\p{N}]?\p{L}+
            if c == 1 or (c != 4 and c != 2 and i + 1 < n and cls[i + 1] == 1):
                j = i + 1
                while j < n and cls[j] == 1:
                    j += 1
                i = j
                bounds[m] = i
                m += 1
                continue
            # \p{N}{1,3}
            if c == 2:
                j = i + 1
                while j < n and j < i + 3 and cls[j] == 2:
                    j += 1
                i = j
                bounds[m] = i
                m += 1
                continue
            # ' ?[^\s\p{L}\p{N}]+[\r\n]*'
            if c == 0 or (cps[i] == 32 and i + 1 < n and cls[i + 1] == 0):
                j = i + 1
                while j < n and cls[j] == 0:
                    j += 1
                while j < n and cls[j] == 4:
                    j += 1
                i = j
                bounds[m] = i
                m += 1
                continue
            if c != 3 and c != 4:  # a class not learnt (cannot happen): tokenizers decides
                m = -1
                break
            # white space: \s*[\r\n]+ | \s+(?!\S) | \s+
            k = i
            last_newline = -1
            while k < n and (cls[k] == 3 or cls[k] == 4):
                if cls[k] == 4:
                    last_newline = k
                k += 1
            if last_newline >= 0:
                i = last_newline + 1
            elif k == n or k - 1 == i:
                i = k
            else:
                i = k - 1
            bounds[m] = i
            m += 1
        if m < 0:
            counts[t] = -1
            continue
        counts[t] = m
        begin = 0
        for q in range(m):
            b0, b1 = pos[begin], pos[bounds[q]]
            begin = bounds[q]
            h = np.uint64(14695981039346656037)
            for x in range(b0, b1):
                h = (h ^ np.uint64(data[x])) * np.uint64(1099511628211)
            s = np.int64(h & np.uint64(mask))
            length = b1 - b0
            while True:
                if slot_key[s] < 0:
                    if 2 * used[2] >= len(slot_hash):
                        return -1
                    k0 = used[0]
                    for x in range(length):
                        keys[k0 + x] = data[b0 + x]
                    used[0] = k0 + length
                    used[2] += 1
                    slot_hash[s], slot_key[s], slot_klen[s] = h, k0, length
                    new[n_new] = s
                    n_new += 1
                    break
                if slot_hash[s] == h and slot_klen[s] == length:
                    k0 = slot_key[s]
                    same = True
                    for x in range(length):
                        if keys[k0 + x] != data[b0 + x]:
                            same = False
                            break
                    if same:
                        break
                s = (s + 1) & mask
            piece_slot[p] = s
            p += 1
    return n_new


@jit
def _gather(piece_slot, counts, slot_ids, slot_ilen, ids):  # pragma: no cover - compiled by numba
    """Each text's token ids (its pieces' ids end to end) and their number; 0 for fallback texts."""
    lens = np.zeros(len(counts), dtype=np.int64)
    p = 0
    total = 0
    for t in range(len(counts)):
        for _ in range(max(counts[t], 0)):
            lens[t] += slot_ilen[piece_slot[p]]
            p += 1
        total += lens[t]
    flat = np.empty(total, dtype=np.uint32)
    p = 0
    o = 0
    for t in range(len(counts)):
        for _ in range(max(counts[t], 0)):
            s = piece_slot[p]
            a = slot_ids[s]
            for x in range(slot_ilen[s]):
                flat[o] = ids[a + x]
                o += 1
            p += 1
    return flat, lens
