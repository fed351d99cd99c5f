"""``murmur ads ...``: the ads commands, thin layers over the library (heavy imports inside commands)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ads_app = typer.Typer(help="Ads: the ads world, campaigns, pCTR, ad selection and its simulated A/B test.",
                      no_args_is_help=True)
Overrides = Annotated[list[str] | None, typer.Argument(help="Config overrides, key=value (e.g. days=14).")]


@ads_app.command("world")
def ads_world(
    world: Annotated[Path, typer.Option("--world", help="A world directory from `murmur world generate`.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output directory of the ads world.")],
    seed: Annotated[int | None, typer.Option(help="Random seed (default from the config).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML file of AdsWorldConfig knobs.")] = None,
    knobs: Annotated[bool, typer.Option("--knobs", help="List every knob with its default and exit.")] = False,
    overrides: Overrides = None,
) -> None:
    """Advertisers, ads, a hidden click model and simulated impression/click logs for a world."""
    from murmur import config as cfgmod
    from murmur.world.ads import AdsWorldConfig, generate_ads_world

    if knobs:
        for key, default, help_ in cfgmod.describe(AdsWorldConfig):
            typer.echo(f"{key:<24} {default:<10} {help_}")
        return
    given = [f"seed={seed}"] if seed is not None else []
    cfg = cfgmod.load(AdsWorldConfig, config, [*(overrides or []), *given])
    typer.echo(generate_ads_world(world, out, cfg).describe())


@ads_app.command("pctr")
def ads_pctr(
    logs: Annotated[Path, typer.Option("--logs", help="Logs directory (impressions.parquet, ads.parquet).")],
    posts: Annotated[Path, typer.Option("--posts", help="Clean posts Parquet (user and context vectors).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="pCTR model directory to write.")],
    test_days: Annotated[int, typer.Option(help="Last days of the logs held out for the report.")] = 2,
    seed: Annotated[int, typer.Option(help="Seed of the models.")] = 0,
) -> None:
    """Train pCTR models on the logs (LightGBM and a torch MLP beside two baselines); keep the better."""
    from murmur.ads.pctr import log_features, read_logs, save_pctr, train_pctr
    from murmur.ads.vectors import build_user_vectors, read_posts

    table = read_posts(posts)
    vectors = build_user_vectors(table)
    post_text = dict(zip(table.column("post_id").to_pylist(), table.column("text").to_pylist(), strict=True))
    imps, ads = read_logs(logs)
    lf = log_features(imps, ads, vectors, post_text)
    model, report = train_pctr(lf, seed=seed, test_days=test_days)
    save_pctr(model, report, out, lf.background)
    typer.echo(f"held-out days {report.days['test']} (chosen on day {report.days['valid']}: lower NE):")
    typer.echo(report.table())
    typer.echo(f"pCTR model ({report.chosen}) written to {out}")


@ads_app.command("audience")
def ads_audience(
    action: Annotated[str, typer.Argument(help="build")],
    kind: Annotated[str, typer.Option("--kind", help="interest, keyword, topic, lookalike or custom.")],
    posts: Annotated[Path, typer.Option("--posts", help="Clean posts Parquet.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Audience Parquet to write (user_id, score).")],
    topic: Annotated[str | None, typer.Option("--topic", help="Topic (interest, topic).")] = None,
    keywords: Annotated[str | None, typer.Option("--keywords", help="Comma-separated keywords (keyword).")] = None,
    days: Annotated[int | None, typer.Option("--days", help="Only posts of the last N days (keyword).")] = None,
    accounts: Annotated[str | None, typer.Option("--accounts", help="Comma-separated account ids (lookalike).")] = None,
    size: Annotated[int | None, typer.Option("--size", help="Users to keep, at least 100 (lookalike; default 1000 "
                                             "unless --fraction or --min-similarity).")] = None,
    fraction: Annotated[float | None, typer.Option("--fraction", help="Size as a share of the users with posts, in "
                                                   "(0, 1] (lookalike; instead of --size).")] = None,
    min_similarity: Annotated[float | None, typer.Option("--min-similarity", help="Least cosine to what sets the "
                                                         "seed apart, 0-1 (lookalike).")] = None,
    follows: Annotated[Path | None, typer.Option("--follows", help="Follow graph Parquet src,dst (lookalike).")] = None,
    ids: Annotated[Path | None, typer.Option("--ids", help="File of user ids, one a line (custom).")] = None,
    min_share: Annotated[float, typer.Option(help="Least share of a user's posts on the topic (interest).")] = 0.2,
    embedder: Annotated[str, typer.Option("--embedder", help="Post vectors: default (search's packaged embedder, "
                                          "measured best), lsa, or an embedder directory.")] = "default",
    index: Annotated[Path | None, typer.Option("--index", help="Search index whose post vectors to reuse.")] = None,
    cache: Annotated[Path | None, typer.Option("--cache", help="Directory caching post vectors by post id.")] = None,
) -> None:
    """Build an audience from posts (and follows) and write its members; prints its size."""
    import pyarrow.parquet as pq

    from murmur.ads.audiences import AudienceBuilder, lookalike_knobs, write_audience
    from murmur.ads.service import build_audience
    from murmur.ads.vectors import build_user_vectors, read_posts, text_embedder
    from murmur.errors import InputError

    if action != "build":
        raise InputError(f"unknown action {action!r}: use `murmur ads audience build`")
    if ids is not None and not ids.is_file():
        raise InputError("ids file not found", path=ids)
    if kind == "lookalike":
        lookalike_knobs(size, fraction, min_similarity)  # before the posts are read and embedded
    table = read_posts(posts, ("post_id", "author_id", "text", "lang", "created_at", "conversation_id"))
    # keyword and custom audiences need only the users, not what they write about: no neural embedding
    emb = None if index is not None or kind in ("keyword", "custom") else text_embedder(embedder)
    builder = AudienceBuilder(table, build_user_vectors(table, emb, cache=cache, index=index),
                              follows=pq.read_table(follows, columns=["src", "dst"]) if follows else None)
    aud = build_audience(builder, kind, topic=topic, keywords=(keywords or "").split(",") if keywords else None,
                         days=days, accounts=accounts.split(",") if accounts else None,
                         ids=ids.read_text().splitlines() if ids else None, size=size, min_share=min_share,
                         fraction=fraction, min_similarity=min_similarity)
    write_audience(aud, out)
    typer.echo(f"{kind} audience of {aud.size:,} users written to {out}")


@ads_app.command("eval")
def ads_eval(
    world: Annotated[Path, typer.Option("--world", help="The world directory (its ground truth).")],
    posts: Annotated[Path, typer.Option("--posts", help="Clean posts Parquet of that world.")],
    min_share: Annotated[float, typer.Option(help="Interest audiences: least share of a user's posts on the topic.")
                         ] = 0.2,
    embedder: Annotated[str, typer.Option("--embedder", help="Comma-separated embedders to compare: lsa, default "
                                          "(search's packaged one) or an embedder directory.")] = "lsa,default",
    cache: Annotated[Path | None, typer.Option("--cache", help="Directory caching post vectors by post id.")] = None,
    lookalike_sizes: Annotated[str, typer.Option("--lookalike-sizes", help="Look-alike sizes to sweep, as multiples "
                                                 "of the seed (comma-separated; empty: skip look-alikes).")
                               ] = "1.5,2,3",
    lookalike_similarities: Annotated[str, typer.Option(
        "--lookalike-similarities", help="Look-alike similarity thresholds to sweep (min_similarity, 0-1, "
        "comma-separated; empty: none).")] = "0.1,0.15,0.2",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Precision and recall of interest, conversation-topic and follower look-alike audiences against the world's
    true interests, for each embedder (the audiences use the one that measures best)."""
    import json
    import time

    from murmur.ads.audiences import AudienceBuilder
    from murmur.ads.eval import evaluate_audiences, evaluate_lookalikes, lookalike_table
    from murmur.ads.vectors import build_user_vectors, read_posts, text_embedder
    from murmur.errors import InputError
    from murmur.progress import log
    from murmur.world.truth import load_truth

    try:
        sizes = tuple(float(x) for x in lookalike_sizes.split(",") if x.strip())
    except ValueError:
        raise InputError(f"--lookalike-sizes must be numbers (got {lookalike_sizes!r})",
                         field="lookalike-sizes") from None
    if any(x < 1 for x in sizes):
        raise InputError("--lookalike-sizes are multiples of the seed: each at least 1", field="lookalike-sizes")
    try:
        sims = tuple(float(x) for x in lookalike_similarities.split(",") if x.strip())
    except ValueError:
        raise InputError(f"--lookalike-similarities must be numbers (got {lookalike_similarities!r})",
                         field="lookalike-similarities") from None
    if not all(0.0 <= x <= 1.0 for x in sims):
        raise InputError("--lookalike-similarities are cosines: each between 0 and 1",
                         field="lookalike-similarities")
    follows = load_truth(world).follows
    table = read_posts(posts, ("post_id", "author_id", "text", "lang", "created_at", "conversation_id"))
    results = {}
    for spec in [e.strip() for e in embedder.split(",") if e.strip()]:
        t0 = time.perf_counter()
        emb = text_embedder(spec)
        log(f"{spec}: embedding {table.num_rows:,} posts")
        vectors = build_user_vectors(table, emb, cache=cache)
        secs = time.perf_counter() - t0
        builder = AudienceBuilder(table, vectors, follows=follows)
        results[spec] = {**evaluate_audiences(builder, world, min_share), "embed_s": secs}
        if sizes or sims:
            results[spec]["lookalike"] = evaluate_lookalikes(builder, world, sizes, similarities=sims)
    if as_json:
        typer.echo(json.dumps(results, indent=2))
        return
    for spec, res in results.items():
        for kind, r in res["mean"].items():
            typer.echo(f"{spec:<10} {kind:<9} precision {r['precision']:.3f}  recall {r['recall']:.3f}  "
                       f"f1 {r['f1']:.3f}  (base rate {r['base_rate']:.3f}, {res['topics']} topics; "
                       f"vectors {res['embed_s']:.0f} s)")
        if "lookalike" in res:
            typer.echo(f"{spec}: " + lookalike_table(res["lookalike"]))


