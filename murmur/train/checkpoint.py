"""Training checkpoints (torch.distributed.checkpoint) and the consolidated inference model.

A training checkpoint is a directory ``<run>/checkpoints/step_XXXXXXXX/`` holding

- the model and optimizer state, saved with ``torch.distributed.checkpoint`` (DCP) from
  ``get_state_dict`` so the same code saves and reshards FSDP/TP-sharded states later;
- ``trainer_state.pt``: step, schedule, RNG states, model config, tokens seen;
- ``digests.json``: the size and SHA-256 of every other file, each process's shards hashed by the
  process that wrote them as soon as they are written;
- ``_COMPLETE``, written last. A directory without it is ignored (and cleaned up).

It is built under a temporary name and renamed into place, so a crash mid-save never leaves a
checkpoint that looks complete. Only the newest ``keep_last`` are kept.

A resume (and a loss-guard rollback) verifies the checkpoint against its digests first and falls
back to the newest checkpoint that verifies, saying so in one line: a bit flipped by a bad disk, a
file truncated or lost by a partial copy, never loads silently and never ends in a traceback.

The inference model is ``model.safetensors`` (murmur parameter names, tied weights stored once) +
``config.json`` (the ModelConfig) + ``tokenizer/``; ``murmur.modeldir.load_model`` reads it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import random
import re
import shutil
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)

from murmur.errors import CheckpointError, OutputError
from murmur.io import COMPLETE_MARKER, atomic_dir, atomic_path, check_not_inputs, is_complete, write_json
from murmur.model import ModelConfig
from murmur.modeldir import CONFIG_FILE, MODEL_FILE, TOKENIZER_DIR

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.pt"
DIGESTS_FILE = "digests.json"
_RANK_DIGESTS = ".digests_rank_{}.json"  # one process's digests, merged into DIGESTS_FILE by process 0
DIGEST_WAIT_S = 600.0  # how long process 0 waits for the other processes' digests of a background save
_STEP_DIR = re.compile(r"^step_(\d+)$")

# Fields that change the parameters' shapes or meaning; a checkpoint must agree on all of them.
SHAPE_FIELDS = ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "head_dim", "ffn_dim", "tie_embeddings")


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _rank() -> int:
    return dist.get_rank() if _distributed() else 0


def _barrier() -> None:
    if _distributed():
        dist.barrier()


def _world() -> int:
    return dist.get_world_size() if _distributed() else 1


# ---------------------------------------------------------------- digests
def file_digest(path: Path) -> dict[str, Any]:
    """Size and SHA-256 of one file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": h.hexdigest()}


def _record_own_digests(directory: Path, rank: int) -> None:
    """Hash the files this process wrote (DCP names them ``__RANK_*``; process 0 also writes the
    metadata) into ``.digests_rank_R.json``, written atomically."""
    own = sorted(directory.glob(f"__{rank}_*"))
    if rank == 0 and (directory / ".metadata").is_file():
        own.append(directory / ".metadata")
    digests = {p.name: file_digest(p) for p in own}
    tmp = directory / (_RANK_DIGESTS.format(rank) + ".tmp")
    tmp.write_text(json.dumps(digests), encoding="utf-8")
    os.replace(tmp, directory / _RANK_DIGESTS.format(rank))


def _merge_digests(directory: Path, world: int, wait_s: float) -> dict[str, Any]:
    """Process 0: every process's digests (waiting up to ``wait_s`` for them), plus the trainer state's."""
    deadline = time.monotonic() + wait_s
    files: dict[str, Any] = {}
    for rank in range(world):
        path = directory / _RANK_DIGESTS.format(rank)
        while not path.is_file():
            if time.monotonic() > deadline:
                raise CheckpointError(f"{directory}: process {rank} did not record the digests of its checkpoint "
                                      f"files within {wait_s:g}s")
            time.sleep(0.01)
        files.update(json.loads(path.read_text(encoding="utf-8")))
        path.unlink()
    files[STATE_FILE] = file_digest(directory / STATE_FILE)
    return files


