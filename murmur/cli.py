"""The ``murmur`` command line: one typer app; each command is a few lines over the library.

Errors a user can act on (``MurmurError``) print as one line and exit with status 2.
Heavy imports happen inside the commands so ``murmur --help`` stays instant.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from murmur.config import given
from murmur.errors import MurmurError

app = typer.Typer(help="murmur: a social network's own language model, from raw posts to a served assistant.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Posts in, training corpus out: ingest, clean, tokenize.", no_args_is_help=True)
tokenizer_app = typer.Typer(help="Train and evaluate the byte-level BPE tokenizer.", no_args_is_help=True)
world_app = typer.Typer(help="The demo social network (synthetic, deterministic from a seed).", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(tokenizer_app, name="tokenizer")
app.add_typer(world_app, name="world")
export_app = typer.Typer(help="Export a model for other tools: Hugging Face transformers, vLLM, llama.cpp.",
                         no_args_is_help=True)
app.add_typer(export_app, name="export")
from murmur.ads.cli import ads_app  # noqa: E402  (the ads commands; typer only at import)

app.add_typer(ads_app, name="ads")
from murmur.search.cli import search_app  # noqa: E402  (the search commands; typer only at import)

app.add_typer(search_app, name="search")
from murmur.embed.cli import embed_app  # noqa: E402  (the embedder commands; typer only at import)

app.add_typer(embed_app, name="embed")

Overrides = Annotated[list[str] | None, typer.Argument(help="Config overrides, key=value (e.g. users=5000).")]


# ---------------------------------------------------------------- world
@world_app.command("generate")
def world_generate(
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Output directory for the world (required).")] = None,
    users: Annotated[int | None, typer.Option(help="Number of accounts (overrides the config's users).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed; the same seed gives the same world "
                                                  "(overrides the config's seed).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML file of WorldConfig knobs.")] = None,
    knobs: Annotated[bool, typer.Option("--knobs", help="List every config knob with its default and exit.")] = False,
    overrides: Overrides = None,
) -> None:
    """Generate a synthetic social network: posts in X archive and API v2 formats, plus ground truth."""
    from murmur import config as cfgmod
    from murmur.world.generate import WorldConfig, generate_world

    if knobs:
        typer.echo(cfgmod.knobs_text(WorldConfig))
        return
    if out is None:
        raise typer.BadParameter("give the output directory with -o/--out", param_hint="'-o' / '--out'")
    cfg = cfgmod.load(WorldConfig, config, given(overrides, users=users, seed=seed))
    summary = generate_world(out, cfg)
    typer.echo(summary.describe())


# ---------------------------------------------------------------- data
@data_app.command("ingest")
def data_ingest(
    sources: Annotated[list[str], typer.Argument(help="Files, directories, globs or archive zips.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output Parquet file of posts.")],
    fmt: Annotated[str, typer.Option("--format", help="auto, x-archive, x-api, csv, jsonl, parquet or text.")] = "auto",
    map_: Annotated[str, typer.Option("--map", help="Column mapping for generic formats, e.g. id=tweet_id,author=user.")] = "",
    workers: Annotated[int | None, typer.Option(help="Reader processes (output is identical for any number); "
                                                     "with --engine ray, Ray workers (default: the cluster's CPUs).")] = None,
    engine: Annotated[str, typer.Option(help="local (processes on this machine) or ray (a Ray cluster).")] = "local",
    address: Annotated[str | None, typer.Option(help="With --engine ray: auto, HOST:PORT or ray://HOST:PORT "
                                                     "(default: a Ray instance started for this run).")] = None,
) -> None:
    """Read raw posts (X archive, X API v2, CSV, JSONL, Parquet, text; plain/.gz/.zst) into one schema."""
    from murmur.data.sources import ingest, parse_mapping

    if engine == "ray":
        from murmur.data.ray_engine import ingest_ray

        stats = ingest_ray(sources, out, fmt=fmt, mapping=parse_mapping(map_), workers=workers, address=address)
    elif engine == "local":
        stats = ingest(sources, out, fmt=fmt, mapping=parse_mapping(map_), workers=workers or 1)
    else:
        raise typer.BadParameter(f"{engine!r} is not one of local, ray", param_hint="'--engine'")
    typer.echo(stats.describe())


@data_app.command("clean")
def data_clean(
    src: Annotated[str, typer.Argument(help="Posts Parquet from `murmur data ingest`.")],
    out: Annotated[str, typer.Option("-o", "--out", help="Output Parquet of kept posts.")],
    stats: Annotated[Path | None, typer.Option(help="Where to write the drop counts (default: stats.json beside --out).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (output is identical for any number); "
                                                     "with --engine ray, Ray workers (default: the cluster's CPUs).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML file of CleanConfig knobs.")] = None,
    engine: Annotated[str, typer.Option(help="local (processes on this machine) or ray (a Ray cluster; "
                                             "paths may be s3://, gs://, hdfs://...).")] = "local",
    address: Annotated[str | None, typer.Option(help="With --engine ray: auto, HOST:PORT or ray://HOST:PORT "
                                                     "(default: a Ray instance started for this run).")] = None,
    overrides: Overrides = None,
) -> None:
    """Normalise, scrub PII, identify language, filter spam and remove exact and near duplicates."""
    from murmur import config as cfgmod
    from murmur.data.clean import CleanConfig, clean

    cfg = cfgmod.load(CleanConfig, config, overrides or [])
    if engine == "ray":
        from murmur.data.ray_engine import clean_ray

        result = clean_ray(src, out, cfg, workers=workers, stats_path=stats, address=address)
    elif engine == "local":
        result = clean(Path(src), Path(out), cfg, workers=workers or 1, stats_path=stats)
    else:
        raise typer.BadParameter(f"{engine!r} is not one of local, ray", param_hint="'--engine'")
    result.print_table()


@data_app.command("tokenize")
def data_tokenize(
    src: Annotated[Path, typer.Argument(help="Clean posts Parquet.")],
    tokenizer: Annotated[Path, typer.Option("--tokenizer", help="Tokenizer directory.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output shard directory.")],
    workers: Annotated[int | None, typer.Option(help="Encoding threads (output is identical for any number); "
                                                     "with --engine ray, Ray workers (default: the cluster's CPUs).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier output of this command there "
                                                                 "(never anything murmur did not write).")] = False,
    config: Annotated[Path | None, typer.Option("--config", help="TOML file of ShardConfig knobs.")] = None,
    engine: Annotated[str, typer.Option(help="local (processes on this machine) or ray (a Ray cluster).")] = "local",
    address: Annotated[str | None, typer.Option(help="With --engine ray: auto, HOST:PORT or ray://HOST:PORT "
                                                     "(default: a Ray instance started for this run).")] = None,
    overrides: Overrides = None,
) -> None:
    """Tokenize posts into train/val token shards (split by a stable hash of post_id)."""
    from murmur import config as cfgmod
    from murmur.data.shards import ShardConfig, tokenize_to_shards

    cfg = cfgmod.load(ShardConfig, config, overrides or [])
    if engine == "ray":
        from murmur.data.ray_engine import tokenize_ray

        manifest = tokenize_ray(src, tokenizer, out, cfg, workers=workers, overwrite=overwrite, address=address)
    elif engine == "local":
        manifest = tokenize_to_shards(src, tokenizer, out, cfg, workers=workers or 1, overwrite=overwrite)
    else:
        raise typer.BadParameter(f"{engine!r} is not one of local, ray", param_hint="'--engine'")
    typer.echo(manifest.describe())


# ---------------------------------------------------------------- tokenizer
@tokenizer_app.command("train")
def tokenizer_train(
    src: Annotated[Path, typer.Argument(help="Clean posts Parquet file.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output tokenizer directory.")],
    vocab_size: Annotated[int | None, typer.Option(help="Vocabulary size, special tokens included "
                                                        "(overrides the config's vocab_size).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier output of this command there "
                                                                 "(never anything murmur did not write).")] = False,
    config: Annotated[Path | None, typer.Option("--config", help="TOML file of TokenizerConfig knobs.")] = None,
    overrides: Overrides = None,
) -> None:
    """Train a byte-level BPE tokenizer with murmur's reserved special tokens."""
    from murmur import config as cfgmod
    from murmur.tokenizer import TokenizerConfig, train_tokenizer

    cfg = cfgmod.load(TokenizerConfig, config, given(overrides, vocab_size=vocab_size))
    tok = train_tokenizer([src], out, cfg, overwrite=overwrite)
    typer.echo(f"tokenizer with {tok.vocab_size:,} tokens written to {out}")


