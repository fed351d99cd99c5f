"""The write-ahead log of a live index: every add and delete since the build, durable before acknowledged.

One JSON object a line: ``{"op": "add", "key": k, "post": {...}, "vec": "<base64 float16>"}`` or
``{"op": "delete", "post_id": "..."}``. :meth:`WriteAheadLog.append` writes a batch of records
and ``fsync``\\s the file before it returns, so an add that was acknowledged survives a kill -9 or a
power cut; opening the index replays the log on top of the build. The vector travels in the log so
a replay never needs the embedder. A torn last line (a crash in the middle of a write, before the
acknowledgement) is ignored on replay and cut off before the next append. Logs are numbered
(``wal-000001.jsonl``, ...): compaction starts a new one and removes the old once its records are
in the index's segments (:mod:`murmur.search.segments`).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def encode_vector(v: np.ndarray) -> str:
    return base64.b64encode(np.asarray(v, np.float16).tobytes()).decode("ascii")


def decode_vector(s: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), np.float16)


class WriteAheadLog:
    def __init__(self, path: Path):
        self.path = path
        self._f = None
        self.bytes = path.stat().st_size if path.exists() else 0

    def records(self) -> Iterator[dict[str, Any]]:
        """Every complete record, in order."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    return  # torn tail: never acknowledged
                yield json.loads(line)

    def _open(self) -> None:
        size = 0
        if self.path.exists():
            with open(self.path, "rb") as f:
                data = f.read()
            size = data.rfind(b"\n") + 1  # drop a torn tail before appending after it
        self._f = open(self.path, "ab")
        if self._f.tell() != size:
            self._f.truncate(size)
            self._f.seek(size)
        self.bytes = size

    def append(self, records: list[dict[str, Any]]) -> None:
        """Write ``records`` and make them durable (fsync) before returning."""
        if self._f is None:
            self._open()
        payload = b"".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
                           for r in records)
        new = not self.path.exists() or self.bytes == 0
        self._f.write(payload)
        self._f.flush()
        os.fsync(self._f.fileno())
        if new:  # the log's directory entry must be durable too
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self.bytes = self._f.tell()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
