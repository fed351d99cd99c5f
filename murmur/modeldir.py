"""The model directory: what a finished run writes and every loader reads.

A model directory holds ``model.safetensors`` (murmur parameter names; tied weights stored once),
``config.json`` (the :class:`~murmur.model.ModelConfig`) and ``tokenizer/``. Training writes it
(:func:`murmur.train.checkpoint.save_inference_model`), and generation, serving, fine-tuning and
export read it through :func:`read_model_dir` / :func:`load_model`, so the file names live here once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from murmur.errors import CheckpointError
from murmur.model import ModelConfig, Transformer

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_DIR = "tokenizer"


def read_model_config(path: str | Path) -> ModelConfig:
    """The ModelConfig in a model directory's config.json."""
    import dataclasses

    path = Path(path)
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read the model config ({e})") from None
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise CheckpointError(f"{path}: unknown model config field(s): {', '.join(unknown)}")
    return ModelConfig(**data).resolved()


def read_model_dir(path: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """The ModelConfig and weights (murmur names) of a model directory, checked against each other.

    Raises ``CheckpointError`` with one actionable line for a missing, unfinished or mismatched directory.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: model directory not found")
    missing = [n for n in (MODEL_FILE, CONFIG_FILE) if not (path / n).is_file()]
    if missing:
        if (path / "checkpoints").is_dir():
            raise CheckpointError(f"{path}: no {' or '.join(missing)} yet: the run has training checkpoints but "
                                  "has not finished; resume it (`--resume`) to the end")
        raise CheckpointError(f"{path}: not a murmur model directory (no {' or '.join(missing)}); "
                              "pass the run directory of a finished `murmur train` or `murmur sft`")
    if not (path / TOKENIZER_DIR / "tokenizer.json").is_file():
        raise CheckpointError(f"{path}: the model directory has no {TOKENIZER_DIR}/tokenizer.json")
    cfg = read_model_config(path / CONFIG_FILE)
    try:
        state = load_file(str(path / MODEL_FILE))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path / MODEL_FILE}: cannot read weights ({e})") from None
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in Transformer(cfg).state_dict().items()}
    allowed_missing = {"output.weight"} if cfg.tie_embeddings else set()
    lost = sorted(set(shapes) - set(state) - allowed_missing)
    extra = sorted(set(state) - set(shapes))
    if lost or extra:
        what = (f"missing {', '.join(lost[:3])}" if lost else "") + (f" unexpected {', '.join(extra[:3])}" if extra else "")
        raise CheckpointError(f"{path / MODEL_FILE}: weights do not match config.json ({what.strip()})")
    for k, v in state.items():
        if v.shape != shapes[k]:
            raise CheckpointError(f"{path / MODEL_FILE}: {k} has shape {tuple(v.shape)}, config.json implies "
                                  f"{tuple(shapes[k])}")
    return cfg, state


def load_model(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
               ) -> tuple[Transformer, Any, ModelConfig]:
    """Load a model directory -> (model in eval mode, tokenizer, ModelConfig).

    ``dtype`` casts the weights (default: as stored, fp32). Raises ``CheckpointError`` with one
    actionable line for a missing, unfinished or mismatched directory.
    """
    from murmur.tokenizer import load_tokenizer

    path = Path(path)
    cfg, state = read_model_dir(path)
    with torch.device(device):
        model = Transformer(cfg)
    model.load_state_dict(state, strict=False)
    if dtype is not None:
        model.to(dtype)
    tokenizer = load_tokenizer(path / TOKENIZER_DIR)
    if tokenizer.vocab_size > cfg.vocab_size:
        raise CheckpointError(f"{path}: tokenizer has {tokenizer.vocab_size} tokens, the model only {cfg.vocab_size}")
    return model.eval(), tokenizer, cfg
