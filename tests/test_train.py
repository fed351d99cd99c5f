"""Pretraining: a real (micro) run end to end, exact resume, signals, bad input, configs, pieces."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from train_helpers import micro_overrides

from murmur import config as cfgmod
from murmur.data.shards_format import TokenShards, shard_name, write_shard
from murmur.errors import CheckpointError, ConfigError, InputError
from murmur.io import atomic_dir, write_json
from murmur.model import ModelConfig, Transformer, num_params
from murmur.train import checkpoint as ckpt
from murmur.train.config import ScheduleSection, TrainConfig, grad_accum_steps
from murmur.train.data import WindowSampler, eval_batches, unigram_bits_per_byte
from murmur.train.metrics import cpu_peak_flops, gpu_peak_flops, raise_cpu_peak, read_metrics
from murmur.train.optim import build_optimizer, lr_at, param_groups
from murmur.train.trainer import Trainer, TrainResult, dry_run, train

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


pytestmark = pytest.mark.usefixtures("one_thread")


def load(shards, tok, out, **extra) -> TrainConfig:
    return cfgmod.load(TrainConfig, None, micro_overrides(shards, tok, out, **extra))


def one_line(e: BaseException) -> str:
    msg = str(e)
    assert msg and "\n" not in msg, msg
    return msg


# ---------------------------------------------------------------- a whole run
def test_run_learns_and_writes_everything(corpus, tmp_path):
    shards, tok = corpus
    out = tmp_path / "run"
    cfg = load(shards, tok, out, steps=40, log_every=5, **{"eval.every": 20, "eval.samples": 2,
                                                           "checkpoint.every": 10, "checkpoint.keep_last": 2})
    result = train(cfg)
    assert result.steps == 40 and not result.interrupted and result.tokens == 40 * 256
    assert result.tokens_per_s > 0 and result.mfu is not None and 0 < result.mfu < 1
    # the resolved config reloads to the same config
    assert cfgmod.load(TrainConfig, out / "config.toml") == cfg
    records = read_metrics(out / "metrics.jsonl")
    steps = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in steps] == list(range(5, 41, 5))
    assert {"loss", "lr", "grad_norm", "tokens_per_s", "mfu", "tokens"} <= set(steps[0])
    assert steps[-1]["loss"] < steps[0]["loss"] - 1.0
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [20, 40]
    assert len([r for r in records if r["kind"] == "sample"]) == 4
    # learns beyond word frequencies: below the unigram baseline, in bits per byte
    unigram = unigram_bits_per_byte(shards)
    assert result.val_bpb == pytest.approx(evals[-1]["val_bpb"]) and result.val_bpb < unigram
    # the newest two checkpoints are kept, each complete
    assert [s for s, _ in ckpt.list_checkpoints(out)] == [30, 40]
    # the inference model: tied weights stored once, tokenizer copied
    weights = load_file(str(out / "model.safetensors"))
    assert "tok_embeddings.weight" in weights and "output.weight" not in weights
    assert json.loads((out / "config.json").read_text())["dim"] == 32
    assert (out / "tokenizer" / "tokenizer.json").is_file()
    from murmur.generate import generate_text
    from murmur.modeldir import load_model

    model, tokenizer, mcfg = load_model(out)
    assert mcfg.n_layers == 2 and tokenizer.vocab_size == mcfg.vocab_size
    text = generate_text(model, tokenizer, "ana loves", 12, temperature=0, seed=0)[0]
    assert text.startswith("ana loves") and len(text) > len("ana loves")
    # the plot
    from murmur.plot import plot_run

    png = plot_run(out)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_continues_exactly(corpus, tmp_path):
    """A run stopped at step 4 and resumed ends bit-identical to one that never stopped."""
    shards, tok = corpus
    full = tmp_path / "full"
    extra = {"steps": 12, "checkpoint.every": 4, "checkpoint.keep_last": 5, "log_every": 4}
    ref = train(load(shards, tok, full, **extra))
    part = tmp_path / "part"
    (part / "checkpoints").mkdir(parents=True)
    shutil.copytree(ckpt.checkpoint_path(full, 4), ckpt.checkpoint_path(part, 4))
    with pytest.raises(CheckpointError, match="--resume"):
        Trainer(load(shards, tok, part, **extra))
    resumed = train(load(shards, tok, part, resume=True, **extra))
    assert resumed.train_loss == ref.train_loss and resumed.val_loss == ref.val_loss
    a, b = load_file(str(full / "model.safetensors")), load_file(str(part / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # metrics after the checkpoint were not duplicated
    assert [r["step"] for r in read_metrics(part / "metrics.jsonl") if r["kind"] == "train"] == [8, 12]


def test_sigterm_saves_a_checkpoint_then_resume_matches(corpus, tmp_path):
    shards, tok = corpus
    out = tmp_path / "sig"
    args = micro_overrides(shards, tok, out, steps=150)
    proc = subprocess.Popen([sys.executable, "-m", "murmur.train", *args], env=ENV, stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if " step 1/150 " in line or line.startswith("step "):
            proc.send_signal(signal.SIGTERM)
            break
    rest_err = proc.stderr.read()
    stdout = proc.stdout.read()
    assert proc.wait(timeout=60) == 0, "".join(lines) + rest_err
    assert "interrupted at step" in stdout
    assert "SIGTERM received" in rest_err
    saved = ckpt.list_checkpoints(out)
    assert len(saved) == 1 and 0 < saved[0][0] < 150
    assert not (out / "model.safetensors").exists()
    # resuming reaches exactly what an uninterrupted run reaches
    resumed = train(load(shards, tok, out, steps=150, resume=True))
    ref = train(load(shards, tok, tmp_path / "ref", steps=150))
    assert resumed.train_loss == ref.train_loss and resumed.val_loss == ref.val_loss


# ---------------------------------------------------------------- bad input: one line, before compute
def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "murmur.cli", *args], env=ENV, capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_cli_unknown_key_and_wrong_type(tmp_path):
    r = run_cli("train", "--config", str(ROOT / "murmur" / "configs" / "tiny-cpu.toml"), "optim.lrr=1e-3")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "did you mean 'optim.lr'" in r.stderr
    r = run_cli("train", "--config", str(ROOT / "murmur" / "configs" / "tiny-cpu.toml"), "steps=many")
    assert r.returncode == 2 and "steps" in r.stderr and "expected an integer" in r.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[schedule]\nkind = "linear"\n')
    r = run_cli("train", "--config", str(bad))
    assert r.returncode == 2 and "schedule.kind" in r.stderr and r.stderr.strip().count("\n") == 0


def test_bad_inputs_fail_in_one_line_before_compute(corpus, tmp_path):
    shards, tok = corpus
    # a tokenizer with another vocabulary
    from murmur.tokenizer import TokenizerConfig, train_tokenizer

    other = tmp_path / "other-tok"
    train_tokenizer(shards.parent / "posts.parquet", other, TokenizerConfig(vocab_size=300))
    with pytest.raises(InputError) as e:
        Trainer(load(shards, other, tmp_path / "a"))
    assert "vocabulary" in one_line(e.value)
    # sequence longer than the model's context
    with pytest.raises(ConfigError) as e:
        Trainer(load(shards, tok, tmp_path / "b", **{"data.seq_len": 128}))
    assert "max_seq_len" in one_line(e.value)
    # a missing shard directory, and a missing shard file
    with pytest.raises(InputError) as e:
        Trainer(load(tmp_path / "nope", tok, tmp_path / "c"))
    assert "not found" in one_line(e.value)
    broken = tmp_path / "broken"
    shutil.copytree(shards, broken)
    (broken / shard_name("train", 0)).unlink()
    with pytest.raises(InputError) as e:
        Trainer(load(broken, tok, tmp_path / "d"))
    assert "missing" in one_line(e.value)
    # resuming a checkpoint of another model shape
    run = tmp_path / "shape"
    train(load(shards, tok, run, steps=2))
    with pytest.raises(CheckpointError) as e:
        Trainer(load(shards, tok, run, steps=4, resume=True, **{"model.dim": 64}))
    assert "dim=32 (this run: 64)" in one_line(e.value)
    # an unknown preset
    with pytest.raises(ConfigError) as e:
        Trainer(load(shards, tok, tmp_path / "e", **{"model.preset": "huge"}))
    assert "unknown model preset" in one_line(e.value)


# ---------------------------------------------------------------- configs
@pytest.mark.parametrize("name", ["tiny-cpu", "gpt-124m", "llama-1b"])
def test_shipped_configs_load_and_size_up(name, corpus):
    cfg = cfgmod.load(TrainConfig, ROOT / "murmur" / "configs" / f"{name}.toml")
    plan = dry_run(cfg, vocab_size=8192)  # builds the model on the meta device: no memory, no GPU
    assert plan["params"] == num_params(ModelConfig(**plan["model"]))
    assert cfg.data.seq_len <= plan["model"]["max_seq_len"]
    if name != "tiny-cpu":
        assert cfg.dtype == "bf16" and cfg.compile
        assert plan["tokens_per_step"] >= 500_000 and plan["params"] > 100e6
    # with real data, a run gets through every check up to the first compute (on CPU here)
    shards, tok = corpus
    cfg = cfgmod.load(TrainConfig, ROOT / "murmur" / "configs" / f"{name}.toml",
                      [f"data.shards={shards}", f"data.tokenizer={tok}", "device=cpu", "out=/nonexistent/x"])
    t = Trainer(cfg)
    assert t.model_cfg.vocab_size >= 320 and t.accum == grad_accum_steps(cfg.batch, cfg.data.seq_len)


# ---------------------------------------------------------------- pieces
def test_closing_line_says_what_the_run_did():
    done = TrainResult(Path("runs/x"), 40, 1000, 2.5, 2.25, 0.812, 10.0, None, first_loss=5.0, epochs=1.5)
    assert done.summary("fine-tuned", "chat model") == (
        "fine-tuned 40 steps (1.50 epochs): train loss 5.0000 -> 2.5000, val loss 2.2500, 0.812 bits/byte; "
        "chat model in runs/x")
    bare = TrainResult(Path("runs/y"), 3, 10, None, None, None, 1.0, None)
    assert bare.summary() == "trained 3 steps; model in runs/y"
    stopped = TrainResult(Path("runs/z"), 7, 10, 3.0, None, None, 1.0, None, interrupted=True)
    assert stopped.summary("trained", "embedder") == "interrupted at step 7; checkpoint saved in runs/z/checkpoints"


def test_schedules():
    cos = ScheduleSection(kind="cosine", warmup=10, min_lr_ratio=0.1)
    lrs = [lr_at(s, 100, 1.0, cos) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False)) and lrs[-1] == pytest.approx(0.1, abs=1e-3)
    wsd = ScheduleSection(kind="wsd", warmup=10, min_lr_ratio=0.0, decay_frac=0.2)
    lrs = [lr_at(s, 100, 1.0, wsd) for s in range(101)]
    assert lrs[10:80] == [1.0] * 70 and lrs[90] == pytest.approx(0.5) and lrs[100] == 0.0


def test_weight_decay_on_matrices_only():
    model = Transformer(ModelConfig(vocab_size=50, dim=16, n_layers=1, n_heads=2, max_seq_len=8))
    decay, no_decay = param_groups(model, 0.1)
    assert all(p.ndim == 2 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    opt = build_optimizer(model, TrainConfig().optim, torch.device("cpu"))
    assert opt.defaults.get("fused") or opt.defaults.get("foreach")


def _handmade_shards(tmp_path, train_docs, val_docs, val_bytes):
    with atomic_dir(tmp_path / "hs") as d:
        splits = {}
        for split, docs in (("train", train_docs), ("val", val_docs)):
            toks = np.concatenate([[0, *doc] for doc in docs]).astype(np.uint16)
            starts = np.cumsum([0] + [len(doc) + 1 for doc in docs[:-1]])
            write_shard(d / shard_name(split, 0), toks, starts)
            splits[split] = {"shards": [{"file": shard_name(split, 0), "tokens": len(toks), "docs": len(docs)}],
                             "tokens": len(toks), "docs": len(docs), "bytes": val_bytes}
        write_json(d / "manifest.json", {"vocab_size": 4, "dtype": "uint16", "doc_token_id": 0, "splits": splits})
    return tmp_path / "hs"


def test_unigram_bits_per_byte_by_hand(tmp_path):
    d = _handmade_shards(tmp_path, [[1, 1, 2], [3]], [[1, 2]], val_bytes=6)
    counts = np.array([2, 2, 1, 1]) + 1.0  # train: doc x2, 1 x2, 2, 3; add-one
    p = counts / counts.sum()
    bits = -(np.log2(p[0]) + np.log2(p[1]) + np.log2(p[2]))  # val: doc, 1, 2
    assert unigram_bits_per_byte(d) == pytest.approx(bits / 6)


def test_windows_depend_only_on_seed_and_step(tmp_path):
    d = _handmade_shards(tmp_path, [list(range(1, 4))] * 40, [[1, 2, 3]] * 10, val_bytes=30)
    ts = TokenShards(d, "train")
    s = WindowSampler(ts, seq_len=5, global_batch=8, seed=3)
    mbs = s.micro_batches(7, 4)
    assert len(mbs) == 2 and mbs[0][0].shape == (4, 5)
    x, y = s.step_batch(7)
    assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one
    halves = [s.step_batch(7, r, 2)[0] for r in range(2)]
    assert torch.equal(torch.stack(halves, 1).reshape(8, 5), x)  # two ranks interleave to the same batch
    v = TokenShards(d, "val")
    a, b = eval_batches(v, 5, 2, 3), eval_batches(v, 5, 2, 3)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(a, b, strict=True))


def test_checkpoints_ignore_incomplete_and_keep_last(tmp_path):
    model = Transformer(ModelConfig(vocab_size=50, dim=16, n_layers=1, n_heads=2, max_seq_len=8))
    opt = build_optimizer(model, TrainConfig().optim, torch.device("cpu"))
    state = {"rng": ckpt.rng_state(), "model_config": {}}
    for step in (1, 2, 3):
        ckpt.save_checkpoint(tmp_path, step, model, opt, state, keep_last=2)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [2, 3]
    half = ckpt.checkpoint_path(tmp_path, 9)
    shutil.copytree(ckpt.checkpoint_path(tmp_path, 3), half)
    (half / "_COMPLETE").unlink()  # a save that died before its marker
    assert ckpt.latest_checkpoint(tmp_path) == ckpt.checkpoint_path(tmp_path, 3)
    with pytest.raises(CheckpointError, match="not a complete checkpoint"):
        ckpt.read_trainer_state(half)
    ckpt.prune_checkpoints(tmp_path, 2)
    assert not half.exists()


def test_peak_flops(tmp_path, monkeypatch):
    assert gpu_peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert gpu_peak_flops("NVIDIA H100 PCIe") == 756e12
    assert gpu_peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert gpu_peak_flops("Some Future GPU") is None
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = cpu_peak_flops(torch.float32)
    assert first > 1e8 and math.isfinite(first)
    assert (tmp_path / "murmur" / "cpu_peak_flops.json").is_file()
    assert cpu_peak_flops(torch.float32) == first  # cached, not measured again
    # a run beating the cached peak proves it was measured on a busy core: the peak only goes up
    assert raise_cpu_peak(first / 2, torch.float32) == first
    assert raise_cpu_peak(first * 3, torch.float32) == pytest.approx(first * 3)
    assert cpu_peak_flops(torch.float32) == pytest.approx(first * 3)
