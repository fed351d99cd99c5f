"""Clean posts -> train/val token shards (format: :mod:`murmur.data.shards_format`, docs/formats.md).

Posts are read from Parquet in batches, encoded piece by piece with each piece's tokens kept for reuse
(:mod:`murmur.data.piece_encode`: the ids of the tokenizer's Rust batch encoder, which encodes what
that module does not take; in threads when ``workers > 1``), each prefixed with
``<|doc|>``, and sent to the train or the validation split by the stable hash of ``post_id`` (:func:`murmur.data.split.is_val`, the same
split the tokenizer was trained on). Each split is written as shards of whole documents: a shard is
closed as soon as it holds ``tokens_per_shard`` tokens, so memory stays flat in corpus size.

Shard boundaries depend only on the documents, never on batches or worker processes, so the output
is byte-identical for any ``workers`` and ``batch_size``. The directory (shards, ``manifest.json``,
``_COMPLETE``) is built beside the target and swapped in only when complete.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from murmur.config import knob
from murmur.data import piece_encode
from murmur.data.piece_encode import PieceEncoder
from murmur.data.shards_format import MANIFEST, dtype_for_vocab, read_manifest, shard_name, write_shard
from murmur.data.split import DEFAULT_VAL_FRACTION, val_mask
from murmur.errors import ConfigError, InputError
from murmur.io import atomic_dir, check_output_dir, write_json
from murmur.progress import Progress, log

SHARDS_KIND = "shards"  # what a shard directory's completion marker says

SPLITS = ("train", "val")
FORMAT = "murmur-token-shards"


@dataclass(frozen=True)
class ShardConfig:
    """How to cut the corpus into token shards."""

    val_fraction: float = knob(DEFAULT_VAL_FRACTION, "fraction of posts held out for validation "
                                                     "(stable hash of post_id; same as the tokenizer's)")
    tokens_per_shard: int = knob(50_000_000, "a shard is closed once it holds this many tokens "
                                             "(documents are never split across shards)")
    batch_size: int = knob(8192, "posts read and encoded at a time")

    def check(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError("val_fraction must be in [0, 1)")
        if self.tokens_per_shard < 1 or self.batch_size < 1:
            raise ConfigError("tokens_per_shard and batch_size must be >= 1")


@dataclass(frozen=True)
class SplitInfo:
    """One split of a shard directory: its shard files and totals."""

    shards: list[dict[str, Any]]
    tokens: int
    docs: int
    bytes: int

    @property
    def bytes_per_token(self) -> float:
        """UTF-8 bytes of the posts per text token (document tokens not counted)."""
        return self.bytes / max(self.tokens - self.docs, 1)


@dataclass(frozen=True)
class ShardManifest:
    """What ``tokenize_to_shards`` wrote (the contents of ``manifest.json``)."""

    path: Path
    vocab_size: int
    dtype: str
    doc_token_id: int
    tokenizer_sha256: str
    val_fraction: float
    splits: dict[str, SplitInfo]
    skipped_posts: int = 0
    seconds: float | None = field(default=None, compare=False)

    @classmethod
    def load(cls, directory: str | Path) -> ShardManifest:
        m = read_manifest(directory)
        return cls(Path(directory), int(m["vocab_size"]), m["dtype"], int(m["doc_token_id"]),
                   m.get("tokenizer_sha256", ""), float(m.get("val_fraction", 0.0)),
                   {k: SplitInfo(v["shards"], v["tokens"], v["docs"], v["bytes"]) for k, v in m["splits"].items()},
                   int(m.get("skipped_posts", 0)))

    @property
    def train_tokens(self) -> int:
        return self.splits["train"].tokens

    @property
    def val_tokens(self) -> int:
        return self.splits["val"].tokens

    @property
    def train_docs(self) -> int:
        return self.splits["train"].docs

    @property
    def val_docs(self) -> int:
        return self.splits["val"].docs

    def describe(self) -> str:
        lines = [f"token shards in {self.path} ({self.dtype}, vocab {self.vocab_size:,}):"]
        for name, s in self.splits.items():
            shards = f"{len(s.shards)} shard" + ("" if len(s.shards) == 1 else "s")
            lines.append(f"  {name:<5} {s.tokens:>14,} tokens  {s.docs:>11,} posts  {shards:>10}  "
                         f"{s.bytes_per_token:.2f} bytes/token")
        if self.skipped_posts:
            lines.append(f"  skipped {self.skipped_posts:,} posts with no text")
        if self.seconds:
            docs = sum(s.docs for s in self.splits.values())
            lines.append(f"  {self.seconds:.1f}s ({docs / max(self.seconds, 1e-9):,.0f} posts/s)")
        return "\n".join(lines)


# ---------------------------------------------------------------- encoding one batch
@dataclass
class _Encoded:
    """One batch, encoded and split: per split, flat ids (doc token first in each post) and doc lengths."""

    posts: int
    skipped: int
    tokens: dict[str, np.ndarray]
    doc_lens: dict[str, np.ndarray]
    bytes: dict[str, int]


class _Encoder:
    """Encodes record batches of (post_id, text); lives in the main process or in a worker."""

    def __init__(self, tokenizer_json: str, val_fraction: float):
        from tokenizers import Tokenizer

        from murmur.tokenizer import MurmurTokenizer

        self.tok = MurmurTokenizer(Tokenizer.from_str(tokenizer_json))
        self.dtype = dtype_for_vocab(self.tok.vocab_size)
        self.val_fraction = val_fraction
        self.pieces = PieceEncoder(self.tok.inner) if piece_encode.supports(tokenizer_json) else None

    def _encode(self, texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of non-empty texts: flat, and per text (``encode_batch``'s ids either way)."""
        if self.pieces is not None:
            return self.pieces.encode(texts)
        encodings = self.tok.inner.encode_batch(texts.to_pylist(), add_special_tokens=False)
        lens = np.fromiter((len(e) for e in encodings), dtype=np.int64, count=len(encodings))
        flat = np.fromiter((i for e in encodings for i in e.ids), dtype=np.uint32, count=int(lens.sum()))
        return flat, lens

    def __call__(self, batch: pa.RecordBatch) -> _Encoded:
        texts = batch.column("text")
        keep = pc.fill_null(pc.greater(pc.binary_length(texts), 0), False)
        texts, ids = texts.filter(keep), batch.column("post_id").filter(keep)
        text_ids, text_lens = self._encode(texts)
        lens = text_lens + 1
        flat = np.empty(int(lens.sum()), dtype=self.dtype)
        starts = np.cumsum(lens) - lens
        body = np.ones(len(flat), dtype=bool)
        body[starts] = False
        flat[starts] = self.tok.doc_id
        flat[body] = text_ids
        n_bytes = pc.binary_length(texts).to_numpy(zero_copy_only=False).astype(np.int64)
        is_val = val_mask(ids, self.val_fraction)
        token_val = np.repeat(is_val, lens)
        out = _Encoded(batch.num_rows, batch.num_rows - len(texts), {}, {}, {})
        for split, docs, toks in (("train", ~is_val, ~token_val), ("val", is_val, token_val)):
            out.tokens[split], out.doc_lens[split] = flat[toks], lens[docs]
            out.bytes[split] = int(n_bytes[docs].sum())
        return out