@tokenizer_app.command("eval")
def tokenizer_eval(
    tokenizer: Annotated[Path, typer.Argument(help="Tokenizer directory.")],
    src: Annotated[Path, typer.Argument(help="Posts Parquet to measure on (held-out posts are used).")],
) -> None:
    """Report bytes per token on held-out posts, per language."""
    from murmur.tokenizer import eval_tokenizer, print_eval

    print_eval(eval_tokenizer(tokenizer, src))


# ---------------------------------------------------------------- train, generate, plot
@app.command("train")
def train_cmd(
    config: Annotated[Path | None, typer.Option("--config", help="TOML file of TrainConfig knobs (configs/*.toml).")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="Config overrides, key=value (e.g. steps=200 optim.lr=1e-3).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the newest checkpoint in the out directory.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check the config and print the run's size; no data, no training.")] = False,
    knobs: Annotated[bool, typer.Option("--knobs", help="List every config knob with its default and exit.")] = False,
) -> None:
    """Pretrain a model on token shards: checkpoints, metrics.jsonl, and the final model in the out directory."""
    from murmur import config as cfgmod
    from murmur.train.config import TrainConfig

    if knobs:
        typer.echo(cfgmod.knobs_text(TrainConfig))
        return
    cfg = cfgmod.load(TrainConfig, config, [*(overrides or []), *(["resume=true"] if resume else [])])
    if dry_run:
        import json

        from murmur.train.trainer import dry_run as plan

        typer.echo(json.dumps(plan(cfg), indent=2))
        return
    from murmur.train.trainer import train

    result = train(cfg)
    if os.environ.get("RANK", "0") != "0":  # under torchrun, process 0 reports for the job
        return
    typer.echo(result.summary("trained", "model"))


