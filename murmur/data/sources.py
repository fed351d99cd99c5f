"""``murmur data ingest``: read raw posts in any supported format into one Parquet file in POST_SCHEMA.

Sources are files, directories (walked recursively) and glob patterns; each file may be plain,
``.gz`` or ``.zst``. Formats (see docs/formats.md, "Raw inputs"):

- ``x-archive``: an X account archive: its folder, its ``.zip``, or ``data/tweets*.js``;
- ``x-api``:     X API v2 responses: one page per file, one page per line, or one tweet per line;
- ``csv``, ``jsonl``, ``parquet``: tables with a ``text`` column, other columns found by name or ``--map``;
- ``text``:      one post per line.

The output is written in row groups while reading (memory stays flat in corpus size) to a temporary
file renamed into place at the end, so a failed ingest leaves nothing behind. Rows come out in file
order (arguments in the order given, files inside a directory or glob sorted by path) whatever the
number of worker processes: workers read whole files into temporary Arrow IPC files, and the parent
appends them in file order, re-cut into row groups of exactly ``batch_size`` rows.

Errors (docs/formats.md, "Errors and skipped records"): a file that cannot be read as its format
(malformed JSON or CSV, corrupt or truncated compression, not UTF-8, empty, no text column, a zip
without ``tweets.js``) stops the ingest with an :class:`InputError` naming file and line. A single
record that cannot become a post (no text, text that is not a string or not valid Unicode, no id) is
skipped and counted; a field value that cannot be read (a date in an unknown format or out of range, a
count that is not a number or beyond int64) is left empty and counted. Both show in
:meth:`IngestStats.describe` with the place of the first one.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import glob
import multiprocessing
import os
import re
import shutil
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from murmur.data.readers import api_pages, tabular, x_api, x_archive
from murmur.data.readers.common import (
    FileReport,
    NoPostsHere,
    Row,
    guard_utf8,
    iter_json,
    iter_json_lines,
    read_head,
    to_batch,
)
from murmur.data.schema import POST_SCHEMA
from murmur.errors import InputError
from murmur.io import (
    COMPLETE_MARKER,
    atomic_path,
    open_binary,
    open_text,
    strip_compression_suffix,
    temp_sibling,
)
from murmur.progress import Progress

FORMATS = ("auto", "x-archive", "x-api", "csv", "jsonl", "parquet", "text")
_FORMAT_ALIASES = {"json": "jsonl", "ndjson": "jsonl", "txt": "text", "tsv": "csv", "archive": "x-archive",
                   "api": "x-api", "x-api-v2": "x-api", "twitter-archive": "x-archive"}
# File name endings (after any .gz/.zst) of each format family.
_EXTENSIONS = {
    "csv": (".csv", ".tsv"),
    "jsonl": (".jsonl", ".ndjson", ".json"),
    "x-api": (".jsonl", ".ndjson", ".json"),
    "parquet": (".parquet", ".pq"),
    "text": (".txt", ".text"),
}


COLUMN_PAGES = True
"""Read files of X API pages a column at a time (``readers.api_pages``) where that gives the same rows."""

_ACCOUNT_RE = re.compile(r"^account(-part\d+)?\.js$", re.IGNORECASE)


def normalize_format(fmt: str) -> str:
    """The canonical name of a ``--format`` value; unknown -> InputError listing the choices."""
    f = (fmt or "auto").strip().lower()
    f = _FORMAT_ALIASES.get(f, f)
    if f not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}", field="--format")
    return f


def parse_mapping(spec: str | None) -> dict[str, str]:
    """``"id=tweet_id,author=user"`` -> ``{"post_id": "tweet_id", "author_id": "user"}``.

    Keys are schema fields or their short names (id, author, created_at/time/date, lang, text,
    reply_to, conversation_id, likes, reposts, replies, hashtags, mentions, urls).
    """
    out: dict[str, str] = {}
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        key, eq, col = item.partition("=")
        key, col = key.strip().lower(), col.strip()
        if not eq or not key or not col:
            raise InputError(f"--map item {item!r} is not KEY=COLUMN (e.g. id=tweet_id,author=user)",
                             field="--map")
        if key not in tabular.MAP_KEYS:
            close = difflib.get_close_matches(key, tabular.MAP_KEYS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise InputError(f"unknown --map key {key!r}; {hint}keys: {', '.join(sorted(tabular.MAP_KEYS))}",
                             field="--map")
        fld = tabular.MAP_KEYS[key]
        if fld in out:
            raise InputError(f"--map names {fld} twice", field="--map")
        out[fld] = col
    return out


# ---------------------------------------------------------------- finding files
@dataclass(frozen=True)
class FileTask:
    """One file to read: where it is, how it is labelled in ``source`` and ids, and which reader reads it."""

    path: Path
    label: str            # path relative to the source argument (``alice/data/tweets.js``)
    kind: str             # x-archive, x-archive-zip, json, json-lines, csv, tsv, parquet, text
    fmt: str              # the --format asked for (decides JSON records: auto, x-api, jsonl)
    mapping: tuple[tuple[str, str], ...]
    source_index: int     # which source argument it came from
    soft: bool            # found by a directory walk or glob: a file without posts is noted, not fatal


def _kind_by_name(name: str, fmt: str, explicit: bool) -> str | None:
    """The reader for a file name under ``fmt``, or None when the name does not say."""
    base = strip_compression_suffix(name).lower()
    if fmt in ("auto", "x-archive"):
        if base.endswith(".zip"):
            return "x-archive-zip"
        if x_archive.is_tweets_name(base):
            return "x-archive"
        if fmt == "x-archive":
            return "x-archive" if explicit else None
    if fmt == "auto":
        if base.endswith((".jsonl", ".ndjson")):
            return "json-lines"
        if base.endswith(".json"):
            return "json"
        if base.endswith(".tsv"):
            return "tsv"
        for family in ("csv", "parquet", "text"):
            if base.endswith(_EXTENSIONS[family]):
                return family
        return None
    if fmt in ("x-api", "jsonl"):
        if base.endswith(".json"):
            return "json"
        return "json-lines" if explicit or base.endswith(_EXTENSIONS[fmt]) else None
    if fmt == "csv":
        return ("tsv" if base.endswith(".tsv") else "csv") if explicit or base.endswith(_EXTENSIONS["csv"]) else None
    if fmt in ("parquet", "text"):
        return fmt if explicit or base.endswith(_EXTENSIONS[fmt]) else None
    return None


def _sniff(path: Path) -> str | None:
    """Guess the reader of a file from its first bytes (for explicit files with unusual names)."""
    try:
        with open_binary(path) as f:
            head = f.read(64)
    except OSError:
        return None
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"PK\x03\x04"):
        return "x-archive-zip"
    head = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"window.YTD."):
        return "x-archive"
    if head[:1] in (b"{", b"["):
        return "json"
    return None


def _walk(root: Path) -> list[Path]:
    """Every regular file under ``root``, sorted by relative path, hidden files and folders left out."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found.extend(Path(dirpath, f) for f in filenames if not f.startswith("."))
    return sorted(found, key=lambda p: _sort_key(p.relative_to(root)))


