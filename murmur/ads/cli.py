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