@app.command("generate")
def generate_cmd(
    model: Annotated[Path, typer.Option("--model", help="Model directory (a finished `murmur train` run).")],
    prompt: Annotated[str | None, typer.Argument(help="Start of the post (read from stdin when left out).")] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Most new tokens per sample.")] = 128,
    temperature: Annotated[float, typer.Option(help="0 = greedy; higher = more varied.")] = 0.8,
    top_k: Annotated[int, typer.Option("--top-k", help="Sample among the k most likely tokens (0 = all).")] = 0,
    top_p: Annotated[float, typer.Option("--top-p", help="Nucleus sampling: smallest set with this probability.")] = 1.0,
    seed: Annotated[int | None, typer.Option(help="Seed for reproducible samples.")] = None,
    num: Annotated[int, typer.Option("-n", "--num", help="Number of samples.")] = 1,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
) -> None:
    """Continue a prompt as a post with a trained model (stops at the end of the post)."""
    from murmur.generate import run_generate

    if prompt is None:
        prompt = "" if sys.stdin.isatty() else sys.stdin.read()
    for i, text in enumerate(run_generate(model, prompt, max_tokens=max_tokens, temperature=temperature, top_k=top_k,
                                          top_p=top_p, seed=seed, num=num, device=device)):
        if num > 1:
            typer.echo(f"--- sample {i + 1}")
        typer.echo(text)


