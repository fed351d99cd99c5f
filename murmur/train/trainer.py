"""The pretraining loop: read a TrainConfig, train, evaluate, checkpoint, write the final model.

One step, top to bottom (:meth:`Trainer.train_step`): set the scheduled learning rate; for each
micro-batch of this process's rows of the step's global batch, forward under autocast and
backward the loss divided by the accumulation count; clip the global gradient norm; AdamW step.

Everything is checked before any compute starts (config, shards, tokenizer, context length,
checkpoint shape), so a mistake costs one line, not a crashed run. Distribution is applied in one
place (:func:`parallelize`, identity on one process today); the data order depends only on
(seed, step), so the checkpoint's "sampler position" is the step.

SIGINT / SIGTERM (Ctrl-C, Slurm preemption, torchrun shutdown) finish the current step, save a
checkpoint and return; a second SIGINT aborts at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from murmur import config as cfgmod
from murmur.data.shards_format import TokenShards
from murmur.errors import CheckpointError, ConfigError, InputError, MurmurError
from murmur.model import ModelConfig, Transformer, flops_per_token, num_params, preset
from murmur.progress import format_duration, log
from murmur.train import checkpoint as ckpt
from murmur.train.config import TrainConfig, grad_accum_steps
from murmur.train.data import WindowSampler, bits_per_byte, eval_batches, split_bytes
from murmur.train.metrics import MetricsLogger, mfu, peak_flops, truncate_metrics
from murmur.train.optim import build_optimizer, lr_at, set_lr

CONFIG_NAME = "config.toml"
METRICS_NAME = "metrics.jsonl"


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


# ---------------------------------------------------------------- device, dtype, model
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for but CUDA is not available (use device=cpu or auto)")
    return device


def cpu_has_bf16() -> bool:
    """True when this CPU has native bf16 matmul instructions (AVX512-BF16 or AMX)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, c, lambda: False)() for c in checks)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The autocast compute dtype: bf16 where the hardware runs it fast, else fp32."""
    if name == "fp32":
        return torch.float32
    if name == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if device.type == "cpu" and cpu_has_bf16() else torch.float32


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def model_config(cfg: TrainConfig, vocab_size: int) -> ModelConfig:
    """The model shape: the preset, the section's overrides, and the tokenizer's vocabulary."""
    overrides = cfg.model.overrides()
    vocab = overrides.pop("vocab_size", vocab_size)
    if vocab < vocab_size:
        raise ConfigError(f"model.vocab_size ({vocab}) is smaller than the tokenizer's vocabulary ({vocab_size})")
    try:
        mcfg = preset(cfg.model.preset, vocab_size=vocab, **overrides)
    except TypeError as e:
        raise ConfigError(f"model: {e}") from None
    if cfg.data.seq_len > mcfg.max_seq_len:
        raise ConfigError(f"data.seq_len ({cfg.data.seq_len}) is longer than the model's max_seq_len "
                          f"({mcfg.max_seq_len}); lower data.seq_len or raise model.max_seq_len")
    return mcfg


def parallelize(model: nn.Module, device: torch.device, compile_model: bool) -> nn.Module:
    """The one place a model becomes the model that trains: device placement, (later) FSDP/TP, compile.

    Returns the module to call for training; parameters are shared with ``model``, which stays the
    handle for state dicts and sampling (a compiled module would recompile for the KV-cache path).
    """
    model.to(device)
    if compile_model:
        return torch.compile(model)
    return model


def dist_info() -> tuple[int, int]:
    """(rank, world size): (0, 1) unless a process group is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


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