def _sort_key(rel: Path) -> tuple[str, ...]:
    """Path order, except that an archive's tweets.js comes before tweets-part1.js before tweets-part10.js."""
    name = rel.name
    if x_archive.is_tweets_name(name):
        name = x_archive.tweets_sort_name(name)
    return (*rel.parts[:-1], name)


def _glob_base(pattern: str) -> Path:
    """The folder part of a glob before its first wildcard (labels are relative to it)."""
    parts = Path(pattern).parts
    base: list[str] = []
    for p in parts:
        if glob.has_magic(p):
            break
        base.append(p)
    return Path(*base) if base else Path(".")


def printable(name: str) -> str:
    """A file name as text that can be stored and printed: bytes that are not UTF-8 become U+FFFD.

    (Python keeps them as lone surrogates, which Parquet and a UTF-8 terminal refuse.)
    """
    if name.isascii():
        return name
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _not_regular(p: Path) -> str:
    """Why an existing path is not a file that can be read."""
    if p.is_symlink():
        try:
            p.resolve(strict=True)
        except RuntimeError:
            return "a symbolic link that loops"
        except OSError as e:
            return "a symbolic link that loops" if e.errno == errno.ELOOP else "a symbolic link to nothing"
        return "a link to something that is not a file"
    return "not a regular file"