@app.command("plot")
def plot_cmd(
    run_dir: Annotated[Path, typer.Argument(help="Run directory with metrics.jsonl.")],
    out: Annotated[Path | None, typer.Option("-o", "--out", help="PNG to write (default: RUN_DIR/training.png).")] = None,
) -> None:
    """Draw train/val loss and throughput curves of a training run to a PNG."""
    from murmur.plot import plot_run

    typer.echo(str(plot_run(run_dir, out)))


# ---------------------------------------------------------------- serve
@app.command("serve")
def serve_cmd(
    model: Annotated[Path, typer.Option("--model", help="Model directory (model.safetensors, config.json, tokenizer/).")],
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="MURMUR_API_KEY",
                                                help="Require 'Authorization: Bearer KEY' on /v1 routes.")] = None,
    max_batch: Annotated[int, typer.Option(help="Requests generated at once (KV cache rows).")] = 32,
    max_queue: Annotated[int, typer.Option(help="Requests allowed to wait for a row before HTTP 429.")] = 256,
    max_body_mb: Annotated[float, typer.Option("--max-body-mb", help="Largest request body in MiB (HTTP 413 above).")
                           ] = 8.0,
    ads_config: Annotated[Path | None, typer.Option("--ads-config", help="TOML of AdsConfig knobs: serve /v1/ads "
                                                                         "(posts, audiences, database, pctr, logs).")
                          ] = None,
    index: Annotated[Path | None, typer.Option("--index", help="Search index directory: serve /v1/search, "
                                                               "/v1/posts, /v1/embeddings, /v1/answers, /search/ "
                                                               "and the search_posts tool in chat.")] = None,
    embedder: Annotated[Path | None, typer.Option("--embedder", help="Embedder for the index (default: the one it "
                                                                     "was built with).")] = None,
    trends_config: Annotated[Path | None, typer.Option("--trends-config", help="TOML of TrendConfig knobs for "
                                                       "/v1/trends (configs/trends.toml; with --index).")] = None,
) -> None:
    """Serve a model: OpenAI-compatible API (/v1/chat/completions, /v1/completions), web chat at /."""
    from murmur.errors import InputError
    from murmur.serve.app import serve

    if not max_body_mb > 0:
        raise InputError(f"must be positive (got {max_body_mb})", field="--max-body-mb")
    if trends_config is not None and index is None:
        raise InputError("trends come from a search index: give --index too", field="--trends-config")
    routers = []
    if ads_config is not None:
        from murmur import config as cfgmod
        from murmur.ads.router import build_router as ads_router
        from murmur.ads.service import AdsConfig, AdsService

        routers.append(ads_router(AdsService(cfgmod.load(AdsConfig, ads_config, []))))
    pages, tools = {}, []
    if ads_config is not None:
        from murmur.ads.router import WEB_DIR as ADS_WEB

        pages["/ads"] = ADS_WEB
    if index is not None:
        from murmur.search.features import server_features

        trends_cfg = None
        if trends_config is not None:
            from murmur import config as cfgmod
            from murmur.search.trends import TrendConfig

            trends_cfg = cfgmod.load(TrendConfig, trends_config).check()
        search = server_features(index, embedder, trends=trends_cfg)
        routers += search.routers
        pages.update(search.pages)
        tools += search.tools
    serve(model, host=host, port=port, api_key=api_key, max_batch=max_batch, max_queue=max_queue,
          max_body_bytes=int(max_body_mb * 2**20), routers=routers, pages=pages or None, tools=tools)