def _encoded_batches(batches: Iterator[pa.RecordBatch], tokenizer_json: str, val_fraction: float,
                     workers: int) -> Iterator[_Encoded]:
    """Encode batches in input order; with workers > 1, in as many threads (each with its own encoder;
    the compiled split and the Rust encoder release the GIL), at most 2 batches per thread in flight."""
    if workers <= 1:
        encoder = _Encoder(tokenizer_json, val_fraction)
        yield from map(encoder, batches)
        return
    local = threading.local()

    def encode(batch: pa.RecordBatch) -> _Encoded:
        if not hasattr(local, "encoder"):
            local.encoder = _Encoder(tokenizer_json, val_fraction)
        return local.encoder(batch)

    with ThreadPoolExecutor(workers) as pool:
        window: deque[Future[_Encoded]] = deque()
        for batch in batches:
            window.append(pool.submit(encode, batch))
            if len(window) >= 2 * workers:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()


# ---------------------------------------------------------------- writing one split
class _SplitWriter:
    """Accumulates whole documents of one split and writes a shard each time ``limit`` is reached."""

    def __init__(self, directory: Path, split: str, dtype: np.dtype, limit: int):
        self.directory, self.split, self.dtype, self.limit = directory, split, dtype, limit
        self.pending_tokens: list[np.ndarray] = []
        self.pending_lens: list[np.ndarray] = []
        self.pending = 0
        self.shards: list[dict[str, Any]] = []
        self.tokens = self.docs = self.bytes = 0

    def add(self, tokens: np.ndarray, doc_lens: np.ndarray, n_bytes: int) -> None:
        self.bytes += n_bytes
        while len(doc_lens):
            ends = np.cumsum(doc_lens)
            first_full = int(np.searchsorted(ends, self.limit - self.pending, side="left"))
            if first_full == len(doc_lens):  # everything fits below the limit
                self._append(tokens, doc_lens)
                return
            take = int(ends[first_full])
            self._append(tokens[:take], doc_lens[:first_full + 1])
            self.flush()
            tokens, doc_lens = tokens[take:], doc_lens[first_full + 1:]

    def _append(self, tokens: np.ndarray, doc_lens: np.ndarray) -> None:
        self.pending_tokens.append(tokens)
        self.pending_lens.append(doc_lens)
        self.pending += len(tokens)

    def flush(self) -> None:
        if not self.pending:
            return
        tokens = np.concatenate(self.pending_tokens).astype(self.dtype, copy=False)
        lens = np.concatenate(self.pending_lens)
        name = shard_name(self.split, len(self.shards))
        write_shard(self.directory / name, tokens, np.cumsum(lens) - lens)
        self.shards.append({"file": name, "tokens": len(tokens), "docs": len(lens)})
        self.tokens += len(tokens)
        self.docs += len(lens)
        self.pending_tokens, self.pending_lens, self.pending = [], [], 0

    def info(self) -> SplitInfo:
        return SplitInfo(list(self.shards), self.tokens, self.docs, self.bytes)