def plan(sources: list[str], fmt: str = "auto", mapping: dict[str, str] | None = None,
         exclude: Path | None = None) -> tuple[list[FileTask], list[tuple[int, str]]]:
    """Expand source arguments into file tasks in reading order, plus ``(source index, why)`` of files passed over."""
    fmt = normalize_format(fmt)
    maps = tuple(sorted((mapping or {}).items()))
    tasks: list[FileTask] = []
    passed: list[tuple[int, str]] = []
    seen: set[Path] = set()
    skip = exclude.resolve() if exclude is not None else None

    def add(path: Path, label: str, idx: int, explicit: bool) -> None:
        label = printable(label)
        if not explicit and not path.is_file():  # a link that loops or points nowhere, a socket, a FIFO
            passed.append((idx, f"{label}: {_not_regular(path)}"))
            return
        real = path.resolve()
        if real == skip:
            return
        if real in seen:
            passed.append((idx, f"{label}: already read"))
            return
        if not explicit and (path.name == COMPLETE_MARKER or _ACCOUNT_RE.match(strip_compression_suffix(path.name))):
            return  # murmur's own completion marker; account.js is read with the tweets.js beside it
        kind = _kind_by_name(path.name, fmt, explicit)
        if kind is None and explicit:
            kind = _sniff(path)
            if kind is None:
                raise InputError("cannot tell the format of this file from its name or content; pass --format",
                                 str(path))
        if kind is None:
            why = "X archive data other than posts" if path.name.lower().endswith((".js", ".js.gz", ".js.zst")) \
                else ("not " + fmt if fmt != "auto" else "not a post format")
            passed.append((idx, f"{label}: {why}"))
            return
        seen.add(real)
        tasks.append(FileTask(path, label, kind, fmt, maps, idx, not explicit))

    for idx, src in enumerate(sources):
        p = Path(src)
        if p.is_dir():
            for f in _walk(p):
                add(f, f.relative_to(p).as_posix(), idx, False)
        elif p.is_file():
            add(p, p.name, idx, True)
        elif os.path.lexists(p):
            raise InputError(_not_regular(p), src)
        elif glob.has_magic(src):
            base = _glob_base(src)
            matches = sorted(glob.glob(src, recursive=True))
            for m in matches:
                mp = Path(m)
                if mp.name.startswith("."):
                    continue
                files = _walk(mp) if mp.is_dir() else [mp]
                for f in files:
                    add(f, f.relative_to(base).as_posix() if f.is_relative_to(base) else f.name, idx, False)
            if not matches:
                raise InputError(f"no posts found in {src!r}: the pattern matches no files")
        else:
            raise InputError("no such file or directory", src)
    return tasks, passed