@app.command("ask")
def ask_cmd(
    index_dir: Annotated[Path, typer.Argument(help="Search index directory (murmur search build).")],
    question: Annotated[str, typer.Argument(help="The question.")],
    model: Annotated[Path, typer.Option("--model", help="Model run directory (a chat model).")],
    k: Annotated[int, typer.Option(help="Posts to retrieve and cite (1 to 10).")] = 5,
    lang: Annotated[str | None, typer.Option(help="Only posts in this language.")] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Longest answer in tokens.")] = 160,
    seed: Annotated[int | None, typer.Option(help="Sampling seed.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print {answer, citations, usage} as JSON.")] = False,
) -> None:
    """Answer a question from the posts in an index, citing them as [1], [2]."""
    import json as _json

    from murmur.engine import Engine
    from murmur.search.answer import Answerer, check_request
    from murmur.search.index import SearchIndex
    from murmur.serve.app import check_model_dir

    body = {"question": question, "k": k, "max_tokens": max_tokens, "seed": seed, "lang": lang}
    req = check_request({key: v for key, v in body.items() if v is not None})
    check_model_dir(model)
    engine = Engine.from_run_dir(model).start()
    try:
        with SearchIndex(index_dir, writable=False) as ix:
            out = Answerer(ix).answer(engine, req)
    finally:
        engine.stop()
    if as_json:
        typer.echo(_json.dumps(out, ensure_ascii=False))
        return
    typer.echo(out["answer"] or "(no answer)")
    for c in out["citations"]:
        typer.echo(f"[{c['n']}] @{c['author_id']} {c['created_at']} {c['post_id']}: {c['text']}")


@app.command("trends")
def trends_cmd(
    index_dir: Annotated[Path, typer.Argument(help="Search index directory (murmur search index).")],
    window: Annotated[str | None, typer.Option(help="The latest window: 30m, 1h, 6h, 1d (1 minute to 7 days; "
                                                    "default: the config's, 1h).")] = None,
    k: Annotated[int | None, typer.Option("--k", help="Most trends to show (1 to 20; default: the config's, 5).")
                 ] = None,
    lang: Annotated[str | None, typer.Option(help="Only posts in this language.")] = None,
    at: Annotated[str | None, typer.Option(help="End of the window, ISO time (default: the newest post).")] = None,
    model: Annotated[Path | None, typer.Option("--model", help="Chat model run directory: each trend gets a "
                                                                "summary citing its posts.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the HTTP API's JSON object.")] = False,
    config: Annotated[Path | None, typer.Option("--config", help="TOML file of TrendConfig knobs "
                                                                 "(configs/trends.toml).")] = None,
    knobs: Annotated[bool, typer.Option("--knobs", help="List every config knob with its default and exit.")] = False,
    overrides: Overrides = None,
) -> None:
    """Terms and hashtags posted far above their usual rate in the latest window, grouped into stories."""
    import json as _json

    from murmur import config as cfgmod
    from murmur.search.index import SearchIndex
    from murmur.search.trends import TrendConfig, Trends, check_query

    if knobs:
        typer.echo(cfgmod.knobs_text(TrendConfig))
        return
    cfg = cfgmod.load(TrendConfig, config, given(overrides, window=window, k=k)).check()
    check_query(cfg.window, cfg.k, lang, at)  # before the model loads
    engine = None
    if model is not None:
        from murmur.engine import Engine
        from murmur.serve.app import check_model_dir

        check_model_dir(model)
        engine = Engine.from_run_dir(model).start()
    try:
        with SearchIndex(index_dir, writable=False) as ix:
            out = Trends(ix, cfg).report(lang=lang, at=at, engine=engine)
    finally:
        if engine is not None:
            engine.stop()
    if as_json:
        typer.echo(_json.dumps(out, ensure_ascii=False))
        return
    typer.echo(f"trends {out['since'][:16]} .. {out['until'][:16]} ({out['window_posts']} posts in the window, "
               f"{out['baseline_posts']} before it)")
    if not out["data"]:
        typer.echo("nothing is trending")
    for i, t in enumerate(out["data"], 1):
        terms = ", ".join(f"{x['term']} {x['posts']}" for x in t["terms"])
        typer.echo(f"{i}. {t['label']}  score {t['score']}  {t['posts']} posts  [{t['lang']}]  {terms}")
        if t["summary"]:
            typer.echo(f"   {t['summary']}")
        for c in t["citations"] or [dict(e, n="-") for e in t["examples"][:2]]:
            typer.echo(f"   [{c['n']}] {c['post_id']} {c['text'][:100]}")


