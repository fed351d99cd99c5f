"""Chat fine-tuning on the one trainer under torchrun: FSDP2 matches one process, kill -9 resumes exactly.

Real processes on CPU with gloo, launched as a user would (``torchrun -m murmur.cli sft``), a micro
base model and a few dozen conversations:

- ``single``: one process, in this process (the reference);
- ``fsdp``: ``torchrun --nproc-per-node 2 -m murmur.cli sft ... parallel.dp_shard=2 meta_init=on``:
  the same rows per step split over two processes, the model built on the meta device and the base
  weights loaded shard by shard, so every step's loss matches one process within the tolerance of
  the pretraining tests; it is the uninterrupted run the kill test reproduces;
- ``kill``: the same with ``--max-restarts 1`` and background checkpoints, one worker killed with
  SIGKILL after a checkpoint exists.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from chat_helpers import CONVERSATIONS, make_base_model, make_tokenizer, write_jsonl
from safetensors.torch import load_file
from train_helpers import close, kill_a_worker, train_losses

from murmur import config as cfgmod
from murmur.chat.sft import SFTConfig, run_sft

pytestmark = pytest.mark.slow  # real torchrun jobs

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
STEPS, EVERY = 24, 6
TOL = 1e-5  # as the pretraining tests: fp32 reductions in another order


def sft_args(setup: tuple[Path, Path], out: Path, **extra: object) -> list[str]:
    """A micro fine-tune: 4 packed rows of 64 tokens per step (2 per pass; 1 pass per process on two)."""
    base, data = setup
    knobs = {"model": base, "data": data, "out": out, "steps": STEPS, "seed": 0, "dtype": "fp32", "device": "cpu",
             "log_every": 1, "seq_len": 64, "optim.lr": 3e-3, "schedule.warmup": 3, "batch.micro_batch": 2,
             "batch.tokens_per_step": 4 * 64, "eval.val_fraction": 0.2, "eval.every": EVERY, "eval.batches": 2,
             "checkpoint.every": EVERY, "checkpoint.keep_last": 10}
    knobs.update(extra)
    return [f"{k}={v}" for k, v in knobs.items()]


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("dsft")
    base = make_base_model(root, make_tokenizer(root))
    many = [[{"role": "user", "content": f"post {i}"}, {"role": "assistant", "content": f"pizza {i} #food"}]
            for i in range(30)]
    return base, write_jsonl(root / "conversations.jsonl", CONVERSATIONS + many)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sft-runs")


@pytest.fixture(scope="module")
def single(setup, runs) -> Path:
    torch.set_num_threads(1)
    out = runs / "single"
    run_sft(cfgmod.load(SFTConfig, None, sft_args(setup, out)))
    return out


@pytest.fixture(scope="module")
def fsdp(setup, runs) -> Path:
    import subprocess

    out = runs / "fsdp"
    log = runs / "fsdp.log"
    with open(log, "w") as f:
        p = subprocess.run([*TORCHRUN, "-m", "murmur.cli", "sft", *sft_args(setup, out, meta_init="on",
                                                                                **{"parallel.dp_shard": 2})],
                           env=ENV, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, timeout=300)
    text = log.read_text()
    assert p.returncode == 0, text[-4000:]
    assert "2 processes (FSDP2 x 2, meta-device init)" in text and text.count(f"fine-tuned {STEPS} steps") == 1  # process 0 reports
    return out


def test_fsdp_two_processes_match_one(setup, fsdp, single):
    got, want = train_losses(fsdp), train_losses(single)
    assert sorted(got) == sorted(want) == list(range(1, STEPS + 1))
    bad = {s: (got[s], want[s]) for s in want if not close(got[s], want[s], TOL)}
    assert not bad, bad
    assert want[STEPS] < want[1] - 1.0  # it learns
    evals = [[r["val_loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
              if r["kind"] == "eval"] for run in (fsdp, single)]
    assert len(evals[0]) == STEPS // EVERY and all(close(a, b, TOL) for a, b in zip(*evals, strict=True))
    a, b = load_file(str(fsdp / "model.safetensors")), load_file(str(single / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-4, rtol=1e-3), k
    # the sharded checkpoints hold the fine-tuning state, and the run says what it trained on
    state = torch.load(fsdp / "checkpoints" / f"step_{STEPS:08d}" / "trainer_state.pt", weights_only=False)
    assert state["world"]["dp_shard"] == 2 and "data_sha256" in state["data"]
    assert json.loads((fsdp / "sft.json").read_text())["base_model"] == str(setup[0])


def test_killed_worker_restarts_and_resumes_to_the_same_loss(setup, runs, fsdp):
    out = runs / "kill"
    args = sft_args(setup, out, resume=True, meta_init="on",
                    **{"parallel.dp_shard": 2, "checkpoint.async_save": True})
    text, killed_at = kill_a_worker([*TORCHRUN, "--max-restarts", "1", "-m", "murmur.cli", "sft", *args], out,
                                    runs / "kill.log", ENV, ROOT)
    assert killed_at.name != f"step_{STEPS:08d}"  # killed mid-run
    assert f"resuming from {out / 'checkpoints'}" in text, text[-3000:]
    assert train_losses(out)[STEPS] == train_losses(fsdp)[STEPS]  # same layout, same numbers: exact
    assert sorted(train_losses(out)) == list(range(1, STEPS + 1))  # no step logged twice
    a, b = load_file(str(out / "model.safetensors")), load_file(str(fsdp / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
