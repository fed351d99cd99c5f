"""AdamW with decoupled weight decay on matrices only, and the learning-rate schedules.

Weight decay applies to 2-D parameters (linear weights, embeddings); norms' gains are left alone,
as in nanoGPT and Llama. The fused implementation is used where the device has one (CUDA, and
CPU in recent PyTorch), else the multi-tensor ``foreach`` one.

Schedules are pure functions of the step, so a resumed run follows the same curve.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from murmur.train.config import OptimSection, ScheduleSection


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: 2-D (and higher) parameters with decay, the rest without. Tied weights appear once."""
    decay, no_decay = [], []
    for p in model.parameters():  # parameters() yields each shared tensor once
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: OptimSection, device: torch.device) -> torch.optim.AdamW:
    """AdamW over ``model``'s parameters (fused where supported)."""
    groups = param_groups(model, cfg.weight_decay)
    kwargs = dict(lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)
    if device.type in ("cuda", "cpu"):
        try:
            return torch.optim.AdamW(groups, fused=True, **kwargs)
        except (RuntimeError, TypeError):
            pass
    return torch.optim.AdamW(groups, foreach=True, **kwargs)


def lr_at(step: int, total_steps: int, base_lr: float, cfg: ScheduleSection) -> float:
    """Learning rate for optimizer step ``step`` (0-based) of ``total_steps``.

    cosine: linear warmup to ``base_lr``, then cosine down to ``min_lr_ratio * base_lr`` at the end.
    wsd: linear warmup, constant, then a linear decay over the last ``decay_frac`` of the steps.
    """
    min_lr = base_lr * cfg.min_lr_ratio
    warmup = min(cfg.warmup, max(total_steps - 1, 0))
    if step < warmup:
        return base_lr * (step + 1) / warmup
    if cfg.kind == "cosine":
        span = max(total_steps - warmup, 1)
        progress = min((step - warmup) / span, 1.0)
        return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))
    decay_steps = max(1, round(cfg.decay_frac * total_steps))
    decay_start = max(warmup, total_steps - decay_steps)
    if step < decay_start:
        return base_lr
    progress = min((step - decay_start) / max(total_steps - decay_start, 1), 1.0)
    return base_lr + (min_lr - base_lr) * progress


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
