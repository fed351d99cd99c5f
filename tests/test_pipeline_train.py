"""The trainer runs a pipeline: ``murmur train parallel.pp=2`` gives the numbers one process gives.

Real processes on CPU with gloo, launched by ``torchrun`` (``-m murmur.train``, or
tests/test_distributed_train.py as the worker script for several runs in one job), the micro model
cut into two stages of one block each:

- pp = 2 on two processes (1F1B; and with four blocks, the interleaved 1F1B and zero-bubble schedules
  with two stages per process), and pp = 2 x dp_shard = 2 on four, match one process step by step,
  with the same validation loss and the same final model.safetensors (every stage's tensors gathered);
- checkpoints reshard: one process's step-4 checkpoint resumes with pp = 2, and a pp = 2 checkpoint
  resumes on one process (the last stage's tied output copy reads and writes the embedding's
  optimizer state), both reaching the uninterrupted run's loss;
- ``torchrun --max-restarts 1``: one stage killed with SIGKILL after a checkpoint exists, the job
  restarts, resumes and ends with the uninterrupted pipeline's loss and model.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import close, kill_a_worker, micro_overrides, train_losses

from murmur import config as cfgmod
from murmur.train import checkpoint as ckpt
from murmur.train.config import TrainConfig
from murmur.train.metrics import read_metrics
from murmur.train.trainer import train

pytestmark = pytest.mark.slow  # real torchrun jobs

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "tests" / "test_distributed_train.py"  # its "multi" entry point runs planned trainings
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
STEPS, EVERY = 16, 4
TOL = 1e-5  # relative, as the other layouts' tests
PP = {"parallel.pp": 2, "parallel.dp_shard": 1}


def torchrun(n: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n)]


def overrides(out: Path, corpus, **extra) -> list[str]:
    shards, tok = corpus
    base = {"steps": STEPS, "checkpoint.every": EVERY, "checkpoint.keep_last": 10, "eval.batches": 2}
    return micro_overrides(shards, tok, out, **{**base, **extra})


def run_job(n: int, plan: dict[str, list[str]], log: Path, timeout: float = 240) -> str:
    """Run the planned trainings (name -> overrides) one after another in one torchrun job of n processes."""
    spec = log.with_suffix(".json")
    spec.write_text(json.dumps({name: (args, {}) for name, args in plan.items()}))
    with open(log, "w") as f:
        p = subprocess.run([*torchrun(n), str(WORKER), "multi", str(spec)], env=ENV, stdout=f,
                           stderr=subprocess.STDOUT, cwd=ROOT, timeout=timeout)
    text = log.read_text()
    assert p.returncode == 0, text[-4000:]
    return text


def copy_checkpoint(src: Path, step: int, dst: Path) -> None:
    (dst / ckpt.CHECKPOINTS).mkdir(parents=True)
    shutil.copytree(ckpt.checkpoint_path(src, step), ckpt.checkpoint_path(dst, step))


def val_losses(run: Path) -> list[float]:
    return [r["val_loss"] for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "eval"]


def assert_same_run(run: Path, ref: Path, first: int = 1) -> None:
    """Same loss at every step from ``first``, same validation loss, same final model."""
    got, want = train_losses(run), train_losses(ref)
    assert sorted(got) == list(range(first, STEPS + 1)) and sorted(want) == list(range(1, STEPS + 1))
    bad = {s: (got[s], want[s]) for s in got if not close(got[s], want[s], TOL)}
    assert not bad, bad
    assert want[STEPS] < want[1] - 0.5  # it learns
    assert close(val_losses(run)[-1], val_losses(ref)[-1], TOL)
    a, b = load_file(str(run / "model.safetensors")), load_file(str(ref / "model.safetensors"))
    assert a.keys() == b.keys()  # every stage's tensors, the tied matrix once
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k


# ---------------------------------------------------------------- the shared runs
@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def single(corpus, runs) -> Path:
    torch.set_num_threads(1)
    out = runs / "single"
    train(cfgmod.load(TrainConfig, None, overrides(out, corpus)))
    return out


@pytest.fixture(scope="module")
def pp2(corpus, runs, single) -> dict[str, Path]:
    """One job of two processes: a pipeline from scratch, and one resuming one process's checkpoint."""
    copy_checkpoint(single, EVERY, runs / "resume-1to2")
    plan = {"pp2": overrides(runs / "pp2", corpus, **PP),
            "resume-1to2": overrides(runs / "resume-1to2", corpus, resume=True, **PP)}
    text = run_job(2, plan, runs / "pp2.log")
    assert "2 processes (PP x 2 (1f1b, 2 micro-batches))" in text
    return {name: runs / name for name in plan}