@ads_app.command("simulate")
def ads_simulate(
    world: Annotated[Path, typer.Option("--world", help="The world directory.")],
    logs: Annotated[Path, typer.Option("--logs", help="The ads world (`murmur ads world`): logs and click model.")],
    posts: Annotated[Path, typer.Option("--posts", help="Clean posts Parquet of the world.")],
    work: Annotated[Path, typer.Option("--work", help="Directory for audiences, campaign databases, decisions.")
                    ] = Path("ads-sim"),
    database: Annotated[str | None, typer.Option("--database", help="Campaign database URL (default: SQLite files "
                                                                     "in --work).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML file of SimConfig knobs.")] = None,
    embedder: Annotated[str, typer.Option("--embedder", help="Audience vectors: default (search's packaged "
                                          "embedder), lsa, or an embedder directory.")] = "default",
    cache: Annotated[Path | None, typer.Option("--cache", help="Directory caching post vectors by post id "
                                               "(default: WORK/vector-cache).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print per-seed metrics as JSON.")] = False,
    overrides: Overrides = None,
) -> None:
    """A/B test on the demo world: murmur's targeting and ranking vs random delivery, same audiences and budgets."""
    import json

    from murmur import config as cfgmod
    from murmur.ads.simulate import SimConfig, SimSetup, simulate
    from murmur.progress import log

    cfg = cfgmod.load(SimConfig, config, overrides or [])
    cfg.check()
    work.mkdir(parents=True, exist_ok=True)
    setup = SimSetup.build(world, logs, posts, work, min_share=cfg.min_share, log=log, audience_embedder=embedder,
                           cache=cache or work / "vector-cache")
    typer.echo(setup.pctr_report.table())  # type: ignore[attr-defined]
    report = simulate(setup, cfg, work=work, store_url=database, decisions=work / "decisions", log=log)
    typer.echo(json.dumps(report.per_seed, indent=2) if as_json else report.table())


