"""Audiences built from what people post and whom they follow (the kinds X Ads offers).

- ``interest``: users whose posts are about a topic. A topic is defined by seed terms (its hashtags
  in the network's taxonomy); the posts carrying them give the topic's centroid in vector space,
  every post goes to its nearest topic centroid, and a user belongs when at least ``min_share`` of
  their posts (and ``min_posts`` posts) are about the topic.
- ``keyword``: users who posted any of the keywords (whole words, any case) in the last N days.
- ``topic`` (conversation topic): users who posted in conversations about the topic (a
  conversation's vector is the mean of its posts').
- ``lookalike``: users like the followers of given accounts: the seed is those followers; the seed
  first, then users ranked by cosine to the seed's mean vector less every user's mean (what sets the
  seed apart, not what everyone posts about); the knobs: a size (``size`` users or a ``fraction`` of
  the users with posts) and a similarity threshold (``min_similarity``).
- ``custom``: an uploaded list of user ids, kept when at least 100 of them are known users.

An audience file is Parquet ``(user_id: string, score: float32)``, best first, with the kind, its
parameters and size in the schema metadata (key ``murmur.audience``). No audience under
:data:`MIN_AUDIENCE` users is written, reported or targeted.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from murmur.ads.store import MIN_AUDIENCE
from murmur.ads.vectors import UserVectors
from murmur.errors import InputError
from murmur.io import atomic_path

KINDS = ("interest", "keyword", "topic", "lookalike", "custom")
META_KEY = b"murmur.audience"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


@dataclass(frozen=True)
class Audience:
    kind: str
    params: dict
    user_ids: np.ndarray     # str, best first
    scores: np.ndarray       # float32

    @property
    def size(self) -> int:
        return len(self.user_ids)


def default_taxonomy() -> dict[str, tuple[str, ...]]:
    """topic -> seed terms: the demo world's topics and their English and Spanish hashtags."""
    from murmur.world import text as wt

    return {name: tuple("#" + tag.lower() for lang in ("en", "es") for tag in t.tags[lang])
            for name, t in wt.TOPICS.items()}


def _contains_any(texts: pa.ChunkedArray | pa.Array, terms: Sequence[str]) -> np.ndarray:
    pattern = r"(?i)(?:^|[^\w#@])(?:" + "|".join(re.escape(t) for t in terms) + r")(?:$|\W)"
    return pc.match_substring_regex(texts, pattern).to_numpy(zero_copy_only=False).astype(bool)


@dataclass
class TopicClassifier:
    """Nearest-centroid topics for posts; centroids from the posts that carry each topic's seed terms."""

    names: tuple[str, ...]
    centroids: np.ndarray  # [topics, dim]
    min_sim: float = 0.1

    @classmethod
    def fit(cls, texts: pa.ChunkedArray, post_vectors: np.ndarray, taxonomy: dict[str, Sequence[str]],
            embedder) -> TopicClassifier:
        names = tuple(taxonomy)
        cents = np.zeros((len(names), post_vectors.shape[1]), np.float32)
        for i, name in enumerate(names):
            seeded = _contains_any(texts, taxonomy[name])
            if seeded.sum() >= 3:
                c = post_vectors[seeded].mean(0)
            else:  # too few seeded posts: the seed terms' own vector
                c = embedder.encode([" ".join([name.replace("_", " "), *taxonomy[name]])])[0]
            cents[i] = c / max(np.linalg.norm(c), 1e-12)
        return cls(names, cents)

    def classify(self, vectors: np.ndarray) -> np.ndarray:
        """Topic index of each vector, -1 when no centroid is near enough."""
        if len(vectors) == 0:
            return np.zeros(0, np.int64)
        sims = vectors @ self.centroids.T
        best = sims.argmax(1)
        return np.where(sims[np.arange(len(best)), best] >= self.min_sim, best, -1)

    def index(self, topic: str) -> int:
        if topic not in self.names:
            raise InputError(f"unknown topic {topic!r} (known: {', '.join(self.names[:8])}, ...)", field="topic")
        return self.names.index(topic)


