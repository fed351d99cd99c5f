"""Ads benchmark: ad selection latency at 1M users and 1,000 live campaigns, pCTR training time,
audience build time, and the lift of murmur's targeting and ranking over random delivery.

    python benchmarks/ads.py [--users 3000] [--scale-users 1000000] [--campaigns 1000] [--seeds 3]
                             [--model CHAT_MODEL_DIR] [--only latency|pacing] [--days 1] [--pacing-learn 0.5]
                             [--write]

A demo world (``--users`` accounts) gives the posts, logs, pCTR models and the A/B test. The latency
test then serves one request at a time from a server holding ``--scale-users`` users (vectors drawn at
random around the world's users) and ``--campaigns`` campaigns with audiences of 0.5-3% of them,
against the same server with the random policy (no pCTR) as the peer. Audience vectors: the
throughput of search's embedder (the audiences' default) on the world's posts, against LSA's, and
what a million users' posts would take. With ``--model`` the copy of that model is measured against
the brief as-is (:func:`murmur.ads.eval.evaluate_copy`). The A/B test's pacing is reported as the
distribution of spend / budget over every campaign-day; with ``--days`` above 1 the first day (paced
by the traffic curve) and the later days (by each campaign's learned supply curve, ``--pacing-learn``)
are also shown apart, beside the same days paced by the traffic curve alone. ``--write`` puts the results in
docs/benchmarks.md: sections ``ads`` (pCTR, audiences, copy), ``ads-latency`` and ``ads-pacing`` (the
lift and the pacing distribution); ``--only latency`` or ``--only pacing`` measures and writes that
section alone (e.g. the latency again when the machine is quiet).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from murmur.ads.audiences import Audience, AudienceBuilder, AudienceCatalog  # noqa: E402
from murmur.ads.pctr import Featurizer  # noqa: E402
from murmur.ads.server import AdRequest, AdServer, ServerConfig  # noqa: E402
from murmur.ads.simulate import SimConfig, SimSetup, simulate  # noqa: E402
from murmur.ads.store import Campaign, Creative  # noqa: E402
from murmur.ads.vectors import UserVectors, _normalise, read_posts  # noqa: E402


def demo_world(root: Path, users: int) -> tuple[Path, Path, Path]:
    from murmur.data.clean import clean
    from murmur.data.sources import ingest
    from murmur.world.ads import AdsWorldConfig, generate_ads_world
    from murmur.world.generate import WorldConfig, generate_world

    generate_world(root / "world", WorldConfig(users=users, seed=0, archive_users=0))
    ingest([str(root / "world" / "api")], root / "posts.parquet", progress=False)
    clean(root / "posts.parquet", root / "clean.parquet")
    generate_ads_world(root / "world", root / "ads", AdsWorldConfig(impressions_per_day=10000, days=5))
    return root / "world", root / "ads", root / "clean.parquet"


def scaled_server(setup: SimSetup, n_users: int, n_campaigns: int, policy: str, rng: np.random.Generator,
                  root: Path) -> tuple[AdServer, np.ndarray]:
    """A server over ``n_users`` synthetic users (world users' vectors plus noise) and ``n_campaigns``."""
    base = setup.vectors
    src = rng.integers(0, len(base.user_ids), n_users)
    mat = base.matrix[src] + rng.normal(0, 0.05, (n_users, base.matrix.shape[1])).astype(np.float32)
    ids = np.array([f"u{i}" for i in range(n_users)])
    vectors = UserVectors(ids, _normalise(mat), np.arange(n_users), np.zeros((0, mat.shape[1]), np.float32),
                          base.post_lang[rng.integers(0, len(base.post_lang), n_users)], base.embedder)
    catalog = AudienceCatalog(root / "aud-scale")
    texts, urls, langs = setup.ads["text"], setup.ads["url"], setup.ads["lang"]
    campaigns = []
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    for c in range(n_campaigns):
        size = int(n_users * rng.uniform(0.005, 0.03))
        members = ids[np.sort(rng.choice(n_users, size, replace=False))]
        catalog._cache[f"a{c}"] = Audience("custom", {}, members, np.ones(size, np.float32))
        ad = rng.integers(0, len(texts) - 4)
        cpc = rng.random() < 0.8
        campaigns.append(Campaign(advertiser_id=f"adv{c}", name=f"c{c}", objective="traffic", daily_budget=1e6,
                                  bid_type="cpc" if cpc else "cpm", bid=float(rng.uniform(0.3, 1.5) if cpc else 5.0),
                                  audience=f"a{c}", start=start, id=c + 1,
                                  creatives=tuple(Creative(texts[a], urls[a], langs[a], id=a) for a in range(ad, ad + 4))))
    server = AdServer(campaigns, catalog, vectors, Featurizer(vectors, setup.history),
                      setup.model if policy == "murmur" else None, ServerConfig(policy=policy))
    return server, ids


def latency(server: AdServer, ids: np.ndarray, setup: SimSetup, n: int, rng: np.random.Generator) -> dict:
    now = dt.datetime(2024, 1, 2, 12, tzinfo=dt.UTC)
    times, served = [], 0
    for i in range(n):
        req = AdRequest(user_id=str(ids[rng.integers(len(ids))]),
                        context_text=setup.post_texts[rng.integers(len(setup.post_texts))], slots=3,
                        now=now + dt.timedelta(seconds=i))
        t0 = time.perf_counter()
        out = server.select(req)
        times.append(time.perf_counter() - t0)
        served += bool(out)
    ms = np.array(times[n // 10:]) * 1000  # the first tenth warms caches
    cands = np.diff(server.t_ptr)
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)), "served": served / n,
            "candidates": float(cands.mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--scale-users", type=int, default=1_000_000)
    ap.add_argument("--campaigns", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--page-views", type=int, default=20000)
    ap.add_argument("--days", type=int, default=1, help="simulated days per seed (pacing)")
    ap.add_argument("--pacing-learn", type=float, default=SimConfig.pacing_learn,
                    help="weight of the newest day in each campaign's learned supply curve (0: traffic only)")
    ap.add_argument("--model", type=Path, default=None, help="a chat model directory: measure its ad copy")
    ap.add_argument("--copy-prompt", choices=("post", "chat"), default="post", help="how --model is asked for copy")
    ap.add_argument("--only", choices=("latency", "pacing"), default=None, help="measure and write one section")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    parts = {args.only} if args.only else {"ads", "latency", "pacing"}
    sections: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="murmur-ads-bench-") as tmp:
        root = Path(tmp)
        world, ads, posts = demo_world(root, args.users)
        t0 = time.perf_counter()
        setup = SimSetup.build(world, ads, posts, root, min_share=0.1)
        setup_s = time.perf_counter() - t0
        if "ads" in parts:
            sections["ads"] = audience_part(args, setup, posts, setup_s)
        if "latency" in parts:
            sections["ads-latency"] = latency_part(args, setup, root, rng)
        if "pacing" in parts:
            sections["ads-pacing"] = pacing_part(args, setup, root)
    machine = (f"Machine: {_cpu()}, {os.cpu_count()} cores shared with other work (load average "
               f"{os.getloadavg()[0]:.1f} at the end of the run; figures vary by ±30% or more between runs); "
               f"torch and LightGBM on one thread; {dt.date.today().isoformat()}.")
    for name, lines in sections.items():
        body = "\n".join([lines[0], "", machine, "", *lines[1:]])
        print(body)
        if args.write:
            from report import write_section

            write_section(name, body)


def audience_part(args, setup: SimSetup, posts: Path, setup_s: float) -> list[str]:
    rep = setup.pctr_report
    table = read_posts(posts, ("post_id", "author_id", "text", "lang", "created_at", "conversation_id"))
    builder = AudienceBuilder(table, setup.vectors)
    t0 = time.perf_counter()
    builder.interest("cooking")
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for topic in builder.taxonomy:
        builder.interest(topic)
    per_topic_s = (time.perf_counter() - t0) / len(builder.taxonomy)
    emb = measure_embedders(table, setup)
    lines = ["## Ads (`benchmarks/ads.py`)",
             f"**pCTR** on {args.users:,}-account world logs (5 days, 10k impressions a day; held-out days "
             f"{rep.days['test']}):", "", "```", rep.table(), "```", "",
             f"**Audience build**: {len(table):,} posts; embedding the posts and user vectors plus pCTR training "
             f"(setup) {setup_s:.0f} s; the first interest audience (classifying every post) {first_s:.2f} s, "
             f"then {per_topic_s * 1000:.0f} ms per topic.", "",
             f"**Audience vectors**: search's embedder ({emb['name']}, the audiences' default, measured better in "
             f"docs/ads.md) embeds {emb['neural']:,.0f} posts/s here, LSA {emb['lsa']:,.0f} posts/s. At this world's "
             f"{emb['posts_per_user']:.1f} posts a user, a million users' posts take "
             f"{emb['million_h']:.1f} h with the neural embedder on these cores (a GPU job, or done once per post: "
             "the search index embeds each post as it arrives and the audiences read its vectors, or the cache "
             f"by post id embeds only new posts) and {emb['million_lsa_min']:.0f} min with LSA."]
    if args.model is not None:
        from murmur.ads.copy import engine_writer
        from murmur.ads.eval import copy_table, evaluate_copy
        from murmur.engine import Engine

        res = evaluate_copy(setup, engine_writer(Engine.from_run_dir(args.model), args.copy_prompt), advertisers=12,
                            n=4)
        lines += ["", f"**Ad copy** of `{args.model.name}`, asked as `{args.copy_prompt}` (12 briefs × 4 variants; simulated CTR from the hidden "
                  "click model):", "", "```", copy_table(res["summary"]), "```"]
    return lines


def latency_part(args, setup: SimSetup, root: Path, rng: np.random.Generator) -> list[str]:
    lat = {}
    for policy in ("murmur", "random"):
        t0 = time.perf_counter()
        server, ids = scaled_server(setup, args.scale_users, args.campaigns, policy, np.random.default_rng(1), root)
        build_s = time.perf_counter() - t0
        lat[policy] = {**latency(server, ids, setup, args.requests, rng), "build_s": build_s}
        del server
    lines = ["### Ads: selection latency",
             f"One request at a time, 3 slots, a context post embedded per request: "
             f"{args.scale_users:,} users, {args.campaigns:,} live campaigns (4 creatives each, audiences of 0.5-3% "
             f"of users: {lat['murmur']['candidates']:.0f} candidate campaigns per user on average); "
             f"{args.requests:,} requests, the first tenth dropped.", "",
             "| policy | p50 ms | p99 ms | requests served | server build s |",
             "|--------|-------:|-------:|----------------:|---------------:|"]
    for policy in ("murmur", "random"):
        r = lat[policy]
        lines.append(f"| {policy} | {r['p50']:.2f} | {r['p99']:.2f} | {r['served']:.0%} | {r['build_s']:.1f} |")
    lines += ["", f"pCTR scoring and the auction cost {lat['murmur']['p50'] / lat['random']['p50']:.1f}x the "
                  f"random policy's p50; goal p99 ≤ 20 ms: {'met' if lat['murmur']['p99'] <= 20 else 'not met'}."]
    return lines


def pacing_part(args, setup: SimSetup, root: Path) -> list[str]:
    cfg = SimConfig(seeds=args.seeds, days=args.days, page_views=args.page_views, pacing_learn=args.pacing_learn)
    sim = simulate(setup, cfg, work=root, log=_log)
    d = sim.delivery("murmur")
    days = ""
    if args.days > 1 and args.pacing_learn > 0:  # the peer: the same days paced by the traffic curve alone
        peer = simulate(setup, replace(cfg, pacing_learn=0.0), work=root, log=_log)
        days = "\n\n" + by_days(sim, peer, args.days, args.pacing_learn)
    return ["### Ads: lift and pacing",
            f"**Lift** (`murmur ads simulate`, {args.seeds} seeds × {args.days} day{'s' if args.days > 1 else ''} × "
            f"{args.page_views:,} page views, 2 slots, "
            f"20 campaigns drawn per seed; {args.users:,}-account world, interest audiences on LSA vectors; budgets: "
            "half of what each campaign could spend in every auction it can enter with the others paced at their "
            "budgets, by a probe day's supply forecast (`budget_rounds` 1); mean ± 95% "
            "CI; `delivery_ok`: campaign-days within ±10% of budget and at most 1% over; `supply_limited`: under 90% "
            "and, with the day replayed with that campaign in every auction it can enter and no budget limit, its "
            "clicks drawn anew from the hidden click model, under 90% in at least half the draws; `paced_ok`: "
            "`delivery_ok` among the other campaign-days), then the **pacing distribution**: spend / budget over every "
            "campaign-day, and how evenly it was spent (the share of each campaign-day's spend made by the time half "
            "the day's traffic had passed: 50% in step with the traffic, 71% on the pacer's plan):", "", "```",
            sim.table(), "```", "",
            f"murmur: {d['ok']:.1%} of {d['campaign_days']} campaign-days within -10%..+1% of budget; "
            f"under 90%: {d['under_supply_limited']} supply-limited (short in every auction more likely than not), "
            f"{d['under_took_part']} not supply-limited but in more than 95% of their auctions anyway, "
            f"{d['under_paced']} held back by the pacer; largest overspend {d['max_over']:+.2%}. "
            f"Of the {d['feasible_under']} short days not supply-limited, {d['feasible_under_noise']:.1f} would be "
            "expected to miss even in every auction (the replay with no budget limit, its clicks drawn anew from the "
            "hidden click model's probabilities: click noise on a few clicks, which no pacer removes)." + days]


def _log(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


def by_days(sim, peer, n_days: int, learn: float) -> str:
    """The murmur arm's campaign-days within -10%..+1% on the first day and on the later ones, paced by each
    campaign's learned supply curve (``sim``) and by the traffic curve alone (``peer``: same world, seeds,
    campaigns and traffic), and the clicks each bought."""
    rows = ["| campaign-days (murmur arm) | traffic curve only | learned supply curves |", "|--|--:|--:|"]
    later = "day 2" if n_days == 2 else f"days 2-{n_days}"
    for label, rg in (("day 1", range(0, 1)), (later, range(1, n_days))):
        a, b = peer.delivery("murmur", rg), sim.delivery("murmur", rg)
        for key, what in (("ok", "within −10%..+1%"), ("under", "under 90%"),
                          ("under_supply_limited", "  supply-limited"), ("under_took_part", "  in >95% of its auctions"),
                          ("under_paced", "  held back by the pacer")):
            cells = [f"{x['ok']:.1%} of {x['campaign_days']}" if key == "ok" else f"{x[key]}" for x in (a, b)]
            rows.append(f"| {label}: {what} | {cells[0]} | {cells[1]} |")
    clicks = [np.mean([s["murmur"]["clicks"] for s in r.per_seed]) for r in (peer, sim)]
    return ("\n".join(rows) + f"\n\nClicks a seed over the {n_days} days (murmur arm): {clicks[0]:,.0f} with the "
            f"traffic curve only, {clicks[1]:,.0f} with learned supply curves ({clicks[1] / clicks[0] - 1:+.1%}; "
            f"the newest day weighs {learn:g}). Day 1 is the same in both: nothing is learned yet.")


def measure_embedders(table, setup: SimSetup, n: int = 512) -> dict:
    """Posts per second of search's default embedder and of LSA on ``n`` of the world's posts."""
    from murmur.ads.vectors import text_embedder

    texts = table.column("text").to_pylist()[:n]
    neural = text_embedder("default")
    neural.encode(texts[:32])
    t0 = time.perf_counter()
    neural.encode(texts)
    neural_rate = len(texts) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    setup.vectors.embedder.encode(texts)
    lsa_rate = len(texts) / (time.perf_counter() - t0)
    per_user = len(table) / max(1, len(setup.vectors.user_ids))
    return {"name": neural.name, "neural": neural_rate, "lsa": lsa_rate, "posts_per_user": per_user,
            "million_h": 1e6 * per_user / neural_rate / 3600, "million_lsa_min": 1e6 * per_user / lsa_rate / 60}


def _cpu() -> str:
    try:
        from murmur.train.metrics import cpu_model_name

        return cpu_model_name()
    except Exception:
        return "CPU"


if __name__ == "__main__":
    main()
