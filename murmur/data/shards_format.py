"""The token shard file format: writer and memory-mapped reader (see docs/formats.md).

A shard ``{split}-{index:05d}.bin`` is a 64-byte header, then a flat array of token ids, then an
index of document start offsets (uint64, relative to the shard)::

    magic    8 bytes  b"MURMTOKS"
    version  uint32   1
    itemsize uint32   2 (uint16 ids) or 4 (uint32 ids)
    tokens   uint64   number of token ids
    docs     uint64   number of documents
    (zero padding to 64 bytes)

Every document starts with the document token, so posts are separated by it. A directory of
shards has a ``manifest.json`` (vocabulary size, dtype, document token id, per-split shard list
and token counts) and a ``_COMPLETE`` marker written last.
"""

from __future__ import annotations

import itertools
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from murmur.errors import InputError
from murmur.io import atomic_path, is_complete

MAGIC = b"MURMTOKS"
VERSION = 1
HEADER_SIZE = 64
_HEADER = struct.Struct("<8sIIQQ")
MANIFEST = "manifest.json"


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """uint16 when every id fits, else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 65536 else np.dtype(np.uint32)


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:05d}.bin"


def write_shard(path: Path, tokens: np.ndarray, doc_starts: np.ndarray) -> None:
    """Write one shard atomically. ``tokens`` must already have the shard dtype."""
    assert tokens.dtype in (np.uint16, np.uint32)
    header = _HEADER.pack(MAGIC, VERSION, tokens.dtype.itemsize, len(tokens), len(doc_starts))
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(header.ljust(HEADER_SIZE, b"\0"))
        f.write(np.ascontiguousarray(tokens).tobytes())
        f.write(np.asarray(doc_starts, dtype=np.uint64).tobytes())


@dataclass(frozen=True)
class Shard:
    """One memory-mapped shard."""

    path: Path
    tokens: np.ndarray  # memmap of ids
    doc_starts: np.ndarray  # memmap of uint64 offsets

    @classmethod
    def open(cls, path: Path) -> Shard:
        path = Path(path)
        if not path.is_file():
            raise InputError("shard file is missing", path)
        with open(path, "rb") as f:
            raw = f.read(HEADER_SIZE)
        if len(raw) < HEADER_SIZE:
            raise InputError("truncated shard header", path)
        magic, version, itemsize, n_tokens, n_docs = _HEADER.unpack(raw[: _HEADER.size])
        if magic != MAGIC:
            raise InputError("not a murmur token shard (bad magic)", path)
        if version != VERSION:
            raise InputError(f"unsupported shard version {version}", path)
        if itemsize not in (2, 4):
            raise InputError(f"bad token size {itemsize}", path)
        dtype = np.uint16 if itemsize == 2 else np.uint32
        expected = HEADER_SIZE + n_tokens * itemsize + n_docs * 8
        if path.stat().st_size != expected:
            raise InputError(f"shard is {path.stat().st_size} bytes, header says {expected}", path)
        tokens = np.memmap(path, dtype=dtype, mode="r", offset=HEADER_SIZE, shape=(n_tokens,)) \
            if n_tokens else np.zeros(0, dtype=dtype)
        docs = np.memmap(path, dtype=np.uint64, mode="r", offset=HEADER_SIZE + n_tokens * itemsize,
                         shape=(n_docs,)) if n_docs else np.zeros(0, dtype=np.uint64)
        return cls(path, tokens, docs)


class TokenShards:
    """All shards of one split, read as one long memory-mapped token stream.

    ``read(start, length)`` returns ``length`` ids from global offset ``start`` (spanning shard
    boundaries) as int64, ready to become a tensor. Nothing is loaded into memory up front.
    """

    def __init__(self, directory: str | Path, split: str = "train"):
        self.directory = Path(directory)
        self.manifest = read_manifest(self.directory)
        splits = self.manifest["splits"]
        if split not in splits:
            raise InputError(f"no {split!r} split (have {', '.join(splits)})", self.directory / MANIFEST)
        self.split = split
        self.vocab_size: int = int(self.manifest["vocab_size"])
        self.doc_token_id: int = int(self.manifest["doc_token_id"])
        self.shards = [Shard.open(self.directory / s["file"]) for s in splits[split]["shards"]]
        for s, info in zip(self.shards, splits[split]["shards"], strict=True):
            if len(s.tokens) != info["tokens"]:
                raise InputError(f"shard has {len(s.tokens)} tokens, manifest says {info['tokens']}", s.path)
        sizes = np.array([len(s.tokens) for s in self.shards], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.num_tokens = int(self.starts[-1])
        self.num_docs = sum(len(s.doc_starts) for s in self.shards)

    def __len__(self) -> int:
        return self.num_tokens

    def read(self, start: int, length: int) -> np.ndarray:
        if start < 0 or start + length > self.num_tokens:
            raise IndexError(f"read [{start}, {start + length}) outside {self.num_tokens} tokens")
        out = np.empty(length, dtype=np.int64)
        i = int(np.searchsorted(self.starts, start, side="right")) - 1
        filled = 0
        while filled < length:
            shard = self.shards[i]
            lo = start + filled - int(self.starts[i])
            take = min(length - filled, len(shard.tokens) - lo)
            out[filled:filled + take] = shard.tokens[lo:lo + take]
            filled += take
            i += 1
        return out

    def documents(self) -> list[np.ndarray]:
        """Every document as an array of ids (doc token first); for tests and small evaluations."""
        docs = []
        for s in self.shards:
            bounds = [*map(int, s.doc_starts), len(s.tokens)]
            docs.extend(np.asarray(s.tokens[a:b], dtype=np.int64) for a, b in itertools.pairwise(bounds))
        return docs


def read_manifest(directory: str | Path) -> dict:
    """The shard directory's manifest, after checking the directory is complete."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not directory.is_dir():
        raise InputError("shard directory not found", directory)
    if not path.is_file():
        raise InputError("not a token shard directory (no manifest.json)", directory)
    if not is_complete(directory):
        raise InputError("shard directory is incomplete (no _COMPLETE marker); re-run `murmur data tokenize`",
                         directory)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"invalid JSON: {e.msg}", path, e.lineno) from None
