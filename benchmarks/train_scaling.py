"""Training scaling: the real trainer on 1 vs 2 processes, and FSDP2 vs one plain process on one device.

Two parts:

- **processes** (CPU, gloo): ``murmur train`` on one process with one thread, one process with every
  thread, and ``torchrun --nproc-per-node 2 -m murmur.train`` with one thread each under DDP and
  FSDP2; the same model, global batch and steps; tokens/s read from each run's ``metrics.jsonl``
  (training steps only, the first log interval dropped as warm-up). Scaling efficiency =
  tokens/s of N processes / (N x tokens/s of one process with one thread). Variants run in
  interleaved rounds and the report takes medians, so a burst of load on a shared machine hits all.
- **one device** (CUDA, or CPU with ``--one-device``): the training step the trainer runs (the
  same ``parallel`` helpers), on one plain model (bf16 autocast) and on the same model wrapped in
  FSDP2 over a one-process mesh (bf16 parameters, fp32 reduction), each eager and compiled;
  tokens/s and MFU. On a GPU: the 124m and 1b presets.

    python benchmarks/train_scaling.py                    # CPU: tiny preset, 1 vs 2 processes
    python benchmarks/train_scaling.py --write-docs       # also write the section of docs/benchmarks.md
    python benchmarks/train_scaling.py --one-device       # the one-device comparison (default on CUDA)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as murmur.train sets it
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from report import write_section  # noqa: E402

from murmur.model import Transformer, flops_per_token, num_params, preset  # noqa: E402
from murmur.train.config import OptimSection, ParallelConfig  # noqa: E402
from murmur.train.metrics import cpu_model_name, peak_flops, read_metrics  # noqa: E402


# ---------------------------------------------------------------- processes (the real trainer)
def build_data(root: Path) -> tuple[Path, Path]:
    from train_helpers import build_corpus

    return build_corpus(root / "corpus", n_posts=4000)


def trainer_args(shards: Path, tok: Path, out: Path, steps: int, log_every: int, extra: dict) -> list[str]:
    base = {"out": out, "steps": steps, "seed": 0, "dtype": "auto", "log_every": log_every,
            "data.shards": shards, "data.tokenizer": tok, "data.seq_len": 128,
            "model.preset": "tiny", "model.vocab_size": 8192, "model.max_seq_len": 256,
            "optim.lr": 3e-3, "schedule.warmup": 2, "batch.micro_batch": 16, "batch.tokens_per_step": 4096,
            "eval.every": 0, "eval.batches": 1, "eval.samples": 0, "checkpoint.every": 0}
    return [f"{k}={v}" for k, v in {**base, **extra}.items()]


VARIANTS = {
    # name: (processes, threads per process, extra overrides)
    "1 process, 1 thread": (1, 1, {}),
    "1 process, 2 threads": (1, 2, {}),
    "2 processes DDP": (2, 1, {"parallel.dp_replicate": 2, "parallel.dp_shard": 1}),
    "2 processes FSDP2": (2, 1, {"parallel.dp_shard": 2}),
}


def run_variant(name: str, shards: Path, tok: Path, work: Path, steps: int, log_every: int, round_: int) -> float:
    procs, threads, extra = VARIANTS[name]
    out = work / f"{name.replace(' ', '_').replace(',', '')}-{round_}"
    args = trainer_args(shards, tok, out, steps, log_every, extra)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    if procs == 1:
        cmd = [sys.executable, "-m", "murmur.train", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}",
               "-m", "murmur.train", *args]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if p.returncode:
        raise SystemExit(f"{name} failed:\n{p.stderr[-3000:]}")
    records = [r for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "train"][1:]  # drop warm-up
    return statistics.median(r["tokens_per_s"] for r in records)


def processes_part(rounds: int, steps: int, log_every: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shards, tok = build_data(work)
        tok_s: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for r in range(rounds):
            for name in VARIANTS:
                t = time.perf_counter()
                tok_s[name].append(run_variant(name, shards, tok, work, steps, log_every, r))
                print(f"round {r + 1}/{rounds}  {name:<22} {tok_s[name][-1]:>9,.0f} tok/s  "
                      f"({time.perf_counter() - t:.0f}s)", flush=True)
    med = {name: statistics.median(v) for name, v in tok_s.items()}
    base = med["1 process, 1 thread"]
    rows = []
    for name, (procs, threads, _) in VARIANTS.items():
        rows.append({"variant": name, "processes": procs, "threads": threads, "tok_s": med[name],
                     "all": tok_s[name], "efficiency": med[name] / (procs * threads * base)})
    mcfg = preset("tiny", vocab_size=8192, max_seq_len=256)
    return {"rows": rows, "rounds": rounds, "steps": steps, "params": num_params(mcfg)}


# ---------------------------------------------------------------- one device: plain vs FSDP2
def init_single_process_group(device: torch.device) -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1"})
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0, world_size=1)


def one_device_run(name: str, device: torch.device, fsdp: bool, compile_: bool, micro: int, seq: int,
                   steps: int, warmup: int) -> dict:
    """Tokens/s and MFU of the trainer's step on one device: plain model, or FSDP2 on a 1-process mesh."""
    from torch.distributed.device_mesh import init_device_mesh

    from murmur.train.optim import build_optimizer
    from murmur.train.parallel import DIM_NAMES, apply_compile, apply_fsdp, clip_grad_norm_, forward_context

    bf16 = device.type == "cuda" or (device.type == "cpu" and _cpu_bf16())
    pcfg = ParallelConfig(param_dtype="bf16" if bf16 else "fp32")
    mcfg = preset(name, max_seq_len=max(seq, preset(name).max_seq_len))
    torch.manual_seed(0)
    with torch.device(device):
        model = Transformer(mcfg)
    run = model
    if compile_ and fsdp:
        apply_compile(model)  # block by block, as the trainer compiles a sharded model
    elif compile_:
        run = torch.compile(model)  # one graph, as the trainer compiles a single-process model
    if fsdp:
        init_single_process_group(device)
        mesh = init_device_mesh(device.type, (1,) * len(DIM_NAMES), mesh_dim_names=DIM_NAMES)
        apply_fsdp(model, mesh["dp_shard"], pcfg)
    opt = build_optimizer(model, OptimSection(), device)
    x = torch.randint(0, mcfg.vocab_size, (micro, seq + 1), device=device)
    inp, tgt = x[:, :-1], x[:, 1:]

    def step() -> None:
        with forward_context(model, pcfg, device):
            loss = run(inp, tgt)
            loss.backward()
        clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    dt = time.perf_counter() - t
    tok_s = micro * seq * steps / dt
    peak = peak_flops(device, torch.bfloat16 if bf16 else torch.float32)
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"preset": name, "params": num_params(mcfg), "fsdp": fsdp, "compile": compile_, "micro": micro,
            "seq": seq, "tok_s": tok_s, "mfu": tok_s * flops_per_token(mcfg, seq) / peak if peak else None,
            "dtype": "bf16" if bf16 else "fp32", "max_mem_gib": mem}


