"""Parallelism applied to a plain model from outside: DDP, FSDP2 (and HSDP), tensor parallel.

The model (``murmur.model.Transformer``) knows nothing about distribution. This module takes it and
a device mesh and returns the parallel model, in torchtitan's order (``parallelize_llama``):

1. tensor parallelism with DTensor ``parallelize_module`` (Megatron-style: attention wq/wk/wv and
   w1/w3 column-wise, wo and w2 row-wise, norms sequence-parallel, the embedding row-wise over the
   vocabulary and the output projection column-wise, optionally keeping logits vocabulary-sharded
   for a loss-parallel cross-entropy);
2. activation checkpointing per block (full, or selective: keep matmul and attention outputs,
   recompute norms and pointwise ops);
3. ``torch.compile`` per block;
4. FSDP2 ``fully_shard`` per block and on the root (HSDP over a 2-D mesh when ``dp_replicate > 1``)
   with a bf16/fp32 ``MixedPrecisionPolicy`` on GPU, or DDP when only replicating.

Everything runs on CPU with gloo too, which is how the tests check it against a single process.
Parameter names are left untouched by every step (activation checkpointing replaces the block's
``forward`` rather than wrapping the module), so checkpoints and optimizer groups see the same names
whatever the layout.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

import torch
import torch.distributed as dist
from torch import nn

from murmur.errors import ConfigError
from murmur.train.config import ParallelConfig  # the [parallel] section

DIM_NAMES = ("pp", "dp_replicate", "dp_shard", "tp")


# ---------------------------------------------------------------- processes and meshes
@dataclass(frozen=True)
class World:
    """This process's place in the job."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer") from None


def init_distributed(cfg: ParallelConfig | None = None) -> World:
    """Join the job described by torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR...).

    NCCL on CUDA (each process on ``cuda:LOCAL_RANK``), gloo on CPU, with ``collective_timeout_s``
    as the timeout of every collective. Without those variables this is a single process and no
    process group is created.
    """
    cfg = cfg or ParallelConfig()
    local_rank = _env_int("LOCAL_RANK", 0)
    cuda = torch.cuda.is_available()
    if cuda:
        device = torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if "RANK" not in os.environ and "WORLD_SIZE" not in os.environ:
        return World(0, 0, 1, device)
    if not dist.is_initialized():
        backend = cfg.backend if cfg.backend != "auto" else ("nccl" if cuda else "gloo")
        if backend == "nccl" and not cuda:
            raise ConfigError("parallel.backend = 'nccl' needs CUDA; use gloo on CPU")
        timeout = datetime.timedelta(seconds=cfg.collective_timeout_s)
        kwargs: dict[str, Any] = {"backend": backend, "timeout": timeout}
        if backend == "nccl":
            kwargs["device_id"] = device  # binds the communicator eagerly and avoids a device guess
        store = _attempt_store(timeout)
        if store is not None:
            kwargs.update(store=store, rank=_env_int("RANK", 0), world_size=_env_int("WORLD_SIZE", 1))
        dist.init_process_group(**kwargs)
    return World(dist.get_rank(), local_rank, dist.get_world_size(), device)


