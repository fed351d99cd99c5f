"""murmur installed as users install it: the wheel in a fresh venv, run from a directory outside the checkout.

The wheel is built from this checkout and installed with ``--no-deps`` into a new venv made from the
same interpreter; its dependencies come from the current environment's site-packages through a
``.pth`` line (nothing is downloaded), and ``pip check`` confirms they satisfy the wheel's declared
requirements. Then the commands run from a temporary directory with no ``PYTHONPATH``, so only what
the wheel ships is found: the presets included.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    src = tmp_path / "src"  # a copy of the checkout's files, so the build writes nothing into the checkout
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file() and not (REPO / name).is_symlink():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
         str(src)], tmp_path, env)
    wheel = next(dist.glob("murmur_lm-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "murmur/configs/tiny-cpu.toml" in names and any(n.startswith("murmur/serve/web/") for n in names)
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)
    requires = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "Requires-Dist: torch>=2.6" in requires
    assert "Requires-Dist: lingua-language-detector>=2.0; extra == \"lingua\"" in requires

    venv = tmp_path / "venv"
    run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    py = venv / "bin" / "python"
    site = Path(run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path, env)
                .strip().splitlines()[-1])
    (site / "_murmur_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)], tmp_path, env)
    run([sys.executable, "-m", "pip", "--python", str(py), "check"], tmp_path, env)

    work = tmp_path / "elsewhere"
    work.mkdir()
    where = run([str(py), "-c", "import murmur; print(murmur.__file__)"], work, env).strip().splitlines()[-1]
    assert where.startswith(str(venv)), where
    murmur = str(venv / "bin" / "murmur")
    assert "demo" in run([murmur, "demo", "--help"], work, env)

    run([murmur, "world", "generate", "-o", "world", "--users", "120", "archive_users=2", "days=3"], work, env)
    run([murmur, "data", "ingest", "world", "-o", "posts.parquet"], work, env)
    run([murmur, "data", "clean", "posts.parquet", "-o", "clean.parquet"], work, env)
    run([murmur, "tokenizer", "train", "clean.parquet", "-o", "tok", "--vocab-size", "400"], work, env)
    run([murmur, "data", "tokenize", "clean.parquet", "--tokenizer", "tok", "-o", "shards"], work, env)
    out = run([murmur, "train", "--config", "tiny-cpu", "steps=3", "out=run", "data.shards=shards",
               "data.tokenizer=tok", "model.dim=32", "model.n_layers=1", "model.n_heads=2",
               "model.n_kv_heads=2", "model.ffn_dim=64", "dtype=fp32", "eval.every=0", "eval.samples=0",
               "checkpoint.every=0", "batch.micro_batch=4", "batch.tokens_per_step=512", "log_every=1"],
              work, env, timeout=600)
    assert (work / "run" / "model.safetensors").is_file(), out