def _cpu_bf16() -> bool:
    from murmur.runtime import cpu_has_bf16

    return cpu_has_bf16()


def one_device_part(device: torch.device, presets: list[tuple[str, int, int]], steps: int, warmup: int,
                    compile_modes: list[bool]) -> dict:
    rows = []
    for name, micro, seq in presets:
        for compile_ in compile_modes:
            for fsdp in (False, True):
                r = one_device_run(name, device, fsdp, compile_, micro, seq, steps, warmup)
                rows.append(r)
                if device.type == "cuda":  # the run's model and optimizer are gone: start the next clean
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(device)
                mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
                print(f"{name:<5} {'FSDP2' if fsdp else 'plain':<5} {'compiled' if compile_ else 'eager':<8} "
                      f"{r['tok_s']:>10,.0f} tok/s  MFU {mfu}", flush=True)
    return {"rows": rows, "steps": steps, "warmup": warmup}


# ---------------------------------------------------------------- report
def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}"
    return f"CPU: {cpu_model_name()}, {os.cpu_count()} cores"


def section(info: dict, procs: dict | None, one: dict | None) -> str:
    lines = ["## Training scaling (`benchmarks/train_scaling.py`)", "",
             f"{info['machine']}; torch {info['torch']}, Python {info['python']}, {info['date']}. The machine is "
             "shared with other work (load average during the run: " + info["load"] + "), so the figures are noisy; "
             "variants run in interleaved rounds and the tables give medians.", ""]
    if procs:
        lines += [
            "### One vs two processes on CPU (gloo)", "",
            f"The real trainer (`murmur train` / `torchrun --nproc-per-node 2 -m murmur.train`), `tiny` preset "
            f"({procs['params'] / 1e6:.1f}M parameters with an 8,192-token vocabulary), 128-token windows, 4,096 "
            f"tokens per step (16 x 2 accumulated on one process, 16 per process on two), bf16 autocast where "
            f"the CPU has it, {procs['steps']} steps per run, first log interval dropped; {procs['rounds']} rounds. "
            "Efficiency = tok/s / (processes x threads x the 1-process-1-thread tok/s).", "",
            "| variant | processes x threads | tok/s (median) | all rounds | scaling efficiency |",
            "|---|---|---|---|---|"]
        for r in procs["rows"]:
            lines.append(f"| {r['variant']} | {r['processes']} x {r['threads']} | {r['tok_s']:,.0f} | "
                         f"{', '.join(f'{v:,.0f}' for v in r['all'])} | {r['efficiency']:.0%} |")
        lines.append("")
    if one:
        lines += ["### One device: plain model vs FSDP2 on a one-process mesh", "",
                  f"The trainer's step (forward/backward in `forward_context`, `clip_grad_norm_`, fused AdamW) "
                  f"on random tokens; {one['warmup']} warm-up steps then {one['steps']} timed. plain = bf16 "
                  "autocast over fp32 weights; FSDP2 = `fully_shard` per block and root on a mesh of one, bf16 "
                  "parameters and fp32 gradient reduction (what every rank of a sharded run executes, minus "
                  "the communication). compiled = `torch.compile`: the whole model for plain (as the one-process "
                  "trainer does), block by block for FSDP2 (as a sharded run does).", "",
                  "| preset | params | batch x seq | variant | tok/s | MFU | peak memory |", "|---|---|---|---|---|---|---|"]
        for r in one["rows"]:
            mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
            mem = f"{r['max_mem_gib']:.1f} GiB" if r["max_mem_gib"] is not None else "n/a"
            variant = f"{'FSDP2' if r['fsdp'] else 'plain'} {'compiled' if r['compile'] else 'eager'} ({r['dtype']})"
            lines.append(f"| {r['preset']} | {r['params'] / 1e6:,.0f}M | {r['micro']} x {r['seq']} | {variant} | "
                         f"{r['tok_s']:,.0f} | {mfu} | {mem} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the process variants")
    ap.add_argument("--steps", type=int, default=15, help="steps per trainer run (process part)")
    ap.add_argument("--log-every", type=int, default=5)
    ap.add_argument("--one-device", action="store_true", help="run the one-device part (default on CUDA)")
    ap.add_argument("--no-processes", action="store_true", help="skip the 1 vs 2 processes part")
    ap.add_argument("--presets", default=None,
                    help="one-device presets as name:batch:seq,... (default: 124m:16:1024,1b:4:2048 on CUDA, "
                         "tiny:8:128 on CPU)")
    ap.add_argument("--no-compile", action="store_true", help="one-device part: eager only")
    ap.add_argument("--write-docs", action="store_true", help="write the section of docs/benchmarks.md")
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    procs = None if (args.no_processes or cuda) else processes_part(args.rounds, args.steps, args.log_every)
    one = None
    if args.one_device or cuda:
        spec = args.presets or ("124m:16:1024,1b:4:2048" if cuda else "tiny:8:128")
        presets = [(n, int(b), int(s)) for n, b, s in (p.split(":") for p in spec.split(","))]
        one = one_device_part(device, presets, steps=20 if cuda else 5, warmup=5 if cuda else 2,
                              compile_modes=[False] if args.no_compile else [False, True])
    info = {"machine": machine(device), "torch": torch.__version__, "python": platform.python_version(),
            "date": datetime.date.today().isoformat(),
            "load": " / ".join(f"{x:.1f}" for x in os.getloadavg())}
    text = section(info, procs, one)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"info": info, "processes": procs, "one_device": one}, indent=2))
    if args.write_docs:
        write_section("train_scaling", text)


if __name__ == "__main__":
    main()