@pytest.fixture(scope="module")
def interleaved(corpus, runs) -> dict[str, Path]:
    """Four blocks: one process, and one job of two processes running both interleaved schedules."""
    torch.set_num_threads(1)
    four = {"model.n_layers": 4}
    train(cfgmod.load(TrainConfig, None, overrides(runs / "single4", corpus, **four)))
    plan = {name: overrides(runs / name, corpus, **{**four, **PP, "parallel.pp_schedule": name,
                                                   "parallel.pp_virtual_stages": 2})
            for name in ("interleaved_1f1b", "zero_bubble")}
    run_job(2, plan, runs / "interleaved.log")
    return {"single": runs / "single4", **{name: runs / name for name in plan}}


# ---------------------------------------------------------------- against one process
def test_pipeline_two_stages_match_one_process(pp2, single):
    assert_same_run(pp2["pp2"], single)
    state = ckpt.read_trainer_state(ckpt.checkpoint_path(pp2["pp2"], EVERY))
    assert state["world"]["pp"] == 2


@pytest.mark.parametrize("schedule", ["interleaved_1f1b", "zero_bubble"])
def test_interleaved_schedules_match_one_process(interleaved, schedule):
    assert_same_run(interleaved[schedule], interleaved["single"])


def test_pipeline_checkpoint_resumes_on_one_process_and_the_reverse(pp2, single, runs, corpus):
    assert_same_run(pp2["resume-1to2"], single, first=EVERY + 1)  # one process -> pp = 2
    out = runs / "resume-2to1"  # pp = 2 -> one process
    copy_checkpoint(pp2["pp2"], EVERY, out)
    train(cfgmod.load(TrainConfig, None, overrides(out, corpus, resume=True)))
    assert_same_run(out, single, first=EVERY + 1)


def test_pipeline_with_fsdp_four_processes_matches_one_process(single, runs, corpus):
    out = runs / "pp2-fsdp2"
    text = run_job(4, {"pp2-fsdp2": overrides(out, corpus, **{"parallel.pp": 2, "parallel.dp_shard": 2})},
                   runs / "pp2-fsdp2.log")
    assert "4 processes (PP x 2 (1f1b, 2 micro-batches) + FSDP2 x 2)" in text
    assert_same_run(out, single)


def test_killed_stage_restarts_and_ends_with_the_uninterrupted_loss(pp2, runs, corpus):
    """kill -9 of one stage under ``torchrun --max-restarts 1``: the job restarts both stages, which
    resume from the newest complete checkpoint and end exactly where the uninterrupted pipeline did."""
    out = runs / "kill"
    args = overrides(out, corpus, resume=True, **{**PP, "checkpoint.async_save": True})
    text, killed_at = kill_a_worker([*torchrun(2), "--max-restarts", "1", "-m", "murmur.train", *args], out,
                                    runs / "kill.log", ENV, ROOT)
    assert killed_at.name != f"step_{STEPS:08d}"  # killed mid-run
    assert f"resuming from {out / 'checkpoints'}" in text, text[-3000:]
    ref = pp2["pp2"]
    assert train_losses(out)[STEPS] == train_losses(ref)[STEPS]  # same layout, same numbers: exact
    assert sorted(train_losses(out)) == list(range(1, STEPS + 1))
    a, b = load_file(str(out / "model.safetensors")), load_file(str(ref / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
