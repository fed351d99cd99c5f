"""The ``murmur`` command line: one typer app; each command is a few lines over the library.

Errors a user can act on (``MurmurError``) print as one line and exit with status 2.
Heavy imports happen inside the commands so ``murmur --help`` stays instant.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from murmur.errors import MurmurError

app = typer.Typer(help="murmur: a social network's own language model, from raw posts to a served assistant.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Posts in, training corpus out: ingest, clean, tokenize.", no_args_is_help=True)
tokenizer_app = typer.Typer(help="Train and evaluate the byte-level BPE tokenizer.", no_args_is_help=True)
world_app = typer.Typer(help="The demo social network (synthetic, deterministic from a seed).", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(tokenizer_app, name="tokenizer")
app.add_typer(world_app, name="world")

Overrides = Annotated[list[str] | None, typer.Argument(help="Config overrides, key=value (e.g. users=5000).")]


# ---------------------------------------------------------------- world
@world_app.command("generate")
def world_generate(
    out: Annotated[Path, typer.Option("-o", "--out", help="Output directory for the world.")],
    users: Annotated[int, typer.Option(help="Number of accounts.")] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same world.")] = 0,
    config: Annotated[Path | None, typer.Option("--config", help="TOML file of WorldConfig knobs.")] = None,
    overrides: Overrides = None,
) -> None:
    """Generate a synthetic social network: posts in X archive and API v2 formats, plus ground truth."""
    from murmur import config as cfgmod
    from murmur.data.world import WorldConfig, generate_world

    cfg = cfgmod.load(WorldConfig, config, [f"users={users}", f"seed={seed}", *(overrides or [])])
    summary = generate_world(out, cfg)
    typer.echo(summary.describe())


# ---------------------------------------------------------------- data
@data_app.command("ingest")
def data_ingest(
    sources: Annotated[list[str], typer.Argument(help="Files, directories, globs or archive zips.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output Parquet file of posts.")],
    fmt: Annotated[str, typer.Option("--format", help="auto, x-archive, x-api, csv, jsonl, parquet or text.")] = "auto",
    map_: Annotated[str, typer.Option("--map", help="Column mapping for generic formats, e.g. id=tweet_id,author=user.")] = "",
    workers: Annotated[int, typer.Option(help="Reader processes.")] = 1,
) -> None:
    """Read raw posts (X archive, X API v2, CSV, JSONL, Parquet, text; plain/.gz/.zst) into one schema."""
    from murmur.data.sources import ingest, parse_mapping

    stats = ingest(sources, out, fmt=fmt, mapping=parse_mapping(map_), workers=workers)
    typer.echo(stats.describe())


@data_app.command("clean")
def data_clean(
    src: Annotated[Path, typer.Argument(help="Posts Parquet from `murmur data ingest`.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output Parquet of kept posts.")],
    stats: Annotated[Path | None, typer.Option(help="Where to write the drop counts (default: stats.json beside --out).")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes (output is identical for any number).")] = 1,
    config: Annotated[Path | None, typer.Option("--config", help="TOML file of CleanConfig knobs.")] = None,
    overrides: Overrides = None,
) -> None:
    """Normalise, scrub PII, identify language, filter spam and remove exact and near duplicates."""
    from murmur import config as cfgmod
    from murmur.data.clean import CleanConfig, clean

    cfg = cfgmod.load(CleanConfig, config, overrides or [])
    result = clean(src, out, cfg, workers=workers, stats_path=stats)
    result.print_table()


@data_app.command("tokenize")
def data_tokenize(
    src: Annotated[Path, typer.Argument(help="Clean posts Parquet.")],
    tokenizer: Annotated[Path, typer.Option("--tokenizer", help="Tokenizer directory.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output shard directory.")],
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    config: Annotated[Path | None, typer.Option("--config", help="TOML file of ShardConfig knobs.")] = None,
    overrides: Overrides = None,
) -> None:
    """Tokenize posts into train/val token shards (split by a stable hash of post_id)."""
    from murmur import config as cfgmod
    from murmur.data.shards import ShardConfig, tokenize_to_shards

    cfg = cfgmod.load(ShardConfig, config, overrides or [])
    manifest = tokenize_to_shards(src, tokenizer, out, cfg, workers=workers)
    typer.echo(manifest.describe())


# ---------------------------------------------------------------- tokenizer
@tokenizer_app.command("train")
def tokenizer_train(
    src: Annotated[Path, typer.Argument(help="Clean posts Parquet file.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output tokenizer directory.")],
    vocab_size: Annotated[int, typer.Option(help="Vocabulary size, special tokens included.")] = 8192,
    config: Annotated[Path | None, typer.Option("--config", help="TOML file of TokenizerConfig knobs.")] = None,
    overrides: Overrides = None,
) -> None:
    """Train a byte-level BPE tokenizer with murmur's reserved special tokens."""
    from murmur import config as cfgmod
    from murmur.tokenizer import TokenizerConfig, train_tokenizer

    cfg = cfgmod.load(TokenizerConfig, config, [f"vocab_size={vocab_size}", *(overrides or [])])
    tok = train_tokenizer([src], out, cfg)
    typer.echo(f"tokenizer with {tok.vocab_size:,} tokens written to {out}")


@tokenizer_app.command("eval")
def tokenizer_eval(
    tokenizer: Annotated[Path, typer.Argument(help="Tokenizer directory.")],
    src: Annotated[Path, typer.Argument(help="Posts Parquet to measure on (held-out posts are used).")],
) -> None:
    """Report bytes per token on held-out posts, per language."""
    from murmur.tokenizer import eval_tokenizer, print_eval

    print_eval(eval_tokenizer(tokenizer, src))


# ---------------------------------------------------------------- demo
@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option("--out", help="Working directory for every stage's outputs.")] = Path("demo"),
    users: Annotated[int, typer.Option(help="Accounts in the demo world.")] = 3000,
    seed: Annotated[int, typer.Option(help="Seed for the world and every stage.")] = 0,
) -> None:
    """The main job: world -> ingest -> clean -> tokenizer -> shards, with a closing summary."""
    from murmur.demo import run_demo

    run_demo(out, users=users, seed=seed)


def main() -> None:
    try:
        app()
    except MurmurError as e:
        print(f"murmur: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("murmur: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
