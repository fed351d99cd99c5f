"""Run folders follow the directory rule: a new run never deletes or writes over what it did not write."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from chat_helpers import CONVERSATIONS, make_base_model, make_tokenizer, write_jsonl
from train_helpers import build_corpus, micro_overrides

from murmur import config as cfgmod
from murmur.chat.sft import SFTConfig, sft
from murmur.errors import MurmurError, OutputError
from murmur.train import checkpoint as ckpt
from murmur.train.config import TrainConfig
from murmur.train.trainer import train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus"), n_posts=400)


def run(corpus, out: Path, steps: int = 2, **extra):
    shards, tok = corpus
    return train(cfgmod.load(TrainConfig, None, micro_overrides(shards, tok, out, steps=steps, **extra)))


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` with the SHA-256 of its bytes (links not followed)."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def refused(corpus, out: Path, match: str, watch: Path | None = None, **extra) -> str:
    watch = watch or out
    before = snapshot(watch) if watch.is_dir() else watch.read_bytes()
    with pytest.raises(OutputError, match=match) as e:
        run(corpus, out, **extra)
    assert (snapshot(watch) if watch.is_dir() else watch.read_bytes()) == before
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(out))
    return msg


def test_a_new_run_never_writes_into_a_folder_it_did_not_write(corpus, tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "config.json").write_text('{"mine": 1}')
    (user / "metrics.jsonl").write_text("my numbers\n")
    for overwrite in ("false", "true"):
        refused(corpus, user, "not a murmur run folder", overwrite=overwrite)
        refused(corpus, user, "not a murmur run folder", resume="true", overwrite=overwrite)
    afile = tmp_path / "afile"
    afile.write_text("x")
    refused(corpus, afile, "is a file", overwrite="true")
    link = tmp_path / "link"
    link.symlink_to(user)
    refused(corpus, link, "symbolic link", watch=user, overwrite="true")


def test_a_finished_run_is_replaced_only_with_overwrite(corpus, tmp_path):
    out = tmp_path / "run"
    run(corpus, out)
    assert ckpt.run_task(out) == "train" and (out / "model.safetensors").is_file()
    msg = refused(corpus, out, "finished murmur train run")
    assert "overwrite=true" in msg
    (out / "notes.txt").write_text("mine")
    refused(corpus, out, r"did not write \(notes.txt\)", overwrite="true")
    (out / "notes.txt").unlink()
    (out / "checkpoints" / "keep.bin").write_text("mine")
    refused(corpus, out, "checkpoints/keep.bin", overwrite="true")
    (out / "checkpoints" / "keep.bin").unlink()
    old = (out / "metrics.jsonl").read_bytes()
    result = run(corpus, out, overwrite="true", seed=1)
    assert result.steps == 2 and (out / "metrics.jsonl").read_bytes() != old
    assert ckpt.run_task(out) == "train"


def test_an_unfinished_run_suggests_resume_and_resume_keeps_working(corpus, tmp_path):
    out = tmp_path / "run"
    run(corpus, out, **{"checkpoint.every": 1})
    (out / "config.json").unlink()  # as a run stopped before its end leaves it (no final model)
    (out / "model.safetensors").unlink()
    msg = refused(corpus, out, "unfinished murmur train run")
    assert "resume=true" in msg
    result = run(corpus, out, resume="true", steps=3)
    assert result.steps == 3 and (out / "config.json").is_file()


def test_a_run_never_replaces_its_inputs(corpus, tmp_path):
    shards, tok = corpus
    refused(corpus, shards, "also an input", overwrite="true")
    refused(corpus, tok, "also an input", overwrite="true")
    refused(corpus, shards.parent, "holds an input", watch=shards, overwrite="true")
    refused(corpus, shards / "inside", "inside an input", watch=shards, overwrite="true")


def test_fine_tuning_never_touches_the_base_model_or_another_kind(corpus, tmp_path):
    tok_dir = make_tokenizer(tmp_path)
    base = make_base_model(tmp_path, tok_dir)
    data = write_jsonl(tmp_path / "c.jsonl", CONVERSATIONS[:4])
    cfg = cfgmod.load(SFTConfig, None, ["steps=1", "dtype=fp32", "device=cpu", "seq_len=64", "batch.micro_batch=2",
                                        "eval.val_fraction=0", "eval.every=0", "checkpoint.every=0",
                                        "overwrite=true"])
    before = snapshot(tmp_path)
    for out, match in ((base, "must differ|also an input"), (base / "tokenizer", "input"), (base / "sub", "inside an input"),
                       (base.parent, "holds an input")):
        with pytest.raises(MurmurError, match=match):
            sft(base, data, out, cfg)
    assert snapshot(tmp_path) == before
    pre = tmp_path / "pre"  # a pretraining run is not a fine-tuning run's to replace
    run(corpus, pre)
    before = snapshot(pre)
    with pytest.raises(OutputError, match="holds a murmur train run, not a sft run"):
        sft(base, data, pre, cfg)
    assert snapshot(pre) == before
    out = tmp_path / "chat"
    sft(base, data, out, cfg)
    sft(base, data, out, cfg)  # overwrite: an earlier fine-tuning run is replaced
    assert ckpt.run_task(out) == "sft" and (out / "sft.json").is_file()