@ads_app.command("copy-eval")
def ads_copy_eval(
    model: Annotated[Path, typer.Option("--model", help="Model directory that writes the copy.")],
    world: Annotated[Path, typer.Option("--world", help="The world directory.")],
    logs: Annotated[Path, typer.Option("--logs", help="The ads world (`murmur ads world`): ads and click model.")],
    posts: Annotated[Path, typer.Option("--posts", help="Clean posts Parquet of the world.")],
    work: Annotated[Path, typer.Option("--work", help="Directory for the audiences.")] = Path("ads-copy-eval"),
    embedder: Annotated[str, typer.Option("--embedder", help="Audience vectors: lsa, default or a directory.")
                        ] = "default",
    cache: Annotated[Path | None, typer.Option("--cache", help="Directory caching post vectors by post id.")] = None,
    advertisers: Annotated[int, typer.Option(help="Advertisers (briefs) to write copy for.")] = 10,
    n: Annotated[int, typer.Option("-n", help="Variants per brief.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the draws and the sampling.")] = 0,
    prompt: Annotated[str, typer.Option("--prompt", help="How the model is asked: post (a post opening with the "
                                        "brief, continued) or chat (the copy conversation of the fine-tuning "
                                        "data).")] = "post",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary and per-advertiser rows as JSON.")
                       ] = False,
) -> None:
    """Copy quality on the demo world: rules kept, audience fit, and simulated CTR against the brief as-is."""
    import json

    from murmur.ads.copy import check_prompt, engine_writer
    from murmur.ads.eval import copy_table, evaluate_copy
    from murmur.ads.simulate import SimSetup
    from murmur.engine import Engine
    from murmur.progress import log

    check_prompt(prompt)
    engine = Engine.from_run_dir(model)
    work.mkdir(parents=True, exist_ok=True)
    setup = SimSetup.build(world, logs, posts, work, log=log, audience_embedder=embedder, cache=cache)
    res = evaluate_copy(setup, engine_writer(engine, prompt, seed=seed), advertisers, n, seed, log=log)
    typer.echo(json.dumps(res, indent=2, ensure_ascii=False) if as_json else copy_table(res["summary"]))


