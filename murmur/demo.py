"""The main job, end to end on embedded defaults: the one command a new user runs first.

world -> ingest -> clean -> tokenizer -> shards -> pretrain (tiny model, CPU) -> murmur's own embedder
(contrastive fine-tuning of the pretrained model) -> search index -> ads -> chat data -> SFT -> Hugging Face
export -> serve. Every stage is the same library call its CLI command makes, and every
output stays in the demo directory (``demo/``) so it can be inspected or rerun alone:

    demo/world/  posts.parquet  clean.parquet  stats.json  tokenizer/  shards/
    demo/pretrain/  demo/embed/  demo/search/  demo/ads/  conversations.jsonl  demo/chat/  demo/hf/  summary.json
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.table import Table

from murmur import config as cfgmod
from murmur.errors import ConfigError
from murmur.progress import console, format_duration, log

CONFIGS = Path(__file__).resolve().parent / "configs"
DEMO_QUERIES = ["marathon training", "receta de cocina", "#MachineLearning"]
DEMO_PROMPTS = ["Just finished", "Mi receta favorita", "Big game tonight", "New blog post about"]


@dataclass
class StageTimes:
    """Seconds spent in each stage, in order."""

    seconds: dict[str, float] = field(default_factory=dict)

    def run(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        log(f"[bold]== {name}[/bold]" if console.is_terminal else f"== {name}")
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        self.seconds[name] = time.perf_counter() - t0
        return out


def _config_file(name: str) -> Path:
    path = CONFIGS / name
    if not path.is_file():
        raise ConfigError(f"{path}: demo config not found (run the demo from a checkout of the repository)")
    return path


def run_demo(out: Path, users: int = 3000, seed: int = 0, workers: int = 2, train_steps: int | None = None,
             sft_steps: int | None = None, serve: bool = True, port: int = 8000, embed_steps: int | None = None) -> dict:
    """Run every stage into ``out``, print a closing summary, then serve the chat model.

    ``train_steps`` / ``sft_steps`` / ``embed_steps`` override the demo configs' step counts (tests use a
    few); ``embed_steps=0`` trains no embedder and indexes with the packaged all-MiniLM-L6-v2 instead;
    ``serve=False`` stops after the summary instead of starting the server.
    """
    from murmur.chat.data import ConversationDataConfig, build_conversations
    from murmur.chat.sft import SFTConfig, sft
    from murmur.data.clean import CleanConfig, clean
    from murmur.data.shards import ShardConfig, tokenize_to_shards
    from murmur.data.sources import ingest
    from murmur.engine import SamplingParams, generate, post_prompt
    from murmur.export import export_hf
    from murmur.modeldir import load_model
    from murmur.plot import plot_run
    from murmur.tokenizer import TokenizerConfig, eval_tokenizer, train_tokenizer
    from murmur.train.config import TrainConfig
    from murmur.train.data import unigram_bits_per_byte
    from murmur.train.trainer import train
    from murmur.world.generate import WorldConfig, generate_world

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t = StageTimes()

    # ---- data: posts in, training corpus out
    t.run("generate world", generate_world, out / "world", replace(WorldConfig(), users=users, seed=seed))
    ingest_stats = t.run("ingest", ingest, [str(out / "world" / "archives"), str(out / "world" / "api")],
                         out / "posts.parquet", workers=workers)
    cleaned = t.run("clean", clean, out / "posts.parquet", out / "clean.parquet", CleanConfig(),
                    workers=workers, stats_path=out / "stats.json")
    tok = t.run("train tokenizer", train_tokenizer, [out / "clean.parquet"], out / "tokenizer",
                replace(TokenizerConfig(), seed=seed), overwrite=True)  # the demo reruns into its own folder
    manifest = t.run("tokenize", tokenize_to_shards, out / "clean.parquet", out / "tokenizer", out / "shards",
                     ShardConfig(), workers=workers, overwrite=True)
    tok_eval = eval_tokenizer(out / "tokenizer", out / "clean.parquet")

    # ---- pretraining: the tiny model on CPU
    overrides = [f"out={out / 'pretrain'}", f"data.shards={out / 'shards'}", f"data.tokenizer={out / 'tokenizer'}",
                 f"seed={seed}", "resume=false", "overwrite=true"]  # the demo reruns into its own folder
    if train_steps is not None:
        overrides += [f"steps={train_steps}", f"eval.every={max(1, train_steps)}",
                      f"checkpoint.every={max(1, train_steps)}"]
    train_cfg = cfgmod.load(TrainConfig, _config_file("tiny-cpu.toml"), overrides)
    trained = t.run("pretrain", train, train_cfg)
    curves = plot_run(out / "pretrain")
    unigram = unigram_bits_per_byte(out / "shards", out / "tokenizer")
    model, tokenizer, _ = load_model(out / "pretrain")
    posts = generate(model, tokenizer, [post_prompt(tokenizer, p) for p in DEMO_PROMPTS],
                     [SamplingParams(max_tokens=40, temperature=0.8, top_k=50, seed=seed + i)
                      for i in range(len(DEMO_PROMPTS))], fit=True)
    samples = [p + c.text for p, c in zip(DEMO_PROMPTS, posts, strict=True)]
    del model

    # ---- search and ads: murmur's own embedder from the pretrained model, the index over it, ads on its vectors
    embedder = _embed_stage(t, out, seed, embed_steps)
    search_hits = _search_stage(t, out, embedder)
    ads = t.run("ads: audiences, campaigns, A/B simulation", _ads_stage, out, seed)

    # ---- chat: conversations, fine-tuning, export
    conv = t.run("chat data", build_conversations, out / "clean.parquet", out / "conversations.jsonl",
                 replace(ConversationDataConfig(), seed=seed))
    from murmur.ads.copy import add_copy_conversations

    if (out / "ads" / "world-ads" / "ads.parquet").is_file():
        conv.by_kind["ad_copy"] = add_copy_conversations(out / "conversations.jsonl", out / "ads" / "world-ads", seed)
        conv.conversations += conv.by_kind["ad_copy"]
    sft_overrides = [f"seed={seed}", "overwrite=true"] + ([f"steps={sft_steps}", f"eval.every={max(1, sft_steps)}",
                                         f"checkpoint.every={max(1, sft_steps)}"] if sft_steps else [])
    sft_cfg = cfgmod.load(SFTConfig, _config_file("sft-tiny-cpu.toml"), sft_overrides)
    tuned = t.run("fine-tune (SFT)", sft, out / "pretrain", out / "conversations.jsonl", out / "chat", sft_cfg)
    t.run("export to Hugging Face", export_hf, out / "chat", out / "hf", overwrite=True)

    summary = {
        "posts_in": ingest_stats.posts,
        "kept": cleaned.kept,
        "dropped_by_reason": cleaned.dropped_by_reason,
        "vocab_size": tok.vocab_size,
        "train_tokens": manifest.train_tokens,
        "val_tokens": manifest.val_tokens,
        "bytes_per_token": tok_eval["overall"]["bytes_per_token"],
        "pretrain_steps": trained.steps,
        "val_loss": trained.val_loss,
        "val_bits_per_byte": trained.val_bpb,
        "unigram_bits_per_byte": unigram,
        "train_tokens_per_s": trained.tokens_per_s,
        "training_curves": str(curves),
        "samples": samples,
        "conversations": conv.conversations,
        "sft_val_loss": tuned.val_loss,
        "embedder": embedder,
        "search": search_hits,
        "trends": _trends_now(out),
        "ads": ads,
        "stage_seconds": t.seconds,
    }
    _print_summary(summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    if serve:
        from murmur.search.features import server_features
        from murmur.serve.app import serve as serve_model

        log(f"the chat model is in {out / 'chat'} (Hugging Face copy in {out / 'hf'}); search at /search/, "
            "cited answers at /v1/answers, trends at /v1/trends and in the chat page's panel, and the chat "
            "searches posts itself; Ctrl-C stops the server")
        from murmur.ads.demo import demo_ads_config
        from murmur.ads.router import WEB_DIR as ADS_WEB
        from murmur.ads.router import build_router as ads_router
        from murmur.ads.service import AdsService

        search = server_features(out / "search")
        routers, pages = list(search.routers), dict(search.pages)
        if "skipped" not in ads:
            routers.append(ads_router(AdsService(demo_ads_config(out / "ads", out / "clean.parquet", out / "search"))))
            pages["/ads"] = ADS_WEB
            log("the ads studio is at /ads/ (the demo's audiences and campaigns)")
        serve_model(out / "chat", port=port, routers=routers, pages=pages, tools=search.tools)
    return summary


def _embed_stage(t: StageTimes, out: Path, seed: int, steps: int | None) -> dict:
    """Fine-tune the pretrained model into murmur's own embedder (configs/embed-tiny-cpu.toml) in ``out/embed``;
    ``steps=0``: none (the index then uses the packaged all-MiniLM-L6-v2)."""
    from murmur.embed.train import EmbedConfig, run_embed_train
    from murmur.search.embed import DEFAULT_NAME

    if steps == 0:
        return {"name": DEFAULT_NAME, "dir": None}
    overrides = [f"out={out / 'embed'}", f"model={out / 'pretrain'}", f"data={out / 'clean.parquet'}",
                 f"seed={seed}", "resume=false", "overwrite=true"]  # the demo reruns into its own folder
    if steps is not None:
        overrides += [f"steps={steps}", f"eval.every={max(1, steps)}", f"checkpoint.every={max(1, steps)}"]
    cfg = cfgmod.load(EmbedConfig, _config_file("embed-tiny-cpu.toml"), overrides)
    result = t.run("train embedder", run_embed_train, cfg)
    return {"name": f"murmur-{Path(cfg.out).name}", "dir": str(out / "embed"), "steps": result.steps,
            "val_loss": result.val_loss}


def _search_stage(t: StageTimes, out: Path, embedder: dict) -> dict[str, list[str]]:
    """Index the clean posts (BM25 + the embedder's vectors) and run the demo queries."""
    from murmur.search.embed import load_embedder
    from murmur.search.index import SearchIndex, build_index
    from murmur.search.retrieve import make_request

    t.run("search index", build_index, out / "clean.parquet", out / "search", load_embedder(embedder["dir"]),
          overwrite=True)
    with SearchIndex(out / "search", writable=False) as index:
        return {q: [r["text"] for r in index.search(make_request(q, k=3))] for q in DEMO_QUERIES}


def _trends_now(out: Path) -> list[dict]:
    """The stories trending in the world's last hour (its last story is breaking news)."""
    from murmur.search.index import SearchIndex
    from murmur.search.trends import Trends

    with SearchIndex(out / "search", writable=False) as index:
        return [{"label": t["label"], "posts": t["posts"], "terms": [x["term"] for x in t["terms"]]}
                for t in Trends(index).report("1h", k=3)["data"]]


def _ads_stage(out: Path, seed: int) -> dict:
    """Interest audiences on the search index's vectors, campaigns, and murmur vs random delivery."""
    from murmur.ads.demo import run_ads_demo
    from murmur.errors import InputError

    try:
        return run_ads_demo(out / "world", out / "clean.parquet", out / "search", out / "ads", seed=seed, log=log)
    except InputError as e:  # a world too small for audiences of 100 users
        log(f"ads: skipped ({e})")
        return {"skipped": str(e)}


def _print_summary(s: dict) -> None:
    table = Table(title="murmur demo", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("posts in", f"{s['posts_in']:,}")
    table.add_row("posts kept", f"{s['kept']:,} ({100 * s['kept'] / max(s['posts_in'], 1):.1f}%)")
    for reason, n in sorted(s["dropped_by_reason"].items(), key=lambda kv: -kv[1]):
        if n:
            table.add_row(f"  dropped: {reason}", f"{n:,}")
    table.add_row("tokenizer vocabulary", f"{s['vocab_size']:,}")
    table.add_row("tokens (train / val)", f"{s['train_tokens']:,} / {s['val_tokens']:,}")
    table.add_row("bytes per token (held-out)", f"{s['bytes_per_token']:.2f}")
    table.add_row("pretraining steps", f"{s['pretrain_steps']:,} ({s['train_tokens_per_s']:,.0f} tokens/s)")
    if s["val_bits_per_byte"] is not None:
        table.add_row("val bits per byte: model", f"{s['val_bits_per_byte']:.3f}")
    table.add_row("val bits per byte: unigram baseline", f"{s['unigram_bits_per_byte']:.3f}")
    table.add_row("training curves", s["training_curves"])
    emb = s.get("embedder", {})
    if emb.get("dir"):
        loss = f", val loss {emb['val_loss']:.3f}" if emb.get("val_loss") is not None else ""
        table.add_row("search embedder: murmur's own", f"{emb['steps']:,} steps{loss}")
    elif emb:
        table.add_row("search embedder", f"{emb['name']} (packaged)")
    if s["sft_val_loss"] is not None:
        table.add_row("chat fine-tune val loss", f"{s['sft_val_loss']:.3f}")
    if s.get("ads", {}).get("skipped"):
        table.add_row("ads", "skipped: world too small for audiences of 100")
    elif s.get("ads"):
        a = s["ads"]
        table.add_row("ads audiences (interest, 100+ users)", f"{a['audiences']}")
        table.add_row("ads: CTR murmur / random", f"{a['ctr']['murmur']:.2%} / {a['ctr']['random']:.2%}")
        table.add_row(f"ads lift in clicks ({a['campaigns']} campaigns, {a['seeds']} seeds)",
                      f"{a['lift']['clicks'][0]:+.0%} ± {a['lift']['clicks'][1]:.0%}")
        table.add_row("ads campaign-days within 10% of budget", f"{a['delivery_ok']:.0%}")
    table.add_row("time", format_duration(sum(s["stage_seconds"].values())))
    console.print(table)
    for q, texts in s.get("search", {}).items():
        console.print(f"search {q!r} (hybrid, top {len(texts)}):", markup=False, highlight=False)
        for text in texts:
            console.print(f"  • {text[:110]}", markup=False, highlight=False)
    for t in s.get("trends", []):
        console.print(f"trending now: {t['label']} ({t['posts']} posts in the last hour: {', '.join(t['terms'][:5])})",
                      markup=False, highlight=False)
    console.print("[bold]generated posts[/bold]" if console.is_terminal else "generated posts:")
    for text in s["samples"]:
        console.print(f"  • {text}", markup=False, highlight=False)
