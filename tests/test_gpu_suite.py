"""benchmarks/gpu_suite.sh: its arguments, its dry run, and its stage loop (driven by a stand-in
interpreter here, since this machine has no CUDA; the real run is the script on a GPU machine)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "benchmarks" / "gpu_suite.sh"


def suite(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SUITE), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_dry_run_prints_every_stage_without_cuda(tmp_path):
    out = tmp_path / "results"
    r = suite(str(out), "--dry-run")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for stage, words in (("pytest", "-m gpu"), ("train", "train_throughput.py --presets 124m,1b --dtype bf16 --compile"),
                         ("fsdp", "train_scaling.py --one-device"),
                         ("serve", "serve_throughput.py --device cuda --preset 124m --dtype bf16")):
        assert any(line.startswith(stage + " (limit") and words in line for line in lines), (stage, r.stdout)
    assert "tests/test_parallel.py" in r.stdout and str(out / "fsdp.json") in r.stdout
    assert not out.exists()  # a dry run writes nothing
    only = suite(str(out), "--dry-run", "--only", "serve")
    assert [line.split(" ")[0] for line in only.stdout.splitlines()[2:]] == ["serve"]


def test_bad_arguments_get_one_message_and_exit_2(tmp_path):
    (tmp_path / "file").write_text("mine")
    for args, words in (((), "give the output folder"), (("a", "b"), "one output folder only"),
                        (("x", "--only", "pytest,gpu"), "unknown stage 'gpu'"), (("x", "--frobnicate"), "unknown option"),
                        (("x", "--only"), "--only needs"), ((str(tmp_path / "file"),), "is a file")):
        r = suite(*args)
        assert r.returncode == 2 and words in r.stderr, (args, r.stderr)
    assert (tmp_path / "file").read_text() == "mine"
    r = suite(str(tmp_path / "out"), "--python", str(REPO / ".venv" / "bin" / "python"))
    if r.returncode == 2:  # this machine: no CUDA, so the real run refuses before writing anything
        assert "no CUDA device" in r.stderr and not (tmp_path / "out").exists()


def test_stages_run_in_order_with_limits_and_a_summary(tmp_path):
    """A stand-in interpreter reports CUDA, records each command and hangs in the serve stage: the
    suite runs every stage from the repository root, stops the hung one at its limit, and says so."""
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "python"
    fake.write_text(f"""#!/usr/bin/env bash
echo "$PWD :: $*" >> {calls}
case "$*" in
  *serve_throughput*) sleep 30 ;;
  *train_scaling*) echo "fsdp result line"; exit 3 ;;
  *) echo "result of $1 $2" ;;
esac
""")
    fake.chmod(0o755)
    out = tmp_path / "out"
    r = suite(str(out), "--python", str(fake), env={"GPU_SUITE_SERVE_S": "2"})
    assert r.returncode == 1, r.stdout + r.stderr
    recorded = calls.read_text().splitlines()
    # not the CUDA check, the versions or the install of gpu-wheels/ (where `make gpu-wheels` ran)
    stages = [line for line in recorded if " :: -c " not in line and " :: -m pip install" not in line]
    assert all(line.startswith(f"{REPO} :: ") for line in stages)
    assert ["-m pytest" in stages[0], "train_throughput" in stages[1], "train_scaling" in stages[2],
            "serve_throughput" in stages[3]] == [True] * 4
    summary = (out / "summary.txt").read_text()
    assert "pytest: ok in" in summary and "train: ok in" in summary
    assert "fsdp: failed (exit 3)" in summary and "serve: timed out after 2s" in summary
    assert "fsdp result line" in (out / "fsdp.log").read_text() and "fsdp result line" in r.stdout
    assert (out / "env.txt").is_file()
