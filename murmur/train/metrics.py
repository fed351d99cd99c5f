"""Training metrics: throughput, model FLOPs utilisation (MFU), and the metrics log.

MFU = (model FLOPs per token x tokens/s) / peak FLOP/s. Model FLOPs come from
``murmur.model.flops_per_token`` (6N + attention, no recomputation counted). The peak is the
vendor's dense bf16 figure for known GPUs; on a CPU, one core's matmul peak measured once on this
machine (per CPU model, dtype and torch version; cached in ``~/.cache/murmur/``) times the threads.
A training run that goes faster than that peak raises the cached figure, so MFU never reads above 100%.

Records go to ``metrics.jsonl`` (one JSON object a line, a ``kind`` of train, eval, sample or
event, and the ``step``), and to TensorBoard when asked for and installed.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from murmur.io import write_json
from murmur.progress import log

# Dense (no sparsity) bf16 tensor-core peaks, FLOP/s, by a substring of the device name.
# Order matters: more specific names first.
GPU_PEAK_BF16: list[tuple[str, float]] = [
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("GH200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("A10G", 70e12),
    ("A10", 125e12),
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
    ("V100", 125e12),
    ("MI300X", 1307e12),
    ("MI250X", 383e12),
]


def gpu_peak_flops(name: str) -> float | None:
    """The dense bf16 peak for a GPU by its ``torch.cuda.get_device_name``, or None if unknown."""
    for key, peak in GPU_PEAK_BF16:
        if key.lower() in name.lower():
            return peak
    return None


def cpu_model_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "murmur"


def measure_matmul_flops(dtype: torch.dtype = torch.float32, n: int = 1024, seconds: float = 1.0) -> float:
    """Best FLOP/s of one core on an n x n matmul, over many short bursts for about ``seconds``.

    One thread and short bursts make the figure robust on a busy machine: the best burst is one
    the scheduler let run undisturbed, which is what the core can do.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a = torch.randn(n, n).to(dtype)
        b = torch.randn(n, n).to(dtype)
        a @ b
        best = 0.0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            a @ b
            best = max(best, 2 * n ** 3 / (time.perf_counter() - t))
    finally:
        torch.set_num_threads(threads)
    return best


def cpu_peak_flops(dtype: torch.dtype = torch.float32) -> float:
    """This CPU's matmul peak for ``dtype`` at the current thread count: one core's measured peak
    (measured on first use, cached per CPU model, dtype and torch version) times the threads."""
    key = _cpu_peak_key(dtype)
    path = cache_dir() / "cpu_peak_flops.json"
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError):
        table = {}
    if key not in table:
        table[key] = measure_matmul_flops(dtype)
        try:
            write_json(path, table)
        except OSError:
            pass
    return float(table[key]) * torch.get_num_threads()


def _cpu_peak_key(dtype: torch.dtype) -> str:
    return f"{cpu_model_name()}|{dtype}|torch={torch.__version__}|per-core"


def raise_cpu_peak(achieved: float, dtype: torch.dtype = torch.float32) -> float:
    """Record that this CPU ran ``achieved`` model FLOP/s at the current thread count.

    A run that beats the cached peak proves the peak was measured on a busy core; the achieved
    rate becomes the new per-core figure (the cache only ever goes up) and the new peak is returned.
    """
    key = _cpu_peak_key(dtype)
    path = cache_dir() / "cpu_peak_flops.json"
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError):
        table = {}
    per_core = achieved / torch.get_num_threads()
    if per_core > float(table.get(key, 0.0)):
        table[key] = per_core
        try:
            write_json(path, table)
        except OSError:
            pass
    return max(per_core, float(table[key])) * torch.get_num_threads()


def peak_flops(device: torch.device, dtype: torch.dtype) -> float | None:
    """Peak FLOP/s of one device of this kind for MFU (None when unknown)."""
    if device.type == "cuda":
        return gpu_peak_flops(torch.cuda.get_device_name(device))
    if device.type == "cpu":
        return cpu_peak_flops(dtype)
    return None


def mfu(tokens_per_s: float, flops_per_token: float, peak: float | None, devices: int = 1) -> float | None:
    """Model FLOPs utilisation in [0, 1] (None without a known peak)."""
    if not peak:
        return None
    return tokens_per_s * flops_per_token / (peak * devices)


class MetricsLogger:
    """Append records to ``metrics.jsonl`` (and TensorBoard if asked and installed)."""

    def __init__(self, path: str | os.PathLike[str], tensorboard_dir: str | os.PathLike[str] | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a", encoding="utf-8")
        self._tb = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(tensorboard_dir))
            except ImportError:
                log("tensorboard is not installed (pip install tensorboard); writing metrics.jsonl only")

    def write(self, record: dict[str, Any]) -> None:
        record = {"time": round(time.time(), 3), **record}
        self._f.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._f.flush()
        if self._tb is not None and "step" in record:
            kind = record.get("kind", "train")
            for k, v in record.items():
                if isinstance(v, int | float) and not isinstance(v, bool) and k not in ("step", "time"):
                    self._tb.add_scalar(f"{kind}/{k}", v, record["step"])

    def close(self) -> None:
        self._f.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl (a torn last line from a crash is skipped)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def truncate_metrics(path: str | os.PathLike[str], after_step: int) -> None:
    """Drop records past ``after_step`` (written after the checkpoint a run resumes from)."""
    path = Path(path)
    if not path.is_file():
        return
    keep = [r for r in read_metrics(path) if r.get("step", 0) <= after_step]
    from murmur.io import atomic_open

    with atomic_open(path, "w", encoding="utf-8") as f:
        for r in keep:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