@ads_app.command("copy")
def ads_copy(
    model: Annotated[Path, typer.Option("--model", help="Model directory (a trained or fine-tuned murmur model).")],
    brief: Annotated[str, typer.Option("--brief", help="What the ad should say.")],
    brand: Annotated[str, typer.Option("--brand", help="Brand name every variant must carry.")],
    url: Annotated[str, typer.Option("--url", help="Landing page every variant must link to.")],
    audience: Annotated[Path, typer.Option("--audience", help="Audience Parquet (murmur ads audience build).")],
    posts: Annotated[Path, typer.Option("--posts", help="Clean posts Parquet (the audience's voice and vectors).")],
    pctr: Annotated[Path, typer.Option("--pctr", help="pCTR model directory (ranks the variants).")],
    logs: Annotated[Path | None, typer.Option("--logs", help="Logs directory for the history features.")] = None,
    n: Annotated[int, typer.Option("-n", help="Variants to return.")] = 8,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    prompt: Annotated[str, typer.Option("--prompt", help="How the model is asked: post (a post opening with the "
                                        "brief, continued) or chat (the copy conversation of the fine-tuning "
                                        "data).")] = "post",
    as_json: Annotated[bool, typer.Option("--json", help='Print {"data": [{"text", "score", "lang"}]}.')] = False,
) -> None:
    """Ad copy variants for an audience, in its voice, within X's limits and the policy, ranked by pCTR."""
    import json

    from murmur.ads.audiences import read_audience
    from murmur.ads.copy import check_prompt, copy_for_audience, validate_brief
    from murmur.ads.pctr import Featurizer, History, history_from_logs, load_pctr
    from murmur.ads.store import MIN_AUDIENCE
    from murmur.ads.vectors import build_user_vectors, read_posts
    from murmur.engine import Engine
    from murmur.errors import InputError

    validate_brief(brief, brand, url, n)
    check_prompt(prompt)
    aud = read_audience(audience)
    if aud.size < MIN_AUDIENCE:
        raise InputError(f"the audience has fewer than {MIN_AUDIENCE} users", path=audience)
    model_pctr, meta = load_pctr(pctr)
    table = read_posts(posts)
    vectors = build_user_vectors(table)
    history = history_from_logs(logs) if logs else History(prior=float(meta.get("background_ctr", 0.02)))
    out = copy_for_audience(Engine.from_run_dir(model), brief, brand, url, aud, vectors,
                            table.column("text").to_pylist(), Featurizer(vectors, history), model_pctr, n, seed,
                            prompt)
    if as_json:
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    for d in out["data"]:
        typer.echo(f"{d['score']:.4f}  {d['text']}")
    if out["dropped"]:
        typer.echo("dropped: " + ", ".join(f"{k} {v}" for k, v in sorted(out["dropped"].items(), key=lambda kv: -kv[1])))