# ---------------------------------------------------------------- reading one file
def _task_batches(task: FileTask, batch_size: int, report: FileReport) -> Iterator[pa.RecordBatch]:
    """The record batches of one file task; fills ``report`` as it goes."""
    path, label, where, mapping = task.path, task.label, str(task.path), dict(task.mapping)

    def batches(rows: Iterator[Row], lbl: str) -> Iterator[pa.RecordBatch]:
        buf: list[Row] = []
        for row in rows:
            buf.append(row)
            if len(buf) >= batch_size:
                report.posts += len(buf)
                yield to_batch(buf, f"{report.reader}:{lbl}")
                buf = []
        if buf:
            report.posts += len(buf)
            yield to_batch(buf, f"{report.reader}:{lbl}")

    def opener():  # noqa: ANN202
        return open_binary(path)

    kind = task.kind
    if kind == "x-archive":
        report.reader = x_archive.READER
        for rows, lbl in x_archive.iter_archive_file(path, label, report):
            yield from batches(guard_utf8(rows, where, opener), lbl)
    elif kind == "x-archive-zip":
        report.reader = x_archive.READER
        for rows, lbl in x_archive.iter_archive_zip(path, label, report):
            yield from batches(rows, lbl)
    elif kind in ("json", "json-lines"):
        fmt = task.fmt if task.fmt in ("x-api", "jsonl") else "auto"
        if kind == "json-lines" and fmt != "jsonl" and COLUMN_PAGES:  # pages of the X API: whole columns at once
            pages = api_pages.read_pages(path, f"{x_api.READER}:{label}", batch_size)
            if pages is not None:
                report.reader = x_api.READER
                for batch in pages:
                    report.posts += batch.num_rows
                    yield batch
                return
        with open_text(path) as f:
            values = _json_document(f, where) if kind == "json" else iter_json_lines(f, where, report, label)
            rows = tabular.iter_json_rows(values, where, label, fmt, mapping, report)
            yield from batches(guard_utf8(rows, where, opener), label)
    elif kind in ("csv", "tsv"):
        report.reader = "csv"
        rows = tabular.iter_csv_rows(path, label, mapping, report, "\t" if kind == "tsv" else ",")
        yield from batches(guard_utf8(rows, where, opener), label)
    elif kind == "parquet":
        report.reader = "parquet"
        yield from batches(tabular.iter_parquet_rows(path, label, mapping, report, batch_size), label)
    elif kind == "text":
        report.reader = "text"
        yield from batches(guard_utf8(tabular.iter_text_rows(path, label, report), where, opener), label)
    else:  # pragma: no cover - plan() only makes the kinds above
        raise AssertionError(kind)


def _json_document(f: IO[str], where: str) -> Iterator[tuple[Any, int]]:
    """The values of a ``.json`` file (the head is read lazily, so a decoding error is guarded too)."""
    yield from iter_json(f, where, initial=read_head(f))


def read_task(task: FileTask, batch_size: int, report: FileReport) -> Iterator[pa.RecordBatch]:
    """Batches of one file; inside a walk, a file that holds no posts is noted in ``report.not_read``."""
    try:
        yield from _task_batches(task, batch_size, report)
    except NoPostsHere as e:
        if not task.soft or report.posts:
            raise
        report.not_read = e.short


def iter_batches(path: str | os.PathLike[str], fmt: str = "auto", mapping: dict[str, str] | None = None,
                 batch_size: int = 8192) -> Iterator[pa.RecordBatch]:
    """Record batches in POST_SCHEMA of one file (an archive ``.zip`` counts as one file)."""
    fmt = normalize_format(fmt)
    tasks, _ = plan([str(path)], fmt, mapping)
    report = FileReport()
    for task in tasks:
        yield from read_task(task, batch_size, report)


