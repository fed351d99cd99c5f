"""Shared fixtures for the training and generation tests: a small learnable corpus, tokenizer and shards."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

PEOPLE = ["ana", "bo", "chen", "dee", "eli", "fay"]
FOODS = ["pizza", "ramen", "tacos", "salad", "curry"]
PLACES = ["the park", "work", "home", "the beach", "school"]
TEMPLATES = [
    "{p} loves {f} at {l} #food",
    "just had {f} with {p} at {l}",
    "{p}: going to {l} today, who wants {f}?",
    "no {f} at {l} again... sad #monday",
]


def make_posts(n: int, seed: int = 0) -> dict[str, list]:
    """Short templated posts: easy to learn, so a few steps visibly lower the loss."""
    rng = random.Random(seed)
    texts = [rng.choice(TEMPLATES).format(p=rng.choice(PEOPLE), f=rng.choice(FOODS), l=rng.choice(PLACES))
             for _ in range(n)]
    return {"post_id": [f"p{seed}-{i}" for i in range(n)], "text": texts}


def build_corpus(root: Path, n_posts: int = 1500, vocab_size: int = 320, seed: int = 0) -> tuple[Path, Path]:
    """Write posts, train a tokenizer and tokenize to shards; returns (shards_dir, tokenizer_dir)."""
    from murmur.data.shards import ShardConfig, tokenize_to_shards
    from murmur.tokenizer import TokenizerConfig, train_tokenizer

    root.mkdir(parents=True, exist_ok=True)
    posts = root / "posts.parquet"
    pq.write_table(pa.table(make_posts(n_posts, seed)), posts)
    tok_dir, shards_dir = root / "tokenizer", root / "shards"
    train_tokenizer(posts, tok_dir, TokenizerConfig(vocab_size=vocab_size))
    tokenize_to_shards(posts, tok_dir, shards_dir, ShardConfig(val_fraction=0.1))
    return shards_dir, tok_dir


def micro_overrides(shards: Path, tokenizer: Path, out: Path, steps: int = 6, **extra: object) -> list[str]:
    """Overrides for a micro model (dim 32, 2 layers) that trains in well under a second."""
    base = {
        "out": str(out), "steps": steps, "seed": 0, "dtype": "fp32", "log_every": 1,
        "data.shards": str(shards), "data.tokenizer": str(tokenizer), "data.seq_len": 32,
        "model.preset": "tiny", "model.dim": 32, "model.n_layers": 2, "model.n_heads": 2, "model.n_kv_heads": 1,
        "model.ffn_dim": 64, "model.max_seq_len": 64,
        "optim.lr": 3e-3, "schedule.warmup": 2, "batch.micro_batch": 4, "batch.tokens_per_step": 256,
        "eval.every": 0, "eval.batches": 2, "eval.samples": 0, "checkpoint.every": 0, "checkpoint.keep_last": 2,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


# ---------------------------------------------------------------- faults and traces, injected from outside
class TaskWrapper:
    """A training task that passes everything to ``task`` (tests override one method)."""

    def __init__(self, task):
        self.task = task

    def __getattr__(self, name: str):
        return getattr(self.task, name)


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class Poisoned(TaskWrapper):
    """Process 0's loss is NaN on the given global batches (a bad batch on one process)."""

    def __init__(self, task, indices):
        super().__init__(task)
        self.indices = set(indices)

    def batches(self, index, plan):
        out = self.task.batches(index, plan)
        if index in self.indices and _rank() == 0:
            for b in out:
                b.weight = float("nan")  # loss * weight is NaN, and so is every gradient
        return out


class Traced(TaskWrapper):
    """Appends the token rows this process reads for each global batch to ``DIR/rank_R.jsonl``."""

    def __init__(self, task, directory):
        super().__init__(task)
        self.directory = Path(directory)

    def batches(self, index, plan):
        import json

        out = self.task.batches(index, plan)
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / f"rank_{_rank()}.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({"index": index, "dp_rank": plan.dp_rank, "dp_size": plan.dp_size,
                                "rows": [row for b in out for row in b.tokens.tolist()]}) + "\n")
        return out


# ---------------------------------------------------------------- runs and processes
def train_losses(run: Path) -> dict[int, float]:
    """The logged training loss of each step of a run."""
    from murmur.train.metrics import read_metrics

    return {r["step"]: r["loss"] for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "train"}


def close(a: float, b: float, tol: float = 1e-5) -> bool:
    """Equal within a relative ``tol`` (fp32 reductions in another order, over a few dozen steps)."""
    return abs(a - b) <= tol * max(1.0, abs(b))


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def rank_of(pid: int) -> int | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in environ:
        if item.startswith(b"RANK="):
            return int(item[5:])
    return None




def kill_a_worker(cmd: list[str], out: Path, log: Path, env: dict, cwd: Path) -> tuple[str, Path]:
    """Run a two-worker ``torchrun --max-restarts 1`` job ``cmd``; once a checkpoint of ``out`` exists,
    freeze both workers, kill -9 rank 1 and let the job recover. Returns (the job's log, the newest
    checkpoint at the kill)."""
    import os
    import signal
    import subprocess
    import time

    from murmur.train import checkpoint as ckpt

    with open(log, "w") as f:
        job = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, cwd=cwd)
    try:
        deadline = time.monotonic() + 180  # generous: a loaded machine is slow, a passing run never waits it out
        while ckpt.latest_checkpoint(out) is None:
            assert job.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.02)
        workers = {rank_of(p): p for p in children(job.pid)}
        assert set(workers) == {0, 1}, workers
        for p in workers.values():
            os.kill(p, signal.SIGSTOP)  # freeze both, so the run cannot finish before the kill
        killed_at = ckpt.latest_checkpoint(out)
        os.kill(workers[1], signal.SIGKILL)
        os.kill(workers[0], signal.SIGCONT)
        assert job.wait(timeout=240) == 0, log.read_text()[-4000:]
    finally:
        if job.poll() is None:
            job.kill()
    return log.read_text(), killed_at