def _attempt_store(timeout: datetime.timedelta) -> Any:
    """Under torchrun's shared rendezvous store, a store whose keys belong to this restart attempt only.

    torchrun hands its own store to the workers, and it outlives a restart: the keys of the killed
    attempt (gloo addresses, NCCL ids) are still there, and a worker of the next attempt that reads
    before its peer rewrote them connects to a dead process (seen as "Connection refused" after
    ``--max-restarts``; pytorch issue 135712). Prefixing the keys with the restart count keeps the
    attempts apart. None outside torchrun or with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or "MASTER_ADDR" not in os.environ:
        return None
    store = dist.TCPStore(os.environ["MASTER_ADDR"], _env_int("MASTER_PORT", 29500), _env_int("WORLD_SIZE", 1),
                          is_master=False, timeout=timeout)
    return dist.PrefixStore(f"murmur/attempt_{_env_int('TORCHELASTIC_RESTART_COUNT', 0)}", store)


def destroy_distributed() -> None:
    """Leave the process group (call once at the end of a run)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def exit_worker(code: int = 0) -> NoReturn:
    """End a process that joined a process group: leave the group, flush, and exit without teardown.

    A gloo worker thread can still be releasing the last collective's buffers when the interpreter
    shuts down. Releasing them takes the GIL, which a finalizing interpreter answers by ending the
    thread inside a C++ destructor, so the process aborts (SIGABRT, "terminate called without an
    active exception") after a run that succeeded, and torchrun reports the job failed. Torch keeps
    the groups alive past ``destroy_process_group()`` (DTensor's sharding caches hold the meshes), so
    their threads are never joined first; pytorch's own attempt at an atexit fix (PR 179291) was
    abandoned. Skipping interpreter teardown with ``os._exit`` after flushing avoids the race. Python
    threads still running (a background checkpoint's writer) are joined first, as a normal exit does.

    The group is left only after a run that succeeded: after a failure a peer may be gone or hung,
    and leaving waits on it (torchrun then kills the process after its grace period instead of
    restarting the job at once).
    """
    for thread in threading.enumerate():  # as the interpreter's own exit does: let work in flight finish
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    if code == 0:
        destroy_distributed()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def mesh_shape(cfg: ParallelConfig, world_size: int) -> dict[str, int]:
    """Sizes of the ``dp_replicate``, ``dp_shard`` and ``tp`` mesh dimensions, checked against the world."""
    r, s, t, pp = cfg.dp_replicate, cfg.dp_shard, cfg.tp, cfg.pp
    if r < 1 or t < 1 or pp < 1 or (s < 1 and s != -1):
        raise ConfigError(f"parallel.dp_replicate ({r}), parallel.tp ({t}) and parallel.pp ({pp}) must be >= 1 and "
                          f"parallel.dp_shard ({s}) >= 1 or -1")
    if s == -1:
        if world_size % (r * t * pp):
            raise ConfigError(f"world size {world_size} is not divisible by parallel.pp * dp_replicate * tp = "
                              f"{pp} * {r} * {t}; choose degrees whose product divides the number of processes")
        s = world_size // (r * t * pp)
    if pp * r * s * t != world_size:
        raise ConfigError(f"parallel.pp * dp_replicate * dp_shard * tp = {pp} * {r} * {s} * {t} = {pp * r * s * t}, "
                          f"but the job has {world_size} processes; the product must equal the world size "
                          f"(dp_shard = -1 fills in the rest)")
    return {"pp": pp, "dp_replicate": r, "dp_shard": s, "tp": t}


def build_mesh(cfg: ParallelConfig, world: World) -> Any:
    """The 4-D ``DeviceMesh`` ("pp", "dp_replicate", "dp_shard", "tp"), or None for a single process.

    The tp dimension is innermost so a tensor-parallel group is consecutive ranks (one node); pp is
    outermost (as torchtitan), so a pipeline's stages are whole data-parallel groups apart.
    Dimensions of size 1 are kept so every layout indexes the mesh the same way.
    """
    shape = mesh_shape(cfg, world.world_size)
    if world.world_size == 1:
        return None
    from torch.distributed.device_mesh import init_device_mesh

    return init_device_mesh(world.device.type, tuple(shape[d] for d in DIM_NAMES), mesh_dim_names=DIM_NAMES)


def _size(mesh: Any, name: str) -> int:
    return 1 if mesh is None else mesh[name].size()


def data_parallel_rank(mesh: Any) -> tuple[int, int]:
    """(rank, size) of this process among the data-parallel groups: processes of one tensor-parallel
    group share a rank and read the same rows. Feed it to ``sampler.rank_rows``."""
    if mesh is None:
        return 0, 1
    r, s = mesh["dp_replicate"], mesh["dp_shard"]
    return r.get_local_rank() * s.size() + s.get_local_rank(), r.size() * s.size()


# ---------------------------------------------------------------- parallelize
def _dtype(name: str, default: torch.dtype) -> torch.dtype:
    return {"bf16": torch.bfloat16, "fp32": torch.float32}.get(name, default)


def resolved_dtypes(cfg: ParallelConfig, device_type: str) -> tuple[torch.dtype, torch.dtype]:
    """(param_dtype, reduce_dtype) with "auto" resolved: bf16/fp32 on GPU, fp32/fp32 on CPU."""
    gpu = device_type == "cuda"
    return _dtype(cfg.param_dtype, torch.bfloat16 if gpu else torch.float32), _dtype(cfg.reduce_dtype, torch.float32)


def _device_of(mesh: Any) -> torch.device:
    if mesh.device_type == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(mesh.device_type)