def verify_checkpoint(path: str | os.PathLike[str]) -> str | None:
    """Why checkpoint ``path`` cannot be trusted (a file missing, of another size, or not matching its
    digest), or None when every file matches what was written. A checkpoint written before digests
    were recorded is taken as it is (None)."""
    path = Path(path)
    manifest = path / DIGESTS_FILE
    if not manifest.is_file():
        return None  # written before digests existed; a damaged file still fails to load, in one line
    try:
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{DIGESTS_FILE} is unreadable"
    for name, want in sorted(files.items()):
        p = path / name
        if not p.is_file():
            return f"{name} is missing"
        size = p.stat().st_size
        if size != want["bytes"]:
            return f"{name} has {size:,} bytes, {want['bytes']:,} when written"
        if file_digest(p)["sha256"] != want["sha256"]:
            return f"{name} does not match its SHA-256 digest"
    return None


def newest_verified(run_dir: str | os.PathLike[str], log: Callable[[str], None],
                    below: int | None = None) -> Path | None:
    """The newest complete checkpoint of a run (older than step ``below``, if given) whose files match
    their digests; each newer one that does not is named in one log line. Process 0 reads the files
    and tells the others (every process gets the same answer)."""
    chosen: list[Any] = [None]
    if _rank() == 0:
        found = [(s, p) for s, p in list_checkpoints(run_dir) if below is None or s < below]
        for step, path in reversed(found):
            problem = verify_checkpoint(path)
            if problem is None:
                chosen[0] = str(path)
                break
            older = next((p.name for s, p in reversed(found) if s < step and verify_checkpoint(p) is None), None)
            log(f"checkpoint {path} is damaged ({problem}); "
                + (f"falling back to {older}" if older else "no older checkpoint verifies"))
    if _distributed():
        dist.broadcast_object_list(chosen, src=0)
    return Path(chosen[0]) if chosen[0] else None


