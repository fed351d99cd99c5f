"""The one training loop: read a config and a task, train, evaluate, checkpoint, write the final model.

What varies between pretraining and fine-tuning is a *task* (:mod:`murmur.train.task`): where the
model starts (fresh seeded weights, or a model directory's), the data source (the micro-batches of
global batch ``index`` for this process, a pure function of (seed, index)) and the loss function.
Pretraining is :class:`murmur.train.pretrain.PretrainTask`, chat fine-tuning
:class:`murmur.train.packing.PackedTask` (built by ``murmur.chat.sft``). Everything else is this
class, the same for every task: processes and layouts, optimizer and schedule, loss guard,
checkpoints (async, exact resume, SIGTERM save), evaluation, metrics, TensorBoard, the final model.

One step, top to bottom (:meth:`Trainer.train_step`): set the scheduled learning rate; for each of
this process's micro-batches of the step's global batch, forward the task's loss and backward it
times the micro-batch's share of the step's objective (only the last micro-batch reduces gradients
across processes); clip the global gradient norm; ask the loss guard; AdamW step.

The same code runs one process and a torchrun job: :func:`parallel.init_distributed` joins the job
(or returns a one-process world), :func:`parallel.build_mesh` lays the processes out, the model is
built (whole, or on the meta device and materialized shard by shard) and
:func:`parallel.parallelize` applies TP, activation checkpointing, compile and FSDP2/HSDP or DDP.
Process 0 logs and writes metrics; every process writes its own checkpoint shards.

Everything is checked before any compute starts (config, data, tokenizer, context length,
layout, checkpoint shape), so a mistake costs one line, not a crashed run. The data a step reads
depends only on (seed, index) with index = step + the guard's data offset, so that pair is the
checkpoint's "sampler position".

SIGINT / SIGTERM (Ctrl-C, Slurm preemption, torchrun shutdown) finish the current step, save a
checkpoint and return; a second SIGINT aborts at once. A collective that times out or loses its
peer becomes a one-line :class:`MurmurError` naming this process and what it was doing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from murmur import config as cfgmod
from murmur.errors import CheckpointError, ConfigError, MurmurError
from murmur.model import Transformer, flops_per_token, num_params, preset
from murmur.progress import format_duration, log
from murmur.runtime import StopOnSignal, resolve_device, resolve_dtype
from murmur.train import checkpoint as ckpt
from murmur.train.config import ParallelConfig, RunConfig, TrainConfig, grad_accum_steps
from murmur.train.guard import LossGuard, rollback_offset
from murmur.train.metrics import MetricsLogger, mfu, peak_flops, raise_cpu_peak, truncate_metrics
from murmur.train.optim import build_optimizer, lr_at, set_lr
from murmur.train.pretrain import PretrainTask, model_config
from murmur.train.task import BatchPlan, Task

CONFIG_NAME = "config.toml"
METRICS_NAME = "metrics.jsonl"
META_INIT_PARAMS = 500_000_000  # meta_init = auto builds sharded models above this on the meta device


@dataclass
class TrainResult:
    """What a run achieved (the demo prints it next to the unigram baseline)."""

    run_dir: Path
    steps: int
    tokens: int
    train_loss: float | None
    val_loss: float | None
    val_bpb: float | None
    tokens_per_s: float
    mfu: float | None
    interrupted: bool = False
    first_loss: float | None = None  # the first logged training loss of this run
    epochs: float = 0.0  # passes over the training data at the end
    rank: int = 0  # the process that returned it (0 writes what follows a run)

    def summary(self, done: str = "trained", product: str = "model") -> str:
        """The closing line every training command prints: where an interrupted run's checkpoint is,
        or what a finished one did (``done`` steps, epochs, losses) and where its ``product`` lies."""
        if self.interrupted:
            return f"interrupted at step {self.steps}; checkpoint saved in {self.run_dir}/checkpoints"
        epochs = f" ({self.epochs:.2f} epochs)" if self.epochs else ""
        figures = []
        if self.train_loss is not None:
            first = f"{self.first_loss:.4f} -> " if self.first_loss is not None else ""
            figures.append(f"train loss {first}{self.train_loss:.4f}")
        if self.val_loss is not None:
            figures.append(f"val loss {self.val_loss:.4f}")
        if self.val_bpb is not None:
            figures.append(f"{self.val_bpb:.3f} bits/byte")
        said = f": {', '.join(figures)}" if figures else ""
        return f"{done} {self.steps} steps{epochs}{said}; {product} in {self.run_dir}"


# ---------------------------------------------------------------- device, dtype, layout
def run_parallel_config(cfg: RunConfig, dtype: torch.dtype) -> ParallelConfig:
    """The ``[parallel]`` section as the trainer applies it: ``param_dtype = auto`` follows the run's
    ``dtype`` (so FSDP casts, or :func:`forward_context` autocasts, exactly once)."""
    p = cfg.parallel
    param = p.param_dtype if p.param_dtype != "auto" else ("bf16" if dtype == torch.bfloat16 else "fp32")
    return dataclasses.replace(p, param_dtype=param)


def join_job(cfg: RunConfig) -> tuple[Any, torch.device]:
    """(World, device): join the torchrun job (process group with ``parallel.collective_timeout_s``)
    or, without torchrun's environment, a one-process world on ``cfg.device``."""
    from murmur.train.parallel import init_distributed

    pcfg = cfg.parallel
    if cfg.device == "cpu" and pcfg.backend == "auto":
        pcfg = dataclasses.replace(pcfg, backend="gloo")
    multi = "RANK" in os.environ or "WORLD_SIZE" in os.environ
    if not multi:
        device = resolve_device(cfg.device)
        return init_distributed(pcfg), device
    if cfg.device.startswith("cuda:"):
        raise ConfigError(f"device={cfg.device!r} names one GPU, but this is a torchrun job where each process "
                          "takes cuda:LOCAL_RANK; use device=auto or cuda")
    if cfg.device == "cuda":
        resolve_device("cuda")  # fails clearly without CUDA
    world = init_distributed(pcfg)
    return world, torch.device("cpu") if cfg.device == "cpu" else world.device


