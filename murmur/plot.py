"""Training curves from a run's metrics.jsonl: train and validation loss, and throughput, to one PNG."""

from __future__ import annotations

import os
from pathlib import Path

from murmur.errors import InputError
from murmur.io import atomic_path

METRICS = "metrics.jsonl"


def plot_run(run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> Path:
    """Draw loss (train + val) and tokens/s against the step; returns the PNG's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from murmur.train.metrics import read_metrics

    run_dir = Path(run_dir)
    path = run_dir / METRICS
    if not path.is_file():
        raise InputError(f"no {METRICS} here; pass the out directory of a `murmur train` run", run_dir)
    records = read_metrics(path)
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    if not train:
        raise InputError("no training steps logged yet", path)
    out = Path(out) if out else run_dir / "training.png"

    fig, (ax_loss, ax_speed) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, height_ratios=[2, 1])
    ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss", lw=1.2)
    if evals:
        ax_loss.plot([r["step"] for r in evals], [r["val_loss"] for r in evals], "o-", label="val loss", lw=1.5, ms=4)
        bpb = [r for r in evals if r.get("val_bpb") is not None]
        if bpb:
            last = bpb[-1]
            ax_loss.annotate(f"{last['val_bpb']:.3f} bits/byte", (last["step"], last["val_loss"]),
                             textcoords="offset points", xytext=(-10, 10), ha="right", fontsize=9)
    ax_loss.set_ylabel("loss (nats/token)")
    ax_loss.set_title(f"{run_dir.name}: training curves")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend()

    ax_speed.plot([r["step"] for r in train], [r["tokens_per_s"] for r in train], color="tab:green", lw=1.2)
    ax_speed.set_ylabel("tokens/s")
    ax_speed.set_xlabel("step")
    ax_speed.grid(alpha=0.3)
    mfus = [r.get("mfu") for r in train]
    if all(m is not None for m in mfus):
        ax_mfu = ax_speed.twinx()
        ax_mfu.plot([r["step"] for r in train], [100 * m for m in mfus], color="tab:orange", lw=0.8, alpha=0.6)
        ax_mfu.set_ylabel("MFU %", color="tab:orange")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out
