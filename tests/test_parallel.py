"""Parallel training gives the numbers a single process gives.

Two (or four) real processes on CPU with the gloo backend, launched the way torchrun launches them
(RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT in the environment), run a few AdamW steps of a micro
model under DDP, FSDP2, HSDP, tensor parallelism and their combinations; the test compares every
loss and gradient norm with one process training on the whole global batch. This file is also the
worker script: ``python tests/test_parallel.py WORLD OUT_JSON SCENARIO...``.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from murmur.errors import ConfigError
from murmur.model import ModelConfig, Transformer
from murmur.train.parallel import (
    ParallelConfig,
    World,
    build_mesh,
    clip_grad_norm_,
    data_parallel_rank,
    forward_context,
    gradient_sync,
    init_distributed,
    materialize,
    mesh_shape,
    micro_batch_syncs,
    parallelize,
)
from murmur.train.sampler import rank_rows

MICRO = ModelConfig(vocab_size=128, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128, max_seq_len=32)
STEPS, GLOBAL_BATCH, SEQ, MAX_NORM = 5, 8, 16, 0.5
TOL = 2e-5

# name -> (ParallelConfig overrides, micro-batches per step)
SCENARIOS: dict[str, tuple[dict, int]] = {
    "ddp": ({"dp_replicate": 2, "dp_shard": 1}, 1),
    "ddp_accum": ({"dp_replicate": 2, "dp_shard": 1}, 2),
    "fsdp": ({"dp_shard": 2}, 1),
    "fsdp_accum": ({"dp_shard": 2}, 2),
    "fsdp_ac_full": ({"dp_shard": 2, "activation_checkpointing": "full"}, 1),
    "fsdp_ac_selective": ({"dp_shard": 2, "activation_checkpointing": "selective",
                           "fsdp_reshard_after_forward": "always"}, 1),
    "tp": ({"tp": 2, "dp_shard": 1, "loss_parallel": False}, 1),
    "tp_loss_parallel": ({"tp": 2, "dp_shard": 1, "loss_parallel": True}, 2),
    "fsdp_meta": ({"dp_shard": 2}, 1),  # built on the meta device, materialized after sharding
    # four processes
    "hsdp": ({"dp_replicate": 2, "dp_shard": 2}, 1),
    "fsdp_tp": ({"dp_shard": 2, "tp": 2}, 2),
    # GPUs: NCCL, bf16 parameters with fp32 reduction (the "auto" dtypes), compiled blocks
    "gpu_fsdp_bf16": ({"dp_shard": 2}, 1),
    "gpu_tp_compile": ({"tp": 2, "dp_shard": 1, "compile": True, "activation_checkpointing": "selective"}, 1),
}


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1234)
    out = []
    for _ in range(STEPS):
        t = torch.randint(0, MICRO.vocab_size, (GLOBAL_BATCH, SEQ + 1), generator=g)
        out.append((t[:, :-1], t[:, 1:]))
    return out


def new_model(tied: bool = True) -> Transformer:
    torch.manual_seed(0)
    return Transformer(ModelConfig(**{**MICRO.__dict__, "tie_embeddings": tied}))


def optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1, foreach=True)


def train(model, cfg: ParallelConfig, mesh, micro: int, device="cpu") -> dict[str, list[float]]:
    """STEPS AdamW steps; returns the data-parallel mean loss and the clipped gradient norm per step."""
    from torch.distributed.tensor import DTensor

    opt = optimizer(model)
    dp_rank, dp_size = data_parallel_rank(mesh)
    losses, norms = [], []
    skipped = None
    for x, y in batches():
        rows = torch.from_numpy(rank_rows(GLOBAL_BATCH, dp_rank, dp_size))
        x, y = x[rows].to(device), y[rows].to(device)
        total = 0.0
        step = len(x) // micro
        for i, sync in micro_batch_syncs(micro):
            xs, ys = x[i * step:(i + 1) * step], y[i * step:(i + 1) * step]
            with gradient_sync(model, sync), forward_context(model, cfg, device):
                loss = model(xs, ys) / micro
                loss.backward()
            total += float((loss.full_tensor() if isinstance(loss, DTensor) else loss).detach())  # loss parallel
            if not sync and not losses and i == 0 and mesh is not None:
                skipped = gradients_unreduced(model)
        norms.append(float(clip_grad_norm_(model.parameters(), MAX_NORM)))
        opt.step()
        opt.zero_grad()
        if mesh is not None and dp_size > 1:
            # Mean over all processes = mean over data-parallel ranks (TP ranks hold the same loss).
            t = torch.tensor([total / torch.distributed.get_world_size()], device=device)
            torch.distributed.all_reduce(t)
            total = float(t)
        losses.append(total)
    return {"loss": losses, "norm": norms, "skipped_sync": skipped}


def gradients_unreduced(model) -> bool:
    """After a backward without gradient sync: FSDP2 has set no sharded gradient yet, and DDP's
    gradients still differ between ranks (each saw other rows)."""
    from torch.distributed.tensor import DTensor

    params = [p for p in model.parameters()]
    if isinstance(params[0], DTensor):
        return all(p.grad is None for p in params)
    g = params[0].grad.norm().reshape(1)
    gathered = [torch.zeros_like(g) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(gathered, g)
    return len({float(x) for x in gathered}) == len(gathered)


def worker(world_size: int, out: str, names: list[str]) -> None:
    world = init_distributed(ParallelConfig(collective_timeout_s=60))
    assert world.world_size == world_size and torch.distributed.is_initialized()
    results = {}
    for name in names:
        overrides, micro = SCENARIOS[name]
        overrides = dict(overrides)
        compile_ = overrides.pop("compile", False)
        cfg = ParallelConfig(**overrides)
        mesh = build_mesh(cfg, world)
        if name.endswith("_meta"):
            with torch.device("meta"):
                model = Transformer(MICRO)
            model = materialize(parallelize(model, mesh, cfg, compile=compile_), world.device)
        else:
            model = parallelize(new_model(), mesh, cfg, compile=compile_)
        results[name] = train(model, cfg, mesh, micro, world.device)
        if name == "fsdp":
            # Parameter names survive parallelization (checkpoints and optimizer groups rely on them).
            results[name]["names"] = sorted(n for n, _ in model.named_parameters())
    if world.rank == 0:
        Path(out).write_text(json.dumps(results))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(world_size: int, names: list[str], tmp: Path, gpu: bool = False) -> dict:
    """Start ``world_size`` worker processes as torchrun would and collect rank 0's results."""
    tmp.mkdir(parents=True, exist_ok=True)
    out = tmp / f"results-{world_size}.json"
    port = free_port()
    procs = []
    for rank in range(world_size):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
               "LOCAL_WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "OMP_NUM_THREADS": "1"}
        if not gpu:
            env["CUDA_VISIBLE_DEVICES"] = ""
        procs.append(subprocess.Popen([sys.executable, os.environ.get("MURMUR_TEST_WORKER", __file__), str(world_size), str(out), *names], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = [p.communicate(timeout=120)[0] for p in procs]
    for rank, (p, log) in enumerate(zip(procs, logs, strict=True)):
        assert p.returncode == 0, f"rank {rank} failed:\n{log[-4000:]}"
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def reference() -> dict[str, list[float]]:
    """One process, whole global batch."""
    torch.set_num_threads(1)
    return train(new_model(), ParallelConfig(), None, 1)


@pytest.fixture(scope="module")
def two(tmp_path_factory) -> dict:
    names = [n for n in SCENARIOS if n not in ("hsdp", "fsdp_tp") and not n.startswith("gpu")]
    return launch(2, names, tmp_path_factory.mktemp("two"))


@pytest.fixture(scope="module")
def four(tmp_path_factory) -> dict:
    return launch(4, ["hsdp", "fsdp_tp"], tmp_path_factory.mktemp("four"))


def close(a: list[float], b: list[float], tol: float = TOL) -> bool:
    return all(abs(x - y) <= tol * max(1.0, abs(y)) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("name", ["ddp", "fsdp", "tp", "tp_loss_parallel", "fsdp_ac_full", "fsdp_ac_selective"])
def test_two_processes_match_single_process(two, reference, name):
    got = two[name]
    assert close(got["loss"], reference["loss"]), (name, got["loss"], reference["loss"])
    # clip_grad_norm_ returns the single-process norm under every sharding (and clipping is active).
    assert close(got["norm"], reference["norm"]), (name, got["norm"], reference["norm"])
    assert max(reference["norm"]) > MAX_NORM
    assert reference["loss"][-1] < reference["loss"][0]


@pytest.mark.parametrize("name", ["ddp_accum", "fsdp_accum"])
def test_gradient_accumulation_without_sync_matches_one_big_batch(two, reference, name):
    assert two[name]["skipped_sync"] is True  # the first micro-batch really did not reduce
    assert close(two[name]["loss"], reference["loss"]), (two[name]["loss"], reference["loss"])
    assert close(two[name]["norm"], reference["norm"])


def test_meta_device_model_materialized_after_sharding(two):
    losses = two["fsdp_meta"]["loss"]
    assert abs(losses[0] - math.log(MICRO.vocab_size)) < 0.05  # a fresh init predicts ~uniformly
    assert losses[-1] < losses[0] - 0.01


def test_parameter_names_unchanged(two):
    assert two["fsdp"]["names"] == sorted(n for n, _ in new_model().named_parameters())


@pytest.mark.parametrize("name", ["hsdp", "fsdp_tp"])
def test_four_processes_2d_meshes(four, reference, name):
    assert close(four[name]["loss"], reference["loss"]), (four[name]["loss"], reference["loss"])
    assert close(four[name]["norm"], reference["norm"])


def test_activation_checkpointing_single_process_same_grads():
    ref = new_model()
    x, y = batches()[0]
    ref(x, y).backward()
    for mode in ("full", "selective"):
        m = parallelize(new_model(), None, ParallelConfig(activation_checkpointing=mode))
        m(x, y).backward()
        for (n, a), (_, b) in zip(ref.named_parameters(), m.named_parameters(), strict=True):
            assert torch.allclose(a.grad, b.grad, atol=1e-6), (mode, n)


def test_mesh_shape_validation():
    assert mesh_shape(ParallelConfig(), 8) == {"pp": 1, "dp_replicate": 1, "dp_shard": 8, "tp": 1}
    assert mesh_shape(ParallelConfig(dp_replicate=2, tp=2), 16) == {"pp": 1, "dp_replicate": 2, "dp_shard": 4, "tp": 2}
    assert mesh_shape(ParallelConfig(pp=2, tp=2), 8) == {"pp": 2, "dp_replicate": 1, "dp_shard": 2, "tp": 2}
    with pytest.raises(ConfigError, match="must equal the world size"):
        mesh_shape(ParallelConfig(dp_replicate=2, dp_shard=2, tp=2), 4)
    with pytest.raises(ConfigError, match="not divisible"):
        mesh_shape(ParallelConfig(tp=4), 6)
    with pytest.raises(ConfigError, match=">= 1"):
        mesh_shape(ParallelConfig(tp=0), 4)
    with pytest.raises(ConfigError, match="must equal the world size"):
        build_mesh(ParallelConfig(dp_shard=2), World(0, 0, 1, torch.device("cpu")))


def test_single_process_without_env(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    world = init_distributed(ParallelConfig())
    assert (world.rank, world.world_size) == (0, 1)
    assert build_mesh(ParallelConfig(), world) is None
    model = new_model()
    assert parallelize(model, None, ParallelConfig()) is model


class FakeMesh:
    """Just enough of a DeviceMesh for the checks that run before any communication."""

    def __init__(self, tp: int, device_type: str = "cpu"):
        self.tp, self.device_type = tp, device_type

    def __getitem__(self, name):
        return FakeMesh(self.tp if name == "tp" else 1, self.device_type)

    def size(self):
        return self.tp


def test_tp_degree_must_divide_heads():
    from murmur.train.parallel import apply_tp

    with pytest.raises(ConfigError, match="must divide"):
        apply_tp(new_model(), FakeMesh(3))


def test_compile_with_tp_on_cpu_is_refused():
    with pytest.raises(ConfigError, match="needs CUDA"):
        parallelize(new_model(), FakeMesh(2), ParallelConfig(tp=2), compile=True)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
def test_nccl_bf16_and_compile_close_to_fp32(tmp_path, reference):
    got = launch(2, ["gpu_fsdp_bf16", "gpu_tp_compile"], tmp_path, gpu=True)
    for name in ("gpu_fsdp_bf16", "gpu_tp_compile"):
        assert close(got[name]["loss"], reference["loss"], tol=3e-2), (name, got[name]["loss"])
        assert close(got[name]["norm"], reference["norm"], tol=5e-2), (name, got[name]["norm"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_single_process_compile_bf16_autocast():
    """bf16 autocast and per-block compile on one GPU: the loss stays close to fp32."""
    torch.manual_seed(0)
    device = torch.device("cuda")
    x, y = (t.to(device) for t in batches()[0])
    ref = new_model().to(device)
    want = float(ref(x, y))
    cfg = ParallelConfig(activation_checkpointing="selective")
    model = parallelize(new_model().to(device), None, cfg, compile=True)
    with forward_context(model, cfg, device):
        loss = model(x, y)
        loss.backward()
    assert abs(float(loss) - want) < 2e-2


if __name__ == "__main__":
    worker(int(sys.argv[1]), sys.argv[2], sys.argv[3:])
    from murmur.train.parallel import exit_worker

    exit_worker(0)  # leave without interpreter teardown racing gloo's threads
