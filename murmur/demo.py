"""The main job, end to end on embedded defaults: the one command a new user runs first.

world -> ingest -> clean -> tokenizer -> shards, then (when the later stages are present)
pretraining, with a closing summary. Every stage is the same library call its CLI command makes,
and every stage's output stays in the demo directory so it can be inspected or rerun alone.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.table import Table

from murmur.progress import console, format_duration, log


@dataclass
class StageTimes:
    """Seconds spent in each stage, in order."""

    seconds: dict[str, float] = field(default_factory=dict)

    def run(self, name: str, fn, *args, **kwargs):
        log(f"[bold]== {name}[/bold]" if console.is_terminal else f"== {name}")
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        self.seconds[name] = time.perf_counter() - t0
        return out


def run_demo(out: Path, users: int = 3000, seed: int = 0, workers: int = 2) -> dict:
    """Run every stage into ``out`` and print a closing summary; returns the summary as a dict."""
    from murmur.data.clean import CleanConfig, clean
    from murmur.data.shards import ShardConfig, tokenize_to_shards
    from murmur.data.sources import ingest
    from murmur.data.world import WorldConfig, generate_world
    from murmur.tokenizer import TokenizerConfig, eval_tokenizer, train_tokenizer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t = StageTimes()
    world_cfg = replace(WorldConfig(), users=users, seed=seed)
    t.run("generate world", generate_world, out / "world", world_cfg)
    ingest_stats = t.run("ingest", ingest, [str(out / "world" / "archives"), str(out / "world" / "api")],
                         out / "posts.parquet", workers=workers)
    clean_result = t.run("clean", clean, out / "posts.parquet", out / "clean.parquet", CleanConfig(),
                         workers=workers, stats_path=out / "stats.json")
    tok = t.run("train tokenizer", train_tokenizer, [out / "clean.parquet"], out / "tokenizer",
                replace(TokenizerConfig(), seed=seed))
    manifest = t.run("tokenize", tokenize_to_shards, out / "clean.parquet", out / "tokenizer", out / "shards",
                     ShardConfig(), workers=workers)
    tok_eval = eval_tokenizer(out / "tokenizer", out / "clean.parquet")

    summary = {
        "posts_in": ingest_stats.posts,
        "kept": clean_result.kept,
        "dropped_by_reason": clean_result.dropped_by_reason,
        "vocab_size": tok.vocab_size,
        "train_tokens": manifest.train_tokens,
        "val_tokens": manifest.val_tokens,
        "bytes_per_token": tok_eval["overall"]["bytes_per_token"],
        "stage_seconds": t.seconds,
    }
    _print_summary(summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _print_summary(s: dict) -> None:
    table = Table(title="murmur demo", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("posts in", f"{s['posts_in']:,}")
    table.add_row("posts kept", f"{s['kept']:,} ({100 * s['kept'] / max(s['posts_in'], 1):.1f}%)")
    for reason, n in sorted(s["dropped_by_reason"].items(), key=lambda kv: -kv[1]):
        table.add_row(f"  dropped: {reason}", f"{n:,}")
    table.add_row("tokenizer vocabulary", f"{s['vocab_size']:,}")
    table.add_row("tokens (train / val)", f"{s['train_tokens']:,} / {s['val_tokens']:,}")
    table.add_row("bytes per token (held-out)", f"{s['bytes_per_token']:.2f}")
    total = sum(s["stage_seconds"].values())
    table.add_row("time", format_duration(total))
    console.print(table)
