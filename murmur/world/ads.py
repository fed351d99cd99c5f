"""The ads side of the demo world: advertisers, their ads, and an impression/click simulator.

An ad business can only be tried offline against people whose reactions are known. This module adds
to a generated world (:mod:`murmur.world.generate`) advertisers selling products in the world's
topics, ads (copy in English or Spanish) for them, and a hidden click model; it then simulates days
of ad impressions and clicks and writes them as logs. Everything is deterministic from a seed.

The hidden click model (:class:`ClickModel`) gives the probability that a user clicks an ad::

    logit = base + user_propensity[u] + ad_effect[a]
            + interest_lift   * [topic(a) in interests(u)]          (the user's true interests)
            + context_lift    * [topic(a) == topic(context post)]   (the post the ad sits beside)
            + copy_weight     * appeal(copy(a), topic(a))           (what the copy says, see copy_appeal)
            - position_decay  * position                            (0 = first slot)
            + hour_amplitude  * cos(2π (hour - 20) / 24)            (evening readers click more)
            - lang_penalty    * [lang(a) not in langs(u)]
    p = sigmoid(logit + ε),  ε ~ N(0, noise_sd) per impression

:meth:`ClickModel.p_click` is the noise-free probability ``sigmoid(logit)``; clicks are drawn
with the noise. A real network replaces the logs with its own; nothing downstream reads the truth
except evaluations.

Layout of ``out_dir`` (see docs/formats.md, "Ads world")
---------------------------------------------------------
``advertisers.parquet``   advertiser_id, brand, topic, url, color (the brand's hex colour)
``ads.parquet``           ad_id, advertiser_id, brand, topic, lang, product, text, url
``impressions.parquet``   impression_id, ts, day, hour, user_id, ad_id, advertiser_id, position,
                          context_post_id, clicked
``clicks.parquet``        impression_id, clicked_at, user_id, ad_id
``truth/click_model.json``  the click model's parameters (the config) and per-topic names
``truth/ads_truth.parquet`` ad_id, appeal, ad_effect
``truth/users.parquet``   user_id, propensity (the user's hidden click propensity, a logit offset)
``ads_world.json``        the config, the world it was built from, counts; written last
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from murmur.config import knob
from murmur.errors import ConfigError, InputError
from murmur.io import atomic_dir, write_json
from murmur.world import text as wt
from murmur.world.generate import _HOURLY
from murmur.world.truth import Truth, load_truth

FORMAT_VERSION = 1
LANGS = ("en", "es")

# Words of the copy the click model rewards or punishes (see copy_appeal).
CTA_WORDS = {
    "en": ("shop now", "try it", "get yours", "join", "discover", "sign up", "learn more", "save"),
    "es": ("compra ya", "pruébalo", "consigue", "únete", "descubre", "regístrate", "más información", "ahorra"),
}
_PRODUCT_KINDS = {
    "en": ("membership", "starter kit", "app", "course", "box", "guide", "pass", "club"),
    "es": ("la membresía", "el kit de inicio", "la app", "el curso", "la caja", "la guía", "el pase", "el club"),
}
_SYLLABLES = ("ka", "lo", "ve", "ra", "mi", "no", "zu", "te", "sa", "qui", "do", "fe", "ly", "xo", "bri", "ta")
_OPENERS = {
    "en": ("New: the {product}.", "Meet the {product}.", "The {product} for {noun}.",
           "Made for {noun}: the {product}.", "{noun_cap}? The {product} has you covered."),
    "es": ("Nuevo: {product}.", "Te presentamos {product}.", "{product_cap} para {noun}.",
           "Hecho para {noun}: {product}.", "¿{noun_cap}? {product_cap} te lo pone fácil."),
}
_FILLERS = {
    "en": ("Loved by thousands of fans.", "Quality you can feel every day.", "Built by people who care.",
           "Everything you need in one place, with free returns and support that answers.",
           "Simple, honest and ready when you are."),
    "es": ("Miles de fans ya lo usan.", "Calidad que se nota cada día.", "Hecho por gente a la que le importa.",
           "Todo lo que necesitas en un solo sitio, con devoluciones gratis y un soporte que responde.",
           "Sencillo, honesto y listo cuando tú lo estés."),
}


@dataclass(frozen=True)
class AdsWorldConfig:
    """Knobs of the ads world and its hidden click model."""

    seed: int = knob(0, "random seed; the same world, config and seed give identical files")
    advertisers_per_topic: int = knob(2, "advertisers selling in each of the world's topics")
    ads_per_advertiser: int = knob(4, "ads (copy variants, English and Spanish) per advertiser")
    days: int = knob(7, "days of impression logs, from the world's first day")
    impressions_per_day: int = knob(30000, "ad impressions simulated a day")
    slots: int = knob(3, "ad positions on a page view")
    contextual_share: float = knob(0.3, "share of logged impressions whose ad matches the context post's topic")
    base_logit: float = knob(-4.2, "click model: intercept (logit)")
    interest_lift: float = knob(1.8, "click model: logit added when the ad's topic is one of the user's interests")
    context_lift: float = knob(0.5, "click model: logit added when the ad's topic is the context post's topic")
    copy_weight: float = knob(1.0, "click model: weight of the copy's appeal")
    position_decay: float = knob(0.35, "click model: logit lost per position below the first")
    hour_amplitude: float = knob(0.25, "click model: amplitude of the daily cycle (peak at 20:00 UTC)")
    lang_penalty: float = knob(2.0, "click model: logit lost when the ad is in a language the user does not write")
    user_sd: float = knob(0.5, "click model: spread of users' click propensity (logit sd)")
    ad_sd: float = knob(0.25, "click model: spread of ads' own effect (logit sd)")
    noise_sd: float = knob(0.3, "click model: per-impression logit noise (sd)")


def copy_appeal(text: str, topic: str) -> float:
    """The hidden appeal of an ad's copy for a topic, about -1 .. 1.

    Rewards a hashtag or phrase of the topic (+0.5), a call to action (+0.3), a question (+0.1) and
    an emoji of the topic (+0.15); punishes copy over 180 characters (-0.3), shouting (more than half
    the letters upper case, -0.5) and many exclamation marks (more than two, -0.3).
    """
    t = wt.TOPICS.get(topic)
    lower = text.lower()
    score = 0.0
    if t is not None:
        terms = [("#" + tag).lower() for lang in LANGS for tag in t.tags[lang]]
        terms += [n.lower().removeprefix("the ") for lang in LANGS for n in t.nouns[lang]]
        if any(term in lower for term in terms):
            score += 0.5
        if any(e in text for e in t.emoji):
            score += 0.15
    if any(c in lower for lang in LANGS for c in CTA_WORDS[lang]):
        score += 0.3
    if "?" in text:
        score += 0.1
    if len(text) > 180:
        score -= 0.3
    letters = [c for c in text if c.isalpha()]
    if len(letters) >= 12 and sum(c.isupper() for c in letters) > 0.5 * len(letters):
        score -= 0.5
    if text.count("!") > 2:
        score -= 0.3
    return score


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def hour_curve(hours: np.ndarray) -> np.ndarray:
    """The daily cycle of the click model: 1 at 20:00 UTC, -1 at 08:00."""
    return np.cos(2 * np.pi * (np.asarray(hours, dtype=np.float64) - 20.0) / 24.0)


@dataclass
class ClickModel:
    """The hidden click model over a world's users and the ads world's ads (see the module doc)."""

    cfg: AdsWorldConfig
    user_ids: np.ndarray          # str, the world's human users
    interests: np.ndarray         # bool [users, topics]
    langs: np.ndarray             # bool [users, len(LANGS)]
    propensity: np.ndarray        # float [users]
    ad_ids: np.ndarray            # str
    ad_topic: np.ndarray          # int [ads], index into topics
    ad_lang: np.ndarray           # int [ads], index into LANGS
    appeal: np.ndarray            # float [ads]
    ad_effect: np.ndarray         # float [ads]
    topics: tuple[str, ...] = wt.TOPIC_NAMES

    def __post_init__(self) -> None:
        self._user_index = {u: i for i, u in enumerate(self.user_ids.tolist())}
        self._ad_index = {a: i for i, a in enumerate(self.ad_ids.tolist())}
        self._topic_index = {t: i for i, t in enumerate(self.topics)}

    def user_index(self, user_ids: list[str] | np.ndarray) -> np.ndarray:
        """Row of each user id (-1 for an id the model does not know: such users never click)."""
        return np.array([self._user_index.get(u, -1) for u in user_ids], dtype=np.int64)

    def ad_index(self, ad_ids: list[str] | np.ndarray) -> np.ndarray:
        missing = [a for a in ad_ids if a not in self._ad_index]
        if missing:
            raise InputError(f"ad {missing[0]!r} is not in the ads world", field="ad_id")
        return np.array([self._ad_index[a] for a in ad_ids], dtype=np.int64)

    def topic_index(self, topics: list[str | None] | np.ndarray) -> np.ndarray:
        """Index of each topic name; -1 for None or an unknown topic."""
        return np.array([self._topic_index.get(t, -1) if t is not None else -1 for t in topics], dtype=np.int64)

    def logit(self, users: np.ndarray, ad_topic: np.ndarray, ad_lang: np.ndarray, appeal: np.ndarray,
              ad_effect: np.ndarray, positions: np.ndarray, hours: np.ndarray,
              context_topics: np.ndarray) -> np.ndarray:
        """The noise-free logit for row-aligned arrays (users: row indices, -1 = unknown user)."""
        c = self.cfg
        users = np.asarray(users)
        known = users >= 0
        u = np.where(known, users, 0)
        interest = self.interests[u, ad_topic] & known
        speaks = self.langs[u, ad_lang] | ~known
        context = (np.asarray(context_topics) == ad_topic) & (np.asarray(context_topics) >= 0)
        out = (c.base_logit + np.where(known, self.propensity[u], 0.0) + ad_effect
               + c.interest_lift * interest + c.context_lift * context + c.copy_weight * appeal
               - c.position_decay * np.asarray(positions) + c.hour_amplitude * hour_curve(hours)
               - c.lang_penalty * ~speaks)
        return np.where(known, out, -30.0)

    def p_click(self, users: np.ndarray, ads: np.ndarray, positions: np.ndarray, hours: np.ndarray,
                context_topics: np.ndarray) -> np.ndarray:
        """Noise-free click probability of row-aligned (user row, ad row, position, hour, context topic)."""
        ads = np.asarray(ads)
        return _sigmoid(self.logit(users, self.ad_topic[ads], self.ad_lang[ads], self.appeal[ads],
                                   self.ad_effect[ads], positions, hours, context_topics))

    def p_click_copy(self, users: np.ndarray, text: str, topic: str, lang: str, positions: np.ndarray,
                     hours: np.ndarray, context_topics: np.ndarray) -> np.ndarray:
        """Click probability of a new copy (no ad effect of its own) shown to ``users``."""
        n = len(users)
        ti = self._topic_index.get(topic)
        if ti is None:
            raise InputError(f"unknown topic {topic!r}", field="topic")
        li = LANGS.index(lang) if lang in LANGS else 0
        return _sigmoid(self.logit(users, np.full(n, ti), np.full(n, li), np.full(n, copy_appeal(text, topic)),
                                   np.zeros(n), positions, hours, context_topics))

    def probability(self, logit: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """The click probability a draw is made against: noise-free logits with standard normal ``noise``."""
        return _sigmoid(logit + self.cfg.noise_sd * noise)

    def draw_clicks(self, logit: np.ndarray, uniforms: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """Clicks from noise-free logits, standard normal ``noise`` and uniforms (common random numbers)."""
        return uniforms < self.probability(logit, noise)

    @classmethod
    def load(cls, ads_dir: str | Path, world_dir: str | Path | None = None) -> ClickModel:
        """The click model of an ads world written by :func:`generate_ads_world`."""
        ads_dir = Path(ads_dir)
        meta_path = ads_dir / "ads_world.json"
        if not meta_path.exists():
            raise InputError("not an ads world (no ads_world.json); write one with `murmur ads world`", path=ads_dir)
        meta = json.loads(meta_path.read_text())
        cfg = AdsWorldConfig(**meta["config"])
        world = Path(world_dir) if world_dir is not None else Path(meta["world"])
        truth = _read_users(world)
        props = pq.read_table(ads_dir / "truth" / "users.parquet").to_pydict()
        prop = dict(zip(props["user_id"], props["propensity"], strict=True))
        ads = pq.read_table(ads_dir / "ads.parquet").to_pydict()
        at = pq.read_table(ads_dir / "truth" / "ads_truth.parquet").to_pydict()
        tix = {t: i for i, t in enumerate(wt.TOPIC_NAMES)}
        return cls(cfg=cfg, user_ids=truth["user_ids"], interests=truth["interests"], langs=truth["langs"],
                   propensity=np.array([prop[u] for u in truth["user_ids"].tolist()]),
                   ad_ids=np.array(ads["ad_id"]), ad_topic=np.array([tix[t] for t in ads["topic"]]),
                   ad_lang=np.array([LANGS.index(x) for x in ads["lang"]]), appeal=np.array(at["appeal"]),
                   ad_effect=np.array(at["ad_effect"]))


def _read_users(world_dir: Path) -> dict[str, np.ndarray]:
    """The world's human users with their true interests and languages (from its ground truth)."""
    truth = load_truth(world_dir)
    users = truth.users
    human = np.flatnonzero(np.asarray(users["kind"].to_pylist()) == "human")
    tcol = [truth.topics.index(t) for t in wt.TOPIC_NAMES]  # the ground truth's topic order -> ours
    interests = truth.interest_matrix()[human][:, tcol] > 0
    langs = np.zeros((len(human), len(LANGS)), dtype=bool)
    user_langs = users["langs"].to_pylist()
    for row, i in enumerate(human.tolist()):
        for lang in user_langs[i] or ():
            if lang in LANGS:
                langs[row, LANGS.index(lang)] = True
    ids = np.asarray(users["user_id"].to_pylist(), dtype=object)[human].astype(str)
    posts = users["posts"].to_numpy(zero_copy_only=False)[human].astype(np.float64)
    return {"user_ids": ids, "interests": interests, "langs": langs, "posts": posts, "truth": truth}