def parallelize(model: nn.Module, mesh: Any, cfg: ParallelConfig, compile: bool = False) -> nn.Module:
    """Apply TP, activation checkpointing, compile (``compile``: each block) and FSDP2/HSDP or DDP
    to ``model`` (in place).

    ``model`` is a ``murmur.model.Transformer``. With ``mesh`` None (one process) the model is
    returned unchanged apart from activation checkpointing and compile, which also help there.
    A model built on the meta device stays there; call ``materialize`` afterwards.
    """
    tp = _size(mesh, "tp")
    if compile and tp > 1 and mesh.device_type != "cuda":
        # Measured with torch 2.13 on gloo: compiled tensor-parallel blocks train with wrong
        # gradients (or fail in backward), while eager TP and compiled FSDP blocks are exact.
        raise ConfigError("compile with parallel.tp > 1 needs CUDA/NCCL; on CPU (gloo) compiled "
                          "tensor-parallel blocks give wrong gradients. Set compile = false.")
    if mesh is not None and not _on_meta(model):
        model.to(_device_of(mesh))
    if tp > 1:
        apply_tp(model, mesh["tp"], loss_parallel=cfg.loss_parallel)
    if cfg.activation_checkpointing != "none":
        apply_ac(model, cfg.activation_checkpointing)
    if compile:
        apply_compile(model)
    if mesh is None:
        return model
    r, s = _size(mesh, "dp_replicate"), _size(mesh, "dp_shard")
    if s > 1 or (r > 1 and tp > 1):
        dp_mesh = mesh["dp_replicate", "dp_shard"] if r > 1 else mesh["dp_shard"]
        apply_fsdp(model, dp_mesh, cfg)
    elif r > 1:
        apply_ddp(model, mesh["dp_replicate"] if _size(mesh, "pp") > 1 else mesh)
    return model


def apply_tp(model: nn.Module, tp_mesh: Any, loss_parallel: bool = True) -> None:
    """Megatron-style tensor parallelism with sequence parallelism on the norms (as torchtitan).

    Between blocks the residual stream is sharded over the sequence; each block all-gathers it before
    attention and the MLP and reduce-scatters after. Heads are split over ranks, so n_heads and
    n_kv_heads must be divisible by the degree. The tied embedding/output weight is sharded over the
    vocabulary in both uses (the same placement), and tied again after sharding.
    """
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        PrepareModuleInput,
        RowwiseParallel,
        SequenceParallel,
        parallelize_module,
    )

    c = model.cfg
    t = tp_mesh.size()
    for what, n in (("n_heads", c.n_heads), ("n_kv_heads", c.n_kv_heads), ("ffn_dim", c.ffn_dim),
                    ("vocab_size", c.vocab_size)):
        if n % t:
            raise ConfigError(f"parallel.tp = {t} must divide the model's {what} ({n})")
    parallelize_module(model, tp_mesh, {
        "tok_embeddings": RowwiseParallel(input_layouts=Replicate(), output_layouts=Shard(1)),
        "norm": SequenceParallel(),
        "output": ColwiseParallel(input_layouts=Shard(1),
                                  output_layouts=Shard(-1) if loss_parallel else Replicate(),
                                  use_local_output=not loss_parallel),
    })
    # Block.forward calls attention(x, cos, sin, layer, cache, positions, rows, mask): only x is sharded.
    rest = (None,) * 7
    for block in model.layers.values():
        parallelize_module(block, tp_mesh, {
            "attention_norm": SequenceParallel(),
            "attention": PrepareModuleInput(input_layouts=(Shard(1), *rest),
                                            desired_input_layouts=(Replicate(), *rest)),
            "attention.wq": ColwiseParallel(),
            "attention.wk": ColwiseParallel(),
            "attention.wv": ColwiseParallel(),
            "attention.wo": RowwiseParallel(output_layouts=Shard(1)),
            "ffn_norm": SequenceParallel(),
            "feed_forward": PrepareModuleInput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),)),
            "feed_forward.w1": ColwiseParallel(),
            "feed_forward.w2": RowwiseParallel(output_layouts=Shard(1)),
            "feed_forward.w3": ColwiseParallel(),
        })
    if c.tie_embeddings:
        model.output.weight = model.tok_embeddings.weight


