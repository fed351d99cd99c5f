"""The demo world: a synthetic, deterministic social network written in the real X (Twitter) formats.

There is no internet here, so every stage of murmur (readers, cleaning, tokenizer, training, search,
ads) is tried and tested on a world this module generates from a seed. The same config and seed
give byte-identical files. Generation streams hour by hour, so memory stays bounded (the follow
graph, one recent post per account and a window of recent posts) and a 1M-post world takes about a
minute on one core.

What is in a world
------------------
Accounts are humans, spam accounts and bots. Humans have 2-4 hidden interests among
:data:`murmur.world.text.TOPICS` (37 topics), write English, Spanish or both, and follow others
mostly among people who share an interest, weighted by popularity (a fitness model of preferential
attachment, so follower counts are heavy-tailed). Posts are written from topic vocabularies and
templates (hashtags such as ``#MachineLearning``, ``@mentions`` of followed accounts, ``https://t.co``
links, emoji, typos, casing noise, dropped accents), with reply threads that stay on the parent's
topic and conversation, quotes, ``RT @user:`` retweets, exact and near duplicates, spam, templated
bot posts, posts carrying PII (emails, phone numbers, card numbers) and a few French, German and
Portuguese posts. A few stories (:data:`murmur.world.text.STORIES`) are bursts: for a few hours many
accounts post about one piece of news with its own words and two hashtags. Like, repost and reply counts are heavy-tailed and grow with the author's followers.

Layout of ``out_dir``
---------------------
``archives/<handle>/data/tweets.js``
    A real X account archive. The file starts with ``window.YTD.tweets.part0 = [`` followed by a
    JSON array of ``{"tweet": {...}}`` objects, newest first, pretty-printed as X does
    (``"key" : value``). As in real archives every number is a string: ``id``, ``id_str``,
    ``favorite_count``, ``retweet_count``, entity ``indices`` (``["3", "15"]``) and mention ``id``.
    Fields: ``id_str``, ``id``, ``full_text`` (the whole text, even past 280 characters),
    ``created_at`` (``Wed Oct 10 20:19:24 +0000 2018``), ``lang``, ``favorite_count``,
    ``retweet_count``, ``source`` (an HTML link), ``truncated``, ``retweeted``, ``favorited``,
    ``display_text_range``, ``edit_info`` and ``entities`` with ``hashtags [{text, indices}]``,
    ``symbols [{text, indices}]``, ``user_mentions [{name, screen_name, indices, id_str, id}]``,
    ``urls [{url, expanded_url, display_url, indices}]`` (all four lists always present).
    Replies carry ``in_reply_to_status_id(_str)``, ``in_reply_to_user_id(_str)`` and
    ``in_reply_to_screen_name``; as in real archives these keys are absent on other posts.
    Retweets are ``RT @user: ...`` texts. There is no conversation id in archives.
``archives/<handle>/data/account.js``
    ``window.YTD.account.part0 = [{"account": {email, createdVia, username, accountId, createdAt,
    accountDisplayName}}]``; ``data/manifest.js`` is ``window.__THAR_CONFIG = {...}`` as in real archives.
``archives/<handle>.zip``
    Some archives (``archive_zip_fraction``) are zipped instead; the zip holds the same ``data/`` folder.
``api/posts-00000.jsonl.gz`` ...
    X API v2 search responses, one JSON page per line (gzip unless ``compress=false``):
    ``{"data": [post, ...], "includes": {"users": [{id, username, name}]}, "meta": {result_count,
    newest_id, oldest_id, next_token}}`` with ``posts_per_page`` posts a page (the last page has no
    ``next_token``) and ``pages_per_file`` pages a file. Pages run oldest first. A post has ``id``,
    ``text``, ``author_id``, ``created_at`` (``2024-05-01T12:34:56.000Z``), ``lang``,
    ``conversation_id``, ``edit_history_tweet_ids``, ``possibly_sensitive`` and ``public_metrics``
    ``{retweet_count, reply_count, like_count, quote_count}``; when they apply (and, as in the real
    API, only then): ``in_reply_to_user_id``, ``referenced_tweets [{type: replied_to | retweeted |
    quoted, id}]`` and ``entities`` with whichever of ``hashtags [{start, end, tag}]``, ``cashtags``,
    ``mentions [{start, end, username, id}]`` and ``urls [{start, end, url, expanded_url,
    display_url}]`` are non-empty. A post longer than 280 characters has ``note_tweet: {text,
    entities}`` with the full text, and ``text`` is its first 280 characters plus ``…``.
    ``includes.users`` lists the authors of the page's posts.
``truth/users.parquet``
    user_id, handle, name, kind (human | spam | bot), langs, lang_weights (the share of its posts
    in each language), interests (topic names; empty for spam and bots), interest_weights (the
    chance each interest is picked for a post of its own; replies and quotes keep the other
    post's topic),
    followers, following, posts, archive (the archive path, or null for accounts seen through the
    API). Read it through :func:`murmur.world.truth.load_truth`.
``truth/follows.parquet``
    src, dst (user ids): src follows dst.
``truth/posts.parquet``
    post_id, author_id, created_at, topic (null for spam, bot and foreign posts), lang, kind
    (normal | reply | spam | bot | duplicate | near_duplicate | retweet | foreign | pii),
    duplicate_of (the original of a duplicate or near duplicate), reply_to, conversation_id,
    retweet_of, quote_of, long (longer than 280 characters), file (where the post was written),
    story (the story a post belongs to, or null).
``world.json``
    The config, the counts, the topics, the stories (id, name, topic, lang, hashtags, terms, start,
    end) and this layout's version.

Accounts are disjoint between archives and the API, and every post is written exactly once (the
deliberate duplicates are separate posts with their own ids).
"""

from __future__ import annotations

import array
import bisect
import contextlib
import dataclasses
import datetime as dt
import gc
import gzip
import io
import itertools
import json
import math
import queue
import random
import re
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from murmur.config import knob
from murmur.errors import ConfigError, InputError
from murmur.io import atomic_dir, write_json
from murmur.progress import Progress, log
from murmur.world import text as wt

FORMAT_VERSION = 3  # 2: users.parquet gained interest_weights and lang_weights; 3: stories (bursts)
TWITTER_EPOCH_MS = 1288834974657  # snowflake ids count milliseconds from here
HUMAN, SPAM, BOT = 0, 1, 2
KIND_NAMES = ("human", "spam", "bot")
POST_KINDS = ("normal", "reply", "spam", "bot", "duplicate", "near_duplicate", "retweet", "foreign", "pii")
_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Share of a day's posts in each UTC hour: quiet at night, peaks at lunch and in the evening.
_HOURLY = (3, 2, 1.5, 1, 1, 1.5, 2.5, 4, 5, 5.5, 6, 6.5, 7, 6.5, 6, 6, 6, 6.5, 7.5, 8, 8, 7, 5.5, 4)
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Hashtags, @mentions, $CASHTAGS (not inside a word or an email address) and t.co links. Each branch
# starts with its literal sign and looks behind it afterwards, so the engine can skip to candidates.
_ENTITY_RE = re.compile(r"#(?<![\w&#@$]#)(\w+)|@(?<![\w&#@$]@)(\w{1,15})\b|\$(?<![\w&#@$]\$)([A-Z]{1,6})\b"
                        r"|(https://t\.co/[0-9A-Za-z]{10})")
_ES_FIXES = ((" de el ", " del "), (" a el ", " al "))
_NOTE_LIMIT = 280
_REPLY_WINDOW_MS = 3 * 86_400_000  # replies, retweets and quotes come within three days of their post
_URL_HOLE, _MENTION_HOLE = "\x00", "\x01"
FIRST_INTEREST_SHARE = 0.45  # chance a post takes its author's first interest outright (else any, uniformly)
FIRST_LANG_SHARE = 0.6       # a bilingual account writes its first language this often


def interest_weights(n: int) -> tuple[float, ...]:
    """The probability that an account with ``n`` interests picks each of them for a post of its own."""
    if n == 0:
        return ()
    rest = (1.0 - FIRST_INTEREST_SHARE) / n
    return (FIRST_INTEREST_SHARE + rest,) + (rest,) * (n - 1)


def lang_weights(n: int) -> tuple[float, ...]:
    """The probability that an account writing ``n`` languages (1 or 2) writes each of them."""
    return (1.0,) if n == 1 else (FIRST_LANG_SHARE, 1.0 - FIRST_LANG_SHARE)


@dataclass(frozen=True)
class WorldConfig:
    """Knobs of the demo world. Fractions of posts apply to human accounts' posts."""

    users: int = knob(2000, "number of accounts (humans, spam accounts and bots)")
    seed: int = knob(0, "random seed; the same config and seed give byte-identical files")
    days: int = knob(28, "days of activity the posts are spread over")
    start: str = knob("2024-05-01", "first day of activity (UTC, YYYY-MM-DD)")
    posts_per_user: float = knob(12.0, "mean posts per account (heavy-tailed across accounts)")
    follows_per_user: float = knob(30.0, "mean accounts each account follows (heavy-tailed)")
    homophily: float = knob(0.7, "share of follows chosen among accounts sharing an interest")
    spanish_fraction: float = knob(0.3, "share of accounts that write Spanish")
    bilingual_fraction: float = knob(0.3, "share of Spanish writers who also post in English")
    spam_fraction: float = knob(0.03, "share of accounts that are spam accounts")
    bot_fraction: float = knob(0.02, "share of accounts that are bots posting templated updates")
    duplicate_fraction: float = knob(0.05, "share of posts that copy an earlier post, exactly or nearly")
    retweet_fraction: float = knob(0.04, "share of posts that are 'RT @user: ...' retweets")
    reply_fraction: float = knob(0.3, "share of posts that reply to an earlier post")
    quote_fraction: float = knob(0.02, "share of posts that quote an earlier post")
    pii_fraction: float = knob(0.02, "share of posts carrying an email, phone or card number")
    foreign_fraction: float = knob(0.01, "share of posts in French, German or Portuguese")
    long_fraction: float = knob(0.02, "share of posts longer than 280 characters (note tweets)")
    noise: float = knob(0.2, "share of posts with a typo, casing noise or dropped accents")
    archive_users: int = knob(20, "accounts written as full X account archives instead of API pages")
    archive_zip_fraction: float = knob(0.25, "share of the archives written as .zip files")
    compress: bool = knob(True, "gzip the API files (posts-00000.jsonl.gz)")
    gzip_level: int = knob(1, "gzip compression level of the API files (1 fastest .. 9 smallest)")
    posts_per_page: int = knob(100, "posts per API response page")
    pages_per_file: int = knob(200, "API pages per file")
    stories: int = knob(4, "news stories: a few hours in which many people post about one thing (0: a flat world)")