def _read_context_posts(truth: Truth) -> tuple[np.ndarray, np.ndarray]:
    """Posts an ad may sit beside: posts with a topic (post_id, topic index)."""
    topic = truth.posts["topic"].to_pylist()
    keep = [i for i, x in enumerate(topic) if x is not None]
    tix = {name: i for i, name in enumerate(wt.TOPIC_NAMES)}
    ids = np.asarray(truth.posts["post_id"].to_pylist(), dtype=object)[keep]
    return ids, np.array([tix[topic[i]] for i in keep], dtype=np.int64)


def _brand(rnd: random.Random, taken: set[str]) -> str:
    while True:
        name = "".join(rnd.choice(_SYLLABLES) for _ in range(rnd.choice((2, 3)))).capitalize()
        if name not in taken and len(name) >= 4:
            taken.add(name)
            return name


def _write_copy(rnd: random.Random, lang: str, topic: wt.Topic, brand: str, kind: str, url: str) -> str:
    """One ad copy: an opener, maybe a filler, maybe a hashtag/emoji, maybe a call to action, the link."""
    product = f"{brand} {kind}" if lang == "en" else f"{kind} de {brand}"
    noun = rnd.choice(topic.nouns[lang])
    parts = [rnd.choice(_OPENERS[lang]).format(product=product, product_cap=product[0].upper() + product[1:],
                                               noun=noun, noun_cap=noun[0].upper() + noun[1:])]
    if rnd.random() < 0.5:
        parts.append(rnd.choice(_FILLERS[lang]))
    if rnd.random() < 0.5:
        parts.append("#" + rnd.choice(topic.tags[lang]))
    if rnd.random() < 0.4:
        parts.append(rnd.choice(topic.emoji))
    if rnd.random() < 0.5:
        cta = rnd.choice(CTA_WORDS[lang])
        parts.append(cta[0].upper() + cta[1:] + ("!" * rnd.choice((0, 1, 3))))
    text = " ".join(parts)
    if rnd.random() < 0.08:
        text = text.upper()
    return f"{text} {url}"