@app.command("draft")
def draft_cmd(
    index_dir: Annotated[Path, typer.Argument(help="Search index directory (murmur search index).")],
    model: Annotated[Path, typer.Option("--model", help="Model run directory.")],
    kind: Annotated[str, typer.Option(help="post or reply.")] = "post",
    reply_to: Annotated[str | None, typer.Option("--reply-to", help="Id of the post replied to (a reply).")] = None,
    topic: Annotated[str | None, typer.Option(help="What the post is about (a post needs one).")] = None,
    lang: Annotated[str | None, typer.Option(help="Language code (default: the voice's, the parent's or the "
                                                  "topic's).")] = None,
    voice: Annotated[str | None, typer.Option(help="Write like this account (its recent posts).")] = None,
    n: Annotated[int, typer.Option("-n", help="Variants wanted (1 to 16).")] = 4,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the HTTP API's JSON object.")] = False,
) -> None:
    """Draft posts or replies: variants within 280 characters (links 23), in the language, without personal
    data and not near-duplicates of indexed posts, best model score first."""
    import json as _json

    from murmur.search.drafts import Drafter, check_request
    from murmur.search.index import SearchIndex

    body = {"kind": kind, "reply_to": reply_to, "topic": topic, "lang": lang, "voice": voice, "n": n, "seed": seed}
    req = check_request({key: v for key, v in body.items() if v is not None})
    from murmur.engine import Engine
    from murmur.serve.app import check_model_dir

    with SearchIndex(index_dir, writable=False) as ix:
        drafter = Drafter(ix)
        drafter.resolve(req)  # unknown reply_to or voice: before the model loads
        check_model_dir(model)
        engine = Engine.from_run_dir(model)
        out = drafter.draft(engine, req)
    if as_json:
        typer.echo(_json.dumps(out, ensure_ascii=False))
        return
    for i, d in enumerate(out["data"], 1):
        typer.echo(f"{i}. ({d['score']:.3f}) {d['text']}")
    dropped = ", ".join(f"{k} {v}" for k, v in out["filtered"].items() if v)
    typer.echo(f"{len(out['data'])} of {out['requested']} asked, from {out['candidates']} candidates"
               + (f"; dropped: {dropped}" if dropped else ""))


# ---------------------------------------------------------------- demo
@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option("--out", help="Working directory for every stage's outputs.")] = Path("demo"),
    users: Annotated[int, typer.Option(help="Accounts in the demo world.")] = 3000,
    seed: Annotated[int, typer.Option(help="Seed for the world and every stage.")] = 0,
    workers: Annotated[int, typer.Option(help="Worker processes for ingest, clean and tokenize.")] = 2,
    train_steps: Annotated[int | None, typer.Option(help="Pretraining steps (default: configs/tiny-cpu.toml).")] = None,
    sft_steps: Annotated[int | None, typer.Option(help="Fine-tuning steps (default: configs/sft-tiny-cpu.toml).")] = None,
    embed_steps: Annotated[int | None, typer.Option(help="Embedder training steps (default: "
                                                         "configs/embed-tiny-cpu.toml); 0 = none, the search "
                                                         "index uses the packaged all-MiniLM-L6-v2.")] = None,
    serve: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve the chat model at the end.")] = True,
    port: Annotated[int, typer.Option(help="Port for the server at the end.")] = 8000,
) -> None:
    """The main job: world -> ingest -> clean -> tokenizer -> shards -> pretrain -> embedder -> search index ->
    ads -> SFT -> export -> serve."""
    from murmur.demo import run_demo

    run_demo(out, users=users, seed=seed, workers=workers, train_steps=train_steps, sft_steps=sft_steps,
             serve=serve, port=port, embed_steps=embed_steps)


