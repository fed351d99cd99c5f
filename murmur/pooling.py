"""How a murmur model turns a text into one vector: the token rows, the pooling, the metadata file.

Shared by contrastive training (:mod:`murmur.train.contrastive`) and by the search embedder that
loads the result (:mod:`murmur.search.murmur_embedder`), so both compute exactly the same vector.

A text becomes ``<|doc|> text-tokens`` (how every post starts in pretraining), cut to
``max_tokens``; with ``eos`` pooling a closing ``<|doc|>`` is appended (in pretraining the token
that follows a post, so its state sums the post up). Rows are right-padded: attention is causal,
so real tokens never see the padding and no attention mask is needed. Poolings over the final
hidden states (``Transformer.forward(..., return_hidden=True)``):

- ``mean``: the average over the text's tokens;
- ``last``: the state of the text's last token;
- ``eos``: the state of the appended closing ``<|doc|>``.

The vector is L2-normalised. ``embedder.json`` in a model directory records the pooling and
length, which makes the directory an embedder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from murmur.errors import InputError
from murmur.io import write_json

Pooling = Literal["mean", "last", "eos"]
POOLINGS: tuple[str, ...] = ("mean", "last", "eos")
EMBEDDER_FILE = "embedder.json"
FORMAT = "murmur-embedder"


@dataclass(frozen=True)
class EmbedderMeta:
    """What ``embedder.json`` holds next to a model directory's weights."""

    pooling: str = "mean"
    max_tokens: int = 64
    name: str = "murmur"
    format: str = FORMAT
    version: int = 1


def write_meta(model_dir: str | Path, meta: EmbedderMeta, extra: dict[str, Any] | None = None) -> None:
    write_json(Path(model_dir) / EMBEDDER_FILE, {**asdict(meta), **(extra or {})})


def read_meta(model_dir: str | Path) -> EmbedderMeta:
    path = Path(model_dir) / EMBEDDER_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read the embedder metadata ({e})", path=path) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"not a murmur embedder file (format is not {FORMAT!r})", path=path, field="format")
    if data.get("pooling") not in POOLINGS:
        raise InputError(f"pooling must be one of {', '.join(POOLINGS)}", path=path, field="pooling")
    try:
        return EmbedderMeta(pooling=data["pooling"], max_tokens=int(data.get("max_tokens", 64)),
                            name=str(data.get("name", "murmur")))
    except (TypeError, ValueError):
        raise InputError("max_tokens must be an integer", path=path, field="max_tokens") from None


def text_ids(tokenizer: Any, text: str, max_tokens: int, pooling: str) -> np.ndarray:
    """The token ids of one text as the embedder reads it (see the module doc)."""
    body = max_tokens - (2 if pooling == "eos" else 1)
    ids = [tokenizer.doc_id, *tokenizer.encode(text)[:max(body, 1)]]
    if pooling == "eos":
        ids.append(tokenizer.doc_id)
    return np.asarray(ids, dtype=np.int64)


def pad_rows(rows: Sequence[np.ndarray], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded token rows [B, T] and their lengths [B]."""
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.int64)
    tokens = torch.full((len(rows), int(lengths.max())), pad_id, dtype=torch.int64)
    for i, r in enumerate(rows):
        tokens[i, :len(r)] = torch.from_numpy(r)
    return tokens, lengths


def pool(hidden: torch.Tensor, lengths: torch.Tensor, pooling: str) -> torch.Tensor:
    """Unit-length vectors [B, dim] from hidden states [B, T, dim] of right-padded rows."""
    lengths = lengths.to(hidden.device)
    if pooling == "mean":
        # Position 0 is the opening <|doc|>, the same in every row: average the text's own tokens.
        pos = torch.arange(hidden.shape[1], device=hidden.device)[None, :]
        keep = ((pos >= 1) & (pos < lengths[:, None])) | ((pos == 0) & (lengths[:, None] == 1))
        w = keep.to(hidden.dtype).unsqueeze(-1)
        vec = (hidden * w).sum(1) / w.sum(1).clamp(min=1.0)
    elif pooling in ("last", "eos"):
        vec = hidden[torch.arange(hidden.shape[0], device=hidden.device), lengths - 1]
    else:
        raise ValueError(f"unknown pooling {pooling!r}")
    return F.normalize(vec.float(), dim=-1)


def embed_rows(model: torch.nn.Module, tokens: torch.Tensor, lengths: torch.Tensor, pooling: str) -> torch.Tensor:
    """The pooled, normalised vectors of padded token rows through ``model``."""
    return pool(model(tokens, return_hidden=True), lengths, pooling)


def embed_by_length(model: torch.nn.Module, tokens: torch.Tensor, lengths: torch.Tensor, pooling: str,
                    rows_per_pass: int = 32) -> torch.Tensor:
    """``embed_rows`` of the same rows, run ``rows_per_pass`` at a time in length order, each pass cut
    to its longest row: the same vectors (causal attention, right padding), far less padding run."""
    lengths = lengths.to(tokens.device)
    order = torch.argsort(lengths, stable=True)
    parts = []
    for idx in order.split(max(rows_per_pass, 1)):
        width = int(lengths[idx].max())
        parts.append(embed_rows(model, tokens[idx, :width], lengths[idx], pooling))
    return torch.cat(parts)[torch.argsort(order)]
