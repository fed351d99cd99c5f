"""Damaged checkpoints: every file's digest is recorded when written and verified on resume; a bit
flip, a truncated or missing file, or missing metadata makes the run fall back to the newest
checkpoint that verifies, in one line, and it ends exactly where the uninterrupted run ends."""

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
from train_helpers import micro_overrides

from murmur import config as cfgmod
from murmur.errors import CheckpointError
from murmur.train import checkpoint as ckpt
from murmur.train.config import TrainConfig
from murmur.train.trainer import train

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
STEPS, EVERY = 12, 4


def args(corpus, out: Path, **extra) -> list[str]:
    shards, tok = corpus
    return micro_overrides(shards, tok, out, steps=STEPS, **{"checkpoint.every": EVERY, "checkpoint.keep_last": 10,
                                                             **extra})


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> Path:
    """The uninterrupted run, with checkpoints at steps 4, 8 and 12 (written in the background)."""
    out = tmp_path_factory.mktemp("ref") / "run"
    train(cfgmod.load(TrainConfig, None, args(corpus, out, **{"checkpoint.async_save": True})))
    return out


def interrupted_copy(reference: Path, out: Path) -> Path:
    """A run stopped after its step-8 checkpoint: checkpoints 4 and 8 copied; returns step 8's directory."""
    for step in (4, 8):
        shutil.copytree(ckpt.checkpoint_path(reference, step), ckpt.checkpoint_path(out, step))
    return ckpt.checkpoint_path(out, 8)


def assert_same_end(out: Path, reference: Path) -> None:
    a, b = load_file(str(out / "model.safetensors")), load_file(str(reference / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def test_every_file_has_its_digest(reference):
    for step in (4, 8, 12):
        path = ckpt.checkpoint_path(reference, step)
        files = json.loads((path / ckpt.DIGESTS_FILE).read_text())["files"]
        assert set(files) == {"__0_0.distcp", ".metadata", ckpt.STATE_FILE}
        for name, want in files.items():
            assert ckpt.file_digest(path / name) == want
        assert ckpt.verify_checkpoint(path) is None
        assert not list(path.glob(".digests_rank_*"))  # merged into digests.json


@pytest.mark.parametrize("damage", ["bit flip", "truncated", "missing file", "missing metadata"])
def test_damaged_checkpoint_falls_back_to_the_newest_good_one(corpus, reference, tmp_path, capfd, damage):
    out = tmp_path / "run"
    step8 = interrupted_copy(reference, out)
    shard = step8 / "__0_0.distcp"
    if damage == "bit flip":
        flip_a_bit(shard)
    elif damage == "truncated":
        shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 3])
    elif damage == "missing file":
        shard.unlink()
    else:
        (step8 / ".metadata").unlink()
    capfd.readouterr()
    result = train(cfgmod.load(TrainConfig, None, args(corpus, out, resume=True)))
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if " is damaged (" in line]
    assert len(lines) == 1 and "falling back to step_00000004" in lines[0], err
    assert "resuming from " + str(ckpt.checkpoint_path(out, 4)) in err and "Traceback" not in err
    assert result.steps == STEPS
    assert_same_end(out, reference)


@pytest.mark.slow
def test_bit_flip_through_the_command_line_is_one_line_and_exact(corpus, reference, tmp_path):
    out = tmp_path / "cli"
    flip_a_bit(interrupted_copy(reference, out) / ckpt.STATE_FILE)
    p = subprocess.run([sys.executable, "-m", "murmur.train", *args(corpus, out, resume=True)], env=ENV,
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert "trainer_state.pt does not match its SHA-256 digest); falling back to step_00000004" in p.stderr
    assert_same_end(out, reference)


def test_without_digests_a_damaged_file_still_gives_one_line_and_the_fallback(corpus, reference, tmp_path, capfd):
    """A checkpoint without digests.json (as older murmur wrote) is not verified first: DCP's own
    CheckpointException (a BaseException) on the truncated file becomes one line and the fallback."""
    out = tmp_path / "old"
    step8 = interrupted_copy(reference, out)
    (step8 / ckpt.DIGESTS_FILE).unlink()
    shard = step8 / "__0_0.distcp"
    shard.write_bytes(shard.read_bytes()[:100])
    capfd.readouterr()
    train(cfgmod.load(TrainConfig, None, args(corpus, out, resume=True)))
    err = capfd.readouterr().err
    assert "could not load checkpoint" in err and "falling back to" in err and "Traceback" not in err, err
    assert_same_end(out, reference)


def test_when_no_checkpoint_verifies_the_run_stops_in_one_line(corpus, reference, tmp_path):
    out = tmp_path / "none"
    interrupted_copy(reference, out)
    for step in (4, 8):
        (ckpt.checkpoint_path(out, step) / ".metadata").unlink()
    with pytest.raises(CheckpointError) as e:
        train(cfgmod.load(TrainConfig, None, args(corpus, out, resume=True)))
    assert "no checkpoint verifies" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(CheckpointError, match="damaged"):
        ckpt.consolidate(ckpt.checkpoint_path(out, 8), tmp_path / "model")