# ---------------------------------------------------------------- signals
class StopOnSignal:
    """Turn SIGINT/SIGTERM into a flag the loop checks after each step (a second SIGINT aborts)."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        log(f"{self.requested} received: finishing this step and saving a checkpoint (Ctrl-C again to abort)")

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


# ---------------------------------------------------------------- the trainer
class Trainer:
    """A pretraining run. Construction validates everything; :meth:`run` trains."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.rank, self.world = dist_info()
        self.out = Path(cfg.out)
        self._check_numbers()
        if not cfg.data.shards:
            raise ConfigError("data.shards is not set (the directory `murmur data tokenize` wrote)")
        self.train_shards = TokenShards(cfg.data.shards, "train")
        self.val_shards = TokenShards(cfg.data.shards, "val")
        self.tokenizer_dir, self.tokenizer = self._load_tokenizer()
        self.model_cfg = model_config(cfg, self.train_shards.vocab_size)
        self.accum = grad_accum_steps(cfg, self.world)
        self.global_batch = cfg.batch.micro_batch * self.accum * self.world
        self.sampler = WindowSampler(self.train_shards, cfg.data.seq_len, self.global_batch, cfg.seed)
        self.val = eval_batches(self.val_shards, cfg.data.seq_len, cfg.batch.micro_batch, max(cfg.eval.batches, 1),
                                self.rank, self.world)
        self.val_bytes = split_bytes(self.val_shards, self.tokenizer)
        self.resume_from = self._find_resume()
        self.device = resolve_device(cfg.device)
        self.dtype = resolve_dtype(cfg.dtype, self.device)
        self.flops_per_token = flops_per_token(self.model_cfg, cfg.data.seq_len)

    def _log(self, message: str) -> None:
        """A log line from process 0 only (every process runs the same loop)."""
        if self.rank == 0:
            log(message)

    # -- checks (no compute)
    def _check_numbers(self) -> None:
        c = self.cfg
        for name, value in [("steps", c.steps), ("batch.micro_batch", c.batch.micro_batch),
                            ("data.seq_len", c.data.seq_len), ("log_every", c.log_every)]:
            if value < 1:
                raise ConfigError(f"{name} must be at least 1 (got {value})")
        for name, value in [("eval.every", c.eval.every), ("checkpoint.every", c.checkpoint.every),
                            ("schedule.warmup", c.schedule.warmup), ("eval.samples", c.eval.samples)]:
            if value < 0:
                raise ConfigError(f"{name} must be >= 0 (got {value})")
        if c.optim.lr <= 0:
            raise ConfigError(f"optim.lr must be positive (got {c.optim.lr})")
        if len(c.optim.betas) != 2:
            raise ConfigError(f"optim.betas needs two numbers (got {c.optim.betas})")

    def _load_tokenizer(self) -> tuple[Path, Any]:
        from murmur.tokenizer import load_tokenizer

        source = self.cfg.data.tokenizer or self.train_shards.manifest.get("tokenizer", "")
        if not source:
            raise ConfigError("data.tokenizer is not set and the shard manifest does not name a tokenizer")
        tok = load_tokenizer(source)
        shards = self.train_shards
        if tok.vocab_size != shards.vocab_size:
            raise InputError(f"the tokenizer in {source} has {tok.vocab_size:,} tokens but the shards were made with "
                             f"a vocabulary of {shards.vocab_size:,}; use the tokenizer the shards were made with",
                             shards.directory / "manifest.json", field="vocab_size")
        want = shards.manifest.get("tokenizer_sha256")
        if want and tok.sha256 != want:
            raise InputError(f"the tokenizer in {source} is not the one the shards were made with "
                             "(tokenizer_sha256 differs)", shards.directory / "manifest.json", field="tokenizer_sha256")
        return Path(source), tok

    def _find_resume(self) -> Path | None:
        """The checkpoint to resume from (checked against this model's shape), or None."""
        latest = ckpt.latest_checkpoint(self.out)
        if latest is None:
            if self.cfg.resume:
                self._log(f"resume: no complete checkpoint in {self.out}; starting from scratch")
            return None
        if not self.cfg.resume:
            raise CheckpointError(f"{self.out} already holds checkpoints (newest {latest.name}); pass --resume "
                                  "(resume=true) to continue that run, or choose another out directory")
        state = ckpt.read_trainer_state(latest)
        ckpt.check_model_config(latest, state.get("model_config", {}), self.model_cfg)
        return latest

    # -- setup (compute starts here)
    def _setup(self) -> None:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        if self.device.type == "cuda":
            torch.set_float32_matmul_precision("high")  # TF32 for whatever still runs in fp32
        with torch.device(self.device):
            self.model = Transformer(self.model_cfg)
        self.train_model = parallelize(self.model, self.device, cfg.compile)
        self.optimizer = build_optimizer(self.model, cfg.optim, self.device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.step = 0
        self.tokens_seen = 0
        self._last_saved = -1
        if self.resume_from is not None:
            state = ckpt.load_checkpoint(self.resume_from, self.model, self.optimizer, self.model_cfg)
            self.step = int(state["step"])
            self.tokens_seen = int(state.get("tokens", 0))
            self._last_saved = self.step
            ckpt.set_rng_state(state["rng"])
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            cfgmod.dump_toml(cfg, self.out / CONFIG_NAME)
            if self.resume_from is None:
                (self.out / METRICS_NAME).unlink(missing_ok=True)
            else:
                truncate_metrics(self.out / METRICS_NAME, self.step)
        self.metrics = MetricsLogger(self.out / METRICS_NAME, self.out / "tb" if cfg.tensorboard else None) \
            if self.rank == 0 else None
        self.peak = peak_flops(self.device, self.dtype)

    def _record(self, record: dict[str, Any]) -> None:
        if self.metrics is not None:
            self.metrics.write(record)

    def _describe(self) -> None:
        c, m = self.cfg, self.model_cfg
        n = num_params(m)
        tokens_per_step = self.global_batch * c.data.seq_len
        start = f"resuming from {self.resume_from} (step {self.step})" if self.resume_from else "starting"
        self._log(
            f"train: {start}; model {c.model.preset} ({n / 1e6:.1f}M params, dim {m.dim}, {m.n_layers} layers, "
            f"vocab {m.vocab_size:,}); {self.train_shards.num_tokens:,} train tokens; "
            f"{tokens_per_step:,} tokens/step = {self.world} x {self.accum} x {c.batch.micro_batch} x {c.data.seq_len}; "
            f"{c.steps} steps; {self.device} {str(self.dtype).removeprefix('torch.')}"
            f"{' compiled' if c.compile else ''}; out {self.out}")

    # -- one step
    def train_step(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step at ``step``; returns (mean loss, grad norm) as tensors (no sync)."""
        cfg = self.cfg
        set_lr(self.optimizer, lr_at(step, cfg.steps, cfg.optim.lr, cfg.schedule))
        batches = self.sampler.micro_batches(step, cfg.batch.micro_batch, self.rank, self.world)
        loss_sum = torch.zeros((), device=self.device)
        for x, y in batches:
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            with autocast(self.device, self.dtype):
                loss = self.train_model(x, y)
            (loss / len(batches)).backward()
            loss_sum += loss.detach()
        max_norm = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf
        grad_norm = nn.utils.clip_grad_norm_(self.params, max_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_sum / len(batches), grad_norm

    # -- evaluation
    @torch.no_grad()
    def evaluate(self) -> tuple[float, float | None]:
        """(validation loss in nats/token, bits per byte) over the fixed validation windows."""
        self.model.eval()
        total = torch.zeros(2, dtype=torch.float64, device=self.device)
        for x, y in self.val:
            x, y = x.to(self.device), y.to(self.device)
            with autocast(self.device, self.dtype):
                loss = self.model(x, y)
            total += torch.stack([loss.double() * y.numel(), torch.tensor(y.numel(), device=self.device)])
        self.model.train()
        total = _all_reduce_sum(total)
        val_loss = float(total[0] / total[1])
        return val_loss, bits_per_byte(val_loss, self.val_shards.num_tokens, self.val_bytes)

    def samples(self, step: int) -> list[str]:
        """A few posts generated from ``<|doc|>`` (seeded by the run's seed and the step)."""
        from murmur.generate import generate

        n = self.cfg.eval.samples
        if n <= 0 or self.rank != 0:
            return []
        with autocast(self.device, self.dtype):
            outs = generate(self.model, [[self.tokenizer.doc_id]] * n, self.cfg.eval.sample_tokens,
                            temperature=self.cfg.eval.temperature, top_k=50, seed=self.cfg.seed * 1_000_003 + step,
                            stop_ids=(self.tokenizer.doc_id,))
        return [self.tokenizer.decode(o) for o in outs]

    def _eval_and_sample(self, step: int) -> tuple[float, float | None]:
        val_loss, bpb = self.evaluate()
        bpb_text = f" | {bpb:.3f} bits/byte" if bpb is not None else ""
        self._log(f"eval step {step} | val loss {val_loss:.4f}{bpb_text}")
        self._record({"kind": "eval", "step": step, "val_loss": val_loss, "val_bpb": bpb})
        for text in self.samples(step):
            self._log(f"  sample: {text!r}")
            self._record({"kind": "sample", "step": step, "text": text})
        return val_loss, bpb

    def _save(self, step: int) -> None:
        t = time.perf_counter()
        state = {"tokens": self.tokens_seen, "rng": ckpt.rng_state(),
                 "model_config": dataclasses.asdict(self.model_cfg),
                 "scheduler": {"kind": self.cfg.schedule.kind, "lr": self.optimizer.param_groups[0]["lr"],
                               "total_steps": self.cfg.steps},
                 "sampler": {"seed": self.cfg.seed, "step": step, "global_batch": self.global_batch},
                 "config": cfgmod.to_dict(self.cfg)}
        self._last_saved = step
        path = ckpt.save_checkpoint(self.out, step, self.model, self.optimizer, state, self.cfg.checkpoint.keep_last)
        self._log(f"checkpoint {path} ({time.perf_counter() - t:.1f}s)")

    # -- the loop
    def run(self) -> TrainResult:
        cfg = self.cfg
        self._setup()
        self._describe()
        tokens_per_step = self.global_batch * cfg.data.seq_len
        interval_loss = torch.zeros((), device=self.device)
        interval_steps, interval_time = 0, 0.0
        train_time, train_steps = 0.0, 0
        last_loss = val_loss = bpb = None
        tok_s = 0.0
        mfu_value = None
        interrupted = False
        with StopOnSignal() as stop:
            while self.step < cfg.steps:
                t0 = time.perf_counter()
                loss, grad_norm = self.train_step(self.step)
                self.step += 1
                self.tokens_seen += tokens_per_step
                interval_loss += loss
                interval_steps += 1
                stopping = _any_rank(stop.requested is not None, self.device)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps or stopping:
                    if self.device.type == "cuda":
                        torch.cuda.synchronize(self.device)
                    dt = time.perf_counter() - t0
                    interval_time += dt
                    train_time += interval_time
                    train_steps += interval_steps
                    last_loss = float(_all_reduce_sum(interval_loss / interval_steps) / self.world)
                    if not math.isfinite(last_loss):
                        raise MurmurError(f"training diverged: loss is {last_loss} at step {self.step}; "
                                          "lower optim.lr or raise schedule.warmup")
                    tok_s = tokens_per_step * interval_steps / max(interval_time, 1e-9)
                    mfu_value = mfu(tok_s / self.world, self.flops_per_token, self.peak)
                    lr = self.optimizer.param_groups[0]["lr"]
                    eta = (cfg.steps - self.step) * train_time / max(train_steps, 1)
                    mfu_text = f" | MFU {mfu_value:.1%}" if mfu_value is not None else ""
                    self._log(f"step {self.step}/{cfg.steps} | loss {last_loss:.4f} | lr {lr:.2e} | "
                        f"grad {float(grad_norm):.3f} | {tok_s:,.0f} tok/s{mfu_text} | ETA {format_duration(eta)}")
                    self._record({"kind": "train", "step": self.step, "loss": last_loss, "lr": lr,
                                  "grad_norm": float(grad_norm), "tokens_per_s": tok_s, "mfu": mfu_value,
                                  "tokens": self.tokens_seen})
                    interval_loss.zero_()
                    interval_steps, interval_time = 0, 0.0
                else:
                    interval_time += time.perf_counter() - t0
                if stopping:
                    self._save(self.step)
                    interrupted = True
                    self._log(f"stopped at step {self.step} ({stop.requested or 'signal'}); continue with --resume")
                    break
                if self.step < cfg.steps:
                    if cfg.eval.every and self.step % cfg.eval.every == 0:
                        val_loss, bpb = self._eval_and_sample(self.step)
                    if cfg.checkpoint.every and self.step % cfg.checkpoint.every == 0:
                        self._save(self.step)
            if not interrupted:
                val_loss, bpb = self._eval_and_sample(self.step)
                if self._last_saved != self.step:
                    self._save(self.step)
                ckpt.save_inference_model(self.out, self.model, self.model_cfg, self.tokenizer_dir)
                self._log(f"model written to {self.out} (murmur generate --model {self.out})")
        if self.metrics is not None:
            self.metrics.close()
        if train_steps:
            tok_s = tokens_per_step * train_steps / max(train_time, 1e-9)
            mfu_value = mfu(tok_s / self.world, self.flops_per_token, self.peak)
        return TrainResult(self.out, self.step, self.tokens_seen, last_loss, val_loss, bpb, tok_s, mfu_value,
                           interrupted)


def train(cfg: TrainConfig) -> TrainResult:
    """Train a model as ``cfg`` says (resuming when ``cfg.resume``); see :class:`Trainer`."""
    return Trainer(cfg).run()


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
    accum = grad_accum_steps(cfg)
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