@ads_app.command("image")
def ads_image(
    copy: Annotated[str, typer.Option("--copy", help="The ad copy (links are left out of the image).")],
    brand: Annotated[str, typer.Option("--brand", help="Brand name.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Directory for the PNGs (one per X size).")],
    color: Annotated[str, typer.Option("--color", help="Brand colour, #rrggbb.")] = "#1d9bf0",
    audience: Annotated[str, typer.Option("--audience", help="Audience name or top hashtag (picks the palette).")
                        ] = "",
    logo: Annotated[Path | None, typer.Option("--logo", help="Logo or product image (PNG/JPEG).")] = None,
    image_model: Annotated[Path | None, typer.Option("--image-model", help="A diffusers text-to-image pipeline "
                                                     "directory: paint a picture under the copy (needs real weights; "
                                                     "pip install 'murmur[images]').")] = None,
    steps: Annotated[int, typer.Option(help="Denoising steps (--image-model).")] = 30,
    seed: Annotated[int, typer.Option(help="Seed of the painting (--image-model).")] = 0,
) -> None:
    """Ad creatives in X's standard image sizes (800x418, 800x800, 1200x628, 1200x1200), as PNG."""
    from murmur.ads.creatives import palette, write_creatives

    pal = palette(color, audience or brand)
    if image_model is not None:
        from murmur.ads.imagegen import load_pipeline, write_generated_creatives

        paths = write_generated_creatives(load_pipeline(image_model), copy, brand, pal, out,
                                          [audience] if audience else [], logo, steps=steps, seed=seed)
    else:
        paths = write_creatives(copy, brand, pal, out, logo)
    for p in paths:
        typer.echo(str(p))


@ads_app.command("copy-data")
def ads_copy_data(
    logs: Annotated[Path, typer.Option("--logs", help="Ads world directory (ads.parquet, impressions.parquet).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Conversations JSONL to write.")] = Path("ad-copy.jsonl"),
) -> None:
    """Fine-tuning conversations (brief + audience -> copy) from the ads that did best in the logs."""
    from murmur.ads.copy import copy_sft_data

    typer.echo(f"{copy_sft_data(logs, out):,} conversations written to {out} (add them to `murmur sft --data`)")
