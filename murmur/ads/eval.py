"""Audience quality against the demo world's ground truth: precision and recall per topic, and the
quality of generated ad copy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from murmur.ads.audiences import AudienceBuilder, evaluate_interest
from murmur.ads.store import MIN_AUDIENCE
from murmur.world.truth import load_truth


def evaluate_audiences(builder: AudienceBuilder, world: Path, min_share: float = 0.2) -> dict:
    """Interest and conversation-topic audiences of every topic, scored against true interests among the
    users who posted (the users an audience could pick)."""
    truth = load_truth(world)
    interests = truth.interest_matrix() > 0
    ids = truth.users["user_id"].to_pylist()
    universe = builder.vectors.user_ids.tolist()
    per: dict[str, list[dict]] = {"interest": [], "topic": []}
    for j, topic in enumerate(truth.topics):
        if topic not in builder.taxonomy:
            continue
        per["interest"].append(evaluate_interest(builder.interest(topic, min_share=min_share), topic, ids,
                                                 interests[:, j], universe))
        per["topic"].append(evaluate_interest(builder.conversation_topic(topic), topic, ids, interests[:, j], universe))
    mean = {k: {m: float(np.mean([r[m] for r in rows])) for m in ("precision", "recall", "f1", "base_rate", "size")}
            for k, rows in per.items() if rows}
    return {"topics": len(per["interest"]), "mean": mean, "per_topic": per}


LOOKALIKE_SIZES = (1.5, 2.0, 3.0)  # audience size as a multiple of the seed's
LOOKALIKE_METHODS = ("lookalike", "followers_of_followers", "random")


def _scores(members: set[str], positives: set[str], seed: set[str]) -> dict[str, float]:
    tp = len(members & positives)
    precision = tp / max(1, len(members))
    recall = tp / max(1, len(positives))
    added = members - seed
    return {"size": len(members), "precision": precision, "recall": recall,
            "f1": 2 * precision * recall / max(1e-12, precision + recall),
            "added_precision": len(added & positives) / max(1, len(added))}


def evaluate_lookalikes(builder: AudienceBuilder, world: Path, sizes: tuple[float, ...] = LOOKALIKE_SIZES,
                        accounts_per_topic: int = 3, min_seed: int = 20, seed: int = 0,
                        similarities: tuple[float, ...] = ()) -> dict:
    """Follower look-alike audiences scored against the world's true interests.

    For every topic, the ``accounts_per_topic`` most followed accounts whose strongest true interest is
    that topic are the advertiser's accounts; their followers (those with posts) are the seed. What the
    audience should reach: the users (among those with posts) who truly hold the interest that sets the
    seed apart (the topic most over-represented among the seed's members against everyone with posts;
    the most common one is the world's most popular topic for any large seed). Each setting of the knobs is
    scored beside two baselines of the same size: followers of followers (the seed, then the users
    following the most seed members; the follow graph alone, no posts) and random users. ``sizes`` are
    multiples of the seed's size (a look-alike audience holds its seed first); ``similarities`` are
    thresholds of the similarity knob (``min_similarity``, no size limit): a threshold that leaves fewer
    than :data:`MIN_AUDIENCE` users is refused, as the builder refuses it, and counted in ``refused``.
    ``added_precision`` is the precision among the members outside the seed, the part the expansion
    chose. The seed alone is scored once."""
    from murmur.errors import InputError

    truth = load_truth(world)
    if builder.follows is None:
        builder = AudienceBuilder(builder.posts, builder.vectors, builder.taxonomy, follows=truth.follows)
    weights = truth.interest_matrix()
    held = weights > 0
    ids = np.array(truth.users["user_id"].to_pylist(), dtype=object)
    followers = truth.users["followers"].to_numpy(zero_copy_only=False)
    universe = builder.vectors.user_ids.astype(str)
    urow = truth.user_rows(universe.tolist())
    in_universe = np.zeros(len(ids), bool)
    in_universe[urow[urow >= 0]] = True
    ptr, nbr = truth.follow_csr(reverse=True)      # row i is followed by nbr[ptr[i]:ptr[i+1]]
    fptr, fnbr = truth.follow_csr()                # row i follows fnbr[fptr[i]:fptr[i+1]]
    strongest = np.where(weights.max(1) > 0, weights.argmax(1), -1)
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    refused: dict[str, int] = {}
    knobs = [(f"x{m:g}", {"knob": m}) for m in sizes] + [(f"sim>={t:g}", {"min_similarity": t}) for t in similarities]
    for j, topic in enumerate(truth.topics):
        accounts = np.flatnonzero(strongest == j)
        accounts = accounts[np.argsort(-followers[accounts], kind="stable")][:accounts_per_topic]
        if len(accounts) == 0:
            continue
        seed_rows = np.unique(np.concatenate([nbr[ptr[a]:ptr[a + 1]] for a in accounts]))
        seed_rows = seed_rows[in_universe[seed_rows]]
        if len(seed_rows) < min_seed:
            continue
        # the interest that sets the seed apart: most over-represented in the seed against everyone with posts
        lift = held[seed_rows].mean(0) / np.maximum(held[in_universe].mean(0), 1e-12)
        target = int(lift.argmax())
        positives = set(ids[in_universe & (weights[:, target] > 0)].tolist())
        base = {"topic": topic, "target": truth.topics[target], "seed": int(len(seed_rows)),
                "base_rate": len(positives) / max(1, int(in_universe.sum()))}
        seed_ids = set(ids[seed_rows].tolist())
        rows.append({**base, "method": "seed", **_scores(seed_ids, positives, set())})
        # followers of followers: users following the most seed members, after the seed itself
        hits = np.bincount(np.concatenate([fnbr[fptr[r]:fptr[r + 1]] for r in seed_rows]) if len(seed_rows)
                           else np.zeros(0, np.int64), minlength=len(ids)).astype(np.float64)
        hits[seed_rows] = np.inf
        hits[~in_universe] = -1
        ranked = np.lexsort((rng.random(len(ids)), -hits))
        pool = np.flatnonzero(in_universe)
        names = [str(ids[a]) for a in accounts]
        for label, knob in knobs:
            if "knob" in knob:
                aud = builder.lookalike(names, size=max(MIN_AUDIENCE, round(knob["knob"] * len(seed_rows))))
            else:
                try:
                    aud = builder.lookalike(names, min_similarity=knob["min_similarity"])
                except InputError:  # under the floor: the builder refuses it
                    refused[label] = refused.get(label, 0) + 1
                    continue
            size = aud.size
            fof = ranked[:size]
            fof = fof[hits[fof] > 0]
            draws = {"lookalike": set(aud.user_ids.tolist()), "followers_of_followers": set(ids[fof].tolist()),
                     "random": set(ids[rng.choice(pool, min(size, len(pool)), replace=False)].tolist())}
            for method, members in draws.items():
                rows.append({**base, "method": method, "setting": label, **knob,
                             **_scores(members, positives, seed_ids)})
    mean: dict[str, dict] = {}
    for method in ("seed", *LOOKALIKE_METHODS):
        for label in ((None,) if method == "seed" else [k for k, _ in knobs]):
            sel = [r for r in rows if r["method"] == method and r.get("setting") == label]
            if sel:
                key = method if label is None else f"{method} {label}"
                mean[key] = {m: float(np.mean([r[m] for r in sel]))
                             for m in ("precision", "recall", "f1", "added_precision", "size", "base_rate", "seed")}
                mean[key]["topics"] = len(sel)
    return {"topics": len({r["topic"] for r in rows}), "mean": mean, "per_topic": rows, "refused": refused}


def lookalike_table(res: dict) -> str:
    out = [f"follower look-alikes over {res['topics']} topics (3 most followed accounts of each; truth: the "
           "interest most over-represented in the seed)",
           f"{'audience (knob)':<32} {'size':>6} {'precision':>9} {'recall':>7} {'f1':>7} {'added prec.':>11}"]
    for key, r in res["mean"].items():
        added = f"{r['added_precision']:>11.3f}" if key != "seed" else f"{'-':>11}"
        out.append(f"{key:<32} {r['size']:>6.0f} {r['precision']:>9.3f} {r['recall']:>7.3f} {r['f1']:>7.3f} {added}")
    if res["mean"]:
        any_row = next(iter(res["mean"].values()))
        out.append(f"(base rate {any_row['base_rate']:.3f}, mean seed {any_row['seed']:.0f} followers)")
    for label, n in res.get("refused", {}).items():
        out.append(f"lookalike {label}: refused for {n} topics (under {MIN_AUDIENCE} users)")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------- ad copy

def rule_breaks(text: str, brand: str, url: str, policy) -> list[str]:
    """Every rule ``text`` breaks, checked afresh (not through the filter that kept it)."""
    import re

    from murmur.ads.store import tweet_length
    from murmur.data.normalize import scrub_pii

    out = []
    if tweet_length(text) > 280:
        out.append("too_long")
    if brand.lower() not in re.sub(r"https?://\S+", " ", text).lower():
        out.append("no_brand")
    if url not in text:
        out.append("no_link")
    if scrub_pii(re.sub(r"https?://\S+", " ", text))[1]:
        out.append("pii")
    if any(re.search(p, text, re.IGNORECASE) for p in policy.prohibited):
        out.append("prohibited_claim")
    return out


def evaluate_copy(setup, complete, advertisers: int = 10, n: int = 4, seed: int = 0,
                  log=lambda s: None) -> dict:
    """Copy quality on the demo world, for ``advertisers`` advertisers drawn among those with an audience:

    - constraint satisfaction of the variants kept after filtering (re-checked; goal 100%) and the share
      of the model's drafts that passed the filter;
    - audience fit: cosine of the copy to its audience's centroid (the members' vectors) against its mean
      cosine to the other audiences, and how often its own audience is the nearest;
    - simulated CTR through the world's hidden click model (``p_click_copy``: topic, language and the copy's
      appeal; no ad effect), over the audience's users at position 0 and hours drawn from the traffic curve,
      of murmur's best-ranked variant against the advertiser's brief used as-is (brief + link) and against
      the world's own hand-written ads of that advertiser.

    ``complete`` is the model writing copy (``write(brief, brand, url, voice, k)``, e.g.
    :func:`murmur.ads.copy.engine_writer`);
    ``setup`` a :class:`murmur.ads.simulate.SimSetup`.
    """
    from murmur.ads.copy import CopyPolicy, audience_voice, rank_for_audience, world_brief, write_copy
    from murmur.ads.pctr import Featurizer
    from murmur.ads.server import DEFAULT_HOURLY

    policy = CopyPolicy()
    cm = setup.click_model
    avec = setup.audience_vectors
    ads = setup.ads
    rng = np.random.default_rng(seed)
    names = sorted(setup.audience_of_topic.values())
    cents = np.zeros((len(names), avec.matrix.shape[1]), np.float32)
    for k, name in enumerate(names):
        rows = avec.rows(setup.catalog.get(name).user_ids)
        c = avec.matrix[rows[rows >= 0]].mean(0)
        cents[k] = c / max(float(np.linalg.norm(c)), 1e-12)
    by_adv: dict[str, list[int]] = {}
    for i, a in enumerate(ads["advertiser_id"]):
        if ads["topic"][i] in setup.audience_of_topic:
            by_adv.setdefault(a, []).append(i)
    chosen = sorted(rng.choice(sorted(by_adv), min(advertisers, len(by_adv)), replace=False).tolist())
    hour_p = np.array(DEFAULT_HOURLY) / sum(DEFAULT_HOURLY)
    featurizer = Featurizer(setup.vectors, setup.history)
    rows_out = []
    drafts = passed = kept_total = kept_ok = 0
    for adv in chosen:
        rows = by_adv[adv]
        first = rows[0]
        topic, brand, url = ads["topic"][first], ads["brand"][first], ads["url"][first]
        name = setup.audience_of_topic[topic]
        aud = setup.catalog.get(name)
        voice = audience_voice(aud, setup.vectors, setup.post_texts)
        own = [i for i in rows if ads["lang"][i] == voice.lang] or rows
        brief = world_brief(ads["product"][own[0]], topic)
        variants, dropped = write_copy(complete, brief, brand, url, voice, n, policy)
        drafts += 2 * n
        passed += 2 * n - sum(dropped.values())
        kept_total += len(variants)
        kept_ok += sum(not rule_breaks(v, brand, url, policy) for v in variants)
        users = cm.user_index(aud.user_ids)
        users = users[users >= 0]
        hours = rng.choice(24, len(users), p=hour_p)

        def ctr(text: str, users=users, hours=hours, topic=topic, lang=voice.lang) -> float:
            return float(cm.p_click_copy(users, text, topic, lang, np.zeros(len(users), np.int64), hours,
                                         np.full(len(users), -1)).mean())

        as_is = f"{brief} {url}"
        row = {"advertiser": adv, "topic": topic, "lang": voice.lang, "variants": len(variants),
               "ctr_brief": ctr(as_is), "ctr_world_ads": float(np.mean([ctr(ads["text"][i]) for i in own]))}
        texts = {"brief": as_is}
        if variants:
            scores = rank_for_audience(variants, voice.lang, aud, setup.vectors, featurizer, setup.model)
            best = variants[int(np.argmax(scores))]
            texts["murmur"] = best
            row.update(ctr_murmur=ctr(best), ctr_murmur_mean=float(np.mean([ctr(v) for v in variants])),
                       best=best)
        k_own = names.index(name)
        sims = avec.embedder.encode(list(texts.values()), "query") @ cents.T
        for (label, _), s in zip(texts.items(), sims, strict=True):
            others = np.delete(s, k_own)
            row[f"fit_{label}_own"] = float(s[k_own])
            row[f"fit_{label}_others"] = float(others.mean())
            row[f"fit_{label}_top1"] = float(s.argmax() == k_own)
        rows_out.append(row)
        log(f"{adv} ({topic}): {len(variants)} variants; CTR brief {row['ctr_brief']:.3%}"
            + (f", murmur {row['ctr_murmur']:.3%}" if variants else ""))

    def mean(key: str) -> float:
        vals = [r[key] for r in rows_out if key in r]
        return float(np.mean(vals)) if vals else float("nan")

    with_copy = [r for r in rows_out if "ctr_murmur" in r]
    summary = {
        "advertisers": len(rows_out), "with_copy": len(with_copy), "variants_per_brief": n,
        "constraints_ok": kept_ok / kept_total if kept_total else float("nan"),
        "draft_pass_rate": passed / drafts if drafts else float("nan"),
        "fit_murmur_own": mean("fit_murmur_own"), "fit_murmur_others": mean("fit_murmur_others"),
        "fit_murmur_top1": mean("fit_murmur_top1"), "fit_brief_own": mean("fit_brief_own"),
        "fit_brief_others": mean("fit_brief_others"), "fit_brief_top1": mean("fit_brief_top1"),
        "ctr_murmur": mean("ctr_murmur"), "ctr_murmur_mean": mean("ctr_murmur_mean"),
        "ctr_brief": float(np.mean([r["ctr_brief"] for r in with_copy])) if with_copy else float("nan"),
        "ctr_world_ads": float(np.mean([r["ctr_world_ads"] for r in with_copy])) if with_copy else float("nan"),
        "embedder": avec.embedder.name,
    }
    return {"summary": summary, "per_advertiser": rows_out}


def copy_table(summary: dict) -> str:
    s = summary
    lift = s["ctr_murmur"] / s["ctr_brief"] - 1 if s["ctr_brief"] else float("nan")
    return "\n".join([
        f"briefs {s['advertisers']} (copy for {s['with_copy']}), {s['variants_per_brief']} variants each; "
        f"audience vectors: {s['embedder']}",
        f"constraints kept after filtering   {s['constraints_ok']:.1%}   (model drafts passing the filter "
        f"{s['draft_pass_rate']:.1%})",
        f"audience fit (cosine)   murmur own {s['fit_murmur_own']:.3f} vs others {s['fit_murmur_others']:.3f}, "
        f"nearest audience {s['fit_murmur_top1']:.0%} | brief own {s['fit_brief_own']:.3f} vs others "
        f"{s['fit_brief_others']:.3f}, nearest {s['fit_brief_top1']:.0%}",
        f"simulated CTR   murmur best {s['ctr_murmur']:.3%} (all variants {s['ctr_murmur_mean']:.3%}) vs brief "
        f"as-is {s['ctr_brief']:.3%} (lift {lift:+.1%}); the world's hand-written ads {s['ctr_world_ads']:.3%}",
    ])