def _any_rank(flag: bool, device: torch.device) -> bool:
    """True on every process when it is true on any (so all stop at the same step)."""
    if dist.is_available() and dist.is_initialized():
        t = torch.tensor([int(flag)], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())
    return flag


def _all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t


def _plain(t: torch.Tensor) -> torch.Tensor:
    """A plain tensor from a loss that may be a replicated DTensor (loss parallelism); no host sync."""
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def collective_error(e: BaseException, rank: int, doing: str, timeout_s: float) -> MurmurError | None:
    """A one-line error for a failed collective (timeout or lost peer), or None for other errors.

    A hung or dead process shows up on the others as a collective that never completes: after
    ``parallel.collective_timeout_s`` the backend raises, and this names who noticed and where.
    """
    if not (dist.is_available() and dist.is_initialized()) or not isinstance(e, RuntimeError):
        return None
    text = str(e)
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(e).__name__)
    low = text.lower()
    if "timed out" in low or "timeout" in low:
        return MurmurError(f"rank {rank}: collective timed out after {timeout_s:g}s during {doing}: another "
                           f"process is hung or dead (see its log); raise parallel.collective_timeout_s if it "
                           f"is only slow [{first[:160]}]")
    if any(k in low for k in ("connection closed", "connection reset", "broken pipe", "peer", "socket")):
        return MurmurError(f"rank {rank}: lost contact with another process during {doing}: it probably died "
                           f"(see its log) [{first[:160]}]")
    return None


