"""``murmur embed ...``: train murmur's own text embedder (thin over :mod:`murmur.embed.train`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

embed_app = typer.Typer(help="murmur's own text embedder: contrastive fine-tuning of a pretrained model.",
                        no_args_is_help=True)


@embed_app.command("train")
def train_cmd(
    model: Annotated[Path | None, typer.Option("--model", help="Pretrained model directory (a finished run).")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Clean posts Parquet (`murmur data clean`).")] = None,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Run directory for the embedder.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML file of EmbedConfig knobs "
                                                                 "(configs/embed-tiny-cpu.toml).")] = None,
    pooling: Annotated[str | None, typer.Option(help="mean | last | eos (overrides the config's).")] = None,
    temperature: Annotated[float | None, typer.Option(help="InfoNCE temperature (overrides the config's).")] = None,
    steps: Annotated[int | None, typer.Option(help="Optimizer steps (overrides the config's).")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="Config overrides, key=value (e.g. steps=100 "
                                                               "optim.lr=1e-4 pairs=[\"hashtag\",\"reply\"]).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the newest checkpoint in the out "
                                                          "directory.")] = False,
    knobs: Annotated[bool, typer.Option("--knobs", help="List every config knob with its default and exit.")] = False,
) -> None:
    """Fine-tune a pretrained model into a text embedder on pairs from posts; writes an embedder directory."""
    from murmur import config as cfgmod
    from murmur.embed.train import EmbedConfig, run_embed_train

    if knobs:
        typer.echo(cfgmod.knobs_text(EmbedConfig))
        return
    cfg = cfgmod.load(EmbedConfig, config, cfgmod.given([*(overrides or []), *(["resume=true"] if resume else [])],
                                                        model=model, data=data, out=out, pooling=pooling,
                                                        temperature=temperature, steps=steps))
    result = run_embed_train(cfg)
    if os.environ.get("RANK", "0") != "0":  # under torchrun, process 0 reports for the job
        return
    said = result.summary("trained", "embedder")
    if not result.interrupted:
        said += f" (murmur search index POSTS --embedder {result.run_dir} -o INDEX)"
    typer.echo(said)
