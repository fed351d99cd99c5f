"""Training pairs the network provides without labels, from clean posts (the post schema).

Each pair is (query, passage): two texts that should land near each other. Kinds:

- ``hashtag``: a hashtag a post used, as a query (half of the time ``#tag``, half its words:
  ``#MachineLearning`` -> ``machine learning``), and that post with the hashtag taken out, so the
  model must learn the topic from the rest of the words (most posts carry no hashtag at all);
- ``reply``: a post and a reply to it (a reply is about what it answers);
- ``conversation``: two posts of one conversation that are not reply and parent (a thread stays
  on its subject);
- ``span``: a few consecutive words of a post and the post (the independent-cropping idea of
  Contriever): short queries that match posts by their words.

Which variant and which span a pair gets comes from a hash of the post id and the seed, so the
pairs do not depend on file order. A pair's ``key`` names its query text: pairs sharing it are not
used as each other's negatives.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from murmur.errors import InputError

KINDS: tuple[str, ...] = ("hashtag", "reply", "conversation", "span")
NEEDED = {"hashtag": ("post_id", "text", "hashtags"), "reply": ("post_id", "text", "reply_to"),
          "conversation": ("post_id", "text", "reply_to", "conversation_id", "created_at"),
          "span": ("post_id", "text")}

_CAMEL = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_PLAIN_WORD = re.compile(r"^[^\W\d_][\w'’-]*$")


@dataclass(frozen=True)
class TextPair:
    query: str
    passage: str
    kind: str


def stable_unit(*parts: object) -> float:
    """A number in [0, 1) from a hash of ``parts`` (deterministic across runs and machines)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def tag_words(tag: str) -> str:
    """``MachineLearning`` -> ``machine learning``; an all-lowercase tag stays one word."""
    words = _CAMEL.findall(tag)
    return " ".join(w.lower() for w in words) if words else tag.lower()


def strip_tag(text: str, tag: str) -> str:
    """``text`` without the hashtag ``#tag`` (any case), spaces tidied."""
    out = re.sub(r"(?<!\w)#" + re.escape(tag) + r"(?!\w)", " ", text, flags=re.IGNORECASE)
    return re.sub(r"\s+", " ", out).strip()


def word_span(text: str, u: float, v: float, lo: int = 2, hi: int = 4) -> str | None:
    """A run of ``lo``..``hi`` plain words of ``text`` (no @mentions, #tags, <placeholders>), or None."""
    words = [w.strip(".,!?¡¿:;\"()") for w in text.split()]
    runs: list[list[str]] = [[]]
    for w in words:
        if w and _PLAIN_WORD.match(w):
            runs[-1].append(w)
        elif runs[-1]:
            runs.append([])
    runs = [r for r in runs if len(r) >= lo]
    if not runs:
        return None
    run = runs[int(u * len(runs))]
    n = min(len(run), lo + int(v * (hi - lo + 1)))
    start = int(v * 7919) % (len(run) - n + 1)
    return " ".join(run[start:start + n])


def read_posts(path: str | Path, kinds: Sequence[str]) -> dict[str, list]:
    """The columns the pair kinds need, checked (one line naming the file and column)."""
    path = Path(path)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise InputError(f"unknown pair kind {unknown[0]!r} (kinds: {', '.join(KINDS)})", field="pairs")
    if not path.is_file():
        raise InputError("posts file not found", path=path)
    try:
        schema = pq.read_schema(path)
    except Exception as e:  # noqa: BLE001  (pyarrow raises several types for a file that is not Parquet)
        raise InputError(f"not a Parquet file ({str(e).splitlines()[0][:120]})", path=path) from None
    cols = sorted({c for k in kinds for c in NEEDED[k]})
    missing = [c for c in cols if c not in schema.names]
    if missing:
        raise InputError("missing column (expected the clean post schema: `murmur data clean`)", path=path,
                         field=missing[0])
    table = pq.read_table(path, columns=cols)
    return {c: table.column(c).to_pylist() for c in cols}


def build_pairs(posts: dict[str, list], kinds: Sequence[str] = KINDS, seed: int = 0,
                max_per_conversation: int = 8) -> list[TextPair]:
    """Every pair of the given kinds from the post columns (``read_posts``), deduplicated, in a stable order."""
    ids, texts = posts["post_id"], posts["text"]
    text_of = {pid: t for pid, t in zip(ids, texts, strict=True) if pid is not None and t}
    out: list[TextPair] = []
    if "hashtag" in kinds:
        for pid, text, tags in zip(ids, texts, posts["hashtags"], strict=True):
            if not text or not tags:
                continue
            for tag in dict.fromkeys(t for t in tags if t):
                passage = strip_tag(text, tag)
                if len(passage.split()) < 3:
                    continue
                query = "#" + tag if stable_unit(seed, pid, tag) < 0.5 else tag_words(tag)
                out.append(TextPair(query, passage, "hashtag"))
    if "reply" in kinds:
        for pid, text, parent in zip(ids, texts, posts["reply_to"], strict=True):
            if text and parent in text_of and parent != pid:
                out.append(TextPair(text_of[parent], text, "reply"))
    if "conversation" in kinds:
        threads: dict[str, list[tuple[object, str, str | None]]] = defaultdict(list)
        for pid, text, parent, conv, at in zip(ids, texts, posts["reply_to"], posts["conversation_id"],
                                               posts["created_at"], strict=True):
            if conv and text:
                threads[conv].append((at, pid, parent))
        for members in threads.values():
            if len(members) < 3:
                continue
            members.sort(key=lambda m: (m[0] is None, m[0] or 0, m[1]))
            parent_of = {pid: parent for _, pid, parent in members}
            found = 0
            for i in range(len(members)):
                for j in range(i + 2, len(members)):
                    a, b = members[i][1], members[j][1]
                    if parent_of.get(b) == a or parent_of.get(a) == b:
                        continue
                    out.append(TextPair(text_of[a], text_of[b], "conversation"))
                    found += 1
                    break
                if found >= max_per_conversation:
                    break
    if "span" in kinds:
        for pid, text in zip(ids, texts, strict=True):
            if not text:
                continue
            span = word_span(text, stable_unit(seed, pid, "span"), stable_unit(seed, pid, "len"))
            if span:
                out.append(TextPair(span, text, "span"))
    return list(dict.fromkeys(out))


def kind_counts(pairs: Sequence[TextPair]) -> dict[str, int]:
    return dict(Counter(p.kind for p in pairs))