# ---------------------------------------------------------------- the trainer
class Trainer:
    """A training run: ``cfg`` (the loop's knobs) and a ``task`` (what it trains on; the pretraining
    task of ``cfg`` when not given). Construction validates everything; :meth:`run` trains.

    The variation point is the task (:mod:`murmur.train.task`): its model config and starting
    weights, its data source (``batches(index, plan)``, a pure function of (seed, index)) and its
    loss. Fine-tuning, and any later task, is another task on this same loop.
    """

    def __init__(self, cfg: RunConfig, task: Task | None = None):
        from murmur.train.parallel import mesh_shape

        self.cfg = cfg
        self.out = Path(cfg.out)
        self._check_numbers()
        if task is None:
            if not isinstance(cfg, TrainConfig):
                raise ConfigError(f"{type(cfg).__name__} needs its task (the pretraining task reads a TrainConfig)")
            task = PretrainTask(cfg)
        self.task = task
        self.tokenizer_dir, self.tokenizer = task.tokenizer_dir, task.tokenizer
        self.model_cfg, self.seq_len = task.model_cfg, task.seq_len
        if self.seq_len > self.model_cfg.max_seq_len:
            raise ConfigError(f"seq_len ({self.seq_len}) is longer than the model's max_seq_len "
                              f"({self.model_cfg.max_seq_len})")
        self._owns_process_group = not (dist.is_available() and dist.is_initialized())
        self.proc, self.device = join_job(cfg)
        self.rank, self.world = self.proc.rank, self.proc.world_size
        self.dtype = resolve_dtype(cfg.dtype, self.device)
        self.pcfg = run_parallel_config(cfg, self.dtype)
        self.layout = mesh_shape(self.pcfg, self.world)
        # Tensor-parallel ranks (consecutive, tp innermost) share their data-parallel rank and rows, and
        # so do the stages of one pipeline (pp outermost): every stage reads its pipeline's rows.
        tp, pp = self.layout["tp"], self.layout["pp"]
        self.dp_size = self.world // (tp * pp)
        self.dp_rank = (self.rank // tp) % self.dp_size
        self.accum = grad_accum_steps(cfg.batch, self.seq_len, self.dp_size)
        self.pp_microbatches = self._check_pipeline(task) if pp > 1 else 0
        self.global_batch = cfg.batch.micro_batch * self.accum * self.dp_size
        self.plan = BatchPlan(self.global_batch, cfg.batch.micro_batch, self.dp_rank, self.dp_size)
        self.steps = cfg.steps if cfg.epochs <= 0 else \
            max(1, math.ceil(cfg.epochs * task.rows_per_epoch() / self.global_batch))
        self.val = task.eval_batches(self.plan, cfg.eval.batches)
        self._replace_out = False
        if not cfg.resume:
            self._claim_out()
        self.resume_from = None if self._replace_out else self._find_resume()  # an old run to replace
        if cfg.resume and self.resume_from is None:  # nothing to continue: a new run in that folder
            self._claim_out()
        self.flops_per_token = flops_per_token(self.model_cfg, self.seq_len)
        self._doing = "setup"  # what the process is doing, for collective errors
        self.pending: ckpt.PendingCheckpoint | None = None  # a checkpoint being written in the background

    def _claim_out(self) -> None:
        """Check the run folder by the directory rule before anything is written (every process), then
        let process 0 replace an earlier run (``overwrite``) and mark the folder when the run begins."""
        data = getattr(self.cfg, "data", "")
        inputs = [p for p in (self.tokenizer_dir, getattr(self.cfg, "model", ""), getattr(data, "shards", data))
                  if isinstance(p, (str, Path)) and str(p)]
        replace = ckpt.check_run_dir(self.out, self.task.name, self.cfg.overwrite, self.cfg.resume, inputs)
        self._replace_out = replace  # process 0 acts on it when the run starts writing

    def _log(self, message: str) -> None:
        """A log line from process 0 only (every process runs the same loop)."""
        if self.rank == 0:
            log(message)

    # -- checks (no compute)
    def _check_numbers(self) -> None:
        c = self.cfg
        cfgmod.require_at_least(1, [("steps", c.steps), ("batch.micro_batch", c.batch.micro_batch),
                                    ("log_every", c.log_every)])
        cfgmod.require_at_least(0, [("eval.every", c.eval.every), ("checkpoint.every", c.checkpoint.every),
                                    ("schedule.warmup", c.schedule.warmup), ("eval.samples", c.eval.samples),
                                    ("eval.batches", c.eval.batches), ("epochs", c.epochs)])
        if c.optim.lr <= 0:
            raise ConfigError(f"optim.lr must be positive (got {c.optim.lr})")
        if len(c.optim.betas) != 2:
            raise ConfigError(f"optim.betas needs two numbers (got {c.optim.betas})")
        g = c.guard
        if g.window < 1 or g.max_skips < 1 or g.max_rollbacks < 0 or g.spike_factor < 0:
            raise ConfigError(f"guard.window ({g.window}) and guard.max_skips ({g.max_skips}) must be >= 1, "
                              f"guard.max_rollbacks ({g.max_rollbacks}) and guard.spike_factor "
                              f"({g.spike_factor}) >= 0")
        if c.parallel.collective_timeout_s <= 0:
            raise ConfigError(f"parallel.collective_timeout_s must be positive (got {c.parallel.collective_timeout_s})")

    def _check_pipeline(self, task: Task) -> int:
        """Micro-batches per step through the pipeline; refuses what a pipeline cannot run."""
        c, p = self.cfg, self.pcfg
        if not isinstance(task, PretrainTask):
            raise ConfigError(f"parallel.pp > 1 runs pretraining only: {task.name}'s token-weighted loss spans "
                              "micro-batches the last stage sees one at a time; use parallel.pp = 1")
        if c.meta_init == "on":
            raise ConfigError("meta_init = on with parallel.pp > 1: a pipeline builds the whole model and keeps "
                              "its stages; use meta_init = auto or off")
        n = p.pp_microbatches or max(p.pp, self.accum)
        rows, val_rows = c.batch.micro_batch * self.accum, c.batch.micro_batch * max(c.eval.batches, 1)
        for what, r in ((f"{rows} rows per pipeline per step", rows), (f"{val_rows} validation rows", val_rows)):
            if r % n:
                raise ConfigError(f"{what} do not split into {n} equal pipeline micro-batches "
                                  "(parallel.pp_microbatches); change batch.micro_batch, eval.batches or it")
        return n

    def _find_resume(self) -> Path | None:
        """The checkpoint to resume from (checked against this model's shape and data), or None."""
        latest, state = ckpt.find_resume(self.out, self.cfg.resume, self.model_cfg, self.task.start(), self._log)
        saved, now = state.get("data"), self.task.fingerprint()
        if latest is not None and saved is not None and saved != now:
            raise CheckpointError(f"{latest}: the training data changed since this checkpoint ({saved} then, "
                                  f"{now} now); resume with the same data or start a new out directory")
        return latest

    # -- setup (compute starts here)
    def _setup(self) -> None:
        cfg = self.cfg
        from murmur.train.parallel import build_mesh, data_parallel_rank, materialize, parallelize

        torch.manual_seed(cfg.seed)
        if self.device.type == "cuda":
            torch.set_float32_matmul_precision("high")  # TF32 for whatever still runs in fp32
        self.mesh = build_mesh(self.pcfg, self.proc)
        assert data_parallel_rank(self.mesh) == (self.dp_rank, self.dp_size)
        self.meta_init = self._use_meta_init()
        # Every process builds the same whole model from the seed (and parallelize keeps its own
        # shards), or, for big sharded models, builds it on the meta device and initialises only
        # its own shards after sharding (not bit-identical to a one-process init, same distribution).
        with torch.device("meta" if self.meta_init else self.device):
            self.model = Transformer(self.model_cfg)
        weights = self.task.initial_weights()
        if weights is not None and not self.meta_init:
            self.model.load_state_dict(weights, strict=False)  # the tied output weight is stored once
        # compile: one process compiles the whole model as one graph (the loss fused in; eval and
        # sampling call the eager module); sharded models compile block by block (FSDP2's hooks
        # sit between blocks), as torchtitan does.
        whole_graph = cfg.compile and self.mesh is None
        self.pipe = None
        if self.layout["pp"] > 1:  # this process keeps its stages (murmur.train.pipeline)
            from murmur.train.pipeline import Pipeline

            self.pipe = Pipeline(self.model, self.mesh, self.pcfg, self.device, self.pp_microbatches, cfg.compile)
            self.model = self.pipe.module
        else:
            parallelize(self.model, self.mesh, self.pcfg, compile=cfg.compile and not whole_graph)
        self.train_module = torch.compile(self.model) if whole_graph else self.model
        if self.meta_init:
            if self.device.type != "cuda" and self.mesh is not None:
                # DTensor's random ops draw each shard from one global stream only on CUDA; elsewhere
                # every process would draw the same numbers for its own shard. Seed each shard apart
                # (replicas of a shard alike, as HSDP needs).
                shard = self.mesh["dp_shard"].get_local_rank() * self.layout["tp"] + self.mesh["tp"].get_local_rank()
                torch.manual_seed(cfg.seed + 1_000_003 * (shard + 1))
            materialize(self.model, self.device)
            if weights is not None:  # every process holds the whole weights; each keeps its shards
                from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

                set_model_state_dict(self.model, weights, options=StateDictOptions(full_state_dict=True,
                                                                                   strict=False))
        del weights
        self.optimizer = build_optimizer(self.model, cfg.optim, self.device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.step = 0
        self.tokens_seen = 0
        self.data_offset = 0  # the batch a step reads is step + data_offset (the guard skips batches)
        self.guard = LossGuard(cfg.guard)
        self._last_saved = -1
        self.pending: ckpt.PendingCheckpoint | None = None
        # DCP's background collectives get a gloo group of their own (never the training group).
        self.ckpt_group = dist.new_group(backend="gloo") \
            if cfg.checkpoint.async_save and self.world > 1 else None
        while self.resume_from is not None:
            try:
                self._load(self.resume_from)
                break
            except CheckpointError as e:  # verified, yet it does not load: the next older one that does
                older = ckpt.newest_verified(self.out, self._log, below=ckpt.checkpoint_step(self.resume_from))
                self._log(f"{e}; " + (f"falling back to {older}" if older else "no older checkpoint to fall back to"))
                if older is None:
                    raise
                self.resume_from = older
        if self.world > 1 and dist.is_initialized():
            dist.barrier()  # every process checked the run folder before process 0 changes it
        if self.rank == 0:
            ckpt.start_run_dir(self.out, self.task.name, self._replace_out)
            cfgmod.dump_toml(dataclasses.replace(cfg, steps=self.steps, epochs=0.0), self.out / CONFIG_NAME)
            if self.resume_from is None:
                (self.out / METRICS_NAME).unlink(missing_ok=True)
            else:
                truncate_metrics(self.out / METRICS_NAME, self.step)
        self.metrics = MetricsLogger(self.out / METRICS_NAME, self.out / "tb" if cfg.tensorboard else None) \
            if self.rank == 0 else None
        self.peak = peak_flops(self.device, self.dtype)

    def _use_meta_init(self) -> bool:
        sharded = self.world > 1 and (self.layout["dp_shard"] > 1 or self.layout["tp"] > 1)
        if self.layout["pp"] > 1:  # each pipeline rank cuts its stages from the whole model
            return False
        if self.cfg.meta_init == "auto":
            return sharded and num_params(self.model_cfg) > META_INIT_PARAMS
        return self.cfg.meta_init == "on"

    def _load(self, path: Path) -> dict[str, Any]:
        """Weights, AdamW state, step, data offset, guard and RNG from a checkpoint (any layout wrote it)."""
        self._doing = f"loading {path}"
        state = ckpt.load_checkpoint(path, self.model, self.optimizer, self.model_cfg)
        self.step = int(state["step"])
        self.tokens_seen = int(state.get("tokens", 0))
        self.data_offset = int(state.get("data_offset", 0))
        self.guard.load_state_dict(state.get("guard", {}))
        self._last_saved = self.step
        ckpt.set_rng_state(state["rng"])
        saved_batch = state.get("sampler", {}).get("global_batch", self.global_batch)
        if saved_batch != self.global_batch:
            self._log(f"warning: the global batch changed from {saved_batch} to {self.global_batch} rows since "
                      f"{path.name}; the data order from here differs from the original run's (keep "
                      "batch.tokens_per_step to resume on another number of processes with the same data)")
        return state

    def _record(self, record: dict[str, Any]) -> None:
        if self.metrics is not None:
            self.metrics.write(record)

    def _describe(self) -> None:
        c, m = self.cfg, self.model_cfg
        n = num_params(m)
        tokens_per_step = self.global_batch * self.seq_len
        start = f"resuming from {self.resume_from} (step {self.step})" if self.resume_from \
            else f"starting {self.task.start()}"
        self._log(
            f"{self.task.name}: {start}; {self.task.describe()}; {n / 1e6:.1f}M params (dim {m.dim}, "
            f"{m.n_layers} layers, vocab {m.vocab_size:,}); {tokens_per_step:,} tokens/step = {self.dp_size} x "
            f"{self.accum} x {c.batch.micro_batch} x {self.seq_len} (~{self._epochs(self.steps):.2f} epochs); "
            f"{self.steps} steps; {self._layout_text()}; {self.device} {str(self.dtype).removeprefix('torch.')}"
            f"{' compiled' if c.compile else ''}; out {self.out}")

    def _epochs(self, step: int) -> float:
        """Passes over the training data after ``step`` steps."""
        return self.task.epochs_at((step + self.data_offset) * self.global_batch)

    def _layout_text(self) -> str:
        if self.world == 1:
            return "1 process"
        r, sh, t = (self.layout[k] for k in ("dp_replicate", "dp_shard", "tp"))
        parts = []
        if self.layout["pp"] > 1:
            parts.append(f"PP x {self.layout['pp']} ({self.pcfg.pp_schedule}, {self.pp_microbatches} micro-batches)")
        if sh > 1 or (r > 1 and t > 1):
            parts.append(f"HSDP {r} x {sh}" if r > 1 else f"FSDP2 x {sh}")
        elif r > 1:
            parts.append(f"DDP x {r}")
        if t > 1:
            parts.append(f"TP x {t}")
        meta = ", meta-device init" if self.meta_init else ""
        return f"{self.world} processes ({' + '.join(parts) or 'replicated'}{meta})"

    # -- one step
    def train_step(self, step: int) -> tuple[torch.Tensor, torch.Tensor, str | None]:
        """One optimizer step at ``step`` on global batch ``step + data_offset``.

        Returns (this process's share of the step's loss, global grad norm) as tensors, and why the
        loss guard skipped the step (None when the optimizer stepped). Without the guard there is
        no host sync. The shares of all data-parallel processes add up to the step's loss.
        """
        from murmur.train.parallel import clip_grad_norm_, forward_context, gradient_sync, micro_batch_syncs

        cfg = self.cfg
        set_lr(self.optimizer, lr_at(step, self.steps, cfg.optim.lr, cfg.schedule))
        index = step + self.data_offset
        if index in getattr(self.task, "data_changes", ()):  # a curriculum's next pairs: a new loss level
            self.guard.new_data()
        self._doing = f"step {step + 1} (forward/backward: parameter all-gathers, gradient reductions)"
        batches = self.task.batches(index, self.plan)
        loss_sum = torch.zeros((), device=self.device)
        clip_args: dict[str, Any] = {}
        if self.pipe is not None:
            loss_sum = self._pipeline_forward_backward(batches)
            clip_args = {"pp_group": self.pipe.group, "uncounted": self.pipe.uncounted}
        else:
            for i, sync in micro_batch_syncs(len(batches)):
                batch = batches[i].to(self.device)
                # Only the last micro-batch reduces gradients; forward and backward both run inside
                # forward_context (loss parallelism, and bf16 autocast where FSDP does not cast).
                # Data-parallel reduction averages gradients over processes, hence the dp_size.
                with gradient_sync(self.model, sync), forward_context(self.model, self.pcfg, self.device):
                    loss = self.task.loss(self.train_module, batch) * batch.weight
                    (loss * self.dp_size).backward()
                loss_sum += _plain(loss.detach())
        max_norm = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf
        grad_norm = clip_grad_norm_(self.params, max_norm, **clip_args)
        if cfg.guard.enabled:
            self._doing = f"step {step + 1} (loss all-reduce for the guard)"
            global_loss = float(_all_reduce_sum(loss_sum.clone()) / self.layout["tp"])
            reason = self.guard.check(global_loss, float(grad_norm))
            if reason is not None:
                self.optimizer.zero_grad(set_to_none=True)
                return loss_sum, grad_norm, reason
            self.guard.accept(global_loss)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_sum, grad_norm, None

    def _pipeline_forward_backward(self, batches: list[Any]) -> torch.Tensor:
        """Forward and backward of this pipeline's rows through its schedule (the loss on the last
        stage, gradients averaged over the micro-batches, then over data parallelism); returns this
        process's share of the step's loss, as :meth:`train_step` does (every stage holds the loss)."""
        from murmur.train.parallel import forward_context

        tokens = torch.cat([b.tokens for b in batches]).to(self.device)
        labels = torch.cat([b.labels for b in batches]).to(self.device)
        with forward_context(self.pipe.stages[0], self.pcfg, self.device):
            loss = self.pipe.train_step(tokens, labels)
        return loss / (self.dp_size * self.layout["pp"])

    def _skip(self, reason: str) -> None:
        """A step the guard refused: move the data past its batch; roll back after too many in a row."""
        index = self.step + self.data_offset
        self.data_offset += 1
        rollback = self.guard.skip()
        self._log(f"step {self.step + 1}: skipped ({reason}) on data batch {index}; "
                  f"{self.guard.streak} bad step(s) in a row")
        self._record({"kind": "event", "event": "skip", "step": self.step, "data_index": index, "reason": reason})
        if rollback:
            self._rollback(index, reason)

    def _rollback(self, last_bad: int, reason: str) -> None:
        """Reload the newest checkpoint and move the data past the last bad batch (all processes)."""
        self._finish_pending()
        _barrier()
        path = ckpt.newest_verified(self.out, self._log)
        n = self.guard.streak
        if path is None:
            raise MurmurError(f"training diverged: {n} bad steps in a row at step {self.step + 1} ({reason}) and no "
                              "checkpoint to roll back to; lower optim.lr, raise schedule.warmup or set "
                              "checkpoint.every")
        rollbacks, skipped = self.guard.rollbacks + 1, self.guard.skipped
        if rollbacks > self.cfg.guard.max_rollbacks:
            raise MurmurError(f"training diverged: {n} bad steps in a row at step {self.step + 1} ({reason}) after "
                              f"{rollbacks - 1} rollback(s) (guard.max_rollbacks); lower optim.lr or raise "
                              "schedule.warmup")
        at = self.step
        self._load(path)
        self.guard.rollbacks, self.guard.skipped, self.guard.streak = rollbacks, skipped, 0
        self.data_offset = rollback_offset(self.step, last_bad)
        if self.metrics is not None:  # records after the checkpoint describe steps that no longer exist
            self.metrics.close()
            truncate_metrics(self.out / METRICS_NAME, self.step)
            self.metrics = MetricsLogger(self.out / METRICS_NAME, self.out / "tb" if self.cfg.tensorboard else None)
        self._log(f"rolled back from step {at} to {path.name} after {n} bad steps; the data moves on to batch "
                  f"{self.step + self.data_offset} (offset {self.data_offset}); rollback {rollbacks} of at most "
                  f"{self.cfg.guard.max_rollbacks}")
        self._record({"kind": "event", "event": "rollback", "step": self.step, "from_step": at,
                      "data_offset": self.data_offset, "last_bad_batch": last_bad, "reason": reason})

    # -- evaluation
    @torch.no_grad()
    def evaluate(self) -> tuple[float | None, float | None]:
        """(validation loss in nats per target, bits per byte) over the task's fixed validation batches,
        or (None, None) without validation data.

        Each data-parallel process scores its share (the same number of passes on every process);
        the sums are all-reduced (tensor-parallel ranks add identical copies, which cancel in the ratio).
        """
        from murmur.train.parallel import forward_context

        if not self.val:
            return None, None
        self._doing = f"evaluation at step {self.step}"
        self.model.eval()
        total = torch.zeros(2, dtype=torch.float64, device=self.device)
        batches = self.val
        if self.pipe is not None:  # one pass through the schedule: every validation row, equal micro-batches
            batches = [dataclasses.replace(self.val[0], tokens=torch.cat([b.tokens for b in self.val]),
                                           labels=torch.cat([b.labels for b in self.val]))]
        for batch in batches:
            n = self.task.eval_count(batch)
            with forward_context(self.model, self.pcfg, self.device):
                if self.pipe is not None:
                    b = batch.to(self.device)
                    loss = self.pipe.eval_loss(b.tokens, b.labels)
                else:
                    loss = _plain(self.task.loss(self.model, batch.to(self.device)))
            if n:  # the pass runs on every process (a collective when sharded); an empty one adds nothing
                total += torch.stack([loss.double() * n, torch.tensor(float(n), dtype=torch.float64,
                                                                      device=self.device)])
        self.model.train()
        total = _all_reduce_sum(total)
        if float(total[1]) == 0:
            return None, None
        val_loss = float(total[0] / total[1])
        return val_loss, self.task.bits_per_byte(val_loss)

    def samples(self, step: int) -> list[str]:
        """A few posts generated from ``<|doc|>`` by the generation engine (sample i seeded by the run's
        seed, the step and i)."""
        from murmur.engine import SamplingParams, generate
        from murmur.engine.generate import seeded
        from murmur.train.parallel import forward_context

        n = self.cfg.eval.samples
        # Under FSDP/DDP every process runs the same generation (its forward passes are collectives);
        # vocabulary-sharded logits (TP) are not sampled from.
        if n <= 0 or self.layout["tp"] > 1 or self.pipe is not None:
            return []
        self._doing = f"sampling at step {step}"
        params = SamplingParams(max_tokens=self.cfg.eval.sample_tokens, temperature=self.cfg.eval.temperature,
                                top_k=50, seed=self.cfg.seed * 1_000_003 + step, stop_token_ids=[self.tokenizer.doc_id])
        with contextlib.ExitStack() as stack:
            stack.enter_context(forward_context(self.model, self.pcfg, self.device))
            if self.cfg.compile and self.mesh is not None:  # compiled blocks: run the KV-cache path eagerly
                stack.enter_context(torch.compiler.set_stance("force_eager"))
            outs = generate(self.model, self.tokenizer, [[self.tokenizer.doc_id]] * n,
                            [seeded(params, i) for i in range(n)], fit=True)
        return [c.text for c in outs] if self.rank == 0 else []

    def _eval_and_sample(self, step: int) -> tuple[float | None, float | None]:
        val_loss, bpb = self.evaluate()
        if val_loss is not None:
            bpb_text = f" | {bpb:.3f} bits/byte" if bpb is not None else ""
            self._log(f"eval step {step} | val loss {val_loss:.4f}{bpb_text}")
            self._record({"kind": "eval", "step": step, "val_loss": val_loss, "val_bpb": bpb})
        for text in self.samples(step):
            self._log(f"  sample: {text!r}")
            self._record({"kind": "sample", "step": step, "text": text})
        return val_loss, bpb

    def _save(self, step: int) -> None:
        """Checkpoint ``step`` (every process writes its shards); in the background with async_save."""
        self._finish_pending()  # one save in flight at a time
        t = time.perf_counter()
        self._doing = f"checkpoint at step {step}"
        state = {"tokens": self.tokens_seen, "rng": ckpt.rng_state(),
                 "model_config": dataclasses.asdict(self.model_cfg),
                 "scheduler": {"kind": self.cfg.schedule.kind, "lr": self.optimizer.param_groups[0]["lr"],
                               "total_steps": self.steps},
                 "sampler": {"seed": self.cfg.seed, "step": step, "global_batch": self.global_batch},
                 "data": self.task.fingerprint(),
                 "data_offset": self.data_offset, "guard": self.guard.state_dict(),
                 "world": {"processes": self.world, **self.layout},
                 "config": cfgmod.to_dict(self.cfg)}
        self._last_saved = step
        keep = self.cfg.checkpoint.keep_last
        if self.cfg.checkpoint.async_save:
            self.pending = ckpt.async_save_checkpoint(self.out, step, self.model, self.optimizer, state, keep,
                                                      process_group=self.ckpt_group)
            self._log(f"checkpoint step {step}: copied in {time.perf_counter() - t:.1f}s, writing in the background")
            return
        path = ckpt.save_checkpoint(self.out, step, self.model, self.optimizer, state, keep)
        self._log(f"checkpoint {path} ({time.perf_counter() - t:.1f}s)")

    def _finish_pending(self, wait: bool = True) -> None:
        """Complete the background save (marker + rename on process 0) once written; wait unless told not to."""
        if self.pending is None or (not wait and not self.pending.done()):
            return
        t = time.perf_counter()
        path = self.pending.finish()
        self.pending = None
        self._log(f"checkpoint {path} complete" + (f" (waited {time.perf_counter() - t:.1f}s)" if wait else ""))

    # -- the loop
    def _log_interval(self, meter: Meter, grad_norm: torch.Tensor) -> None:
        """The log line and metrics record for the steps since the last one."""
        self._doing = f"step {self.step} (loss all-reduce for the log)"
        loss = float(_all_reduce_sum(meter.loss / meter.steps) / self.layout["tp"])
        if not math.isfinite(loss):
            raise MurmurError(f"training diverged: loss is {loss} at step {self.step}; "
                              "lower optim.lr or raise schedule.warmup")
        tok_s = meter.tokens_per_s()
        achieved = tok_s / self.world * self.flops_per_token
        if self.device.type == "cpu" and self.peak and achieved > self.peak:
            self.peak = raise_cpu_peak(achieved, self.dtype)
        mfu_value = mfu(tok_s / self.world, self.flops_per_token, self.peak)
        lr = self.optimizer.param_groups[0]["lr"]
        eta = (self.steps - self.step) * meter.seconds_per_step()
        mfu_text = f" | MFU {mfu_value:.1%}" if mfu_value is not None else ""
        epoch = self._epochs(self.step)
        self._log(f"step {self.step}/{self.steps} | loss {loss:.4f} | lr {lr:.2e} | grad {float(grad_norm):.3f} | "
                  f"epoch {epoch:.2f} | {tok_s:,.0f} tok/s{mfu_text} | ETA {format_duration(eta)}")
        self._record({"kind": "train", "step": self.step, "loss": loss, "lr": lr, "grad_norm": float(grad_norm),
                      "tokens_per_s": tok_s, "mfu": mfu_value, "tokens": self.tokens_seen, "epoch": epoch,
                      "data_index": self.step - 1 + self.data_offset})
        meter.last_loss = loss
        if meter.first_loss is None:
            meter.first_loss = loss
        meter.reset()

    def run(self) -> TrainResult:
        """Train from the current step to ``steps``; evaluate, checkpoint and export along the way.

        A collective that times out or loses its peer ends the run with a one-line MurmurError.
        """
        try:
            return self._run()
        except RuntimeError as e:
            err = collective_error(e, self.rank, self._doing, self.cfg.parallel.collective_timeout_s)
            if err is None:
                raise
            self.pending = None  # a background save that cannot finish does not count (no marker)
            raise err from None

    def close(self) -> None:
        """Finish a background checkpoint and leave the process group this trainer joined."""
        from murmur.train.parallel import destroy_distributed

        if self.pending is not None:
            self._finish_pending()
        if self._owns_process_group:
            destroy_distributed()

    def _run(self) -> TrainResult:
        cfg = self.cfg
        self.pending = None
        self._setup()
        self._describe()
        meter = Meter(self.global_batch * self.seq_len, torch.zeros((), device=self.device))
        val_loss = bpb = None
        interrupted = False
        try:
            with StopOnSignal() as stop:
                while self.step < self.steps:
                    t0 = time.perf_counter()
                    loss, grad_norm, skipped = self.train_step(self.step)
                    if skipped is not None:
                        rollbacks = self.guard.rollbacks
                        self._skip(skipped)
                        if self.guard.rollbacks != rollbacks:
                            meter.reset()  # the steps since the last log line were rolled back
                        continue
                    self.step += 1
                    self.tokens_seen += meter.tokens_per_step
                    stopping = _any_rank(stop.requested is not None, self.device)
                    log_now = self.step % cfg.log_every == 0 or self.step == self.steps or stopping
                    if log_now and self.device.type == "cuda":
                        torch.cuda.synchronize(self.device)  # the step's time includes its GPU work
                    meter.add(loss, time.perf_counter() - t0)
                    if log_now:
                        self._log_interval(meter, grad_norm)
                    if stopping:
                        self._save(self.step)
                        interrupted = True
                        self._log(f"stopped at step {self.step} ({stop.requested or 'signal'}); "
                                  "continue with --resume")
                        break
                    if self.step < self.steps:
                        if cfg.eval.every and self.step % cfg.eval.every == 0:
                            val_loss, bpb = self._eval_and_sample(self.step)
                        if cfg.checkpoint.every and self.step % cfg.checkpoint.every == 0:
                            self._save(self.step)
                    self._finish_pending(wait=False)
                if not interrupted:
                    val_loss, bpb = self._eval_and_sample(self.step)
                    if self._last_saved != self.step:
                        self._save(self.step)
                    self._doing = "gathering the model to process 0"
                    ckpt.save_inference_model(self.out, self.model, self.model_cfg, self.tokenizer_dir,
                                              self.pipe.full_state() if self.pipe is not None else None)
                    self._log(f"model written to {self.out} (murmur generate --model {self.out})")
                self._finish_pending()
        finally:
            if self.metrics is not None:
                self.metrics.close()
        tok_s = meter.total_tokens_per_s()
        return TrainResult(self.out, self.step, self.tokens_seen, meter.last_loss, val_loss, bpb, tok_s,
                           mfu(tok_s / self.world, self.flops_per_token, self.peak) if tok_s else None, interrupted,
                           meter.first_loss, self._epochs(self.step), self.rank)


@dataclass
class Meter:
    """Loss and time of the steps since the last log line, and over the whole run (training only)."""

    tokens_per_step: int
    loss: torch.Tensor  # summed on the device; read only when logging (no sync per step)
    steps: int = 0
    seconds: float = 0.0
    total_steps: int = 0
    total_seconds: float = 0.0
    last_loss: float | None = None
    first_loss: float | None = None

    def add(self, loss: torch.Tensor, seconds: float) -> None:
        self.loss += loss
        self.steps += 1
        self.seconds += seconds
        self.total_steps += 1
        self.total_seconds += seconds

    def reset(self) -> None:
        self.loss.zero_()
        self.steps, self.seconds = 0, 0.0

    def tokens_per_s(self) -> float:
        return self.tokens_per_step * self.steps / max(self.seconds, 1e-9)

    def seconds_per_step(self) -> float:
        return self.total_seconds / max(self.total_steps, 1)

    def total_tokens_per_s(self) -> float:
        return self.tokens_per_step * self.total_steps / max(self.total_seconds, 1e-9) if self.total_steps else 0.0


def train(cfg: RunConfig, task: Task | None = None) -> TrainResult:
    """Train a model as ``cfg`` says on ``task`` (default: pretraining as ``cfg`` says), resuming when
    ``cfg.resume``; see :class:`Trainer`.

    Under torchrun every process calls this; it joins the job and leaves it at the end.
    """
    trainer = Trainer(cfg, task)
    try:
        return trainer.run()
    finally:
        trainer.close()


def dry_run(cfg: TrainConfig, vocab_size: int | None = None) -> dict[str, Any]:
    """Check a config and size its run without data or a GPU: the model is built on the meta device.

    ``vocab_size`` defaults to the tokenizer's when ``data.tokenizer`` exists, else the preset's.
    """
    if vocab_size is None:
        vocab_size = _dry_run_vocab(cfg)
    mcfg = model_config(cfg, vocab_size)
    with torch.device("meta"):
        model = Transformer(mcfg)
    n = sum(p.numel() for p in model.parameters())
    accum = grad_accum_steps(cfg.batch, cfg.data.seq_len)
    tokens_per_step = cfg.batch.micro_batch * accum * cfg.data.seq_len
    return {"params": n, "model": dataclasses.asdict(mcfg), "grad_accum": accum, "tokens_per_step": tokens_per_step,
            "total_tokens": tokens_per_step * cfg.steps,
            "flops_per_token": flops_per_token(mcfg, cfg.data.seq_len),
            "train_state_bytes": n * 16}  # fp32 weights + grads + two Adam moments


def _dry_run_vocab(cfg: TrainConfig) -> int:
    """The vocabulary a dry run assumes: the tokenizer's if it exists, else the preset's."""
    if cfg.data.tokenizer and Path(cfg.data.tokenizer).is_dir():
        from murmur.tokenizer import load_tokenizer

        return load_tokenizer(cfg.data.tokenizer).vocab_size
    return preset(cfg.model.preset).vocab_size