def _selective_policy() -> Any:
    """Save matmul and attention outputs (and reduce-scatter results); recompute everything else."""
    from torch.utils.checkpoint import CheckpointPolicy

    aten = torch.ops.aten
    save = {aten.mm.default, aten.addmm.default, aten.bmm.default,
            aten._scaled_dot_product_flash_attention.default,
            aten._scaled_dot_product_efficient_attention.default,
            aten._scaled_dot_product_flash_attention_for_cpu.default}
    for name in ("_scaled_dot_product_cudnn_attention",):
        if hasattr(aten, name):
            save.add(getattr(aten, name).default)
    c10d = getattr(torch.ops, "_c10d_functional", None)
    if c10d is not None and hasattr(c10d, "reduce_scatter_tensor"):
        save.add(c10d.reduce_scatter_tensor.default)

    def policy(ctx: Any, op: Any, *args: Any, **kwargs: Any) -> CheckpointPolicy:
        return CheckpointPolicy.MUST_SAVE if op in save else CheckpointPolicy.PREFER_RECOMPUTE

    return policy


def apply_ac(model: nn.Module, mode: str) -> None:
    """Activation checkpointing on every block, without renaming anything.

    ``full`` keeps only each block's input and recomputes the block in backward (one extra forward:
    about +33% matmul FLOPs); ``selective`` keeps the outputs of matmuls and attention and recomputes
    only norms, RoPE and pointwise ops (about half the activation memory for little compute).
    """
    import functools

    from torch.utils.checkpoint import checkpoint, create_selective_checkpoint_contexts

    if mode not in ("full", "selective"):
        raise ConfigError(f"parallel.activation_checkpointing must be none, selective or full, not {mode!r}")
    kwargs: dict[str, Any] = {"use_reentrant": False, "preserve_rng_state": False}
    if mode == "selective":
        kwargs["context_fn"] = functools.partial(create_selective_checkpoint_contexts, _selective_policy())
    for block in model.layers.values():
        inner = block.forward  # the bound method of the class

        def forward(*args: Any, _inner: Any = inner, **kw: Any) -> Any:
            if not torch.is_grad_enabled():
                return _inner(*args, **kw)
            return checkpoint(_inner, *args, **kwargs, **kw)

        block.forward = forward  # instance attribute: names, hooks and state_dict are unchanged


def apply_compile(model: nn.Module) -> None:
    """``torch.compile`` each block in place (``nn.Module.compile``: names unchanged)."""
    for block in model.layers.values():
        block.compile()


def apply_fsdp(model: nn.Module, dp_mesh: Any, cfg: ParallelConfig) -> None:
    """FSDP2 ``fully_shard`` on each block and on the root (HSDP when ``dp_mesh`` is 2-D)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    param_dtype, reduce_dtype = resolved_dtypes(cfg, dp_mesh.device_type)
    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype)
    blocks = list(model.layers.values())
    for i, block in enumerate(blocks):
        if cfg.fsdp_reshard_after_forward == "default":
            # The last block is needed again as soon as backward starts: keep it gathered.
            reshard = i < len(blocks) - 1
        else:
            reshard = cfg.fsdp_reshard_after_forward == "always"
        fully_shard(block, mesh=dp_mesh, mp_policy=mp, reshard_after_forward=reshard)
    fully_shard(model, mesh=dp_mesh, mp_policy=mp, reshard_after_forward=cfg.fsdp_reshard_after_forward == "always")


def apply_ddp(model: nn.Module, mesh: Any) -> None:
    """Composable DDP (``replicate``): gradients all-reduced in buckets during backward; names unchanged."""
    from torch.distributed._composable.replicate import replicate

    kwargs: dict[str, Any] = {"bucket_cap_mb": 100, "gradient_as_bucket_view": True}
    if mesh.mesh_dim_names == ("dp_replicate",):
        kwargs["device_mesh"] = mesh  # under a pipeline: replicate within the stage only
    if mesh.device_type == "cuda":
        kwargs["device_ids"] = [torch.cuda.current_device()]
    replicate(model, **kwargs)


def _on_meta(model: nn.Module) -> bool:
    return any(p.is_meta for p in model.parameters())


@torch.no_grad()
def materialize(model: nn.Module, device: torch.device | str) -> nn.Module:
    """Allocate a (sharded) model built on the meta device and initialise its weights in place.

    Build the model under ``torch.device("meta")``, ``parallelize`` it, then call this: each process
    only ever allocates its own shards, which is how a model larger than one GPU gets built.
    """
    from murmur.model import rope_tables

    model.to_empty(device=device)
    c = model.cfg
    cos, sin = rope_tables(c.head_dim, c.max_seq_len, c.rope_theta)
    model.rope_cos, model.rope_sin = cos.to(device), sin.to(device)
    model.init_weights()
    return model


# ---------------------------------------------------------------- training-step helpers
def _is_fsdp(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


@contextlib.contextmanager
def gradient_sync(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Wrap a micro-batch's forward and backward; ``enabled=False`` skips the gradient reduction.

    For gradient accumulation pass ``enabled=(i == n - 1)``: the earlier micro-batches only
    accumulate local gradients and the last one reduces the sum once (FSDP2 and composable DDP
    ``set_requires_gradient_sync``). A single process or tensor parallelism alone has nothing to skip.
    """
    setter = getattr(model, "set_requires_gradient_sync", None)
    if setter is None or enabled:
        yield
        return
    setter(False)
    try:
        yield
    finally:
        setter(True)