# ---------------------------------------------------------------- statistics
@dataclass
class IngestStats:
    """What an ingest read and wrote."""

    out: Path
    sources: list[str]
    posts: int = 0
    files: int = 0
    seconds: float = 0.0
    by_format: Counter = field(default_factory=Counter)
    by_source: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    nulled: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    not_read: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def posts_per_second(self) -> float:
        return self.posts / self.seconds if self.seconds > 0 else 0.0

    def add(self, task: FileTask, report: FileReport) -> None:
        """Merge one file's report."""
        if report.not_read is not None:
            self.not_read.append(f"{task.label}: {report.not_read}")
            return
        self.files += 1
        self.posts += report.posts
        self.by_format[report.reader] += report.posts
        self.by_source[self.sources[task.source_index]] += report.posts
        self.skipped.update(report.skipped)
        self.nulled.update(report.nulled)
        for k, v in report.examples.items():
            self.examples.setdefault(k, v)
        self.notes.extend(report.notes)

    def as_dict(self) -> dict:
        return {"out": str(self.out), "posts": self.posts, "files": self.files, "seconds": round(self.seconds, 3),
                "posts_per_second": round(self.posts_per_second, 1), "by_format": dict(self.by_format),
                "by_source": dict(self.by_source), "skipped": dict(self.skipped), "nulled": dict(self.nulled),
                "examples": self.examples, "not_read": self.not_read, "notes": self.notes}

    def describe(self) -> str:
        """A few lines for the terminal."""
        return printable(self._describe())

    def _describe(self) -> str:
        def counts(c: Counter) -> str:
            return ", ".join(f"{k} {v:,}" for k, v in sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))

        def with_first(c: Counter) -> str:
            return ", ".join(f"{k} {v:,} (first: {self.examples.get(k, '?')})"
                             for k, v in sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))

        lines = [f"ingested {self.posts:,} posts from {self.files:,} file{'s' * (self.files != 1)} "
                 f"in {self.seconds:.1f}s ({self.posts_per_second:,.0f} posts/s) -> {self.out}",
                 f"  by format: {counts(self.by_format)}"]
        if len(self.by_source) > 1:
            lines.append(f"  by source: {counts(self.by_source)}")
        if self.skipped:
            lines.append(f"  skipped {sum(self.skipped.values()):,} records: {with_first(self.skipped)}")
        if self.nulled:
            lines.append(f"  left empty: {with_first(self.nulled)}")
        if self.not_read:
            why: Counter = Counter()
            first: dict[str, str] = {}
            for item in self.not_read:
                label, _, reason = item.partition(": ")
                why[reason] += 1
                first.setdefault(reason, label)
            shown = "; ".join(f"{r} {n:,} (first: {first[r]})" for r, n in why.most_common())
            lines.append(f"  not read: {len(self.not_read):,} file{'s' * (len(self.not_read) != 1)}: {shown}")
        for note in self.notes[:5]:
            lines.append(f"  note: {note}")
        if len(self.notes) > 5:
            lines.append(f"  note: ... and {len(self.notes) - 5} more")
        return "\n".join(lines)


# ---------------------------------------------------------------- writing
class _RowGroupWriter:
    """Append batches to a Parquet file in row groups of exactly ``rows`` rows (the last may be short).

    Cutting row groups from the row stream (not from how batches arrived) makes the file the same
    byte for byte whatever the number of workers.
    """

    def __init__(self, path: Path, rows: int):
        self.rows = rows
        self.writer = pq.ParquetWriter(str(path), POST_SCHEMA, compression="zstd")
        self.buf: list[pa.RecordBatch] = []
        self.pending = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            self.buf.append(batch)
            self.pending += batch.num_rows
        while self.pending >= self.rows:
            self._flush(self.rows)

    def _flush(self, n: int) -> None:
        table = pa.Table.from_batches(self.buf, schema=POST_SCHEMA)
        self.writer.write_table(table.slice(0, n).combine_chunks(), row_group_size=n)
        rest = table.slice(n)
        self.buf = rest.to_batches() if rest.num_rows else []
        self.pending -= n

    def close(self) -> None:
        if self.pending:
            self._flush(self.pending)
        self.writer.close()


def _read_to_ipc(task: FileTask, batch_size: int, dest: str) -> FileReport:
    """Worker: read one file into an Arrow IPC stream file; return its report."""
    report = FileReport()
    opts = pa.ipc.IpcWriteOptions(compression="lz4")
    with pa.OSFile(dest, "wb") as sink, pa.ipc.new_stream(sink, POST_SCHEMA, options=opts) as w:
        for batch in read_task(task, batch_size, report):
            w.write_batch(batch)
    return report


def _ipc_batches(path: str) -> Iterator[pa.RecordBatch]:
    try:
        with pa.OSFile(path, "rb") as src:
            yield from pa.ipc.open_stream(src)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _serial(tasks: list[FileTask], batch_size: int
            ) -> Iterator[tuple[FileTask, Iterator[pa.RecordBatch], FileReport]]:
    for task in tasks:
        report = FileReport()
        yield task, read_task(task, batch_size, report), report