@dataclass
class AudienceBuilder:
    """Builds audiences of every kind from clean posts, their vectors and (for look-alikes) follows."""

    posts: pa.Table                 # post schema columns post_id, author_id, text, created_at, conversation_id
    vectors: UserVectors
    taxonomy: dict[str, tuple[str, ...]] = field(default_factory=default_taxonomy)
    follows: pa.Table | None = None  # src, dst
    _classifier: TopicClassifier | None = field(default=None, init=False, repr=False)
    _post_topic: np.ndarray | None = field(default=None, init=False, repr=False)

    @property
    def classifier(self) -> TopicClassifier:
        if self._classifier is None:
            self._classifier = TopicClassifier.fit(self.posts.column("text"), self.vectors.post_vectors,
                                                   self.taxonomy, self.vectors.embedder)
            self._post_topic = self._classifier.classify(self.vectors.post_vectors)
        return self._classifier

    def _finish(self, kind: str, params: dict, user_rows: np.ndarray, scores: np.ndarray) -> Audience:
        order = np.lexsort((user_rows, -scores))
        return Audience(kind, params, self.vectors.user_ids[user_rows[order]], scores[order].astype(np.float32))

    def interest(self, topic: str, min_share: float = 0.2, min_posts: int = 1) -> Audience:
        t = self.classifier.index(topic)
        n_users = len(self.vectors.user_ids)
        total = np.bincount(self.vectors.post_user, minlength=n_users)
        on = np.bincount(self.vectors.post_user[self._post_topic == t], minlength=n_users)
        share = on / np.maximum(total, 1)
        rows = np.flatnonzero((on >= min_posts) & (share >= min_share))
        return self._finish("interest", {"topic": topic, "min_share": min_share, "min_posts": min_posts},
                            rows, share[rows])

    def keyword(self, keywords: Sequence[str], days: int | None = None) -> Audience:
        words = [k.strip() for k in keywords if k.strip()]
        if not words:
            raise InputError("give at least one keyword", field="keywords")
        hit = _contains_any(self.posts.column("text"), words)
        if days is not None:
            if days < 1:
                raise InputError(f"days must be >= 1 (got {days})", field="days")
            ts = self.posts.column("created_at").cast(pa.int64()).to_numpy(zero_copy_only=False)
            hit &= ts >= ts.max() - days * 86_400 * 1_000_000
        counts = np.bincount(self.vectors.post_user[hit], minlength=len(self.vectors.user_ids))
        rows = np.flatnonzero(counts)
        return self._finish("keyword", {"keywords": words, "days": days}, rows, counts[rows].astype(np.float32))

    def conversation_topic(self, topic: str) -> Audience:
        t = self.classifier.index(topic)
        conv = self.posts.column("conversation_id").to_numpy(zero_copy_only=False)
        conv = np.where(pd_isnull(conv), self.posts.column("post_id").to_numpy(zero_copy_only=False), conv).astype(str)
        keys, inv = np.unique(conv, return_inverse=True)
        from scipy import sparse

        owner = sparse.csr_matrix((np.ones(len(inv), np.float32), (inv, np.arange(len(inv)))), shape=(len(keys), len(inv)))
        means = np.asarray(owner @ self.vectors.post_vectors)
        means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
        conv_on = self.classifier.classify(means.astype(np.float32)) == t
        counts = np.bincount(self.vectors.post_user[conv_on[inv]], minlength=len(self.vectors.user_ids))
        rows = np.flatnonzero(counts)
        return self._finish("topic", {"topic": topic}, rows, counts[rows].astype(np.float32))

    def lookalike_scores(self, accounts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Every user's cosine to what sets the seed (the accounts' followers with posts) apart, and the seed's
        rows: ``(sims [users], seed_rows)``."""
        if self.follows is None:
            raise InputError("a look-alike audience needs the follow graph (--follows)", field="follows")
        accounts = [a.strip() for a in accounts if a.strip()]
        seed_mask = pc.is_in(self.follows.column("dst"), value_set=pa.array(accounts, pa.string()))
        seed_ids = np.unique(self.follows.filter(seed_mask).column("src").to_numpy(zero_copy_only=False).astype(str))
        seed_rows = self.vectors.rows(seed_ids)
        seed_rows = seed_rows[seed_rows >= 0]
        if len(seed_rows) == 0:
            raise InputError("the accounts have no followers with posts to learn from", field="accounts")
        # what sets the seed apart: its mean vector less everyone's (the mean alone leans to what all users share)
        centre = self.vectors.matrix[seed_rows].mean(0) - self.vectors.matrix.mean(0)
        centre /= max(np.linalg.norm(centre), 1e-12)
        return self.vectors.matrix @ centre, seed_rows

    def lookalike(self, accounts: Sequence[str], size: int | None = None, fraction: float | None = None,
                  min_similarity: float | None = None) -> Audience:
        """The seed (followers of ``accounts`` with posts), then the users most like it, best first.

        Two knobs, either or both: the size, as ``size`` users or a ``fraction`` of the eligible users (those
        with posts), and ``min_similarity``, the least cosine to what sets the seed apart (its mean vector less
        everyone's) a user outside the seed needs. With neither size nor fraction the audience holds 1,000
        users, or with only ``min_similarity`` every user reaching it. Nothing under :data:`MIN_AUDIENCE`."""
        size, fraction, min_similarity = lookalike_knobs(size, fraction, min_similarity)
        eligible = len(self.vectors.user_ids)
        if fraction is not None:
            size = round(fraction * eligible)
            if size < MIN_AUDIENCE:
                raise InputError(f"fraction {fraction:g} of the {eligible:,} eligible users is {size:,}, under the "
                                 f"{MIN_AUDIENCE}-member floor", field="fraction")
        elif size is None:
            size = eligible if min_similarity is not None else 1000
        sims, seed_rows = self.lookalike_scores(accounts)
        sims = sims.copy()
        sims[seed_rows] = np.maximum(sims[seed_rows], 1.0)  # the seed itself belongs, first
        rows = np.argsort(-sims, kind="stable")[:size]
        if min_similarity is not None:
            rows = rows[sims[rows] >= min_similarity]
            if len(rows) < MIN_AUDIENCE:
                raise InputError(f"only {len(rows):,} users (the seed included) reach similarity {min_similarity:g}; "
                                 f"an audience needs {MIN_AUDIENCE} (lower min_similarity)", field="min_similarity")
        params = {"accounts": [a.strip() for a in accounts if a.strip()], "size": size, "fraction": fraction,
                  "min_similarity": min_similarity, "seed": int(len(seed_rows)), "eligible": eligible}
        return self._finish("lookalike", params, rows, sims[rows])

    def custom(self, ids: Sequence[str]) -> Audience:
        rows = self.vectors.rows([i.strip() for i in ids if i.strip()])
        rows = np.unique(rows[rows >= 0])
        if len(rows) < MIN_AUDIENCE:
            raise InputError(f"fewer than {MIN_AUDIENCE} of the listed ids are users of the network; a custom "
                             "audience cannot be smaller", field="ids")
        return self._finish("custom", {"listed": len(ids)}, rows, np.ones(len(rows), np.float32))


def lookalike_knobs(size: int | None, fraction: float | None,
                    min_similarity: float | None) -> tuple[int | None, float | None, float | None]:
    """The look-alike knobs checked (InputError naming the bad one): ``size`` at least :data:`MIN_AUDIENCE`,
    ``fraction`` in (0, 1], ``min_similarity`` in [0, 1], and not both size and fraction."""
    if size is not None and fraction is not None:
        raise InputError("give the look-alike's size or its fraction, not both", field="fraction")
    if size is not None and (isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < MIN_AUDIENCE):
        raise InputError(f"size must be a whole number of users, at least {MIN_AUDIENCE} (got {size!r})", field="size")
    if fraction is not None and not (0.0 < float(fraction) <= 1.0):
        raise InputError(f"fraction must be above 0 and at most 1 (got {fraction!r})", field="fraction")
    if min_similarity is not None and not (0.0 <= float(min_similarity) <= 1.0):
        raise InputError(f"min_similarity is a cosine between 0 and 1 (got {min_similarity!r})",
                         field="min_similarity")
    return (None if size is None else int(size), None if fraction is None else float(fraction),
            None if min_similarity is None else float(min_similarity))


def pd_isnull(a: np.ndarray) -> np.ndarray:
    return np.array([x is None for x in a], dtype=bool)


def write_audience(aud: Audience, path: str | Path) -> Path:
    """Write an audience (refused under :data:`MIN_AUDIENCE` users), atomically."""
    if aud.size < MIN_AUDIENCE:
        raise InputError(f"the {aud.kind} audience has fewer than {MIN_AUDIENCE} users; it cannot be written or "
                         "targeted (widen it)")
    meta = {"kind": aud.kind, "params": aud.params, "size": aud.size,
            "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    table = pa.table({"user_id": pa.array(aud.user_ids.astype(str), pa.string()),
                      "score": pa.array(aud.scores, pa.float32())})
    table = table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def read_audience(path: str | Path) -> Audience:
    path = Path(path)
    if not path.is_file():
        raise InputError("audience file not found", path=path)
    try:
        t = pq.read_table(path)
        meta = json.loads((t.schema.metadata or {}).get(META_KEY, b"{}"))
        ids = t.column("user_id").to_numpy(zero_copy_only=False).astype(str)
        scores = t.column("score").to_numpy(zero_copy_only=False)
    except (pa.ArrowException, OSError, KeyError, ValueError) as e:
        raise InputError(f"not an audience file (user_id, score): {e}", path=path) from None
    return Audience(meta.get("kind", "custom"), meta.get("params", {}), ids, scores)


@dataclass
class AudienceCatalog:
    """Named audiences: the ``*.parquet`` files of a directory (name = file stem)."""

    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self._cache: dict[str, Audience] = {}

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.root.glob("*.parquet")) if self.root.is_dir() else []

    def get(self, name: str) -> Audience:
        if not _NAME_RE.match(name or ""):
            raise InputError(f"bad audience name {name!r}", field="audience")
        if name not in self._cache:
            path = self.root / f"{name}.parquet"
            if not path.is_file():
                raise InputError(f"unknown audience {name!r}", field="audience")
            self._cache[name] = read_audience(path)
        return self._cache[name]

    def size(self, name: str) -> int | None:
        """Size of a named audience, None when unknown (the campaign store's audience check)."""
        try:
            return self.get(name).size
        except InputError:
            return None

    def put(self, name: str, aud: Audience) -> Path:
        if not _NAME_RE.match(name or ""):
            raise InputError(f"bad audience name {name!r}: letters, digits, _ . - only", field="name")
        path = write_audience(aud, self.root / f"{name}.parquet")
        self._cache[name] = aud
        return path


def evaluate_interest(aud: Audience, topic: str, truth_users: Sequence[str], truth_has: np.ndarray,
                      universe: Sequence[str]) -> dict[str, float]:
    """Precision and recall of an audience against true interest in ``topic``.

    ``truth_users``/``truth_has``: every user id with whether ``topic`` is a true interest;
    ``universe``: the users the audience could have picked (those with posts)."""
    has = dict(zip(truth_users, truth_has.tolist(), strict=True))
    members = set(aud.user_ids.tolist())
    positives = {u for u in universe if has.get(u, False)}
    tp = len(members & positives)
    precision = tp / max(1, len(members))
    recall = tp / max(1, len(positives))
    return {"topic": topic, "size": len(members), "precision": precision, "recall": recall,
            "f1": 2 * precision * recall / max(1e-12, precision + recall),
            "base_rate": len(positives) / max(1, len(universe))}