@dataclass
class AdsWorldSummary:
    path: Path
    advertisers: int
    ads: int
    impressions: int
    clicks: int

    def describe(self) -> str:
        ctr = self.clicks / max(1, self.impressions)
        return (f"ads world written to {self.path}: {self.advertisers} advertisers, {self.ads} ads, "
                f"{self.impressions:,} impressions, {self.clicks:,} clicks (CTR {ctr:.2%})")


def _validate(cfg: AdsWorldConfig) -> None:
    for name in ("advertisers_per_topic", "ads_per_advertiser", "days", "impressions_per_day", "slots"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be at least 1 (got {getattr(cfg, name)})")
    if not 0.0 <= cfg.contextual_share <= 1.0:
        raise ConfigError(f"contextual_share must be in [0, 1] (got {cfg.contextual_share})")
    for name in ("user_sd", "ad_sd", "noise_sd"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{name} must be >= 0 (got {getattr(cfg, name)})")


def make_advertisers(cfg: AdsWorldConfig) -> tuple[pa.Table, pa.Table]:
    """Advertisers (several per topic) and their ads, deterministic from ``cfg.seed``."""
    rnd = random.Random(f"ads-advertisers-{cfg.seed}")
    taken: set[str] = set()
    adv: dict[str, list] = {k: [] for k in ("advertiser_id", "brand", "topic", "url", "color")}
    ads: dict[str, list] = {k: [] for k in ("ad_id", "advertiser_id", "brand", "topic", "lang", "product", "text", "url")}
    for topic_name in wt.TOPIC_NAMES:
        topic = wt.TOPICS[topic_name]
        for _ in range(cfg.advertisers_per_topic):
            aid = f"adv{len(adv['advertiser_id']):04d}"
            brand = _brand(rnd, taken)
            url = f"https://{brand.lower()}.example/{topic_name.replace('_', '-')}"
            adv["advertiser_id"].append(aid)
            adv["brand"].append(brand)
            adv["topic"].append(topic_name)
            adv["url"].append(url)
            adv["color"].append(f"#{rnd.randrange(0x202020, 0xE0E0E0):06x}")
            for k in range(cfg.ads_per_advertiser):
                lang = LANGS[k % len(LANGS)]
                kind = rnd.choice(_PRODUCT_KINDS[lang])
                ads["ad_id"].append(f"{aid}-ad{k:02d}")
                ads["advertiser_id"].append(aid)
                ads["brand"].append(brand)
                ads["topic"].append(topic_name)
                ads["lang"].append(lang)
                ads["product"].append(f"{brand} {kind}" if lang == "en" else f"{kind.split(' ', 1)[1]} {brand}")
                ads["text"].append(_write_copy(rnd, lang, topic, brand, kind, url))
                ads["url"].append(url)
    return pa.table(adv), pa.table(ads)


def generate_ads_world(world_dir: str | Path, out_dir: str | Path, cfg: AdsWorldConfig | None = None) -> AdsWorldSummary:
    """Write advertisers, ads, the hidden click model and simulated impression/click logs for a world."""
    cfg = cfg or AdsWorldConfig()
    _validate(cfg)
    world_dir = Path(world_dir)
    users = _read_users(world_dir)
    if len(users["user_ids"]) == 0:
        raise InputError("the world has no human users", path=world_dir)
    start = dt.date.fromisoformat(users["truth"].config.get("start", "2024-05-01"))
    post_ids, post_topic = _read_context_posts(users["truth"])
    advertisers, ads = make_advertisers(cfg)

    rng = np.random.default_rng([cfg.seed, 0xAD5])
    n_users, n_ads = len(users["user_ids"]), ads.num_rows
    propensity = rng.normal(0.0, cfg.user_sd, n_users)
    topics = ads.column("topic").to_pylist()
    appeal = np.array([copy_appeal(x, t) for x, t in zip(ads.column("text").to_pylist(), topics, strict=True)])
    ad_effect = rng.normal(0.0, cfg.ad_sd, n_ads)
    tix = {t: i for i, t in enumerate(wt.TOPIC_NAMES)}
    model = ClickModel(cfg=cfg, user_ids=users["user_ids"], interests=users["interests"], langs=users["langs"],
                       propensity=propensity, ad_ids=np.array(ads.column("ad_id").to_pylist()),
                       ad_topic=np.array([tix[t] for t in topics]),
                       ad_lang=np.array([LANGS.index(x) for x in ads.column("lang").to_pylist()]),
                       appeal=appeal, ad_effect=ad_effect)
    imps = simulate_logs(model, cfg, start, post_ids, post_topic, users["posts"], rng)
    ad_adv = np.array(ads.column("advertiser_id").to_pylist())

    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        (tmp / "truth").mkdir()
        pq.write_table(advertisers, tmp / "advertisers.parquet")
        pq.write_table(ads, tmp / "ads.parquet")
        n = len(imps["user"])
        ts = pa.array(imps["ts"] * 1_000_000, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
        imp_ids = np.array([f"imp{i:09d}" for i in range(n)])
        ctx = np.where(imps["context"] >= 0, post_ids[np.maximum(imps["context"], 0)] if len(post_ids) else None,
                       None)
        table = pa.table({
            "impression_id": pa.array(imp_ids, pa.string()),
            "ts": ts,
            "day": pa.array(imps["day"], pa.int32()),
            "hour": pa.array(imps["hour"], pa.int8()),
            "user_id": pa.array(users["user_ids"][imps["user"]], pa.string()),
            "ad_id": pa.array(model.ad_ids[imps["ad"]], pa.string()),
            "advertiser_id": pa.array(ad_adv[imps["ad"]], pa.string()),
            "position": pa.array(imps["position"], pa.int8()),
            "context_post_id": pa.array(ctx.tolist(), pa.string()),
            "clicked": pa.array(imps["clicked"], pa.bool_()),
        })
        pq.write_table(table, tmp / "impressions.parquet", compression="zstd")
        clicked = np.flatnonzero(imps["clicked"])
        delay = rng.integers(1, 60, len(clicked))
        pq.write_table(pa.table({
            "impression_id": pa.array(imp_ids[clicked], pa.string()),
            "clicked_at": pa.array((imps["ts"][clicked] + delay) * 1_000_000, pa.int64()).cast(
                pa.timestamp("us", tz="UTC")),
            "user_id": pa.array(users["user_ids"][imps["user"][clicked]], pa.string()),
            "ad_id": pa.array(model.ad_ids[imps["ad"][clicked]], pa.string()),
        }), tmp / "clicks.parquet", compression="zstd")
        pq.write_table(pa.table({"ad_id": ads.column("ad_id"), "appeal": appeal, "ad_effect": ad_effect}),
                       tmp / "truth" / "ads_truth.parquet")
        pq.write_table(pa.table({"user_id": pa.array(users["user_ids"], pa.string()), "propensity": propensity}),
                       tmp / "truth" / "users.parquet")
        write_json(tmp / "truth" / "click_model.json",
                   {"formula": __doc__.split("::")[1].split("Layout")[0].strip().split("\n\n")[0],
                    "params": dataclasses.asdict(cfg), "topics": list(wt.TOPIC_NAMES), "langs": list(LANGS)})
        write_json(tmp / "ads_world.json", {
            "version": FORMAT_VERSION, "config": dataclasses.asdict(cfg), "world": str(world_dir.resolve()),
            "start": start.isoformat(), "advertisers": advertisers.num_rows, "ads": ads.num_rows,
            "impressions": n, "clicks": int(len(clicked))})
    return AdsWorldSummary(out_dir, advertisers.num_rows, ads.num_rows, len(imps["user"]), int(len(clicked)))


def simulate_logs(model: ClickModel, cfg: AdsWorldConfig, start: dt.date, post_ids: np.ndarray,
                  post_topic: np.ndarray, activity: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Page views (user by activity, hour by the daily traffic curve, a context post) with ``cfg.slots``
    distinct ads each: contextual (the post's topic) for ``contextual_share`` of them, else uniform."""
    n_ads = len(model.ad_ids)
    slots = min(cfg.slots, n_ads)
    views_per_day = max(1, cfg.impressions_per_day // slots)
    user_p = (activity + 1.0) / (activity + 1.0).sum()
    hour_p = np.array(_HOURLY) / sum(_HOURLY)
    by_topic = [np.flatnonzero(model.ad_topic == t) for t in range(len(model.topics))]
    epoch0 = int(dt.datetime(start.year, start.month, start.day, tzinfo=dt.UTC).timestamp())
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("ts", "day", "hour", "user", "ad", "position", "context", "clicked")}
    for day in range(cfg.days):
        users = rng.choice(len(user_p), views_per_day, p=user_p)
        hours = rng.choice(24, views_per_day, p=hour_p)
        secs = np.sort(hours * 3600 + rng.integers(0, 3600, views_per_day))
        hours = secs // 3600
        ctx = rng.integers(0, len(post_ids), views_per_day) if len(post_ids) else np.full(views_per_day, -1)
        ctx_topic = post_topic[ctx] if len(post_ids) else np.full(views_per_day, -1)
        ads = np.empty((views_per_day, slots), dtype=np.int64)
        contextual = rng.random((views_per_day, slots)) < cfg.contextual_share
        for v in range(views_per_day):
            chosen: list[int] = []
            pool = by_topic[ctx_topic[v]] if ctx_topic[v] >= 0 else np.empty(0, dtype=np.int64)
            for s in range(slots):
                for _ in range(20):
                    if contextual[v, s] and len(pool):
                        a = int(pool[rng.integers(len(pool))])
                    else:
                        a = int(rng.integers(n_ads))
                    if a not in chosen:
                        break
                else:
                    a = next(i for i in range(n_ads) if i not in chosen)
                chosen.append(a)
            ads[v] = chosen
        rows = np.repeat(np.arange(views_per_day), slots)
        pos = np.tile(np.arange(slots), views_per_day)
        ad_flat = ads.reshape(-1)
        logit = model.logit(users[rows], model.ad_topic[ad_flat], model.ad_lang[ad_flat], model.appeal[ad_flat],
                            model.ad_effect[ad_flat], pos, hours[rows], ctx_topic[rows])
        clicked = model.draw_clicks(logit, rng.random(len(rows)), rng.standard_normal(len(rows)))
        out["ts"].append(epoch0 + day * 86400 + secs[rows])
        out["day"].append(np.full(len(rows), day))
        out["hour"].append(hours[rows])
        out["user"].append(users[rows])
        out["ad"].append(ad_flat)
        out["position"].append(pos)
        out["context"].append(ctx[rows])
        out["clicked"].append(clicked)
    return {k: np.concatenate(v) for k, v in out.items()}

