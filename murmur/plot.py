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
        last = evals[-1]
        label = "val loss" + (f" (last: {last['val_bpb']:.3f} bits/byte)" if last.get("val_bpb") is not None else "")
        ax_loss.plot([r["step"] for r in evals], [r["val_loss"] for r in evals], "o-", label=label, lw=1.5, ms=4)
    ax_loss.set_ylabel("loss (nats/token)")
    ax_loss.set_title(f"{run_dir.name}: training curves")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend()

    ax_speed.plot([r["step"] for r in train], [r["tokens_per_s"] for r in train], color="tab:green", lw=1.2)
    ax_speed.set_ylabel("tokens/s")
    ax_speed.set_xlabel("step")
    ax_speed.grid(alpha=0.3)
    ratios = [100 * r["mfu"] / r["tokens_per_s"] for r in train if r.get("mfu") and r.get("tokens_per_s")]
    if ratios:  # MFU is tokens/s times a constant: show it as a second scale on the same curve
        k = sorted(ratios)[len(ratios) // 2]
        ax_mfu = ax_speed.secondary_yaxis("right", functions=(lambda t: t * k, lambda m: m / k))
        ax_mfu.set_ylabel("MFU %")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out
