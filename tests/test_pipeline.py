"""Pipeline parallelism gives the numbers a single process gives.

Real processes on CPU with gloo, launched as torchrun launches them, cut the micro model into
stages (``murmur.train.pipeline``), run torch's schedules (GPipe, 1F1B, interleaved 1F1B,
interleaved zero-bubble) alone and composed with FSDP2, and train a few AdamW steps with gradient
clipping across stages; every loss and gradient norm must equal one process training the whole
batch within the tolerance the other layouts use. This file is also the worker script.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from murmur.errors import ConfigError
from murmur.model import ModelConfig, Transformer
from murmur.train.pipeline import check_schedule, split_model, stage_ids, stage_layers

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import test_parallel as tp  # noqa: E402  (the shared micro model, data, reference run and launcher)

MICRO = ModelConfig(**{**tp.MICRO.__dict__, "n_layers": 4})
MICROBATCHES = 4

# name -> (ParallelConfig overrides, pipeline schedule, virtual stages, tied embeddings)
SCENARIOS = {
    "pp_1f1b": ({"pp": 2, "dp_shard": 1}, "1f1b", 1, True),
    "pp_gpipe_untied": ({"pp": 2, "dp_shard": 1}, "gpipe", 1, False),
    "pp_interleaved": ({"pp": 2, "dp_shard": 1}, "interleaved_1f1b", 2, True),
    "pp_zero_bubble": ({"pp": 2, "dp_shard": 1}, "zero_bubble", 2, True),
    # four processes
    "pp_fsdp": ({"pp": 2, "dp_shard": 2}, "1f1b", 1, True),
    # one process running both stages (interleaved, 2 virtual stages on one rank): on CPU and on a GPU
    "pp_local": ({"dp_shard": 1}, "interleaved_1f1b", 2, True),
}


def new_model(tied: bool = True) -> Transformer:
    torch.manual_seed(0)
    return Transformer(ModelConfig(**{**MICRO.__dict__, "tie_embeddings": tied}))


def reference_run(tied: bool) -> dict[str, list[float]]:
    """One process, the whole batch in the same micro-batches (gradient accumulation), as the
    single-process trainer runs it."""
    model = new_model(tied)
    opt = tp.optimizer(model)
    losses, norms = [], []
    for x, y in tp.batches():
        total = 0.0
        for xs, ys in zip(x.chunk(MICROBATCHES), y.chunk(MICROBATCHES), strict=True):
            loss = model(xs, ys) / MICROBATCHES
            loss.backward()
            total += float(loss.detach())
        losses.append(total)
        norms.append(float(tp.clip_grad_norm_(model.parameters(), tp.MAX_NORM)))
        opt.step()
        opt.zero_grad()
    return {"loss": losses, "norm": norms}


def pipelined_run(name: str, world) -> dict[str, list[float]]:
    from murmur.train.parallel import (
        ParallelConfig,
        build_mesh,
        clip_grad_norm_,
        data_parallel_rank,
        parallelize,
    )
    from murmur.train.pipeline import build_schedule, pipeline_step, tied_pair
    from murmur.train.sampler import rank_rows

    overrides, schedule, virtual, tied = SCENARIOS[name]
    cfg = ParallelConfig(**overrides)
    mesh = build_mesh(cfg, world)
    if mesh is None:  # one process: the whole pipeline on this rank
        group, pp_rank, pp = torch.distributed.group.WORLD, 0, 1
    else:
        group, pp_rank, pp = mesh["pp"].get_group(), mesh["pp"].get_local_rank(), mesh["pp"].size()
    model = new_model(tied).to(world.device)
    stages = split_model(model, pp_rank, pp, virtual)
    parts = [parallelize(s, mesh, cfg) for s in stages]
    ids = stage_ids(pp_rank, pp, virtual)
    sched = build_schedule(parts, ids, pp * virtual, group, world.device, schedule, MICROBATCHES)
    params = [p for part in parts for p in part.parameters()]
    opt = torch.optim.AdamW(params, lr=3e-3, weight_decay=0.1, foreach=True)
    _, copy = tied_pair(stages)
    dp_rank, dp_size = data_parallel_rank(mesh)
    losses, norms = [], []
    for x, y in tp.batches():
        rows = torch.from_numpy(rank_rows(tp.GLOBAL_BATCH, dp_rank, dp_size))
        x, y = x[rows].to(world.device), y[rows].to(world.device)
        loss = pipeline_step(sched, stages, x, y, group)
        norm = clip_grad_norm_(params, tp.MAX_NORM, pp_group=group,
                               uncounted=[copy] if copy is not None else [])
        opt.step()
        opt.zero_grad()
        if dp_size > 1:  # mean over data-parallel ranks = mean over all (the stages share the loss)
            t = loss.reshape(1) / world.world_size
            torch.distributed.all_reduce(t)
            loss = t[0]
        losses.append(float(loss))
        norms.append(float(norm))
    names = sorted(n for part in parts for n, _ in part.named_parameters())
    return {"loss": losses, "norm": norms, "names": names}


def worker(world_size: int, out: str, names: list[str]) -> None:
    from murmur.train.parallel import ParallelConfig, init_distributed

    world = init_distributed(ParallelConfig(collective_timeout_s=60))
    torch.set_num_threads(1)
    results = {name: pipelined_run(name, world) for name in names}
    gathered = [None] * world_size
    torch.distributed.all_gather_object(gathered, results)
    if world.rank == 0:
        Path(out).write_text(json.dumps(gathered))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def launch(world_size: int, names: list[str], tmp: Path, gpu: bool = False) -> list[dict]:
    import os

    os.environ["MURMUR_TEST_WORKER"] = __file__
    try:
        return tp.launch(world_size, names, tmp, gpu=gpu)
    finally:
        del os.environ["MURMUR_TEST_WORKER"]


# ---------------------------------------------------------------- stage splitting (no processes)
def test_stage_layers_even_and_contiguous():
    assert stage_layers(4, 2) == [["0", "1"], ["2", "3"]]
    assert stage_layers(5, 2) == [["0", "1", "2"], ["3", "4"]]
    assert stage_layers(126, 16)[0] == [str(i) for i in range(8)] and len(stage_layers(126, 16)[-1]) == 7
    with pytest.raises(ConfigError, match="at least one block"):
        stage_layers(2, 4)
    assert stage_ids(1, 2, 2) == [1, 3]


def test_check_schedule_refuses_what_torch_refuses():
    check_schedule("1f1b", 2, 1, 4)
    with pytest.raises(ConfigError, match="pp_virtual_stages >= 2"):
        check_schedule("interleaved_1f1b", 2, 1, 4)
    with pytest.raises(ConfigError, match="at least"):
        check_schedule("1f1b", 4, 1, 2)
    with pytest.raises(ConfigError, match="whole rounds"):
        check_schedule("zero_bubble", 4, 2, 11)
    with pytest.raises(ConfigError, match="choose from"):
        check_schedule("dualpipe", 2, 1, 4)


def test_stages_compose_to_the_model_and_keep_names():
    """Run in sequence on one process, the stages compute the model's logits, and their parameter
    names are the model's (so checkpoints written by stages load into the whole model)."""
    for tied in (True, False):
        model = new_model(tied)
        x, _ = tp.batches()[0]
        want = model(x)
        for pp, v in ((2, 1), (2, 2), (4, 1)):
            stages = [s for r in range(pp) for s in split_model(model, r, pp, v)]
            stages.sort(key=lambda s: (not s.first, s.last, int(next(iter(s.layers)))))
            h = x
            for s in stages:
                h = s(h)
            assert torch.allclose(h, want, atol=1e-6), (tied, pp, v)
            names = {n for s in stages for n, _ in s.named_parameters()}
            # (a tied model names its shared matrix once, tok_embeddings.weight; its last stage's copy
            # is output.weight, the name the matrix has in the model's state_dict too)
            assert names - {"output.weight"} == {n for n, _ in model.named_parameters()} - {"output.weight"}
            assert "output.weight" in names and "output.weight" in model.state_dict()


