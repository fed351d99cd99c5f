"""Audience quality against the demo world's ground truth: precision and recall per topic."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from murmur.ads.audiences import AudienceBuilder, evaluate_interest
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

    ``complete(prompts, seed)`` is the model (e.g. :func:`murmur.ads.copy.engine_completer`);
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
