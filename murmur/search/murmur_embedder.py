"""murmur's own embedder at search time: a model directory with ``embedder.json`` (``murmur embed train``).

The vectors are computed exactly as in training (:mod:`murmur.pooling`); texts are batched in
length order so little padding is run.

The forward runs as a traced TorchScript graph of the same model and pooling (``torch.jit.trace``,
checked against the eager forward when it is made). The reason is the server's other threads, not
the forward itself: eager PyTorch takes Python's GIL back after each of a forward's ~150 operators,
and while another thread runs Python (a request's parsing, fusion, highlights) each take waits up
to the interpreter's switch interval. Measured on 2 cores, a 4-query forward took 7.9 ms eager and
6.7 ms traced alone, and 1,864 ms eager against 16.9 ms traced beside one thread running Python.
A model that cannot be traced runs eagerly, with the same vectors.

Queries (``kind="query"``) go through a copy of the model whose linear layers have int8 weights
and int8 dynamic activations (PyTorch's fbgemm kernels, through ``quantize_dynamic``): a query's
forward reads a quarter of the weight bytes, which is what bounds it on a CPU. Passages, which are
embedded once and stored, keep float32. The int8 query vectors are checked against the float32
ones when the copy is made (cosine at least ``INT8_MIN_COSINE`` on a few rows; 0.999 on the demo's
embedder) and the float32 model serves queries too where the check fails, the quantization API is
missing, or ``query_int8=False``.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from murmur.pooling import embed_rows, pad_rows, pool, read_meta, text_ids
from murmur.progress import log
from murmur.search.embed import Batcher, intra_op_threads


class _TokenCounter:
    """``tokenizer(text)["input_ids"]``, the shape the embeddings route counts usage with."""

    def __init__(self, tokenizer: Any, max_tokens: int, pooling: str):
        self.tokenizer, self.max_tokens, self.pooling = tokenizer, max_tokens, pooling

    def __call__(self, text: str) -> dict[str, list[int]]:
        return {"input_ids": text_ids(self.tokenizer, text, self.max_tokens, self.pooling).tolist()}


class _Pooled(torch.nn.Module):
    """The model's hidden states pooled into vectors: what :func:`embed_rows` computes, as one module."""

    def __init__(self, model: torch.nn.Module, pooling: str):
        super().__init__()
        self.model, self.pooling = model, pooling

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return pool(self.model(tokens, return_hidden=True), lengths, self.pooling)


INT8_MIN_COSINE = 0.99

_EXAMPLE = ([[1, 5, 9, 2, 7, 3], [1, 4, 8, -1, -1, -1]], [6, 3])
_CHECK = ([[1, 6, 2], [1, 3, 3], [1, -1, -1]], [3, 3, 1])


