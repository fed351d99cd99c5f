"""The training config: one frozen dataclass per section, loaded from TOML plus ``key=value`` overrides.

This module imports no torch, so ``murmur --help`` and config checks stay instant. A run writes the
resolved config to ``<out>/config.toml``; loading that file again repeats the run exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from murmur.config import knob, optional_section
from murmur.modelconfig import ModelConfig

# The [model] section: a preset plus any ModelConfig field (declared once, in murmur.modelconfig).
ModelSection = optional_section(
    ModelConfig, "ModelSection", "A named model shape plus field overrides (unset fields keep the preset's value).",
    unset="the preset's", preset=(str, knob("tiny", "Named shape from murmur.modelconfig.PRESETS (tiny, 20m, 124m, 350m, 1b, 8b, 70b).")))


@dataclass(frozen=True)
class DataSection:
    shards: str = knob("", "Token shard directory (from `murmur data tokenize`).")
    tokenizer: str = knob("", "Tokenizer directory (samples, bits per byte, copied into the final model).")
    seq_len: int = knob(256, "Tokens per training window (at most the model's max_seq_len).")


@dataclass(frozen=True)
class OptimSection:
    lr: float = knob(3e-4, "Peak learning rate.")
    betas: list[float] = knob([0.9, 0.95], "AdamW betas.")
    eps: float = knob(1e-8, "AdamW epsilon.")
    weight_decay: float = knob(0.1, "Decoupled weight decay, applied to matrices (2-D parameters) only.")
    grad_clip: float = knob(1.0, "Clip the global gradient norm to this (0 = off).")


@dataclass(frozen=True)
class ScheduleSection:
    kind: Literal["cosine", "wsd"] = knob("cosine", "cosine (warmup + cosine decay) or wsd (warmup-stable-decay).")
    warmup: int = knob(100, "Linear warmup steps.")
    min_lr_ratio: float = knob(0.1, "Final learning rate as a fraction of the peak.")
    decay_frac: float = knob(0.2, "wsd only: fraction of the steps spent in the final linear decay.")


@dataclass(frozen=True)
class BatchSection:
    """The batch size, said one way for every task: rows per pass and tokens per optimizer step."""

    micro_batch: int = knob(8, "Rows (windows or packed rows of seq_len tokens) per forward/backward pass on "
                               "one process.")
    tokens_per_step: int = knob(0, "Target tokens per optimizer step over all processes (0 = one micro-batch "
                                   "per process); sets gradient accumulation.")


@dataclass(frozen=True)
class EvalSection:
    every: int = knob(100, "Evaluate validation loss every N steps (0 = only at the end).")
    batches: int = knob(20, "Micro-batches of validation windows per evaluation.")
    samples: int = knob(2, "Posts sampled from <|doc|> and logged at each evaluation (0 = none).")
    sample_tokens: int = knob(48, "Maximum tokens per sampled post.")
    temperature: float = knob(0.8, "Sampling temperature for the logged posts.")


@dataclass(frozen=True)
class CheckpointSection:
    every: int = knob(500, "Save a training checkpoint every N steps (0 = only at the end and on signals).")
    keep_last: int = knob(2, "Keep the newest K checkpoints (older ones are deleted).")
    async_save: bool = knob(False, "Write checkpoints in a background thread (dcp.async_save) while training "
                                   "goes on; the state is first copied to CPU memory.")


@dataclass(frozen=True)
class GuardSection:
    """Skip bad steps, roll back after repeated ones (see docs/training.md, "Loss spikes and NaN")."""

    enabled: bool = knob(True, "Check each step's loss (averaged over all processes) before the optimizer step "
                               "and skip the step when it is NaN/inf or a spike.")
    spike_factor: float = knob(2.0, "A loss above this many times the running mean is a spike (0 = only "
                                    "NaN/inf count).")
    window: int = knob(50, "Accepted steps in the running mean (spikes are looked for once 10 of them, or all "
                           "of a smaller window, exist).")
    max_skips: int = knob(3, "Bad steps in a row before rolling back to the newest checkpoint and moving the "
                             "data past the offending batches.")
    max_rollbacks: int = knob(3, "Rollbacks in one run before it stops as diverged.")


@dataclass(frozen=True)
class ParallelConfig:
    """The ``[parallel]`` section: how the model is spread over the processes of a run.

    Defined here (no torch) so configs load instantly; :mod:`murmur.train.parallel` applies it.
    """

    dp_replicate: int = knob(1, "Data-parallel replicas (DDP, or the replicate dimension of HSDP; across nodes).")
    dp_shard: int = knob(-1, "FSDP shard group size (-1 = the rest of the world after dp_replicate and tp).")
    tp: int = knob(1, "Tensor-parallel degree (keep within one node: it all-reduces every layer).")
    pp: int = knob(1, "Pipeline stages: the blocks split into pp consecutive stages, one per group of "
                      "dp_replicate * dp_shard * tp processes (1 = no pipeline).")
    pp_schedule: Literal["gpipe", "1f1b", "interleaved_1f1b", "zero_bubble"] = knob(
        "1f1b", "Pipeline schedule (torch.distributed.pipelining): gpipe, 1f1b, interleaved_1f1b or "
                "zero_bubble (interleaved, backward split into input and weight gradients).")
    pp_virtual_stages: int = knob(1, "Stages per pipeline rank for the interleaved schedules (>= 2 there).")
    pp_microbatches: int = knob(0, "Micro-batches per step through the pipeline (0 = pp, or the gradient "
                                   "accumulation count when larger).")
    fsdp_reshard_after_forward: Literal["default", "always", "never"] = knob(
        "default", "Free gathered parameters after forward: default = every block but the last (saves memory "
                   "at the cost of a second all-gather in backward), always, or never (ZeRO-2 like).")
    activation_checkpointing: Literal["none", "selective", "full"] = knob(
        "none", "Recompute activations in backward: none, selective (keep matmul and attention outputs, "
                "recompute norms and pointwise ops), or full (keep only each block's input).")
    param_dtype: Literal["auto", "bf16", "fp32"] = knob(
        "auto", "Compute dtype of parameters under FSDP (auto = the run's `dtype`).")
    reduce_dtype: Literal["auto", "bf16", "fp32"] = knob("auto", "Dtype of gradient reduction (auto = fp32).")
    loss_parallel: bool = knob(True, "With tp > 1, keep logits sharded over the vocabulary and compute the "
                                     "cross-entropy in parallel (no all-gather of [batch, seq, vocab] logits).")
    collective_timeout_s: float = knob(600.0, "Seconds a collective may wait before the job fails (hung rank).")
    backend: Literal["auto", "nccl", "gloo"] = knob("auto", "Process group backend (auto = nccl on CUDA, else gloo).")


@dataclass(frozen=True)
class RunConfig:
    """What every training task shares: the loop, optimizer, batch, evaluation, checkpoints, guard and
    layout. A task's config adds its own model and data knobs (:class:`TrainConfig` for pretraining,
    ``murmur.chat.sft.SFTConfig`` for chat fine-tuning); see docs/training.md, "Tasks"."""

    out: str = knob("runs/run", "Run directory: config, metrics, checkpoints and the final model.")
    steps: int = knob(1000, "Optimizer steps to train for (ignored when epochs > 0).")
    epochs: float = knob(0.0, "If > 0, train this many passes over the training data instead of `steps`.")
    seed: int = knob(0, "Seed for the weights, the data order and the samples.")
    dtype: Literal["auto", "bf16", "fp32"] = knob("auto", "Compute dtype: auto = bf16 on CUDA and bf16-capable "
                                                          "CPUs, else fp32 (weights and AdamW stay fp32).")
    compile: bool = knob(False, "torch.compile the model (one graph in one process, block by block when "
                                "sharded): slow to start, faster steps.")
    device: str = knob("auto", "auto, cpu, cuda or cuda:N.")
    log_every: int = knob(10, "Log a line (and a metrics.jsonl record) every N steps.")
    resume: bool = knob(False, "Continue from the newest complete checkpoint in `out` (start from scratch when "
                               "there is none: safe to pass on every launch and restart).")
    overwrite: bool = knob(False, "Replace an earlier murmur run of the same task in `out` (never a folder that holds "
                                  "anything a run did not write, or one of the run's inputs).")
    meta_init: Literal["auto", "on", "off"] = knob(
        "auto", "Build the model on the meta device and initialise only this process's shards (on), or build "
                "it whole on every process (off); auto = on when the model is sharded and over 500M parameters.")
    tensorboard: bool = knob(False, "Also write TensorBoard events to <out>/tb (needs the tensorboard package).")
    optim: OptimSection = knob(OptimSection(), "AdamW settings.")
    schedule: ScheduleSection = knob(ScheduleSection(), "Learning-rate schedule.")
    batch: BatchSection = knob(BatchSection(), "Batch size and gradient accumulation.")
    eval: EvalSection = knob(EvalSection(), "Validation and samples.")
    checkpoint: CheckpointSection = knob(CheckpointSection(), "Training checkpoints.")
    guard: GuardSection = knob(GuardSection(), "Loss spike and NaN guard.")
    parallel: ParallelConfig = knob(ParallelConfig(), "Data, fully sharded and tensor parallelism (torchrun).")


@dataclass(frozen=True)
class TrainConfig(RunConfig):
    """Pretraining: a model of a named shape, from random weights, on token shards; see docs/training.md."""

    model: ModelSection = knob(ModelSection(), "Model shape.")  # type: ignore[valid-type]
    data: DataSection = knob(DataSection(), "Training data.")


def grad_accum_steps(batch: BatchSection, seq_len: int, dp_size: int = 1) -> int:
    """Micro-batches per process per step so one step sees about ``batch.tokens_per_step`` tokens.

    ``dp_size`` is the number of data-parallel processes (tensor-parallel ranks share their rows).
    """
    per_pass = batch.micro_batch * seq_len * dp_size
    if batch.tokens_per_step <= 0:
        return 1
    return max(1, math.ceil(batch.tokens_per_step / per_pass))
