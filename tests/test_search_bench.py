"""benchmarks/search.py leaves no scratch folder behind: when it fails, and when it is terminated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "search.py"


def _start(tmp: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, str(SCRIPT), "--no-milvus", *args], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_scratch_folder_removed_on_error(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = _start(scratch, "--corpus", str(tmp_path / "missing.parquet"))
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0 and "missing.parquet" in out
    assert list(scratch.glob("search-bench-*")) == []


@pytest.mark.slow
def test_scratch_folder_removed_on_sigterm(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = _start(scratch, "--users", "150")
    try:
        deadline = time.monotonic() + 120
        while not list(scratch.glob("search-bench-*/*")):  # the run has begun writing its world
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert list(scratch.glob("search-bench-*")) == []