@dataclass
class WorldSummary:
    """What :func:`generate_world` wrote, for the CLI and for tests."""

    path: Path
    users: int
    humans: int
    spam_accounts: int
    bots: int
    follows: int
    posts: int
    kinds: dict[str, int]
    langs: dict[str, int]
    archives: int
    zipped_archives: int
    archive_posts: int
    api_files: int
    api_pages: int
    api_posts: int
    seconds: float = 0.0

    @property
    def posts_per_second(self) -> float:
        return self.posts / max(self.seconds, 1e-9)

    def describe(self) -> str:
        kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(self.kinds.items(), key=lambda kv: -kv[1]))
        langs = ", ".join(f"{k} {v:,}" for k, v in sorted(self.langs.items(), key=lambda kv: -kv[1]))
        return "\n".join([
            f"world written to {self.path} in {self.seconds:.1f}s ({self.posts_per_second:,.0f} posts/s)",
            f"  accounts   {self.users:,} ({self.humans:,} humans, {self.spam_accounts:,} spam, "
            f"{self.bots:,} bots), {self.follows:,} follows",
            f"  posts      {self.posts:,}: {kinds}",
            f"  languages  {langs}",
            f"  archives   {self.archives:,} accounts ({self.zipped_archives:,} zipped), "
            f"{self.archive_posts:,} posts under archives/",
            f"  api        {self.api_posts:,} posts in {self.api_pages:,} pages, "
            f"{self.api_files:,} files under api/",
            "  truth      truth/users.parquet, truth/follows.parquet, truth/posts.parquet, world.json",
        ])


# =========================================================================== validation
def _validate(cfg: WorldConfig) -> dt.date:
    try:
        start = dt.date.fromisoformat(cfg.start)
    except ValueError:
        raise ConfigError(f"start: {cfg.start!r} is not a date like 2024-05-01") from None
    if cfg.users < 2:
        raise ConfigError(f"users: need at least 2 accounts, got {cfg.users}")
    if cfg.days < 1:
        raise ConfigError(f"days: need at least 1, got {cfg.days}")
    if cfg.posts_per_user <= 0 or cfg.follows_per_user < 0:
        raise ConfigError("posts_per_user must be > 0 and follows_per_user >= 0")
    for f in dataclasses.fields(cfg):
        if f.name.endswith("_fraction") or f.name in ("homophily", "noise"):
            v = getattr(cfg, f.name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"{f.name}: must be between 0 and 1, got {v}")
    post_share = (cfg.duplicate_fraction + cfg.retweet_fraction + cfg.reply_fraction + cfg.quote_fraction
                  + cfg.pii_fraction + cfg.foreign_fraction + cfg.long_fraction)
    if post_share > 1.0:
        raise ConfigError(f"the post fractions add up to {post_share:.2f}, more than 1")
    if cfg.spam_fraction + cfg.bot_fraction >= 1.0:
        raise ConfigError("spam_fraction + bot_fraction must leave some human accounts")
    if not 1 <= cfg.posts_per_page <= 1000 or cfg.pages_per_file < 1:
        raise ConfigError("posts_per_page must be in 1..1000 and pages_per_file >= 1")
    if not 1 <= cfg.gzip_level <= 9:
        raise ConfigError(f"gzip_level: must be in 1..9, got {cfg.gzip_level}")
    if cfg.archive_users < 0:
        raise ConfigError(f"archive_users: must be >= 0, got {cfg.archive_users}")
    if not 0 <= cfg.stories <= len(wt.STORIES):
        raise ConfigError(f"stories: must be in 0..{len(wt.STORIES)}, got {cfg.stories}")
    return start


# =========================================================================== accounts and follows
@dataclass
class _People:
    """Every account, as parallel arrays indexed by account number."""

    ids: list[str]
    handles: list[str]
    names: list[str]
    kind: np.ndarray              # int8: HUMAN, SPAM, BOT
    langs: list[tuple[str, ...]]
    interests: list[tuple[int, ...]]
    activity: np.ndarray          # relative posting rate
    popularity: np.ndarray        # fitness for being followed
    bot_kind: list[str]
    bot_city: list[str]           # a weather bot's city
    created_at: list[str]
    archive: list[str | None]     # "dir" | "zip" | None
    follow_ptr: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    follow_dst: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    followers: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def n(self) -> int:
        return len(self.ids)


def _unique_handle(base: str, taken: set[str], rnd: random.Random) -> str:
    base = re.sub(r"[^A-Za-z0-9_]", "", base)[:15] or "user"
    handle = base
    while handle.lower() in taken:
        digits = str(rnd.randrange(10, 99999))
        handle = base[: 15 - len(digits)] + digits
    taken.add(handle.lower())
    return handle


def _human_identity(lang: str, rnd: random.Random, taken: set[str]) -> tuple[str, str]:
    first = rnd.choice(wt.FIRST_NAMES[lang])
    last = rnd.choice(wt.LAST_NAMES[lang])
    f, la = wt.ascii_fold(first).replace("'", ""), wt.ascii_fold(last).replace("'", "")
    style = rnd.random()
    if style < 0.2:
        base = f + la
    elif style < 0.35:
        base = f"{f}_{la}"
    elif style < 0.5:
        base = f[0] + la
    elif style < 0.7:
        base = f"{f}{la}{rnd.randrange(1, 99)}"
    elif style < 0.8:
        base = rnd.choice(wt.HANDLE_WORDS) + f
    elif style < 0.9:
        base = f"{f}_{rnd.randrange(70, 2005)}"
    else:
        base = f"{la}{f[0]}"
    if rnd.random() < 0.4:
        base = base.lower()
    handle = _unique_handle(base, taken, rnd)
    r = rnd.random()
    name = f"{first} {last}" if r < 0.6 else first if r < 0.75 else f"{first} {last[0]}." if r < 0.85 \
        else f"{first} {rnd.choice(wt.GENERIC_EMOJI)}" if r < 0.95 else f"{first} {last}".lower()
    return handle, name


def _bot_identity(kind: str, lang: str, rnd: random.Random, taken: set[str], city: str) -> tuple[str, str]:
    if kind == "weather":
        city = wt.ascii_fold(city).replace(" ", "")
        base, name = (f"{city}Weather", f"{city} Weather Bot") if lang == "en" else \
            (f"Tiempo{city}", f"El tiempo en {city}")
    elif kind == "stocks":
        base, name = f"TickerBot{rnd.randrange(1, 99)}", "Stock Ticker Bot 📈"
    elif kind == "reminder":
        base, name = (("DailyReminder", "Daily Reminder") if lang == "en"
                      else ("RecordatorioDia", "Recordatorio diario"))
    elif kind == "btc_price":
        base, name = f"BTCPriceBot{rnd.randrange(1, 9)}", "Bitcoin Price Bot"
    else:
        base, name = "QuakeAlerts", "Earthquake Alerts 🌍"
    return _unique_handle(base, taken, rnd), name


def _spam_identity(rnd: random.Random, taken: set[str]) -> tuple[str, str]:
    w1, w2 = rnd.choice(wt.SPAM_WORDS), rnd.choice(wt.SPAM_WORDS)
    handle = _unique_handle(f"{w1}_{w2}{rnd.randrange(100, 9999)}", taken, rnd)
    name = rnd.choice(("Crypto Giveaway 🎁", "FREE PROMO 💰", "Win Big Today", "Airdrop Alerts 🚀",
                       "Best Deals 🔥", "Sorteos Gratis 🎁"))
    return handle, name


def _make_people(cfg: WorldConfig, start: dt.date) -> _People:
    """Accounts with kinds, languages, interests, activity and popularity."""
    rng = np.random.default_rng([cfg.seed, 1])
    rnd = random.Random(cfg.seed * 1_000_003 + 1)
    n = cfg.users
    n_spam = int(round(n * cfg.spam_fraction))
    n_bot = int(round(n * cfg.bot_fraction))
    kind = np.zeros(n, np.int8)
    special = rng.permutation(n)[: n_spam + n_bot]
    kind[special[:n_spam]] = SPAM
    kind[special[n_spam:]] = BOT

    # Interests: 2-4 topics per human, some topics more popular than others (Zipf-like weights).
    n_topics = len(wt.TOPIC_NAMES)
    topic_w = 1.0 / (1.0 + np.arange(n_topics)) ** 0.6
    topic_w = topic_w[rng.permutation(n_topics)]
    keys = np.log(topic_w)[None, :] + rng.gumbel(size=(n, n_topics))
    ranked = np.argsort(-keys, axis=1)[:, :4]
    n_interests = rng.integers(2, 5, n)

    spanish = rng.random(n) < cfg.spanish_fraction
    bilingual = rng.random(n) < cfg.bilingual_fraction
    activity = rng.lognormal(0.0, 1.1, n)
    activity[kind == SPAM] *= 3.0
    activity[kind == BOT] *= 4.0
    popularity = rng.lognormal(0.0, 1.5, n)
    popularity[kind == SPAM] = 0.02
    popularity[kind == BOT] *= 0.3
    ids = np.cumsum(rng.integers(1, 40_000_000, n)) + 14_000_000
    start_s = int(dt.datetime(start.year, start.month, start.day, tzinfo=dt.UTC).timestamp())
    first_s = int(dt.datetime(2009, 1, 1, tzinfo=dt.UTC).timestamp())
    created = rng.integers(first_s, start_s - 30 * 86400, n)

    handles, names, langs, interests, bot_kinds = [], [], [], [], []
    bot_cities = [""] * n
    taken: set[str] = set()
    n_bots = 0
    for i in range(n):
        lang = "es" if spanish[i] else "en"
        k = int(kind[i])
        if k == HUMAN:
            handle, name = _human_identity(lang, rnd, taken)
            langs.append(("es", "en") if spanish[i] and bilingual[i] else (lang,))
            interests.append(tuple(int(t) for t in ranked[i, : n_interests[i]]))
            bot_kinds.append("")
        elif k == SPAM:
            handle, name = _spam_identity(rnd, taken)
            langs.append((lang,))
            interests.append(())
            bot_kinds.append("")
        else:
            bk = wt.BOT_KINDS[n_bots % len(wt.BOT_KINDS)]  # round-robin: every kind once there are five bots
            cities = wt.WEATHER_CITIES[lang]
            city = cities[(n_bots // len(wt.BOT_KINDS)) % len(cities)] if bk == "weather" else ""
            handle, name = _bot_identity(bk, lang, rnd, taken, city)
            n_bots += 1
            langs.append((lang,))
            interests.append(())
            bot_kinds.append(bk)
            bot_cities[i] = city
        handles.append(handle)
        names.append(name)

    # Archive accounts: humans among the more active half, some zipped.
    archive: list[str | None] = [None] * n
    humans = np.flatnonzero(kind == HUMAN)
    active = humans[activity[humans] >= np.median(activity[humans])]
    if cfg.archive_users > len(active):
        raise ConfigError(f"archive_users: {cfg.archive_users} is more than the {len(active)} active human "
                          "accounts; raise users or lower archive_users")
    chosen = rng.choice(active, cfg.archive_users, replace=False) if cfg.archive_users else []
    n_zip = int(round(cfg.archive_users * cfg.archive_zip_fraction))
    for j, i in enumerate(chosen):
        archive[int(i)] = "zip" if j < n_zip else "dir"

    return _People(
        ids=[str(int(x)) for x in ids], handles=handles, names=names, kind=kind, langs=langs,
        interests=interests, activity=activity, popularity=popularity, bot_kind=bot_kinds,
        bot_city=bot_cities,
        created_at=[_iso_from_s(int(s)) for s in created], archive=archive)


def _build_follows(people: _People, cfg: WorldConfig) -> None:
    """Follow graph: homophily by shared interest plus popularity-weighted attachment.

    Each account follows a heavy-tailed number of others; a ``homophily`` share of them is drawn
    among humans sharing one of its interests, the rest among everyone, both with probability
    proportional to popularity. Stored as CSR arrays (``follow_ptr``, ``follow_dst``) on ``people``.
    """
    rng = np.random.default_rng([cfg.seed, 2])
    n = people.n
    sigma = 1.0
    mu = math.log(max(cfg.follows_per_user, 1e-9)) - sigma * sigma / 2
    n_follow = np.clip(rng.lognormal(mu, sigma, n), 0, min(n - 1, 5000)).astype(np.int64)
    if cfg.follows_per_user == 0:
        n_follow[:] = 0
    n_follow[people.kind == SPAM] = np.minimum(n_follow[people.kind == SPAM] * 3, n - 1)
    src = np.repeat(np.arange(n, dtype=np.int64), n_follow)
    dst = np.empty_like(src)

    max_k = 4
    interest_mat = np.full((n, max_k), -1, np.int64)
    n_int = np.zeros(n, np.int64)
    for i, ts in enumerate(people.interests):
        interest_mat[i, : len(ts)] = ts
        n_int[i] = len(ts)
    homo = (rng.random(len(src)) < cfg.homophily) & (n_int[src] > 0)
    topic = np.full(len(src), -1, np.int64)
    hs = src[homo]
    topic[homo] = interest_mat[hs, (rng.random(len(hs)) * n_int[hs]).astype(np.int64)]

    pop = people.popularity
    glob_cdf = np.cumsum(pop)
    rest = ~homo
    dst[rest] = np.searchsorted(glob_cdf, rng.random(int(rest.sum())) * glob_cdf[-1], side="right")
    for t in range(len(wt.TOPIC_NAMES)):
        members = np.flatnonzero((interest_mat == t).any(axis=1))
        where = np.flatnonzero(topic == t)
        if len(where) == 0:
            continue
        cdf = np.cumsum(pop[members])
        dst[where] = members[np.searchsorted(cdf, rng.random(len(where)) * cdf[-1], side="right")]
    dst = np.minimum(dst, n - 1)
    keep = src != dst
    key = np.sort(src[keep] * n + dst[keep])
    key = key[np.concatenate([[True], key[1:] != key[:-1]])] if len(key) else key  # unique (np.unique is slow)
    src, dst = key // n, key % n
    people.follow_ptr = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n))]).astype(np.int64)
    people.follow_dst = dst.astype(np.int32)
    people.followers = np.bincount(dst, minlength=n).astype(np.int64)


