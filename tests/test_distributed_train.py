"""The trainer under torchrun: layouts match one process, checkpoints reshard, failures are survived.

Real processes on CPU with gloo, launched by ``torchrun`` (``-m murmur.train``, or this file as the
worker script for several runs in one job), a micro model and a few dozen steps. The runs are
shared between the assertions (module fixtures):

- ``single``: one process, in this process (the reference; its step-8 checkpoint seeds 1 -> 2);
- ``fsdp``: ``torchrun --nproc-per-node 2 -m murmur.train parallel.dp_shard=2`` (its step-8
  checkpoint seeds 2 -> 1, and it is the uninterrupted run the kill test must reproduce);
- ``multi``: one torchrun job of 2 processes running DDP, TP, a 1 -> 2 resume and the guard;
- ``kill``: ``torchrun --max-restarts 1`` with background checkpoints, one worker killed with
  SIGKILL after a checkpoint exists;
- a hung worker (SIGSTOP) whose peer fails after ``parallel.collective_timeout_s``.

``python tests/test_distributed_train.py multi SPEC.json`` is the worker entry point.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import Poisoned, Traced, close, kill_a_worker, micro_overrides, train_losses

from murmur import config as cfgmod
from murmur.errors import ConfigError, MurmurError
from murmur.train import checkpoint as ckpt
from murmur.train.config import GuardSection, TrainConfig
from murmur.train.guard import LossGuard, rollback_offset
from murmur.train.metrics import read_metrics
from murmur.train.pretrain import PretrainTask
from murmur.train.sampler import window_starts
from murmur.train.trainer import Trainer, train

pytestmark = pytest.mark.slow  # real torchrun jobs

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
STEPS, EVERY, SEED, GLOBAL_BATCH = 32, 8, 0, 8  # 8 windows of 32 tokens = 256 tokens per step
TOL = 1e-5  # relative: fp32 reductions in another order, over 32 steps
NAN_BATCHES = [10, 11, 20]  # two bad batches in a row (rollback), then one alone (skip)


def overrides(out: Path, corpus, **extra) -> list[str]:
    """A micro model with two key/value heads (so tp = 2 divides them), checkpoints every 8 steps."""
    shards, tok = corpus
    base = {"steps": STEPS, "model.n_kv_heads": 2, "checkpoint.every": EVERY, "checkpoint.keep_last": 10,
            "eval.batches": 2, "guard.max_skips": 2}
    return micro_overrides(shards, tok, out, **{**base, **extra})


def data_indices(run: Path) -> list[int]:
    return [r["data_index"] for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "train"]


def copy_checkpoint(src_run: Path, step: int, dst_run: Path) -> None:
    (dst_run / ckpt.CHECKPOINTS).mkdir(parents=True)
    shutil.copytree(ckpt.checkpoint_path(src_run, step), ckpt.checkpoint_path(dst_run, step))


def torchrun(args: list[str], log: Path, timeout: float = 150) -> str:
    with open(log, "w") as f:
        p = subprocess.run([*TORCHRUN, *args], env=ENV, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, timeout=timeout)
    text = log.read_text()
    assert p.returncode == 0, text[-4000:]
    return text


def wrapped(cfg: TrainConfig, wrap: dict) -> object:
    """The pretraining task of ``cfg``, traced (``{"trace": DIR}``) or poisoned (``{"nan": [batches]}``)."""
    task = PretrainTask(cfg)
    if "trace" in wrap:
        task = Traced(task, wrap["trace"])
    if "nan" in wrap:
        task = Poisoned(task, wrap["nan"])
    return task


def run_planned(runs: Path, plan: dict[str, tuple[list[str], dict]], name: str) -> Path:
    """Run ``plan`` (name -> (overrides, wrap)) one after another in one torchrun job of two processes."""
    spec = runs / f"{name}.json"
    spec.write_text(json.dumps(plan))
    torchrun([__file__, "multi", str(spec)], runs / f"{name}.log")
    return runs / f"{name}.log"


def read_trace(trace_dir: Path) -> list[dict]:
    out = []
    for path in sorted(trace_dir.glob("rank_*.jsonl")):
        out += [json.loads(line) for line in path.read_text().splitlines()]
    return out


# ---------------------------------------------------------------- the shared runs
@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def single(corpus, runs) -> Path:
    torch.set_num_threads(1)
    out = runs / "single"
    cfg = cfgmod.load(TrainConfig, None, overrides(out, corpus))
    train(cfg, wrapped(cfg, {"trace": str(runs / "trace-single")}))
    return out


@pytest.fixture(scope="module")
def fsdp(corpus, runs) -> Path:
    out = runs / "fsdp"
    log = run_planned(runs, {"fsdp": (overrides(out, corpus, **{"parallel.dp_shard": 2}),
                                      {"trace": str(runs / "trace-fsdp")})}, "fsdp")
    text = log.read_text()
    assert "2 processes (FSDP2 x 2)" in text and text.count("train: starting") == 1  # process 0 logs
    return out


@pytest.fixture(scope="module")
def multi(corpus, runs, single) -> dict[str, Path]:
    """One torchrun job of two processes running four trainings one after the other."""
    resume = runs / "resume-1to2"
    copy_checkpoint(single, EVERY, resume)
    plan = {
        "ddp": (overrides(runs / "ddp", corpus, **{"parallel.dp_replicate": 2, "parallel.dp_shard": 1}), {}),
        "tp": (overrides(runs / "tp", corpus, **{"parallel.tp": 2, "parallel.dp_shard": 1}), {}),
        "resume-1to2": (overrides(resume, corpus, resume=True), {"trace": str(runs / "trace-1to2")}),
        "guard-ddp": (overrides(runs / "guard-ddp", corpus, **{"parallel.dp_replicate": 2,
                                                                "parallel.dp_shard": 1}),
                      {"nan": NAN_BATCHES}),
        "meta": (overrides(runs / "meta", corpus, steps=1, meta_init="on", **{"parallel.dp_shard": 2,
                                                                              "optim.lr": 1e-12}), {}),
    }
    run_planned(runs, plan, "multi")
    return {name: Path(args[0].split("=", 1)[1]) for name, (args, _) in plan.items()}


def multi_worker(spec_path: str) -> None:
    """Run each planned training in turn inside one process group (the torchrun job's)."""
    from murmur.train.config import ParallelConfig
    from murmur.train.parallel import destroy_distributed, init_distributed

    init_distributed(ParallelConfig(backend="gloo", collective_timeout_s=120))
    for args, wrap in json.loads(Path(spec_path).read_text()).values():
        cfg = cfgmod.load(TrainConfig, None, args)
        train(cfg, wrapped(cfg, wrap))
    destroy_distributed()


# ---------------------------------------------------------------- layouts match one process
def assert_same_run(run: Path, ref: Path, tol: float = TOL, first: int = 1) -> None:
    """Same loss at every step from ``first`` (a resumed run logs only its own steps), same model."""
    got, want = train_losses(run), train_losses(ref)
    assert sorted(got) == list(range(first, STEPS + 1)) and sorted(want) == list(range(1, STEPS + 1))
    bad = {s: (got[s], want[s]) for s in got if not close(got[s], want[s], tol)}
    assert not bad, bad
    assert want[STEPS] < want[1] - 1.0  # it learns
    a, b = load_file(str(run / "model.safetensors")), load_file(str(ref / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-4, rtol=1e-3), k


def test_fsdp_two_processes_match_one(fsdp, single):
    assert_same_run(fsdp, single)
    # every process wrote its own shards of each checkpoint; the marker came last
    files = {p.name for p in ckpt.checkpoint_path(fsdp, EVERY).iterdir()}
    assert {"__0_0.distcp", "__1_0.distcp", "_COMPLETE", "trainer_state.pt", ".metadata"} <= files
    digests = json.loads((ckpt.checkpoint_path(fsdp, EVERY) / ckpt.DIGESTS_FILE).read_text())["files"]
    assert set(digests) == {"__0_0.distcp", "__1_0.distcp", "trainer_state.pt", ".metadata"}  # both processes'
    assert ckpt.verify_checkpoint(ckpt.checkpoint_path(fsdp, EVERY)) is None
    assert ckpt.read_trainer_state(ckpt.checkpoint_path(fsdp, EVERY))["world"]["dp_shard"] == 2


@pytest.mark.parametrize("layout", ["ddp", "tp"])
def test_ddp_and_tensor_parallel_match_one_process(multi, single, layout):
    assert_same_run(multi[layout], single)


def test_meta_device_init_gives_each_shard_its_own_numbers(multi):
    """Built on the meta device and initialised shard by shard: a fresh model (no step taken, lr ~0)
    whose two halves (one per process) differ, with the init's spread, predicting ~uniformly."""
    w = load_file(str(multi["meta"] / "model.safetensors"))
    for name in ("tok_embeddings.weight", "layers.0.attention.wq.weight", "layers.1.feed_forward.w1.weight"):
        t = w[name]
        half = len(t) // 2
        assert (t[:half] - t[half:]).abs().max() > 1e-3, name
        assert 0.015 < float(t.std()) < 0.025, name  # init_std 0.02
    assert abs(train_losses(multi["meta"])[1] - math.log(320)) < 0.1


# ---------------------------------------------------------------- resharded resume
@pytest.fixture(scope="module")
def resumed_on_one(fsdp, runs, corpus):
    """The 2-process run's step-8 checkpoint, resumed by one process (here)."""
    out = runs / "resume-2to1"
    copy_checkpoint(fsdp, EVERY, out)
    cfg = cfgmod.load(TrainConfig, None, overrides(out, corpus, resume=True))
    return train(cfg, wrapped(cfg, {"trace": str(runs / "trace-2to1")}))


def test_checkpoint_of_two_processes_resumes_on_one(resumed_on_one, fsdp, single):
    assert resumed_on_one.steps == STEPS
    assert_same_run(resumed_on_one.run_dir, single, first=EVERY + 1)
    assert close(resumed_on_one.train_loss, train_losses(fsdp)[STEPS], 1e-6)


def test_checkpoint_of_one_process_resumes_on_two(multi, single):
    assert_same_run(multi["resume-1to2"], single, first=EVERY + 1)


def test_resumed_on_another_world_size_neither_repeats_nor_skips_data(resumed_on_one, multi, runs, corpus):
    """Per step, the windows read by all processes together are exactly the step's global batch,
    before and after a resume that changed the number of processes (2 -> 1 and 1 -> 2)."""
    from murmur.data.shards_format import TokenShards

    shards = TokenShards(corpus[0], "train")
    for before, after in (("trace-fsdp", "trace-2to1"), ("trace-single", "trace-1to2")):
        records = [r for r in read_trace(runs / before) if r["index"] < EVERY]
        records += read_trace(runs / after)
        assert {r["dp_size"] for r in records if r["index"] < EVERY} != {r["dp_size"] for r in records
                                                                          if r["index"] >= EVERY}
        for step in range(STEPS):
            mine = [r for r in records if r["index"] == step]
            assert sorted(r["dp_rank"] for r in mine) == list(range(mine[0]["dp_size"]))  # each rank once
            read = sorted(row for r in mine for row in r["rows"])
            want = [shards.read(int(s), 32).tolist() for s in window_starts(SEED, step, GLOBAL_BATCH,
                                                                               shards.num_tokens, 32)]
            assert read == sorted(want), step


def test_consolidate_sharded_checkpoint_on_one_process(fsdp, runs):
    """The final checkpoint of the 2-process run, read whole in one process, is the model that
    process 0 gathered and wrote at the end of the run."""
    out = ckpt.consolidate(ckpt.checkpoint_path(fsdp, STEPS), runs / "consolidated")
    a, b = load_file(str(out / "model.safetensors")), load_file(str(fsdp / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((out / "config.json").read_text()) == json.loads((fsdp / "config.json").read_text())


# ---------------------------------------------------------------- the loss guard
def test_guard_skips_nan_batches_and_rolls_back(corpus, runs, multi):
    """NaN on batches 10 and 11 (two in a row: roll back to step 8 and move on to batch 12), then
    on batch 20 alone (skip it). One process and DDP on two (NaN on process 0 only) agree."""
    out = runs / "guard"
    cfg = cfgmod.load(TrainConfig, None, overrides(out, corpus))
    result = train(cfg, wrapped(cfg, {"nan": NAN_BATCHES}))
    assert result.steps == STEPS and math.isfinite(result.train_loss)
    want = [*range(0, 8), *range(12, 20), *range(21, 21 + STEPS - 16)]
    assert data_indices(out) == want
    events = [r for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "event"]
    assert [(e["event"], e["step"]) for e in events] == [("rollback", 8), ("skip", 16)]
    assert events[0]["data_offset"] == 4 and events[0]["last_bad_batch"] == 11 and "nan" in events[0]["reason"]
    state = ckpt.read_trainer_state(ckpt.checkpoint_path(out, STEPS))
    assert state["data_offset"] == 5 and state["guard"]["rollbacks"] == 1 and state["guard"]["skipped"] == 3
    ddp = multi["guard-ddp"]
    assert data_indices(ddp) == want
    got, ref = train_losses(ddp), train_losses(out)
    assert all(close(got[s], ref[s]) for s in ref), (got, ref)


def test_guard_decisions():
    g = LossGuard(GuardSection(spike_factor=2.0, window=4, max_skips=2, max_rollbacks=1))
    assert g.check(float("nan")) == "loss nan" and g.check(1.0, float("inf")) == "gradient norm inf"
    assert g.check(100.0) is None  # no history yet: only NaN/inf count
    for loss in (3.0, 3.2, 2.8, 3.0):
        g.accept(loss)
    assert g.mean() == pytest.approx(3.0)
    assert g.check(5.9) is None and "2 x running mean 3.0000" in g.check(6.1)
    assert not g.skip() and g.skip()  # the second bad step in a row asks for a rollback
    h = LossGuard(GuardSection())
    h.load_state_dict(g.state_dict())
    assert h.state_dict() == g.state_dict()
    assert rollback_offset(checkpoint_step=8, last_bad_index=11) == 4


def test_guard_without_a_checkpoint_stops_with_one_line(corpus, tmp_path):
    cfg = cfgmod.load(TrainConfig, None, overrides(tmp_path / "g", corpus, steps=4, **{"checkpoint.every": 0}))
    with pytest.raises(MurmurError) as e:
        train(cfg, wrapped(cfg, {"nan": [1, 2]}))
    assert "training diverged" in str(e.value) and "no checkpoint to roll back to" in str(e.value)
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- failures
def test_killed_worker_restarts_and_resumes_to_the_same_loss(corpus, runs, fsdp):
    """kill -9 one of two workers after a (background) checkpoint exists: torchrun restarts the job,
    which resumes from the newest complete checkpoint and ends exactly where the uninterrupted run did."""
    out = runs / "kill"
    args = overrides(out, corpus, resume=True, **{"parallel.dp_shard": 2, "checkpoint.async_save": True})
    text, killed_at = kill_a_worker([*TORCHRUN, "--max-restarts", "1", "-m", "murmur.train", *args], out,
                                    runs / "kill.log", ENV, ROOT)
    assert killed_at.name != f"step_{STEPS:08d}"  # killed mid-run
    assert f"resuming from {out / 'checkpoints'}" in text, text[-3000:]
    assert train_losses(out)[STEPS] == train_losses(fsdp)[STEPS]  # same layout, same numbers: exact
    assert sorted(train_losses(out)) == list(range(1, STEPS + 1))  # no step logged twice
    a, b = load_file(str(out / "model.safetensors")), load_file(str(fsdp / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_hung_worker_times_out_with_one_line_error(corpus, tmp_path):
    """SIGSTOP one of two workers: the other's next collective fails after collective_timeout_s
    with one line naming its rank and what it was doing, instead of waiting forever."""
    args = overrides(tmp_path / "hang", corpus, steps=2000, log_every=5,
                     **{"parallel.collective_timeout_s": 5, "checkpoint.every": 0})
    port = free_port()
    procs = []
    for rank in range(2):
        e = {**ENV, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
             "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        procs.append(subprocess.Popen([sys.executable, "-m", "murmur.train", *args], env=e, text=True,
                                      stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE if rank == 0 else subprocess.DEVNULL))
    try:
        for line in procs[0].stderr:
            if " step 10/2000 " in line:
                os.kill(procs[1].pid, signal.SIGSTOP)
                break
        stopped = time.monotonic()
        err = procs[0].stderr.read()
        assert procs[0].wait(timeout=60) == 2, err[-3000:]
        waited = time.monotonic() - stopped
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    last = err.strip().splitlines()[-1]
    assert last.startswith("murmur: error: rank 0: collective timed out after 5s during step"), last
    assert 4 < waited < 40


# ---------------------------------------------------------------- configuration
def test_parallel_section_and_its_checks(corpus, tmp_path):
    toml = tmp_path / "p.toml"
    toml.write_text("[parallel]\ndp_shard = 2\nactivation_checkpointing = \"selective\"\n"
                    "[checkpoint]\nasync_save = true\n[guard]\nspike_factor = 3.0\n")
    cfg = cfgmod.load(TrainConfig, toml)
    assert cfg.parallel.dp_shard == 2 and cfg.parallel.activation_checkpointing == "selective"
    assert cfg.checkpoint.async_save and cfg.guard.spike_factor == 3.0
    with pytest.raises(ConfigError, match="unknown config key 'parallel.compile'"):  # one compile knob: `compile`
        cfgmod.load(TrainConfig, None, overrides(tmp_path / "a", corpus, **{"parallel.compile": True}))
    with pytest.raises(ConfigError, match="must equal the world size"):  # one process, two shards asked for
        Trainer(cfgmod.load(TrainConfig, None, overrides(tmp_path / "b", corpus, **{"parallel.dp_shard": 2})))
    with pytest.raises(ConfigError, match="guard.window"):
        Trainer(cfgmod.load(TrainConfig, None, overrides(tmp_path / "c", corpus, **{"guard.window": 0})))


# ---------------------------------------------------------------- GPUs (skipped without CUDA)
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_bf16_compiled_run_close_to_cpu_fp32(corpus, single, tmp_path):
    """One GPU, bf16 autocast and compiled blocks: the losses stay close to the fp32 CPU run."""
    result = train(cfgmod.load(TrainConfig, None, overrides(tmp_path / "gpu", corpus, dtype="bf16", compile=True,
                                                             device="cuda")))
    assert abs(result.train_loss - train_losses(single)[STEPS]) < 5e-2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
def test_gpu_fsdp_nccl_bf16_two_gpus(corpus, single, tmp_path):
    """FSDP2 over NCCL with bf16 parameters and fp32 gradient reduction, compiled blocks."""
    out = tmp_path / "nccl"
    gpu_env = {k: v for k, v in ENV.items() if k != "CUDA_VISIBLE_DEVICES"}
    p = subprocess.run([*TORCHRUN, "-m", "murmur.train", *overrides(out, corpus, dtype="bf16", compile=True,
                                                                      device="auto", **{"parallel.dp_shard": 2})],
                       env=gpu_env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    assert abs(train_losses(out)[STEPS] - train_losses(single)[STEPS]) < 5e-2


if __name__ == "__main__":
    if sys.argv[1] == "multi":
        from murmur.train.parallel import exit_worker

        multi_worker(sys.argv[2])
        exit_worker(0)  # leave without interpreter teardown racing gloo's threads