# ---------------------------------------------------------------- chat: conversations, fine-tuning, export
@app.command("sft-data")
def sft_data_cmd(
    src: Annotated[Path, typer.Argument(help="Clean posts Parquet (`murmur data clean`).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Conversation JSONL to write.")] = Path("conversations.jsonl"),
    seed: Annotated[int | None, typer.Option(help="Seed for every choice; the same posts and seed give the same "
                                                  "file (overrides the config's seed).")] = None,
    instructions: Annotated[int | None, typer.Option(help="Instruction/answer conversations to write "
                                                          "(overrides the config's instructions).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML file of ConversationDataConfig knobs.")] = None,
    ad_copy: Annotated[Path | None, typer.Option("--ad-copy", help="An ads world (`murmur ads world`): add its "
                                                 "ad-copy conversations (brief + audience -> copy).")] = None,
    overrides: Overrides = None,
) -> None:
    """Make chat conversations (OpenAI messages JSONL) from reply threads and templated instructions."""
    from murmur import config as cfgmod
    from murmur.chat.data import ConversationDataConfig, build_conversations

    cfg = cfgmod.load(ConversationDataConfig, config, given(overrides, seed=seed, instructions=instructions))
    if ad_copy is not None and not (ad_copy / "ads.parquet").is_file():
        from murmur.errors import InputError

        raise InputError("not an ads world (no ads.parquet); write one with `murmur ads world`", path=ad_copy)
    typer.echo(build_conversations(src, out, cfg).describe())
    if ad_copy is not None:
        from murmur.ads.copy import add_copy_conversations

        typer.echo(f"  ad copy: {add_copy_conversations(out, ad_copy, cfg.seed):,} conversations added")


@app.command("sft")
def sft_cmd(
    model: Annotated[Path | None, typer.Option("--model", help="Pretrained model directory (a finished run).")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Conversation JSONL (`murmur sft-data`).")] = None,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Run directory for the fine-tuned model.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML file of SFTConfig knobs (configs/sft-*.toml).")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="Config overrides, key=value (e.g. steps=100 optim.lr=1e-4).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the newest checkpoint in the out directory.")] = False,
    knobs: Annotated[bool, typer.Option("--knobs", help="List every config knob with its default and exit.")] = False,
) -> None:
    """Fine-tune a pretrained model on conversations (loss on assistant turns); writes a chat model."""
    from murmur import config as cfgmod
    from murmur.chat.sft import SFTConfig

    if knobs:
        typer.echo(cfgmod.knobs_text(SFTConfig))
        return
    cfg = cfgmod.load(SFTConfig, config, given([*(overrides or []), *(["resume=true"] if resume else [])],
                                               model=model, data=data, out=out))
    from murmur.chat.sft import run_sft

    result = run_sft(cfg)
    if os.environ.get("RANK", "0") != "0":  # under torchrun, process 0 reports for the job
        return
    typer.echo(result.summary("fine-tuned", "chat model"))


@export_app.command("hf")
def export_hf_cmd(
    run_dir: Annotated[Path, typer.Argument(help="Model directory (a finished `murmur train` or `murmur sft` run).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Hugging Face folder to write.")],
    dtype: Annotated[str, typer.Option(help="Weight dtype: float32, bfloat16 or float16.")] = "float32",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier output of this command there "
                                                                 "(never anything murmur did not write).")] = False,
) -> None:
    """Write a Hugging Face LlamaForCausalLM folder (transformers, `vllm serve`, llama.cpp conversion)."""
    from murmur.export import export_hf

    typer.echo(f"Hugging Face model written to {export_hf(run_dir, out, dtype, overwrite=overwrite)}")