# =========================================================================== small text helpers
def _iso_from_s(s: int) -> str:
    return dt.datetime.fromtimestamp(s, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _b62(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(_B62[r])
    return "".join(out)


def _luhn_card(rnd: random.Random) -> str:
    """A 16-digit Visa-like number that passes the Luhn check, grouped as people type it."""
    digits = [4] + [rnd.randrange(10) for _ in range(14)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    digits.append((10 - total % 10) % 10)
    s = "".join(map(str, digits))
    sep = rnd.choice((" ", " ", "-", ""))
    return sep.join(s[i:i + 4] for i in range(0, 16, 4))


def _phone(lang: str, rnd: random.Random) -> str:
    if lang == "es":
        n = f"6{rnd.randrange(10, 99)}{rnd.randrange(100, 999)}{rnd.randrange(100, 999)}"
        style = rnd.random()
        spaced = f"{n[:3]} {n[3:6]} {n[6:]}"
        return spaced if style < 0.5 else f"+34 {spaced}" if style < 0.8 else n
    area, last = rnd.choice((415, 212, 312, 646, 305, 206, 617, 512)), rnd.randrange(100, 199)
    style = rnd.random()
    if style < 0.5:
        return f"+1 {area}-555-0{last}"
    return f"({area}) 555-0{last}" if style < 0.8 else f"{area}.555.0{last}"


def _typo(text: str, rnd: random.Random) -> str:
    """One keyboard slip inside a word: two letters swapped, one dropped or one doubled."""
    n = len(text)
    if n < 4:
        return text
    for _ in range(6):
        i = int(rnd.random() * (n - 2))
        a, b = text[i], text[i + 1]
        if a.isalpha() and b.isalpha() and a != b:
            op = rnd.random()
            if op < 0.4:
                return text[:i] + b + a + text[i + 2:]
            if op < 0.7:
                return text[:i] + text[i + 1:]
            return text[:i] + a + text[i:]
    return text


def _near_duplicate(text: str, rnd: random.Random) -> str:
    """The same post with a word or two changed or its punctuation altered."""
    out = text
    for _ in range(1 + (rnd.random() < 0.4)):
        r = rnd.random()
        if r < 0.4:
            words = [w for w in wt.SYNONYMS if f" {w} " in f" {out.lower()} "]
            if words:
                w = words[int(rnd.random() * len(words))]
                i = out.lower().find(w)
                out = out[:i] + wt.SYNONYMS[w] + out[i + len(w):]
                continue
            parts = out.split(" ")
            if len(parts) > 4:
                j = 1 + int(rnd.random() * (len(parts) - 2))
                if not parts[j].startswith(("@", "#", "http")):
                    del parts[j]
                    out = " ".join(parts)
                    continue
        if r < 0.7:
            if out.endswith("."):
                out = out[:-1] + rnd.choice(("!", "!!", "", " :)"))
            elif out.endswith(("!", "?")):
                out = out + out[-1]
            else:
                out = out + rnd.choice((".", "!", " !!"))
        elif r < 0.85:
            out = rnd.choice(("ICYMI: ", "Repost: ", "👉 ", "Again: ")) + out
        else:
            out = out.replace(", ", " - ", 1) if ", " in out else out + " " + rnd.choice(wt.GENERIC_EMOJI)
    if out == text:
        out = text + " !"
    return out


# =========================================================================== the post generator
_Template = tuple[str, tuple[str, ...]]  # (format string, slots in the order they are drawn)
_SLOT_RE = re.compile(r"\{([LlNn]2|[LlnNrokmu]|[Ww]ho|[Ww]here|[Ww]hen|city|[Pp]n)\}")
_WORD_SLOTS = ("who", "where", "when", "city")  # personal details, drawn from wt.WORDS


def _compile(templates: tuple[str, ...]) -> tuple[_Template, ...]:
    """Find each template's slots once, so filling one does no string searching.

    A slot is drawn once and written in every case the template asks for (``{n}`` and ``{N}``, ...).
    """
    out = []
    for t in templates:
        found = {m.group(1).lower() for m in _SLOT_RE.finditer(t)}
        slots = []
        if "l" in found:
            slots.append("L")
        if "n" in found or "n2" in found:
            slots.append("n")
        slots += [x for x in ("l2", "n2", "r", "o", "k", "m", "u", "pn", *_WORD_SLOTS) if x in found]
        out.append((t, tuple(slots)))
    return tuple(out)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _lower_first(line: str) -> str:
    """A sentence's first letter in lower case, unless it starts an acronym ("VAR", "NBA")."""
    return line if line[:2].isupper() else line[:1].lower() + line[1:]


def _end_sentence(text: str) -> str:
    """Add a full stop when the text ends in a letter or digit, so another sentence can follow."""
    return text + "." if text[-1:].isalnum() else text


class _Post:
    """One generated post, before it is written in either format."""

    __slots__ = ("id", "author", "ms", "text", "lang", "kind", "topic", "reply_to", "reply_user", "conv",
                 "retweet_of", "quote_of", "duplicate_of", "urls", "likes", "reposts", "replies", "quotes",
                 "source", "entities", "noun", "story")

    def __init__(self) -> None:
        self.reply_to = self.conv = self.retweet_of = self.quote_of = self.duplicate_of = None
        self.noun: str | None = None  # the first topic noun of the text: replies may pick it up
        self.reply_user = -1
        self.topic = self.story = None
        self.urls: dict[str, tuple[str, str]] = {}


class _Writer:
    """Generates posts one at a time from the accounts, the graph and a window of recent posts."""

    RECENT = 4096      # recent posts replies, retweets and quotes are drawn from
    DUP_POOL = 2048    # recent normal posts duplicates copy

    def __init__(self, people: _People, cfg: WorldConfig, start: dt.date):
        self.p, self.cfg = people, cfg
        self.rnd = random.Random(cfg.seed * 1_000_003 + 7)
        self.story_rnd = random.Random(cfg.seed * 1_000_003 + 11)
        self.topics = [wt.TOPICS[t] for t in wt.TOPIC_NAMES]
        self.handle_lookup = {h.lower(): i for i, h in enumerate(people.handles)}
        self.recent: list[_Post] = []  # a ring of the newest posts
        self.recent_pos = 0
        self.dup_pool: list[_Post] = []
        self.dup_pos = 0
        self.last_post: list[_Post | None] = [None] * people.n
        self.seq = self.last_ms = 0
        per_hour = cfg.users * cfg.posts_per_user / (cfg.days * 24)
        self.recent_scale = min(max(6 * per_hour, 10.0), self.RECENT / 2)
        # Plain Python copies of what the per-post code reads: numpy scalar access is slow there.
        self.kind: list[int] = people.kind.tolist()
        self.followers: list[int] = people.followers.tolist()
        self.follow_ptr: list[int] = people.follow_ptr.tolist()
        self.follow_dst = array.array("i", people.follow_dst.tobytes())
        self.slugs = {t.name: [wt.slug(n) for n in t.nouns["en"]] for t in self.topics}
        self.tpl_post = {lang: _compile(t) for lang, t in wt.TEMPLATES.items()}
        self.tpl_thread = {lang: _compile(t[:6]) for lang, t in wt.TEMPLATES.items()}
        self.tpl_aside = {lang: _compile(t[6:12]) for lang, t in wt.TEMPLATES.items()}
        self.tpl_reply = {lang: _compile(t) for lang, t in wt.REPLY_TEMPLATES.items()}
        self.tpl_second = {lang: _compile(t) for lang, t in wt.SECONDS.items()}
        self.tpl_context = {lang: _compile(t) for lang, t in wt.CONTEXTS.items()}
        self.tpl_starter = {lang: _compile(t) for lang, t in wt.REPLY_STARTERS.items()}
        self.noun: str | None = None         # the first noun the current text drew
        self.parent_noun: str | None = None  # what {pn} is while a reply is written
        followers = people.followers
        top = np.argsort(-followers, kind="stable")[:200]
        self.celebrities = [int(i) for i in top if people.kind[i] == HUMAN] or [0]
        self.start_s = int(dt.datetime(start.year, start.month, start.day, tzinfo=dt.UTC).timestamp())
        self.day_iso, self.day_archive = [], []
        for d in range(cfg.days + 2):
            day = start + dt.timedelta(days=d)
            self.day_iso.append(day.isoformat())
            prefix = f"{_DAY_NAMES[day.weekday()]} {_MONTH_NAMES[day.month - 1]} {day.day:02d}"
            self.day_archive.append((prefix, day.year))
        c = cfg
        # A human post's kind: a uniform draw falls between cumulative fractions; past them it is normal.
        kinds = ((self.retweet, c.retweet_fraction), (self.reply, c.reply_fraction),
                 (self.duplicate, c.duplicate_fraction), (self.quote, c.quote_fraction),
                 (self.foreign, c.foreign_fraction), (self.pii, c.pii_fraction), (self.long, c.long_fraction))
        self.cum_fractions = list(itertools.accumulate(frac for _, frac in kinds))
        self.special: list[Callable[[_Post], bool] | None] = [fn for fn, _ in kinds] + [None]
        self.bot_sources = {k: f'<a href="https://bots.example.com/{v}" rel="nofollow">{v}</a>'
                            for k, v in wt.BOT_SOURCES.items()}
        self.user_source = [int(x) for x in np.random.default_rng([cfg.seed, 4]).integers(0, len(wt.SOURCES),
                                                                                           people.n)]

    # ----------------------------------------------------------------- time and ids
    def iso(self, ms: int) -> str:
        s = ms // 1000
        day, rem = divmod(s - self.start_s, 86400)
        h, rem = divmod(rem, 3600)
        m, sec = divmod(rem, 60)
        return f"{self.day_iso[day]}T{h:02d}:{m:02d}:{sec:02d}.000Z"

    def archive_time(self, ms: int) -> str:
        s = ms // 1000
        day, rem = divmod(s - self.start_s, 86400)
        h, rem = divmod(rem, 3600)
        m, sec = divmod(rem, 60)
        prefix, year = self.day_archive[day]
        return f"{prefix} {h:02d}:{m:02d}:{sec:02d} +0000 {year}"

    def new_id(self, ms: int) -> str:
        """A snowflake id: milliseconds since the X epoch, then 10 "worker" bits and a sequence.

        Posts come in time order, so ids strictly increase: a reply's id is above its parent's.
        """
        if ms == self.last_ms:
            self.seq += 1
        else:
            self.last_ms, self.seq = ms, 0
        worker = ((ms * 2654435761) >> 8) & 0x3FF
        return str(((ms - TWITTER_EPOCH_MS) << 22) + (worker << 12) + self.seq)

    # ----------------------------------------------------------------- picking
    def pick(self, seq: tuple | list) -> Any:
        return seq[int(self.rnd.random() * len(seq))]

    def followee(self, a: int) -> int:
        lo, hi = self.follow_ptr[a], self.follow_ptr[a + 1]
        if hi == lo:
            return -1
        return self.follow_dst[lo + int(self.rnd.random() * (hi - lo))]

    def mention_of(self, a: int) -> str | None:
        f = self.followee(a)
        return None if f < 0 else "@" + self.p.handles[f]

    def url(self, post: _Post, expanded: str) -> str:
        tco = "https://t.co/" + _b62(self.rnd.getrandbits(60), 10)
        display = expanded.split("://", 1)[1]
        if len(display) > 26:
            display = display[:25] + "…"
        post.urls[tco] = (expanded, display)
        return tco

    def topic_url(self, post: _Post, topic: wt.Topic, lang: str) -> str:
        site = self.pick(topic.sites)
        slug = self.pick(self.slugs[topic.name])
        return self.url(post, f"https://{site}/{slug}-{100000 + int(self.rnd.random() * 900000)}")

    def recent_post(self) -> _Post | None:
        """A recent post: mostly from the last few hours, biased towards popular authors.

        Two candidates are drawn at exponentially distributed distances back from the newest post
        (about six hours of posting on average) and the one whose author has more followers wins.
        """
        n = len(self.recent)
        if n == 0:
            return None
        newest = (self.recent_pos - 1) % n if n == self.RECENT else n - 1
        rnd = self.rnd
        a = self.recent[(newest - min(int(rnd.expovariate(1.0) * self.recent_scale), n - 1)) % n]
        b = self.recent[(newest - min(int(rnd.expovariate(1.0) * self.recent_scale), n - 1)) % n]
        return a if self.followers[a.author] >= self.followers[b.author] else b

    def followee_post(self, a: int, ms: int) -> _Post | None:
        f = self.followee(a)
        if f < 0:
            return None
        rec = self.last_post[f]
        if rec is None or ms - rec.ms > _REPLY_WINDOW_MS:
            return None
        return rec

    def remember(self, post: _Post) -> None:
        """Keep the post where later replies, retweets, quotes and duplicates can find it."""
        if len(self.recent) < self.RECENT:
            self.recent.append(post)
        else:
            self.recent[self.recent_pos] = post
            self.recent_pos = (self.recent_pos + 1) % self.RECENT
        self.last_post[post.author] = post
        if post.kind == "normal" and post.quote_of is None:
            if len(self.dup_pool) < self.DUP_POOL:
                self.dup_pool.append(post)
            else:
                self.dup_pool[self.dup_pos] = post
                self.dup_pos = (self.dup_pos + 1) % self.DUP_POOL

    # ----------------------------------------------------------------- text
    def choose_lang(self, a: int) -> str:
        langs = self.p.langs[a]
        return langs[0] if len(langs) == 1 or self.rnd.random() < FIRST_LANG_SHARE else langs[1]

    def choose_topic(self, a: int) -> int:
        ints = self.p.interests[a]
        return ints[0] if self.rnd.random() < FIRST_INTEREST_SHARE else ints[int(self.rnd.random() * len(ints))]

    def line(self, topic: wt.Topic, lang: str) -> str:
        s = self.pick(topic.lines[lang])
        if "{k}" in s:
            s = s.replace("{k}", str(self.rnd.randrange(3, 42)))
        return s

    def fill(self, tpl: _Template, topic: wt.Topic, lang: str, a: int) -> str | None:
        """Fill a template's slots; mentions and links become placeholders filled after the noise."""
        template, slots = tpl
        if "m" in slots and self.follow_ptr[a] == self.follow_ptr[a + 1]:
            return None  # no one to mention
        kw: dict[str, str] = {}
        for slot in slots:
            if slot == "L":
                line = self.line(topic, lang)
                kw["L"] = line
                kw["l"] = _lower_first(line)
            elif slot == "n":
                noun = self.pick(topic.nouns[lang])
                kw["n"] = noun
                kw["N"] = _cap(noun)
                if self.noun is None:
                    self.noun = noun
            elif slot in _WORD_SLOTS:
                word = self.pick(wt.WORDS[lang][slot])
                kw[slot] = word
                kw[_cap(slot)] = _cap(word)
            elif slot == "l2":
                line = self.line(topic, lang)
                if line == kw.get("L"):
                    line = self.line(topic, lang)
                kw["L2"] = line
                kw["l2"] = _lower_first(line)
            elif slot == "n2":
                nouns = topic.nouns[lang]
                noun = self.pick(nouns)
                if noun == kw.get("n"):
                    noun = self.pick(nouns)
                kw["n2"] = noun
                kw["N2"] = _cap(noun)
                if self.noun is None:
                    self.noun = noun
            elif slot == "pn":
                noun = self.parent_noun or self.pick(topic.nouns[lang])
                kw["pn"] = noun
                kw["Pn"] = _cap(noun)
            elif slot == "r":
                kw["r"] = self.pick(wt.REACTIONS[lang])
            elif slot == "o":
                kw["o"] = self.pick(wt.REPLY_OPENERS[lang])
            elif slot == "k":
                kw["k"] = str(self.rnd.randrange(2, 60))
            elif slot == "m":
                kw["m"] = _MENTION_HOLE
            else:
                kw["u"] = _URL_HOLE
        text = template.format_map(kw)
        if lang == "es" and " el " in text:
            for old, new in _ES_FIXES:
                text = text.replace(old, new)
        return text

    def body(self, templates: tuple[_Template, ...], topic: wt.Topic, lang: str, a: int) -> str:
        for _ in range(4):
            text = self.fill(self.pick(templates), topic, lang, a)
            if text is not None:
                return text
        return self.line(topic, lang) + "."

    def extend(self, text: str, topic: wt.Topic, lang: str, a: int, second: float, context: float,
               closer: float, bare: float = 1.0) -> str:
        """Add an optional second sentence, personal detail and closer, each with its own chance.

        Independent parts multiply: two people writing about the same noun rarely pick the same
        core, second sentence, detail and closer, as real posts rarely share all their words.
        A text that drew none of them stays one sentence only with chance ``bare`` and otherwise
        gets a personal detail: one-sentence texts come from a small set, so at scale they repeat.
        Parts stop once the text is long enough to stay a short post after its hashtags.
        """
        rnd = self.rnd
        add_second, add_context = rnd.random() < second, rnd.random() < context
        if not (add_second or add_context) and rnd.random() >= bare:
            add_context, closer = True, closer * 0.5
        if add_second:
            text = _end_sentence(text) + " " + (self.fill(self.pick(self.tpl_second[lang]), topic, lang, a) or "")
        if add_context and len(text) < 150:
            text = _end_sentence(text) + " " + (self.fill(self.pick(self.tpl_context[lang]), topic, lang, a) or "")
        if len(text) < 170 and rnd.random() < closer:
            text = _end_sentence(text) + " " + self.pick(wt.CLOSERS[lang])
        return text.rstrip()

    def post_text(self, templates: tuple[_Template, ...], topic: wt.Topic, lang: str, a: int) -> str:
        """An original post: [opener] core [second sentence] [personal detail] [closer]."""
        self.noun = None
        text = self.body(templates, topic, lang, a)
        if self.rnd.random() < 0.3:
            text = self.pick(wt.OPENERS[lang]) + " " + text
            return self.extend(text, topic, lang, a, 0.5, 0.45, 0.3)
        return self.extend(text, topic, lang, a, 0.5, 0.45, 0.3, bare=0.25)

    def reply_text(self, topic: wt.Topic, lang: str, a: int, parent_noun: str | None) -> str:
        """A reply: [starter, maybe picking up the parent's noun] body [detail] [closer].

        A few replies stay one short phrase ("lol", "Same."), as in any real thread.
        """
        rnd = self.rnd
        self.noun, self.parent_noun = None, parent_noun
        r = rnd.random()
        if r < 0.03:
            text = self.fill(self.pick(self.tpl_starter[lang]), topic, lang, a) or "lol"
        else:
            text = self.body(self.tpl_reply[lang], topic, lang, a)
            if r < 0.6:
                text = (self.fill(self.pick(self.tpl_starter[lang]), topic, lang, a) or "") + " " + text
                text = self.extend(text, topic, lang, a, 0.2, 0.35, 0.25)
            else:
                text = self.extend(text, topic, lang, a, 0.2, 0.35, 0.25, bare=0.2)
        self.parent_noun = None
        return text

    def noisy(self, text: str, lang: str) -> str:
        """Typos, casing noise and dropped accents, as people really type."""
        rnd = self.rnd
        if rnd.random() >= self.cfg.noise:
            return text
        r = rnd.random()
        if r < 0.35:
            return text.lower()
        if r < 0.7:
            return _typo(text, rnd)
        if r < 0.88:
            if lang == "es":
                return wt.strip_accents(text)
            return text.rstrip(".!")
        if r < 0.93:
            return text.upper()
        return text.replace("!", "!!!") if "!" in text else text.rstrip(".") + "!!!"

    def fill_holes(self, text: str, post: _Post, topic: wt.Topic, lang: str) -> str:
        while _MENTION_HOLE in text:
            text = text.replace(_MENTION_HOLE, self.mention_of(post.author) or "", 1)
        while _URL_HOLE in text:
            text = text.replace(_URL_HOLE, self.topic_url(post, topic, lang), 1)
        return text

    def decorate(self, text: str, post: _Post, topic: wt.Topic, lang: str) -> str:
        """Trailing emoji, hashtags, a link or a cc-mention."""
        rnd = self.rnd
        r = rnd.random()
        if r < 0.3:
            text += " " + (self.pick(topic.emoji) if rnd.random() < 0.6 else self.pick(wt.GENERIC_EMOJI))
        r = rnd.random()
        n_tags = 0 if r < 0.55 else 1 if r < 0.85 else 2 if r < 0.95 else 3
        if n_tags:
            pool = topic.tags[lang] if lang == "en" or rnd.random() < 0.8 else topic.tags["en"]
            tags = []
            for _ in range(n_tags):
                t = self.pick(pool)
                if t not in tags:
                    tags.append(t)
            if rnd.random() < 0.1:
                tags = [t.lower() for t in tags]
            text += " " + " ".join("#" + t for t in tags)
        if rnd.random() < 0.08 and not post.urls:
            text += " " + self.topic_url(post, topic, lang)
        if rnd.random() < 0.03:
            m = self.mention_of(post.author)
            if m:
                text += " cc " + m
        return text

    # ----------------------------------------------------------------- posts by kind
    def make(self, a: int, ms: int) -> _Post:
        post = _Post()
        post.author, post.ms = a, ms
        post.id = self.new_id(ms)
        post.conv = post.id
        k = self.kind[a]
        if k == SPAM:
            self.spam(post)
        elif k == BOT:
            self.bot(post)
        else:
            # Each special kind returns False when it cannot apply (nothing to reply to yet, ...).
            special = self.special[bisect.bisect_right(self.cum_fractions, self.rnd.random())]
            if special is None or not special(post):
                self.normal(post)
        if post.kind != "retweet":
            self.remember(post)
        return post

    def pii(self, post: _Post) -> bool:
        self.normal(post, pii=True)
        return True

    def normal(self, post: _Post, pii: bool = False) -> None:
        a = post.author
        lang = self.choose_lang(a)
        t = self.choose_topic(a)
        topic = self.topics[t]
        text = self.noisy(self.post_text(self.tpl_post[lang], topic, lang, a), lang)
        post.noun = self.noun
        if pii:
            text = self.with_pii(text, lang, a)
        text = self.decorate(self.fill_holes(text, post, topic, lang), post, topic, lang)
        post.text, post.lang, post.topic = text, lang, topic.name
        post.kind = "pii" if pii else "normal"

    def with_pii(self, text: str, lang: str, a: int) -> str:
        rnd = self.rnd
        name = wt.ascii_fold(self.p.names[a].split(" ")[0]).lower() or "me"
        local = f"{name}.{wt.ascii_fold(self.p.handles[a]).lower()[:8]}{rnd.randrange(1, 99)}"
        email = f"{local}@{self.pick(wt.EMAIL_DOMAINS)}"
        sentence = self.pick(wt.PII_TEMPLATES[lang]).format(phone=_phone(lang, rnd), email=email,
                                                            card=_luhn_card(rnd))
        if rnd.random() < 0.3:
            return sentence[0].upper() + sentence[1:] + ". " + text
        if text.endswith((".", "!", "?")):
            sentence = sentence[0].upper() + sentence[1:] + rnd.choice((".", "", "!"))
        return text + " " + sentence

    def long(self, post: _Post) -> bool:
        a = post.author
        lang = self.choose_lang(a)
        topic = self.topics[self.choose_topic(a)]
        lines = list(topic.lines[lang])
        self.rnd.shuffle(lines)
        parts: list[str] = []
        total = 0
        while total < 300:
            s = (lines.pop().replace("{k}", str(self.rnd.randrange(3, 42))) if lines
                 else self.line(topic, lang)) + "."
            if self.rnd.random() < 0.4:  # a question or opinion between statements
                s += " " + (self.fill(self.pick(self.tpl_aside[lang]), topic, lang, a) or "")
            parts.append(s.strip())
            total += len(s) + 1
        text = self.noisy(" ".join(parts), lang)
        text = self.decorate(self.fill_holes(text, post, topic, lang), post, topic, lang)
        post.text, post.lang, post.topic, post.kind = text, lang, topic.name, "normal"
        return True

    def reply(self, post: _Post) -> bool:
        a = post.author
        rnd = self.rnd
        parent = None
        self_thread = False
        r = rnd.random()
        if r < 0.1 and self.last_post[a] is not None and self.last_post[a].kind in ("normal", "reply"):
            parent, self_thread = self.last_post[a], True
        elif r < 0.55:
            parent = self.followee_post(a, post.ms)
        if parent is None:
            parent = self.recent_post()
        if (parent is None or (parent.author == a and not self_thread) or self.kind[parent.author] == SPAM
                or post.ms - parent.ms > _REPLY_WINDOW_MS):
            return False
        p_lang = parent.lang
        lang = p_lang if p_lang in self.p.langs[a] else self.p.langs[a][0]
        t_name = parent.topic
        topic = wt.TOPICS[t_name] if t_name else self.topics[self.choose_topic(a)]
        if self_thread:
            text = self.noisy(self.post_text(self.tpl_thread[lang], topic, lang, a), lang)
        else:
            parent_noun = parent.noun if parent.lang == lang else None
            text = self.noisy(self.reply_text(topic, lang, a, parent_noun), lang)
            prefix = "@" + self.p.handles[parent.author]
            ru = parent.reply_user
            if ru >= 0 and ru != a and ru != parent.author and rnd.random() < 0.5:
                prefix += " @" + self.p.handles[ru]
            text = prefix + " " + text
        text = self.fill_holes(text, post, topic, lang)
        if rnd.random() < 0.2:
            text += " " + (self.pick(topic.emoji) if rnd.random() < 0.5 else self.pick(wt.GENERIC_EMOJI))
        post.text, post.lang, post.topic, post.kind = text, lang, topic.name, "reply"
        post.noun = self.noun
        post.reply_to, post.reply_user, post.conv = parent.id, parent.author, parent.conv
        return True

    def retweet(self, post: _Post) -> bool:
        a = post.author
        orig = self.followee_post(a, post.ms) if self.rnd.random() < 0.6 else None
        if orig is None:
            orig = self.recent_post()
        if orig is None or orig.author == a or self.kind[orig.author] == SPAM or post.ms - orig.ms > _REPLY_WINDOW_MS:
            return False
        text = f"RT @{self.p.handles[orig.author]}: {orig.text}"
        if len(text) > _NOTE_LIMIT:
            text = text[: _NOTE_LIMIT - 1] + "…"
        post.urls = orig.urls  # links of the original keep their targets
        post.text, post.lang, post.topic, post.kind = text, orig.lang, orig.topic, "retweet"
        post.retweet_of = orig.id
        return True

    def duplicate(self, post: _Post) -> bool:
        a = post.author
        own = self.last_post[a]
        if own is not None and own.kind == "normal" and self.rnd.random() < 0.3:
            src = own
        elif self.dup_pool:
            src = self.dup_pool[int(self.rnd.random() * len(self.dup_pool))]
        else:
            return False
        near = self.rnd.random() < 0.5
        post.text = _near_duplicate(src.text, self.rnd) if near else src.text
        post.lang, post.topic, post.urls = src.lang, src.topic, src.urls
        post.kind = "near_duplicate" if near else "duplicate"
        post.duplicate_of = src.id
        return True

    def quote(self, post: _Post) -> bool:
        a = post.author
        orig = self.recent_post()
        if orig is None or orig.author == a or self.kind[orig.author] == SPAM or post.ms - orig.ms > _REPLY_WINDOW_MS:
            return False
        lang = orig.lang if orig.lang in self.p.langs[a] else self.p.langs[a][0]
        topic = wt.TOPICS[orig.topic] if orig.topic else self.topics[self.choose_topic(a)]
        orig_noun = orig.noun if orig.lang == lang else None
        text = self.noisy(self.reply_text(topic, lang, a, orig_noun), lang)
        post.noun = self.noun
        text = self.fill_holes(text, post, topic, lang)
        link = self.url(post, f"https://twitter.com/{self.p.handles[orig.author]}/status/{orig.id}")
        post.text = f"{text} {link}"
        post.lang, post.topic, post.kind, post.quote_of = lang, topic.name, "normal", orig.id
        return True

    def foreign(self, post: _Post) -> bool:
        lang = self.pick(("fr", "de", "pt"))
        text = self.pick(wt.FOREIGN_LINES[lang])
        if not text.endswith("?"):
            text += self.pick((".", "!", "", " " + self.pick(wt.GENERIC_EMOJI)))
        post.text, post.lang, post.kind = text, lang, "foreign"
        return True

    def spam(self, post: _Post) -> None:
        rnd = self.rnd
        lang = self.p.langs[post.author][0]
        if rnd.random() < 0.25:
            tags = rnd.sample(wt.SPAM_HASHTAG_WALL, rnd.randrange(6, 12))
            post.text, post.lang = " ".join("#" + t for t in tags), "und"
        else:
            coin = self.pick(wt.SPAM_COINS)
            amt = rnd.choice(("0.1", "0.5", "1", "500", "1000"))
            text = self.pick(wt.SPAM_TEMPLATES[lang]).format(
                coin=coin, amt=amt, amt2=str(float(amt) * 2).removesuffix(".0"), k=rnd.randrange(2, 99),
                m="@" + self.p.handles[self.pick(self.celebrities)], u=_URL_HOLE)
            if "!!!" in text:
                text = text.replace("!!!", "!" * rnd.randrange(3, 10), 1)
            while _URL_HOLE in text:
                dom = rnd.choice(("free-gift", "claim-now", "win-prize", "crypto-bonus", "promo-deal"))
                ref = rnd.randrange(10**6, 10**7)
                target = f"https://{dom}{rnd.randrange(10, 99)}.xyz/{coin.lower()}?ref={ref}"
                text = text.replace(_URL_HOLE, self.url(post, target), 1)
            post.text, post.lang = text, lang
        post.kind = "spam"

    def bot(self, post: _Post) -> None:
        rnd = self.rnd
        a = post.author
        lang = self.p.langs[a][0]
        kind = self.p.bot_kind[a]
        s = post.ms // 1000
        hh, mm = (s // 3600) % 24, (s // 60) % 60
        if kind == "weather":
            city = self.p.bot_city[a]
            t, hum, wind = rnd.randrange(-2, 34), rnd.randrange(20, 99), rnd.randrange(0, 60)
            cond = self.pick(wt.WEATHER_CONDITIONS[lang])
            text = (f"Weather in {city} at {hh:02d}:00 UTC: {t}°C, {cond}. Humidity {hum}%, "
                    f"wind {wind} km/h. #weather" if lang == "en" else
                    f"El tiempo en {city} a las {hh:02d}:00: {t}°C, {cond}. Humedad {hum}%, "
                    f"viento {wind} km/h. #tiempo")
        elif kind == "stocks":
            tk = self.pick(wt.TICKERS)
            base = 40 + (sum(map(ord, tk)) * 7) % 800
            chg = rnd.gauss(0, 1.8)
            text = (f"${tk} {base * (1 + chg / 100):.2f} ({chg:+.2f}%) | Vol {rnd.uniform(1, 90):.1f}M "
                    f"{'📈' if chg >= 0 else '📉'} #stocks #{tk}")
        elif kind == "reminder":
            day = (s - self.start_s) // 86400 + 1
            rem = self.pick(wt.REMINDERS[lang])
            text = (f"Daily reminder: {rem}. Day {day} of 365." if lang == "en"
                    else f"Recordatorio diario: {rem}. Día {day} de 365.")
        elif kind == "btc_price":
            price = int(64000 * (1 + rnd.gauss(0, 0.03)))
            chg = rnd.gauss(0, 2.5)
            text = f"#Bitcoin price update: ${price:,} ({chg:+.2f}% 24h) #BTC #crypto"
        else:
            place = rnd.choice(("Ridgecrest, CA", "Anchorage, AK", "Hilo, HI", "Granada, Spain", "Lima, Peru",
                                "Santiago, Chile", "Tokyo, Japan"))
            direction = rnd.choice(("N", "S", "E", "W", "NE", "SW"))
            text = (f"Earthquake M{rnd.uniform(2.0, 6.5):.1f} - {rnd.randrange(2, 120)} km {direction} "
                    f"of {place} - {hh:02d}:{mm:02d} UTC #earthquake")
        post.text, post.lang, post.kind = text, lang, "bot"
        post.source = self.bot_sources[kind]

    def story_post(self, a: int, ms: int, plan: _StoryPlan) -> _Post:
        """A post about a story, written with the story's own random stream so that every other post of
        the world is drawn exactly as in a world without stories. It is not kept for replies either."""
        saved, self.rnd = self.rnd, self.story_rnd
        try:
            post = _Post()
            post.author, post.ms = a, ms
            post.id = post.conv = self.new_id(ms)
            lang, topic, rnd = plan.lang, plan.topic, self.rnd
            text = self.noisy(self.post_text(self.tpl_post[lang], topic, lang, a), lang)
            post.noun = self.noun
            text = self.fill_holes(text, post, topic, lang)
            if rnd.random() < 0.4:
                text += " " + self.pick(plan.story.emoji)
            tags = plan.story.tags[lang]
            r = rnd.random()
            chosen = tags if r < STORY_BOTH_TAGS else tags[:1] if r < 0.65 else tags[1:] if r < 0.9 else ()
            if chosen:
                text += " " + " ".join("#" + t for t in chosen)
            post.text, post.lang, post.topic, post.kind, post.story = text, lang, plan.story.topic, "normal", plan.id
            return post
        finally:
            self.rnd = saved

    # ----------------------------------------------------------------- entities
    def entities(self, post: _Post) -> list[tuple[str, int, int, Any]]:
        """(kind, start, end, value) for hashtags, cashtags, mentions and links, in text order."""
        out = []
        text = post.text
        if "#" not in text and "@" not in text and "https://t.co/" not in text and "$" not in text:
            return out
        for m in _ENTITY_RE.finditer(text):
            tag, handle, cash, url = m.groups()
            if tag is not None:
                if not tag.isdigit():
                    out.append(("hashtag", m.start(), m.end(), tag))
            elif handle is not None:
                i = self.handle_lookup.get(handle.lower())
                if i is not None:
                    out.append(("mention", m.start(), m.end(), i))
            elif cash is not None:
                out.append(("cashtag", m.start(), m.end(), cash))
            else:
                target = post.urls.get(url)
                if target is not None:
                    out.append(("url", m.start(), m.end(), (url, *target)))
        return out


# =========================================================================== stories (bursts)
STORY_MIN_RATE = 12.0  # a story adds at least this many posts an hour at its peak ...
STORY_RATE_SHARE = 0.5  # ... or this share of the world's mean hourly posts, if more
STORY_BOTH_TAGS = 0.35   # chance a story post carries both of its hashtags (else one, or none)


@dataclass(frozen=True)
class _StoryPlan:
    """When and in which language one story runs, and how many posts it adds each hour."""

    id: str
    story: wt.Story
    lang: str
    start_hour: int          # hours since the world's start
    counts: tuple[int, ...]  # posts added in each of its hours

    @property
    def topic(self) -> wt.Topic:
        """The story as a topic the post templates can fill (its nouns, lines and hashtags)."""
        base = wt.TOPICS[self.story.topic]
        return wt.Topic(name=base.name, tags={self.lang: self.story.tags[self.lang]}, nouns=self.story.nouns,
                        lines=self.story.lines, sites=base.sites, emoji=self.story.emoji)


def _plan_stories(cfg: WorldConfig, people: _People) -> list[_StoryPlan]:
    """``cfg.stories`` stories, deterministic from the seed: each in its own slot of the world's time after
    the first two days (so every story has a baseline before it), the last one breaking: three hours
    old at the world's end and still at its peak (so a fresh index of the world has a story trending
    now), English and Spanish in turn."""
    if cfg.stories == 0:
        return []
    rng = np.random.default_rng([cfg.seed, 5])
    total = cfg.days * 24
    first = min(48, total // 4)
    slot = (total - first) / cfg.stories
    rate = max(STORY_MIN_RATE, STORY_RATE_SHARE * cfg.users * cfg.posts_per_user / total)
    writers = {lang: any(lang in langs for langs, k in zip(people.langs, people.kind.tolist(), strict=True)
                         if k == HUMAN) for lang in ("en", "es")}
    lang0 = int(rng.integers(0, 2))
    plans = []
    for i, s in enumerate(rng.choice(len(wt.STORIES), cfg.stories, replace=False).tolist()):
        lang = ("en", "es")[(lang0 + i) % 2]
        if not writers[lang]:
            lang = "es" if lang == "en" else "en"
        last = i == cfg.stories - 1  # breaking news: three hours old at the world's end, still at its peak
        hours = int(min(3 if last else rng.integers(3, 7), max(1, slot)))
        lo = first + int(i * slot)
        start = total - hours if last else lo + int(rng.integers(0, max(1, int(slot) - hours + 1)))
        shape = [0.6 if h == 0 else 0.7 if h == hours - 1 and not last else 1.0 for h in range(hours)]
        counts = tuple(int(c) for c in rng.poisson([rate * x for x in shape]))
        plans.append(_StoryPlan(f"story-{i + 1}-{wt.STORIES[s].name}", wt.STORIES[s], lang, max(0, start), counts))
    return plans


def _story_authors(people: _People, plan: _StoryPlan) -> np.ndarray:
    """Cumulative posting weights over accounts for a story: humans writing its language, those
    interested in its topic three times as likely."""
    t = wt.TOPIC_NAMES.index(plan.story.topic)
    w = np.array([a * (3.0 if t in ints else 1.0) if k == HUMAN and plan.lang in langs else 0.0
                  for a, k, langs, ints in zip(people.activity.tolist(), people.kind.tolist(), people.langs,
                                               people.interests, strict=True)])
    return np.cumsum(w)


def _story_json(plan: _StoryPlan, start_s: int) -> dict[str, Any]:
    begin = start_s + plan.start_hour * 3600
    return {"id": plan.id, "name": plan.story.name, "topic": plan.story.topic, "lang": plan.lang,
            "hashtags": list(plan.story.tags[plan.lang]), "terms": list(plan.story.nouns[plan.lang]),
            "start": _iso_from_s(begin), "end": _iso_from_s(begin + 3600 * len(plan.counts))}


# =========================================================================== output formats
# API pages are written as compact JSON text directly (no intermediate dicts): it is several times
# faster and gives exactly the bytes json.dumps(page, ensure_ascii=False, separators=(",", ":")) would.
_q = json.encoder.encode_basestring  # a JSON string literal, quotes included (C speedup when present)


def _api_entities_json(ents: list, people: _People, limit: int | None = None) -> str:
    """The ``entities`` object of an API post, or "" when it has none (the API then omits the key)."""
    tags, cash, mentions, urls = [], [], [], []
    for kind, s, e, v in ents:
        if limit is not None and e > limit:
            continue
        if kind == "hashtag":
            tags.append(f'{{"start":{s},"end":{e},"tag":{_q(v)}}}')
        elif kind == "mention":
            mentions.append(f'{{"start":{s},"end":{e},"username":"{people.handles[v]}",'
                            f'"id":"{people.ids[v]}"}}')
        elif kind == "cashtag":
            cash.append(f'{{"start":{s},"end":{e},"tag":"{v}"}}')
        else:
            urls.append(f'{{"start":{s},"end":{e},"url":"{v[0]}","expanded_url":{_q(v[1])},'
                        f'"display_url":{_q(v[2])}}}')
    parts = [f'"{name}":[{",".join(items)}]' for name, items in
             (("hashtags", tags), ("cashtags", cash), ("mentions", mentions), ("urls", urls)) if items]
    return "{" + ",".join(parts) + "}" if parts else ""


def _api_post_json(post: _Post, w: _Writer, metrics: tuple[int, int, int, int]) -> str:
    """One post of an X API v2 response, as compact JSON text."""
    people = w.p
    text = post.text
    pid = post.id
    ents = post.entities
    extra = ""
    if len(text) > _NOTE_LIMIT:
        full = _api_entities_json(ents, people) if ents else ""
        extra = f',"note_tweet":{{"text":{_q(text)}' + (f',"entities":{full}}}' if full else "}")
        text = text[:_NOTE_LIMIT] + "…"
        short = _api_entities_json(ents, people, limit=_NOTE_LIMIT) if ents else ""
        if short:
            extra += ',"entities":' + short
    elif ents:
        extra = ',"entities":' + _api_entities_json(ents, people)
    if post.reply_to is not None:
        extra += (f',"in_reply_to_user_id":"{people.ids[post.reply_user]}",'
                  f'"referenced_tweets":[{{"type":"replied_to","id":"{post.reply_to}"}}]')
    elif post.retweet_of is not None:
        extra += f',"referenced_tweets":[{{"type":"retweeted","id":"{post.retweet_of}"}}]'
    elif post.quote_of is not None:
        extra += f',"referenced_tweets":[{{"type":"quoted","id":"{post.quote_of}"}}]'
    return (f'{{"id":"{pid}","text":{_q(text)},"author_id":"{people.ids[post.author]}",'
            f'"created_at":"{w.iso(post.ms)}","lang":"{post.lang}","conversation_id":"{post.conv}",'
            f'"edit_history_tweet_ids":["{pid}"],"possibly_sensitive":false,"public_metrics":'
            f'{{"retweet_count":{metrics[1]},"reply_count":{metrics[2]},"like_count":{metrics[0]},'
            f'"quote_count":{metrics[3]}}}{extra}}}')


def _archive_tweet(post: _Post, w: _Writer, metrics: tuple[int, int, int, int]) -> str:
    """One ``{"tweet": {...}}`` entry of tweets.js, pretty-printed and indented as X writes it."""
    people = w.p
    ents: dict[str, list] = {"hashtags": [], "symbols": [], "user_mentions": [], "urls": []}
    for kind, s, e, v in post.entities:
        idx = [str(s), str(e)]
        if kind == "hashtag":
            ents["hashtags"].append({"text": v, "indices": idx})
        elif kind == "cashtag":
            ents["symbols"].append({"text": v, "indices": idx})
        elif kind == "mention":
            ents["user_mentions"].append({"name": people.names[v], "screen_name": people.handles[v],
                                          "indices": idx, "id_str": people.ids[v], "id": people.ids[v]})
        else:
            ents["urls"].append({"url": v[0], "expanded_url": v[1], "display_url": v[2], "indices": idx})
    text = post.text
    start = 0
    if post.reply_to is not None:  # the leading @mentions are not part of the displayed text
        while text.startswith("@", start):
            sp = text.find(" ", start)
            if sp < 0:
                break
            start = sp + 1
    edit_until = w.iso(post.ms + 3_600_000)
    tweet: dict[str, Any] = {
        "edit_info": {"initial": {"editTweetIds": [post.id], "editableUntil": edit_until,
                                  "editsRemaining": "5", "isEditEligible": post.retweet_of is None}},
        "retweeted": False,
        "source": post.source,
        "entities": ents,
        "display_text_range": [str(start), str(len(text))],
        "favorite_count": str(metrics[0]),
        "id_str": post.id,
        "truncated": False,
        "retweet_count": str(metrics[1]),
        "id": post.id,
        "created_at": w.archive_time(post.ms),
        "favorited": False,
        "full_text": text,
        "lang": post.lang,
    }
    if post.reply_to is not None:
        uid = people.ids[post.reply_user]
        tweet.update({"in_reply_to_status_id_str": post.reply_to, "in_reply_to_status_id": post.reply_to,
                      "in_reply_to_user_id": uid, "in_reply_to_user_id_str": uid,
                      "in_reply_to_screen_name": people.handles[post.reply_user]})
    return json.dumps({"tweet": tweet}, ensure_ascii=False, indent=2, separators=(",", " : "))


class _PageSink:
    """Writes, and gzips, API pages on a helper thread, in the order they come.

    zlib releases the GIL while it compresses, so compression overlaps with generating the next
    pages; the bounded queue keeps memory flat. The bytes written do not depend on timing.
    """

    def __init__(self, compress: bool, level: int):
        self.compress, self.level = compress, level
        self.queue: queue.Queue[tuple[Path, bytes] | None] = queue.Queue(maxsize=16)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="world-api-writer", daemon=True)
        self.thread.start()

    def write(self, path: Path, data: bytes) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((path, data))

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        current: Path | None = None
        raw: IO[bytes] | None = None
        out: IO[bytes] | None = None
        try:
            while (item := self.queue.get()) is not None:
                if self.error is not None:
                    continue  # keep draining so the producer never blocks; it re-raises the error
                path, data = item
                try:
                    if path != current:
                        if out is not None:
                            out.close()
                            if raw is not out and raw is not None:
                                raw.close()
                        path.parent.mkdir(parents=True, exist_ok=True)
                        raw = out = open(path, "wb")
                        if self.compress:  # mtime=0 and no name: the same bytes on every run
                            out = gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=self.level,
                                                mtime=0)
                        current = path
                    out.write(data)
                except BaseException as e:  # noqa: BLE001 - handed to the producer thread
                    self.error = e
        finally:
            if out is not None:
                out.close()
                if raw is not out and raw is not None:
                    raw.close()


class _ApiFiles:
    """Pages of X API v2 responses, ``posts_per_page`` posts a page, ``pages_per_file`` pages a file."""

    def __init__(self, root: Path, cfg: WorldConfig, people: _People):
        self.root, self.cfg = root, cfg
        self.suffix = ".jsonl.gz" if cfg.compress else ".jsonl"
        self.user_json = [f'{{"id":"{i}","username":"{h}","name":{_q(n)}}}'
                          for i, h, n in zip(people.ids, people.handles, people.names, strict=True)]
        self.data: list[str] = []
        self.ids: list[str] = []
        self.authors: dict[int, None] = {}
        self.pages = 0
        self.posts = 0
        self.file_name = self._file_name()
        self.sink = _PageSink(cfg.compress, cfg.gzip_level)

    @property
    def files(self) -> int:
        return -(-self.pages // self.cfg.pages_per_file)

    def _file_name(self) -> str:
        return f"api/posts-{self.pages // self.cfg.pages_per_file:05d}{self.suffix}"

    def add(self, post_json: str, post_id: str, author: int) -> str:
        """Queue one post (JSON text); returns the file it will be written to."""
        if len(self.data) == self.cfg.posts_per_page:
            self._flush(last=False)
        self.data.append(post_json)
        self.ids.append(post_id)
        self.authors[author] = None
        self.posts += 1
        return self.file_name

    def _flush(self, last: bool) -> None:
        if not self.data:
            return
        # Posts arrive in time order with increasing ids: the last is the newest.
        meta = f'"result_count":{len(self.data)},"newest_id":"{self.ids[-1]}","oldest_id":"{self.ids[0]}"'
        if not last:
            token = _b62((self.pages + 1) * 0x9E3779B97F4A7C15 ^ self.cfg.seed, 16).lower()
            meta += f',"next_token":"{token}"'
        users = ",".join([self.user_json[a] for a in self.authors])
        page = f'{{"data":[{",".join(self.data)}],"includes":{{"users":[{users}]}},"meta":{{{meta}}}}}\n'
        self.sink.write(self.root / self.file_name, page.encode("utf-8"))
        self.data, self.ids, self.authors = [], [], {}
        self.pages += 1
        self.file_name = self._file_name()

    def close(self) -> None:
        """Write the last page (it has no ``next_token``) and wait for the files to be complete."""
        try:
            self._flush(last=True)
        finally:
            self.sink.close()


def _account_js(people: _People, a: int) -> str:
    handle = people.handles[a]
    account = {"account": {"email": f"{handle.lower()}@example.com", "createdVia": "web", "username": handle,
                           "accountId": people.ids[a], "createdAt": people.created_at[a],
                           "accountDisplayName": people.names[a]}}
    return "window.YTD.account.part0 = " + json.dumps([account], ensure_ascii=False, indent=2,
                                                      separators=(",", " : "))


def _manifest_js(people: _People, a: int, n_tweets: int, generated: str) -> str:
    cfg = {"userInfo": {"accountId": people.ids[a], "userName": people.handles[a],
                        "displayName": people.names[a]},
           "archiveInfo": {"generationDate": generated, "isPartialArchive": False,
                           "maxPartSizeBytes": "53687091"},
           "dataTypes": {
               "account": {"files": [{"fileName": "data/account.js", "globalName": "YTD.account.part0",
                                      "count": "1"}]},
               "tweets": {"files": [{"fileName": "data/tweets.js", "globalName": "YTD.tweets.part0",
                                     "count": str(n_tweets)}]}}}
    return "window.__THAR_CONFIG = " + json.dumps(cfg, ensure_ascii=False, indent=2, separators=(",", " : "))


def _write_archives(root: Path, people: _People, tweets: dict[int, list[str]], generated: str,
                    zip_time: tuple[int, ...]) -> None:
    for a, entries in tweets.items():
        handle = people.handles[a]
        body = "window.YTD.tweets.part0 = [ ]"
        if entries:  # newest first, each entry indented by two spaces as in real archives
            body = "window.YTD.tweets.part0 = [\n  " + ",\n  ".join(
                e.replace("\n", "\n  ") for e in reversed(entries)) + "\n]"
        files = {"data/tweets.js": body, "data/account.js": _account_js(people, a),
                 "data/manifest.js": _manifest_js(people, a, len(entries), generated)}
        if people.archive[a] == "zip":
            path = root / "archives" / f"{handle}.zip"
            path.parent.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
                for name, content in files.items():
                    info = zipfile.ZipInfo(name, date_time=zip_time)
                    info.compress_type = zipfile.ZIP_DEFLATED
                    info.external_attr = 0o644 << 16
                    zf.writestr(info, content.encode("utf-8"))
        else:
            for name, content in files.items():
                path = root / "archives" / handle / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content, encoding="utf-8")


class _Truth:
    """Ground truth about posts, written in row groups as generation goes."""

    SCHEMA = pa.schema([
        ("post_id", pa.string()), ("author_id", pa.string()), ("created_at", pa.timestamp("us", tz="UTC")),
        ("topic", pa.string()), ("lang", pa.string()), ("kind", pa.string()), ("duplicate_of", pa.string()),
        ("reply_to", pa.string()), ("conversation_id", pa.string()), ("retweet_of", pa.string()),
        ("quote_of", pa.string()), ("long", pa.bool_()), ("file", pa.string()), ("story", pa.string()),
    ])
    ROWS = 100_000

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = pq.ParquetWriter(path, self.SCHEMA, compression="zstd")
        self.kinds: Counter[str] = Counter()
        self.langs: Counter[str] = Counter()
        self._new_columns()

    def _new_columns(self) -> None:
        self.cols: list[list] = [[] for _ in self.SCHEMA.names]
        (self.c_id, self.c_author, self.c_time, self.c_topic, self.c_lang, self.c_kind, self.c_dup,
         self.c_reply, self.c_conv, self.c_rt, self.c_quote, self.c_long,
         self.c_file, self.c_story) = (c.append for c in self.cols)

    def add(self, post: _Post, author_id: str, file: str) -> None:
        self.c_id(post.id)
        self.c_author(author_id)
        self.c_time(post.ms * 1000)
        self.c_topic(post.topic)
        self.c_lang(post.lang)
        self.c_kind(post.kind)
        self.c_dup(post.duplicate_of)
        self.c_reply(post.reply_to)
        self.c_conv(post.conv)
        self.c_rt(post.retweet_of)
        self.c_quote(post.quote_of)
        self.c_long(len(post.text) > _NOTE_LIMIT)
        self.c_file(file)
        self.c_story(post.story)
        if len(self.cols[0]) >= self.ROWS:
            self.flush()

    def flush(self) -> None:
        if self.cols[0]:
            arrays = [pa.array(col, type=f.type) for col, f in zip(self.cols, self.SCHEMA, strict=True)]
            self.writer.write_table(pa.Table.from_arrays(arrays, schema=self.SCHEMA))
            self.kinds.update(Counter(self.cols[5]))
            self.langs.update(Counter(self.cols[4]))
            self._new_columns()

    def close(self) -> None:
        self.flush()
        self.writer.close()


def _write_users(path: Path, people: _People, posts: np.ndarray) -> None:
    arch = [None if k is None else (f"archives/{h}.zip" if k == "zip" else f"archives/{h}")
            for h, k in zip(people.handles, people.archive, strict=True)]
    following = np.diff(people.follow_ptr)
    table = pa.table({
        "user_id": pa.array(people.ids, pa.string()),
        "handle": pa.array(people.handles, pa.string()),
        "name": pa.array(people.names, pa.string()),
        "kind": pa.array([KIND_NAMES[k] for k in people.kind], pa.string()),
        "langs": pa.array([list(x) for x in people.langs], pa.list_(pa.string())),
        "lang_weights": pa.array([list(lang_weights(len(x))) for x in people.langs], pa.list_(pa.float64())),
        "interests": pa.array([[wt.TOPIC_NAMES[t] for t in x] for x in people.interests],
                              pa.list_(pa.string())),
        "interest_weights": pa.array([list(interest_weights(len(x))) for x in people.interests],
                                     pa.list_(pa.float64())),
        "followers": pa.array(people.followers, pa.int64()),
        "following": pa.array(following, pa.int64()),
        "posts": pa.array(posts, pa.int64()),
        "archive": pa.array(arch, pa.string()),
    })
    pq.write_table(table, path, compression="zstd")


def _write_follows(path: Path, people: _People, chunk: int = 1 << 20) -> None:
    """src follows dst, as user ids, written a million edges at a time to keep memory flat."""
    ids = np.array([int(x) for x in people.ids], np.int64)
    src = np.repeat(np.arange(people.n, dtype=np.int32), np.diff(people.follow_ptr))
    schema = pa.schema([("src", pa.string()), ("dst", pa.string())])
    with pq.ParquetWriter(path, schema, compression="zstd") as out:
        for i in range(0, max(len(src), 1), chunk):
            out.write_table(pa.table({"src": pa.array(ids[src[i:i + chunk]]).cast(pa.string()),
                                      "dst": pa.array(ids[people.follow_dst[i:i + chunk]]).cast(pa.string())},
                                     schema=schema))


# =========================================================================== the driver
def _hour_weights(start: dt.date, days: int) -> np.ndarray:
    w = np.array([_HOURLY[h] * (1.1 if (start + dt.timedelta(days=d)).weekday() >= 5 else 1.0)
                  for d in range(days) for h in range(24)], np.float64)
    return w / w.sum()


def _metrics(people: _People, authors: np.ndarray,
             rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
    """Heavy-tailed like/repost/reply/quote counts that grow with the author's followers."""
    k = len(authors)
    base = 0.3 + 0.03 * people.followers[authors]
    likes = np.floor(base * rng.lognormal(0.0, 1.3, k))
    reposts = np.floor(likes * 0.15 * rng.lognormal(0.0, 0.8, k))
    replies = np.floor(likes * 0.08 * rng.lognormal(0.0, 0.8, k) + (rng.random(k) < 0.2))
    quotes = np.floor(reposts * 0.1 * rng.lognormal(0.0, 0.8, k))
    stacked = np.stack([likes, reposts, replies, quotes], axis=1).astype(np.int64)
    return [tuple(r) for r in stacked.tolist()]


@contextlib.contextmanager
def _without_cycle_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while millions of short-lived, acyclic objects come and go.

    Posts are freed by reference counting; the collector would only rescan the (large, long-lived)
    account tables again and again, which costs more than a quarter of the generation time.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass
class _PostCounts:
    kinds: Counter[str]
    langs: Counter[str]
    per_user: np.ndarray
    archives: int
    zipped_archives: int
    archive_posts: int
    api_files: int
    api_pages: int
    api_posts: int


def _write_posts(root: Path, people: _People, cfg: WorldConfig, start: dt.date,
                 progress: bool, plans: list[_StoryPlan]) -> _PostCounts:
    """Generate every post hour by hour and write it to the archives or the API pages, and to the truth.

    Stories add their posts to their hours from random streams of their own, so the everyday posts
    are the same with or without them."""
    writer = _Writer(people, cfg, start)
    rng = np.random.default_rng([cfg.seed, 3])
    story_rng = np.random.default_rng([cfg.seed, 6])
    story_hours: dict[int, list[tuple[_StoryPlan, int]]] = {}
    for plan in plans:
        for h, c in enumerate(plan.counts):
            if c:
                story_hours.setdefault(plan.start_hour + h, []).append((plan, c))
    story_cdf = {plan.id: _story_authors(people, plan) for plan in plans}
    act_cdf = np.cumsum(people.activity)
    expected = cfg.users * cfg.posts_per_user
    weights = _hour_weights(start, cfg.days)
    per_user = np.zeros(people.n, np.int64)
    archive_tweets: dict[int, list[str]] = {i: [] for i, k in enumerate(people.archive) if k is not None}
    archive_file = {i: (f"archives/{people.handles[i]}.zip" if people.archive[i] == "zip"
                        else f"archives/{people.handles[i]}/data/tweets.js") for i in archive_tweets}
    sources = [wt.SOURCES[i] for i in writer.user_source]
    api = _ApiFiles(root, cfg, people)
    truth = _Truth(root / "truth" / "posts.parquet")
    try:
        with Progress("world: posts", total=int(expected), unit="posts", enabled=progress) as bar:
            for hour in range(cfg.days * 24):
                k = int(rng.poisson(expected * weights[hour]))
                h_ms = (writer.start_s + hour * 3600) * 1000
                extra = _story_posts(people, story_hours.get(hour, ()), story_cdf, h_ms, story_rng)
                if k == 0 and not extra:
                    continue
                todo: list[tuple[int, int, int, tuple[int, int, int, int], _StoryPlan | None]] = []
                if k:
                    draws = rng.random(k) * act_cdf[-1]
                    authors = np.minimum(np.searchsorted(act_cdf, draws, side="right"), people.n - 1)
                    per_user += np.bincount(authors, minlength=people.n)
                    times = np.sort(rng.integers(h_ms, h_ms + 3_600_000, k)).tolist()
                    metrics = _metrics(people, authors, rng)
                    todo = [(ms, 0, a, m, None) for a, ms, m in zip(authors.tolist(), times, metrics, strict=True)]
                if extra:
                    per_user += np.bincount([e[2] for e in extra], minlength=people.n)
                    todo = sorted(todo + extra, key=lambda e: (e[0], e[1]))
                for ms, _, a, m, plan in todo:
                    post = writer.make(a, ms) if plan is None else writer.story_post(a, ms, plan)
                    if post.kind != "bot":
                        post.source = sources[a]
                    if post.kind == "retweet":
                        m = (0, m[1], 0, 0)
                    post.entities = writer.entities(post)
                    if a in archive_tweets:
                        archive_tweets[a].append(_archive_tweet(post, writer, m))
                        file = archive_file[a]
                    else:
                        file = api.add(_api_post_json(post, writer, m), post.id, a)
                    truth.add(post, people.ids[a], file)
                bar.advance(k + len(extra))
    finally:
        api.close()
    truth.close()
    end = start + dt.timedelta(days=cfg.days)
    _write_archives(root, people, archive_tweets, f"{end.isoformat()}T00:00:00.000Z",
                    (end.year, end.month, end.day, 0, 0, 0))
    return _PostCounts(
        kinds=truth.kinds, langs=truth.langs, per_user=per_user, archives=len(archive_tweets),
        zipped_archives=sum(1 for i in archive_tweets if people.archive[i] == "zip"),
        archive_posts=sum(len(v) for v in archive_tweets.values()), api_files=api.files, api_pages=api.pages,
        api_posts=api.posts)


def _story_posts(people: _People, running: Any, cdf: dict[str, np.ndarray], h_ms: int,
                 rng: np.random.Generator) -> list[tuple[int, int, int, tuple[int, int, int, int], _StoryPlan]]:
    """(ms, 1, author, metrics, plan) for the story posts of one hour."""
    out = []
    for plan, count in running:
        c = cdf[plan.id]
        authors = np.minimum(np.searchsorted(c, rng.random(count) * c[-1], side="right"), people.n - 1)
        times = rng.integers(h_ms, h_ms + 3_600_000, count).tolist()
        out += [(ms, 1, a, m, plan) for a, ms, m in zip(authors.tolist(), times, _metrics(people, authors, rng),
                                                        strict=True)]
    return out


def _check_replaceable(out_dir: Path) -> None:
    """A world replaces an earlier world, or an empty directory, never anything else."""
    if out_dir.is_file():
        raise InputError("is a file; give a directory for the world", path=out_dir)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "world.json").is_file():
        raise InputError("exists and is not a murmur world; choose another output directory or remove it",
                         path=out_dir)


def generate_world(out_dir: str | Path, cfg: WorldConfig | None = None,
                   progress: bool = True) -> WorldSummary:
    """Generate a world into ``out_dir`` (replaced atomically) and return what was written.

    Deterministic: the same config (seed included) gives byte-identical files. ``progress`` shows a
    bar on a terminal, or log lines with the rate otherwise.
    """
    cfg = cfg or WorldConfig()
    start = _validate(cfg)
    out_dir = Path(out_dir)
    _check_replaceable(out_dir)
    t0 = time.perf_counter()
    with atomic_dir(out_dir, "world", overwrite=True) as root, _without_cycle_gc():
        people = _make_people(cfg, start)
        _build_follows(people, cfg)
        if progress:
            log(f"world: {people.n:,} accounts, {len(people.follow_dst):,} follows")
        plans = _plan_stories(cfg, people)
        c = _write_posts(root, people, cfg, start, progress, plans)
        _write_users(root / "truth" / "users.parquet", people, c.per_user)
        _write_follows(root / "truth" / "follows.parquet", people)
        summary = WorldSummary(
            path=out_dir, users=people.n, humans=int((people.kind == HUMAN).sum()),
            spam_accounts=int((people.kind == SPAM).sum()), bots=int((people.kind == BOT).sum()),
            follows=len(people.follow_dst), posts=int(c.per_user.sum()), kinds=dict(sorted(c.kinds.items())),
            langs=dict(sorted(c.langs.items())), archives=c.archives, zipped_archives=c.zipped_archives,
            archive_posts=c.archive_posts, api_files=c.api_files, api_pages=c.api_pages,
            api_posts=c.api_posts)
        write_json(root / "world.json", {
            "format": "murmur-world", "version": FORMAT_VERSION, "config": dataclasses.asdict(cfg),
            "counts": {k: v for k, v in dataclasses.asdict(summary).items() if k not in ("path", "seconds")},
            "topics": list(wt.TOPIC_NAMES),
            "stories": [_story_json(p, int(dt.datetime(start.year, start.month, start.day,
                                                       tzinfo=dt.UTC).timestamp())) for p in plans],
        })
    summary.seconds = time.perf_counter() - t0
    return summary


def read_api_pages(path: str | Path) -> list[dict[str, Any]]:
    """Every page of one API file (plain or gzip), for tests and quick looks."""
    path = Path(path)
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        raw = gzip.decompress(raw)
    return [json.loads(line) for line in io.BytesIO(raw).read().decode("utf-8").splitlines() if line.strip()]


def read_tweets_js(text: str) -> list[dict[str, Any]]:
    """The tweets of a ``tweets.js`` file's text (strips the ``window.YTD.tweets.part0 =`` prefix)."""
    return [entry["tweet"] for entry in json.loads(text[text.index("=") + 1:])]