# ---------------------------------------------------------------- the stage
def tokenize_to_shards(src: Path, tokenizer_dir: Path, out: Path, cfg: ShardConfig | None = None,
                       workers: int = 1, overwrite: bool = False) -> ShardManifest:
    """Tokenize clean posts into ``out/{train,val}-NNNNN.bin`` + ``manifest.json`` (atomically).

    An existing ``out`` is replaced only with ``overwrite`` and only when it holds murmur shards.
    """
    def local(pf: Any, tokenizer_json: str, cfg: ShardConfig) -> Iterator[_Encoded]:
        batches = pf.iter_batches(batch_size=cfg.batch_size, columns=["post_id", "text"])
        return _encoded_batches(batches, tokenizer_json, cfg.val_fraction, max(1, workers))

    return tokenize_with(local, src, tokenizer_dir, out, cfg, overwrite)


def tokenize_with(encode: Any, src: Path, tokenizer_dir: Path, out: Path, cfg: ShardConfig | None = None,
                  overwrite: bool = False) -> ShardManifest:
    """``tokenize_to_shards`` with the posts encoded by ``encode(parquet_file, tokenizer_json, cfg)``, an
    iterator of ``_Encoded`` in input order (the local pool or Ray); the shards are written here."""
    from murmur.tokenizer import load_tokenizer, open_posts

    cfg = cfg or ShardConfig()
    cfg.check()
    src, out = Path(src), Path(out)
    check_output_dir(out, SHARDS_KIND, overwrite, (src, tokenizer_dir))
    tok = load_tokenizer(tokenizer_dir)
    pf = open_posts(src, ["post_id", "text"])
    trained_val = tok.meta.get("training", {}).get("val_fraction")
    if trained_val is not None and trained_val < cfg.val_fraction:
        log(f"warning: the tokenizer held out {trained_val:.2%} of posts but the shards hold out "
            f"{cfg.val_fraction:.2%}; some validation posts were seen when training the tokenizer")
    dtype = dtype_for_vocab(tok.vocab_size)
    tokenizer_json = (tok.path / "tokenizer.json").read_text(encoding="utf-8") if tok.path else tok.inner.to_str()
    timer = Progress("tokenize", total=pf.metadata.num_rows, unit="posts")
    with atomic_dir(out, SHARDS_KIND, overwrite, (src, tokenizer_dir)) as tmp, timer:
        writers = {split: _SplitWriter(tmp, split, dtype, cfg.tokens_per_shard) for split in SPLITS}
        skipped = 0
        for enc in encode(pf, tokenizer_json, cfg):
            for split in SPLITS:
                writers[split].add(enc.tokens[split], enc.doc_lens[split], enc.bytes[split])
            skipped += enc.skipped
            timer.advance(enc.posts)
        for w in writers.values():
            w.flush()
        if not any(w.docs for w in writers.values()):
            raise InputError("no posts with text to tokenize", src)
        manifest = ShardManifest(out, tok.vocab_size, dtype.name, tok.doc_id, tok.sha256, cfg.val_fraction,
                                 {split: w.info() for split, w in writers.items()}, skipped)
        write_json(tmp / MANIFEST, _manifest_json(manifest, cfg, src, Path(tokenizer_dir)))
    return ShardManifest(**{**manifest.__dict__, "seconds": timer.elapsed})


def _manifest_json(m: ShardManifest, cfg: ShardConfig, src: Path, tokenizer_dir: Path) -> dict[str, Any]:
    """The manifest: nothing in it depends on timing or the number of workers. Paths are absolute, so
    the trainer finds the tokenizer from any working directory."""
    return {
        "format": FORMAT, "version": 1, "vocab_size": m.vocab_size, "dtype": m.dtype,
        "doc_token_id": m.doc_token_id, "tokenizer_sha256": m.tokenizer_sha256,
        "tokenizer": str(tokenizer_dir.resolve()), "source": str(src.resolve()), "val_fraction": m.val_fraction, "tokens_per_shard": cfg.tokens_per_shard,
        "skipped_posts": m.skipped_posts,
        "splits": {name: {"shards": s.shards, "tokens": s.tokens, "docs": s.docs, "bytes": s.bytes}
                   for name, s in m.splits.items()},
    }