# ---------------------------------------------------------------- against one process (gloo)
@pytest.fixture(scope="module")
def two(tmp_path_factory) -> list[dict]:
    return launch(2, TWO, tmp_path_factory.mktemp("pp2"))


TWO = [n for n in SCENARIOS if n not in ("pp_fsdp", "pp_local")]


@pytest.mark.slow
@pytest.mark.parametrize("name", TWO)
def test_pipeline_two_stages_match_single_process(two, name):
    ref = reference_run(SCENARIOS[name][3])
    for rank, got in enumerate(two):
        assert tp.close(got[name]["loss"], ref["loss"]), (name, rank, got[name]["loss"], ref["loss"])
        assert tp.close(got[name]["norm"], ref["norm"]), (name, rank, got[name]["norm"], ref["norm"])
    assert max(ref["norm"]) > tp.MAX_NORM  # clipping is active
    # The two stages together hold every parameter of the model, once (plus the tied copy).
    names = set(two[0][name]["names"]) | set(two[1][name]["names"])
    assert names >= {n for n, _ in new_model(SCENARIOS[name][3]).named_parameters()}


@pytest.mark.slow
def test_pipeline_with_fsdp_four_processes_matches_single_process(tmp_path):
    got = launch(4, ["pp_fsdp"], tmp_path)
    ref = reference_run(True)
    for rank, res in enumerate(got):
        assert tp.close(res["pp_fsdp"]["loss"], ref["loss"]), (rank, res["pp_fsdp"]["loss"], ref["loss"])
        assert tp.close(res["pp_fsdp"]["norm"], ref["norm"]), (rank, res["pp_fsdp"]["norm"], ref["norm"])


@pytest.mark.slow
def test_interleaved_stages_on_one_process_match(tmp_path):
    got = launch(1, ["pp_local"], tmp_path)[0]["pp_local"]
    ref = reference_run(True)
    assert tp.close(got["loss"], ref["loss"]) and tp.close(got["norm"], ref["norm"]), (got, ref)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_pipeline_schedules(tmp_path):
    """The pipeline on CUDA over NCCL: both stages on one GPU (interleaved); with two GPUs, also
    1F1B across them. fp32, against the CPU reference."""
    ref = reference_run(True)
    runs = [launch(1, ["pp_local"], tmp_path / "one", gpu=True)[0]["pp_local"]]
    if torch.cuda.device_count() >= 2:
        runs += [r["pp_1f1b"] for r in launch(2, ["pp_1f1b"], tmp_path / "two", gpu=True)]
    for got in runs:
        assert tp.close(got["loss"], ref["loss"], tol=1e-3), (got["loss"], ref["loss"])
        assert tp.close(got["norm"], ref["norm"], tol=1e-3), (got["norm"], ref["norm"])


if __name__ == "__main__":
    worker(int(sys.argv[1]), sys.argv[2], sys.argv[3:])
    from murmur.train.parallel import exit_worker

    exit_worker(0)  # leave without interpreter teardown racing gloo's threads