def checkpoint_path(run_dir: str | os.PathLike[str], step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"step_{step:08d}"


def checkpoint_step(path: str | os.PathLike[str]) -> int:
    """The step of a checkpoint directory (``step_00000042`` -> 42)."""
    m = _STEP_DIR.match(Path(path).name)
    if m is None:
        raise CheckpointError(f"{path}: not a checkpoint directory (step_NNNNNNNN)")
    return int(m.group(1))


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and p.is_dir() and is_complete(p) and (p / STATE_FILE).is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def rng_state() -> dict[str, Any]:
    """Every RNG a run touches, to restore on resume."""
    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def _dcp_quiet() -> Iterator[None]:
    """DCP warns that it runs in one process when no process group exists; that is intended here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.distributed is disabled.*")
        yield


def save_checkpoint(run_dir: str | os.PathLike[str], step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    trainer_state: dict[str, Any], keep_last: int = 2) -> Path:
    """Save model + optimizer (DCP) and ``trainer_state`` as checkpoint ``step``; prune old ones.

    Every process calls this (each writes its own shards); once all have finished (a barrier),
    process 0 writes the trainer state and the marker, then renames the directory into place.
    """
    tmp = _begin(run_dir, step)
    model_sd, optim_sd = get_state_dict(model, optimizer)
    with _dcp_quiet():
        dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=tmp, no_dist=not _distributed())
    _record_own_digests(tmp, _rank())
    _barrier()  # every process's shards (and their digests) are on disk before the marker says so
    final = _finish(run_dir, step, trainer_state, keep_last)
    _barrier()
    return final


class PendingCheckpoint:
    """A checkpoint being written in the background (:func:`async_save_checkpoint`).

    It counts only once :meth:`finish` has run on process 0 (the marker and the rename come after
    every process's shards are written). Call :meth:`finish` on every process before the next save
    and before exiting; :meth:`done` polls without waiting.
    """

    def __init__(self, run_dir: Path, step: int, future: Any, trainer_state: dict[str, Any], keep_last: int,
                 recorded: threading.Event | None = None):
        self.run_dir, self.step, self.future = run_dir, step, future
        self.trainer_state, self.keep_last = trainer_state, keep_last
        self.recorded = recorded  # set once this process's digests are on disk (or recording failed)
        self.path: Path | None = None

    def done(self) -> bool:
        return self.future.done()

    def finish(self) -> Path:
        """Wait for this process's writes; on process 0 (whose save completes only after every
        process's, DCP gathering their results before it writes the metadata) mark it complete."""
        if self.path is None:
            try:
                self.future.result()
            except Exception as e:
                raise CheckpointError(f"{checkpoint_path(self.run_dir, self.step)}: background save failed: "
                                      f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
            # the result is visible before the done-callbacks have run: wait for this process's digests,
            # which process 0 waits for (a process that exited first would leave it waiting)
            if self.recorded is not None:
                self.recorded.wait()
            self.path = _finish(self.run_dir, self.step, self.trainer_state, self.keep_last)
        return self.path


def async_save_checkpoint(run_dir: str | os.PathLike[str], step: int, model: nn.Module,
                          optimizer: torch.optim.Optimizer, trainer_state: dict[str, Any], keep_last: int = 2,
                          process_group: Any = None) -> PendingCheckpoint:
    """Like :func:`save_checkpoint`, but the writing happens in a background thread (``dcp.async_save``).

    The state is copied to CPU memory before this returns, so training may change the weights at
    once. ``process_group`` should be a gloo group used for nothing else: the background thread
    runs DCP's collectives on it while the training loop uses the default group.
    """
    tmp = _begin(run_dir, step)
    model_sd, optim_sd = get_state_dict(model, optimizer)
    if not _distributed():  # the one-process warning comes from the background thread, past _dcp_quiet
        warnings.filterwarnings("ignore", message=".*torch.distributed is disabled.*")
    with _dcp_quiet():
        future = dcp.async_save({"model": model_sd, "optim": optim_sd}, checkpoint_id=tmp,
                                process_group=process_group, no_dist=not _distributed())
    future = getattr(future, "upload_completion", future)  # AsyncSaveResponse in some versions
    rank = _rank()

    recorded = threading.Event()

    def record(done: Any) -> None:  # in the writing thread, as soon as this process's files are written
        try:
            if done.exception() is None:
                _record_own_digests(tmp, rank)
        finally:
            recorded.set()

    future.add_done_callback(record)
    return PendingCheckpoint(Path(run_dir), step, future, dict(trainer_state), keep_last, recorded)


def _begin(run_dir: str | os.PathLike[str], step: int) -> Path:
    """Process 0 makes an empty temporary directory for checkpoint ``step``; all wait for it."""
    final = checkpoint_path(run_dir, step)
    tmp = final.with_name(f".{final.name}.tmp")
    if _rank() == 0:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    _barrier()
    return tmp


def _finish(run_dir: str | os.PathLike[str], step: int, trainer_state: dict[str, Any], keep_last: int) -> Path:
    """Process 0: trainer state, the ``_COMPLETE`` marker (fsynced), rename into place, prune."""
    final = checkpoint_path(run_dir, step)
    tmp = final.with_name(f".{final.name}.tmp")
    if _rank() == 0:
        torch.save({**trainer_state, "step": step}, tmp / STATE_FILE)
        digests = _merge_digests(tmp, _world(), DIGEST_WAIT_S)
        with open(tmp / DIGESTS_FILE, "w", encoding="utf-8") as f:
            json.dump({"files": digests}, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        with open(tmp / COMPLETE_MARKER, "w") as f:
            f.write("ok\n")
            f.flush()
            os.fsync(f.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        prune_checkpoints(run_dir, keep_last)
    return final


def prune_checkpoints(run_dir: str | os.PathLike[str], keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` complete checkpoints, and any unfinished ones."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return
    complete = list_checkpoints(run_dir)
    for _, p in complete[: max(len(complete) - max(keep_last, 1), 0)]:
        shutil.rmtree(p, ignore_errors=True)
    keep = {p for _, p in complete}
    for p in root.iterdir():
        if p.is_dir() and p not in keep and (p.name.endswith(".tmp") or not is_complete(p)):
            shutil.rmtree(p, ignore_errors=True)


def read_trainer_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The small state beside a checkpoint's tensors (step, schedule, RNG, model config)."""
    path = Path(path)
    if not is_complete(path) or not (path / STATE_FILE).is_file():
        raise CheckpointError(f"{path}: not a complete checkpoint (no {COMPLETE_MARKER} or {STATE_FILE})")
    try:
        return torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
    except Exception as e:  # a damaged file: one line
        raise CheckpointError(f"{path / STATE_FILE}: cannot read the trainer state ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def find_resume(out: str | os.PathLike[str], resume: bool, model_cfg: ModelConfig, fresh: str,
                log: Callable[[str], None]) -> tuple[Path | None, dict[str, Any]]:
    """The newest complete checkpoint in ``out`` that verifies against its digests, to resume from
    (checked against ``model_cfg``), and its state.

    Without one, a run that asked to resume starts ``fresh`` (logged); checkpoints present in a run
    that did not ask to resume are refused, so a new run never overwrites an old one by accident.
    Damaged checkpoints are skipped with one line each; if every one is damaged the run stops.
    """
    latest = latest_checkpoint(out)
    if latest is None:
        if resume:
            log(f"resume: no complete checkpoint in {out}; starting {fresh}")
        return None, {}
    if not resume:
        raise CheckpointError(f"{out} already holds checkpoints (newest {latest.name}); pass --resume "
                              "(resume=true) to continue that run, or choose another out directory")
    latest = newest_verified(out, log)
    if latest is None:
        raise CheckpointError(f"{out}: no checkpoint verifies against its digests (see above); restore the "
                              "checkpoints directory from a copy, or start a new out directory")
    state = read_trainer_state(latest)
    check_model_config(latest, state.get("model_config", {}), model_cfg)
    return latest, state


def check_model_config(path: str | os.PathLike[str], saved: dict[str, Any], current: ModelConfig) -> None:
    """Refuse a checkpoint written by a model of another shape, naming the fields that differ."""
    cur = dataclasses.asdict(current.resolved())
    diff = [f"{k}={saved.get(k)!r} (this run: {cur[k]!r})" for k in SHAPE_FIELDS if saved.get(k) != cur[k]]
    if diff:
        raise CheckpointError(f"{path}: checkpoint is from a model of another shape: {', '.join(diff)}; "
                              "use the same model settings or a new out directory")


def load_checkpoint(path: str | os.PathLike[str], model: nn.Module, optimizer: torch.optim.Optimizer | None,
                    model_cfg: ModelConfig) -> dict[str, Any]:
    """Load a checkpoint into ``model`` (and ``optimizer``); returns its trainer state."""
    path = Path(path)
    state = read_trainer_state(path)
    check_model_config(path, state.get("model_config", {}), model_cfg)
    try:
        with _dcp_quiet():
            _load_states(path, model, optimizer)
    except CheckpointError:
        raise
    except (Exception, CheckpointException) as e:  # damaged or foreign (DCP's exception is a BaseException)
        raise CheckpointError(f"{path}: could not load checkpoint: {_first_line(e)}") from None
    return state


def _load_states(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
    if optimizer is None:
        model_sd = get_model_state_dict(model)
        sd = {"model": model_sd}
        dcp.load(sd, checkpoint_id=path, no_dist=not _distributed())
        set_model_state_dict(model, sd["model"])
        return
    model_sd, optim_sd = get_state_dict(model, optimizer)
    # Any layout wrote it: this process's parameters per group stay its own (a pipeline stage holds
    # some), and a tied output copy of its own (a pipeline's last stage) reads the embedding's state,
    # which it equals (a one-process run stores the shared matrix once, as tok_embeddings.weight).
    own_params = [list(g["params"]) for g in optim_sd["param_groups"]]
    state = optim_sd["state"]
    tied_copy = getattr(getattr(model, "cfg", None), "tie_embeddings", False) and \
        "output.weight" in state and "tok_embeddings.weight" not in state
    if tied_copy:
        state["tok_embeddings.weight"] = state.pop("output.weight")
    sd = {"model": model_sd, "optim": optim_sd}
    dcp.load(sd, checkpoint_id=path, no_dist=not _distributed())
    if tied_copy:
        state["output.weight"] = state.pop("tok_embeddings.weight")
    for group, params in zip(sd["optim"]["param_groups"], own_params, strict=True):
        group["params"] = params
    set_state_dict(model, optimizer, model_state_dict=sd["model"], optim_state_dict=sd["optim"])


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole (unsharded) model state on CPU, with tied weights stored once."""
    sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    cfg = getattr(model, "cfg", None)
    if cfg is not None and cfg.tie_embeddings:
        sd.pop("output.weight", None)
    return {k: v.detach().to("cpu").contiguous() for k, v in sd.items()}


RUN_MARKER = "_RUN"  # {"murmur": "run", "task": "train" | "sft"}, written when a run starts
# Everything a run writes at the top of its folder (metrics and config by the trainer, the plot by
# `murmur plot`), and the temporary siblings of its atomic writes.
RUN_ENTRIES = frozenset({RUN_MARKER, CHECKPOINTS, "config.toml", "metrics.jsonl", "tb", "training.png", "sft.json",
                         MODEL_FILE, CONFIG_FILE, TOKENIZER_DIR})
_RUN_TEMP = re.compile(r"^\.(sft\.json|config\.toml|metrics\.jsonl|training\.png|model\.safetensors|config\.json|tokenizer)"
                       r"\..*\.(tmp|old)$")


def run_task(out: str | os.PathLike[str]) -> str | None:
    """The task named by a run folder's marker, None without a readable one."""
    try:
        data = json.loads((Path(out) / RUN_MARKER).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    ok = isinstance(data, dict) and data.get("murmur") == "run" and isinstance(data.get("task"), str)
    return data["task"] if ok else None


def check_run_dir(out: str | os.PathLike[str], task: str, overwrite: bool = False, resume: bool = False,
                  protect: Any = ()) -> bool:
    """The directory rule (docs/reliability.md) for a run folder, which fills in place as training goes.

    A new run takes an absent or empty folder. A folder whose marker names an earlier run of the same
    ``task`` and that holds nothing else is continued with ``resume`` and replaced with ``overwrite``
    (returns True: the caller removes it); anything else is refused in one line. Never a file, a link,
    or a folder that is, holds or lies inside one of ``protect`` (the run's inputs).
    """
    out = Path(out)
    check_not_inputs(out, protect)
    if out.is_symlink():
        raise OutputError("is a symbolic link; give a new or empty folder (murmur does not write through links)", out)
    if not out.exists():
        return False
    if not out.is_dir():
        raise OutputError("is a file, not a folder; murmur never replaces what it did not write", out)
    try:
        present = sorted(os.listdir(out))
    except OSError as e:
        raise OutputError(f"cannot look inside: {e.strerror}", out) from None
    if not present:
        return False
    their = run_task(out)
    if their is None:
        if latest_checkpoint(out) is not None and not overwrite:
            return False  # a run from before run markers: continued with resume, else refused by find_resume
        raise OutputError("is not empty and is not a murmur run folder; choose a new or empty folder "
                          "(murmur never deletes what it did not write)", out)
    if their != task:
        raise OutputError(f"holds a murmur {their} run, not a {task} run; choose another folder", out)
    foreign = [n for n in present if n not in RUN_ENTRIES and not _RUN_TEMP.match(n)]
    if (out / CHECKPOINTS).is_dir():
        foreign += [f"{CHECKPOINTS}/{n}" for n in sorted(os.listdir(out / CHECKPOINTS))
                    if not re.match(r"^\.?step_\d+", n)]
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise OutputError(f"holds files a murmur run did not write ({shown}); move them or choose another folder",
                          out)
    if resume:
        return False
    if overwrite:
        return True
    if (out / CONFIG_FILE).is_file():
        raise OutputError(f"already holds a finished murmur {task} run; pass overwrite=true to replace it", out)
    raise OutputError(f"already holds an unfinished murmur {task} run; pass resume=true to continue it, "
                      "or overwrite=true to start it over", out)


def start_run_dir(out: str | os.PathLike[str], task: str, replace: bool) -> None:
    """Make the run folder (emptied first when ``replace``, after :func:`check_run_dir`) and mark it."""
    out = Path(out)
    if replace:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    if run_task(out) != task:
        write_json(out / RUN_MARKER, {"murmur": "run", "task": task})


def save_inference_model(out_dir: str | os.PathLike[str], model: nn.Module, model_cfg: ModelConfig,
                         tokenizer_dir: str | os.PathLike[str] | None,
                         state: dict[str, torch.Tensor] | None = None) -> Path:
    """Write model.safetensors + config.json (+ a copy of the tokenizer) into ``out_dir``.

    ``state``: the whole model's tensors already gathered to process 0 (a pipeline's stages);
    otherwise they are gathered from ``model``.

    Each file is written atomically; config.json comes last, so a directory with both files
    holds a complete model.
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    sd = full_model_state(model) if state is None else state
    if _rank() != 0:
        return out
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_FILE).unlink(missing_ok=True)  # a run folder (checked when the run began) or a new one
    if tokenizer_dir:
        with atomic_dir(out / TOKENIZER_DIR, "tokenizer", overwrite=True) as d:
            for p in Path(tokenizer_dir).iterdir():
                if p.is_file() and p.name != COMPLETE_MARKER:
                    shutil.copy2(p, d / p.name)
    with atomic_path(out / MODEL_FILE) as tmp:
        save_file(sd, str(tmp), metadata={"format": "pt", "murmur": "model"})
    write_json(out / CONFIG_FILE, dataclasses.asdict(model_cfg.resolved()))
    return out


def consolidate(checkpoint: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                tokenizer_dir: str | os.PathLike[str] | None = None) -> Path:
    """Write the inference model (``model.safetensors`` + ``config.json``) from a training checkpoint.

    Runs in one process whatever layout wrote the checkpoint (FSDP shards, TP shards, any number of
    processes): DCP reads every shard into whole tensors. Useful for a run stopped before its end;
    a finished run already wrote the model (gathered to process 0).
    """
    from murmur.model import Transformer, rope_tables

    path = Path(checkpoint)
    state = read_trainer_state(path)
    saved = state.get("model_config")
    if not saved:
        raise CheckpointError(f"{path}: the checkpoint does not record its model config")
    mcfg = ModelConfig(**saved)
    with torch.device("meta"):
        model = Transformer(mcfg)
    model.to_empty(device="cpu")  # no random init: every weight is read from the checkpoint
    c = model.cfg
    model.rope_cos, model.rope_sin = rope_tables(c.head_dim, c.max_seq_len, c.rope_theta)
    sd = {"model": get_model_state_dict(model)}
    problem = verify_checkpoint(path)
    if problem is not None:
        raise CheckpointError(f"{path}: checkpoint is damaged ({problem})")
    try:
        with _dcp_quiet():
            dcp.load(sd, checkpoint_id=path, no_dist=True)
    except (Exception, CheckpointException) as e:
        raise CheckpointError(f"{path}: could not load checkpoint: {_first_line(e)}") from None
    set_model_state_dict(model, sd["model"])
    return save_inference_model(out_dir, model, mcfg, tokenizer_dir)