def micro_batch_syncs(n: int) -> Iterator[tuple[int, bool]]:
    """(index, sync) for ``n`` micro-batches: only the last one reduces gradients."""
    for i in range(n):
        yield i, i == n - 1


def forward_context(model: nn.Module, cfg: ParallelConfig, device: torch.device | str) -> contextlib.ExitStack:
    """The context the forward *and* backward must run in.

    Enters ``loss_parallel()`` when the output logits are vocabulary-sharded DTensors, and bf16
    autocast when parameters are not cast by FSDP (single process, DDP, TP alone) but bf16 is asked
    for on GPU.
    """
    stack = contextlib.ExitStack()
    if cfg.loss_parallel and _tp_sharded_logits(model):
        from torch.distributed.tensor.parallel import loss_parallel

        stack.enter_context(loss_parallel())
    device = torch.device(device)
    param_dtype, _ = resolved_dtypes(cfg, device.type)
    if param_dtype == torch.bfloat16 and not _is_fsdp(model):
        stack.enter_context(torch.autocast(device.type, dtype=torch.bfloat16))
    return stack


def _tp_sharded_logits(model: nn.Module) -> bool:
    from torch.distributed.tensor import DTensor

    out = getattr(model, "output", None)
    return out is not None and isinstance(out.weight, DTensor) and out.weight.device_mesh.ndim >= 1 and \
        any(n == "tp" for n in (out.weight.device_mesh.mesh_dim_names or ()))


@torch.no_grad()
def clip_grad_norm_(parameters: Iterable[torch.Tensor], max_norm: float, norm_type: float = 2.0,
                    foreach: bool | None = None, pp_group: Any = None,
                    uncounted: Iterable[torch.Tensor] = ()) -> torch.Tensor:
    """Clip gradients to a global norm and return that norm, correct under any sharding.

    Gradients may be plain tensors (single process, DDP) or DTensors sharded over FSDP and/or TP
    meshes; norms are computed per mesh, reduced across it (``full_tensor``) and combined, so the
    result is the norm of the whole model's gradient, the same number a single process computes.
    Under pipeline parallelism each rank passes its stages' parameters and the pipeline's
    ``pp_group``: the stages' norms are combined over it. ``uncounted`` parameters are clipped but not
    counted (the last stage's copy of a tied embedding, counted on the first stage).
    """
    from torch.distributed.tensor import DTensor

    params = [p for p in parameters if p.grad is not None]
    skip = {id(p) for p in uncounted}
    counted = [p for p in params if id(p) not in skip]
    if not params and pp_group is None:
        return torch.tensor(0.0)
    groups: dict[Any, list[torch.Tensor]] = {}
    for p in counted:
        g = p.grad
        key = (g.device_mesh, tuple(g.placements)) if isinstance(g, DTensor) else g.device
        groups.setdefault(key, []).append(g)
    norms = []
    for grads in groups.values():
        n = torch.nn.utils.get_total_norm(grads, norm_type, False, foreach)
        if isinstance(n, DTensor):
            n = n.full_tensor()
        norms.append(n)
    device = norms[0].device if norms else (params[0].grad.device if params else torch.device("cpu"))
    norms = [n.to(device) for n in norms] or [torch.zeros((), device=device)]
    total = torch.stack(norms).max() if norm_type == float("inf") else \
        torch.linalg.vector_norm(torch.stack(norms), norm_type)
    if pp_group is not None:
        import torch.distributed as dist

        if norm_type == float("inf"):
            dist.all_reduce(total, op=dist.ReduceOp.MAX, group=pp_group)
        else:
            total = total ** norm_type
            dist.all_reduce(total, group=pp_group)
            total = total ** (1.0 / norm_type)
    if params:
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, total, foreach)
    return total