def _rows(rows: tuple[list[list[int]], list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    tokens, lengths = rows
    return torch.tensor([[pad_id if t < 0 else t for t in r] for r in tokens]), torch.tensor(lengths)


def int8_copy(model: torch.nn.Module, pooling: str, pad_id: int) -> torch.nn.Module | None:
    """A copy of ``model`` with int8 linear layers, or None when quantizing is not available here or
    its vectors stray from the float32 ones (cosine under ``INT8_MIN_COSINE``)."""
    import copy

    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # the eager quantization API warns that it is moving to torchao
            q = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)
            for rows in (_EXAMPLE, _CHECK):
                tokens, lengths = _rows(rows, pad_id)
                cos = (embed_rows(q, tokens, lengths, pooling) * embed_rows(model, tokens, lengths, pooling)).sum(1)
                if float(cos.min()) < INT8_MIN_COSINE:
                    raise ValueError(f"int8 query vectors at cosine {float(cos.min()):.3f} to the float32 ones")
    except Exception as e:  # noqa: BLE001 - the float32 model serves queries instead
        log(f"embedder: queries run in float32 ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})")
        return None
    return q


def traced(model: torch.nn.Module, pooling: str, pad_id: int) -> Any:
    """``embed_rows`` of ``model`` as a traced graph, or None when tracing fails or the graph's
    vectors differ from the eager ones on rows of other shapes than the traced example's."""
    example, check = _rows(_EXAMPLE, pad_id), _rows(_CHECK, pad_id)
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            # the model's check of a row's length against max_seq_len is a Python branch the trace
            # drops (the rows here are cut to the embedder's max_tokens first), and TorchScript warns
            # that it is deprecated (where it is gone, the forward runs eagerly)
            warnings.simplefilter("ignore")
            graph = torch.jit.trace(_Pooled(model, pooling).eval(), example, check_trace=False)
            for tokens, lengths in (example, check):
                if not torch.allclose(graph(tokens, lengths), embed_rows(model, tokens, lengths, pooling), atol=1e-5):
                    raise ValueError("the traced vectors differ from the eager ones")
    except Exception as e:  # noqa: BLE001 - the eager forward gives the same vectors
        log(f"embedder: running eagerly ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})")
        return None
    return graph


class MurmurEmbedder:
    """A murmur model, pooled as its ``embedder.json`` says; unit-length float32 vectors."""

    def __init__(self, path: Path, model: torch.nn.Module, tokenizer: Any, pooling: str, max_tokens: int, name: str,
                 batch_size: int = 64, query_int8: bool = True):
        self.path, self.model, self.murmur_tokenizer, self.query_int8 = path, model, tokenizer, query_int8
        self.pooling, self.max_tokens, self.name, self.batch_size = pooling, max_tokens, name, batch_size
        self.dim = int(model.cfg.dim)
        self.tokenizer = _TokenCounter(tokenizer, max_tokens, pooling)
        self._batcher = Batcher(self._encode)  # one forward at a time: torch already uses every core
        self._graphs: dict[str, Any] = {}  # the forward per kind for _graphs_of, made at its first call
        self._graphs_of: torch.nn.Module | None = None
        self._graph_lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path, query_int8: bool = True) -> MurmurEmbedder:
        from murmur.modeldir import load_model

        path = Path(path).resolve()
        meta = read_meta(path)
        model, tokenizer, _ = load_model(path)
        return cls(path, model, tokenizer, meta.pooling, meta.max_tokens, meta.name, query_int8=query_int8)

    def encode(self, texts: Sequence[str], kind: str = "passage") -> np.ndarray:
        return self._batcher(texts, kind)

    def forward(self, kind: str = "passage") -> Any:
        """The function from padded rows to vectors for texts of ``kind``: a traced graph (of the int8
        copy for queries), or the eager model where tracing fails."""
        model = self.model
        key = "query" if kind == "query" and self.query_int8 else "passage"
        with self._graph_lock:
            if self._graphs_of is not model:  # the first call, or a model swapped in since
                self._graphs, self._graphs_of = {}, model
            if key not in self._graphs:
                pad = self.murmur_tokenizer.pad_id
                run = (int8_copy(model, self.pooling, pad) if key == "query" else None) or model
                self._graphs[key] = traced(run, self.pooling, pad) or \
                    (lambda tokens, lengths: embed_rows(run, tokens, lengths, self.pooling))
            return self._graphs[key]

    def _encode(self, texts: list[str], kind: str) -> np.ndarray:
        rows = [text_ids(self.murmur_tokenizer, t, self.max_tokens, self.pooling) for t in texts]
        order = np.argsort([len(r) for r in rows], kind="stable")
        out = np.zeros((len(rows), self.dim), np.float32)
        forward = self.forward(kind)
        with torch.inference_mode(), intra_op_threads(len(rows)):
            for i in range(0, len(order), self.batch_size):
                idx = order[i:i + self.batch_size]
                tokens, lengths = pad_rows([rows[j] for j in idx], self.murmur_tokenizer.pad_id)
                out[idx] = forward(tokens, lengths).numpy()
        return out