@export_app.command("gguf")
def export_gguf_cmd(
    run_dir: Annotated[Path, typer.Argument(help="Model directory (a finished `murmur train` or `murmur sft` run).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="GGUF file to write (e.g. model.gguf).")],
    dtype: Annotated[str, typer.Option(help="Weight type: f32, f16 or q8_0.")] = "f16",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing GGUF file there "
                                                                 "(never any other file).")] = False,
) -> None:
    """Write one GGUF file for llama.cpp, Ollama and LM Studio (no conversion step, no patch)."""
    from murmur.export_gguf import export_gguf

    typer.echo(f"GGUF model written to {export_gguf(run_dir, out, dtype, overwrite=overwrite)}")


# ---------------------------------------------------------------- cluster planner
@app.command("plan")
def plan_cmd(
    model: Annotated[str | None, typer.Option("--model", help="Model preset (1b, 8b, 70b...); shape fields as overrides.")] = None,
    tokens: Annotated[str | None, typer.Option("--tokens", help="Training tokens, e.g. 15T, 2e12.")] = None,
    gpu: Annotated[str | None, typer.Option("--gpu", help="A100-40GB, A100-80GB, H100 or H200 (any case).")] = None,
    gpus: Annotated[int | None, typer.Option("--gpus", help="Number of GPUs.")] = None,
    interconnect: Annotated[str | None, typer.Option(help="default, ib-4x200, ib-8x200 or ib-8x400.")] = None,
    seq_len: Annotated[int | None, typer.Option("--seq-len", help="Tokens per sequence.")] = None,
    batch_tokens: Annotated[str | None, typer.Option("--batch-tokens", help="Global batch in tokens, e.g. 4M.")] = None,
    price: Annotated[float | None, typer.Option("--price", help="Dollars per GPU-hour.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    config: Annotated[Path | None, typer.Option("--config", help="TOML file of PlanConfig knobs.")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="PlanConfig overrides, key=value (e.g. dim=12288 "
                                                                "n_layers=96 overlap=0.5); --knobs lists them.")] = None,
    knobs: Annotated[bool, typer.Option("--knobs", help="List every planner knob with its default and exit.")] = False,
) -> None:
    """Plan a training run on a cluster: layout, memory per GPU, step time, MFU, days, cost, failures, goodput."""
    import json

    from murmur import config as cfgmod
    from murmur.plan import PlanConfig, parse_count, plan, print_plan

    if knobs:
        typer.echo(cfgmod.knobs_text(PlanConfig))
        return
    cfg = cfgmod.load(PlanConfig, config, given(overrides, model=model, gpu=gpu, gpus=gpus, interconnect=interconnect,
                                                seq_len=seq_len, price_per_gpu_hour=price,
                                                tokens=parse_count(tokens) if tokens else None,
                                                batch_tokens=parse_count(batch_tokens) if batch_tokens else None))
    result = plan(cfg)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        print_plan(result)


def main() -> None:
    """The ``murmur`` entry point; a torchrun worker leaves through :func:`murmur.train.parallel.exit_worker`."""
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        _main()
        return
    try:
        _main()
        code = 0
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
    from murmur.train.parallel import exit_worker

    exit_worker(code)


def _main() -> None:
    from murmur.io import Terminated, cleanup_on_signals, received_signal

    cleanup_on_signals()
    try:
        app()
    except MurmurError as e:
        print(f"murmur: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as e:
        print("murmur: interrupted", file=sys.stderr)
        sys.exit(128 + e.signum if isinstance(e, Terminated) else 130)
    except SystemExit as e:  # typer turns an interrupt inside a command into exit status 130
        signum = received_signal()
        if signum is not None or e.code == 130:
            print("murmur: interrupted" + (f" ({signal_name(signum)})" if signum else ""), file=sys.stderr)
            sys.exit(128 + signum if signum else 130)
        raise


def signal_name(signum: int) -> str:
    import signal

    return signal.Signals(signum).name


if __name__ == "__main__":
    main()