def _parallel(tasks: list[FileTask], batch_size: int, workers: int, tmpdir: Path
              ) -> Iterator[tuple[FileTask, Iterator[pa.RecordBatch], FileReport]]:
    """Files read by ``workers`` processes, handed back strictly in task order."""
    ctx = multiprocessing.get_context("spawn")  # no fork: pyarrow's threads do not survive it
    ex = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    inflight: deque[tuple[FileTask, str, Future]] = deque()
    todo = iter(enumerate(tasks))
    try:
        while True:
            while len(inflight) < 2 * workers:
                nxt = next(todo, None)
                if nxt is None:
                    break
                i, task = nxt
                dest = str(tmpdir / f"{i:08d}.arrow")
                inflight.append((task, dest, ex.submit(_read_to_ipc, task, batch_size, dest)))
            if not inflight:
                return
            task, dest, fut = inflight.popleft()
            report = fut.result()
            yield task, _ipc_batches(dest), report
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def ingest(sources: list[str], out: str | os.PathLike[str], fmt: str = "auto",
           mapping: dict[str, str] | None = None, workers: int = 1, batch_size: int = 8192,
           progress: bool = True) -> IngestStats:
    """Read every source into one Parquet file of posts at ``out`` (atomically); return what was done."""
    if not sources:
        raise InputError("no sources given")
    def local(tasks: list[FileTask], tmpdir: Path) -> Iterator[tuple[FileTask, Iterator[pa.RecordBatch], FileReport]]:
        if workers > 1 and len(tasks) > 1:
            return _parallel(tasks, batch_size, workers, tmpdir)
        return _serial(tasks, batch_size)

    return ingest_with(local, sources, out, fmt, mapping, batch_size, progress)


Stream = Iterator[tuple[FileTask, Iterator[pa.RecordBatch], FileReport]]


def ingest_with(read: Any, sources: list[str], out: str | os.PathLike[str], fmt: str = "auto",
                mapping: dict[str, str] | None = None, batch_size: int = 8192, progress: bool = True) -> IngestStats:
    """``ingest`` with the files read by ``read(tasks, tmpdir) -> Stream`` (the local pool or Ray).

    ``read`` must hand back every task's batches strictly in task order; ``tmpdir`` is an empty
    directory beside ``out`` for its temporary files, removed afterwards whatever happens.
    """
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    out = Path(out)
    fmt = normalize_format(fmt)
    mapping = dict(mapping or {})
    tasks, passed = plan(list(sources), fmt, mapping, exclude=out)
    stats = IngestStats(out=out, sources=list(sources))
    stats.not_read.extend(why for _, why in passed)
    t0 = time.perf_counter()
    tmpdir: Path | None = None
    try:
        with atomic_path(out) as tmp, Progress("ingest", unit="posts", enabled=progress) as bar:
            writer = _RowGroupWriter(tmp, batch_size)
            try:
                tmpdir = temp_sibling(out, ".parts")  # named before it exists: the cleanup below knows it
                tmpdir.mkdir()
                stream = read(tasks, tmpdir)
                with contextlib.closing(stream):
                    for task, batches, report in stream:
                        for batch in batches:
                            writer.write(batch)
                            bar.advance(batch.num_rows)
                        stats.add(task, report)
            except BaseException:
                with contextlib.suppress(Exception):  # after a failed write the file may be closed already
                    writer.close()
                raise
            writer.close()
            _check_sources(sources, stats, passed, tasks)
    finally:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
    stats.seconds = time.perf_counter() - t0
    return stats


def _check_sources(sources: list[str], stats: IngestStats, passed: list[tuple[int, str]],
                   tasks: list[FileTask]) -> None:
    """Every source argument must give at least one post; say why one did not."""
    for idx, src in enumerate(sources):
        if stats.by_source.get(src, 0):
            continue
        why = [w for i, w in passed if i == idx]
        why += [n for n in stats.not_read if any(t.source_index == idx and n.startswith(t.label + ":")
                                                   for t in tasks)]
        if any(t.source_index == idx for t in tasks) and stats.skipped:
            why.append("skipped records: " + ", ".join(f"{k} {v}" for k, v in stats.skipped.items()))
        detail = f" ({'; '.join(why[:3])}{'; ...' if len(why) > 3 else ''})" if why else \
            " (no files in it)"
        raise InputError(f"no posts found in {src!r}{detail}")
