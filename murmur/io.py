"""Small file helpers: atomic writes, transparent decompression, and opening an input Parquet file.

Every output murmur writes goes to a temporary path beside the target and is renamed into place,
so a crash never leaves a file that looks complete. Directory outputs get a ``_COMPLETE`` marker
written last, naming what wrote them; a directory is replaced only when that marker says it is
murmur's own output of the same kind (:func:`check_output_dir`). A full disk or a missing permission
is one :class:`~murmur.errors.OutputError` line, and SIGTERM/SIGHUP unwind like Ctrl-C
(:func:`cleanup_on_signals`) so no temporary file is left behind.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import io
import json
import os
import re
import secrets
import shutil
import signal
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from murmur.errors import InputError, OutputError

COMPLETE_MARKER = "_COMPLETE"


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only on success."""
    target = Path(target)
    if target.is_dir():
        raise OutputError("is a folder; give the path of a file to write", target)
    tmp_path: Path | None = None
    try:
        with _signals_held():
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp_path = temp_sibling(target, ".tmp")  # named first: the finally below knows it however early a signal lands
                tmp_path.touch(mode=0o600, exist_ok=False)
            except OSError as e:
                raise write_error(e, target) from None
        try:
            yield tmp_path
        except OSError as e:
            raise write_error(e, target, creating=False) from None
        else:
            try:
                os.replace(tmp_path, target)
            except OSError as e:
                raise write_error(e, target) from None
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


def temp_sibling(target: str | os.PathLike[str], suffix: str) -> Path:
    """A fresh hidden name beside ``target`` for a temporary file or folder, not yet created.

    Callers keep the name before creating it, so a signal that lands at any moment leaves a path
    their cleanup knows. Blocking signals alone does not do it: the mask holds only for the thread
    that sets it, and the interpreter runs a handler another thread received at its next bytecode.
    """
    target = Path(target)
    return target.parent / f".{target.name}.{secrets.token_hex(8)}{suffix}"


_HELD_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP (delivered when the block ends) while a temporary output is
    created, so none lands between its creation and the cleanup that removes it."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def atomic_open(target: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file for writing that replaces ``target`` when the block succeeds."""
    with atomic_path(target) as tmp, open(tmp, mode, **kwargs) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def write_json(target: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as pretty JSON, atomically."""
    with atomic_open(target, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False, default=str)
        f.write("\n")


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str], kind: str = "output", overwrite: bool = False,
               protect: Iterable[str | os.PathLike[str]] = ()) -> Iterator[Path]:
    """Build a directory in a temporary sibling, then swap it into place with a completion marker.

    ``kind`` names what is written (``tokenizer``, ``shards``, ``hf-export``...). The marker,
    written last, records it with every path written, so a later run can tell murmur's own output
    from anything else. ``target`` may be absent or empty; one that holds files is replaced only
    with ``overwrite`` and only when it is a complete murmur ``kind`` holding nothing but what murmur
    wrote (:func:`check_output_dir`, checked before the work starts and again before the swap).
    ``protect`` lists the command's inputs: the target may not be one, hold one, or lie inside one.
    """
    target = Path(target)
    check_output_dir(target, kind, overwrite, protect)
    tmp: Path | None = None
    old: Path | None = None
    try:
        with _signals_held():
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = temp_sibling(target, ".tmp")  # named first: the finally below knows it however early a signal lands
                tmp.mkdir(mode=0o700)
            except OSError as e:
                raise write_error(e, target) from None
        try:
            yield tmp
        except OSError as e:
            raise write_error(e, target, creating=False) from None
        try:
            files = _entries(tmp)
            with open(tmp / COMPLETE_MARKER, "w", encoding="utf-8") as f:
                json.dump({"murmur": kind, "files": files}, f, indent=0)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            check_output_dir(target, kind, overwrite, protect)
            if os.path.lexists(target):
                old = tmp.with_name(tmp.name.removesuffix(".tmp") + ".old")
                os.replace(target, old)
            try:
                os.replace(tmp, target)
            except OSError:
                if old is not None:  # put the previous output back rather than lose it
                    os.replace(old, target)
                    old = None
                raise
        except OSError as e:
            raise write_error(e, target) from None
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _entries(root: Path) -> list[str]:
    """Every file and folder under ``root`` (relative POSIX paths, sorted); links are not followed."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        out.extend((rel / d).as_posix() for d in dirnames)
        out.extend((rel / f).as_posix() for f in filenames)
    return sorted(p for p in out if p != COMPLETE_MARKER)


def written_by_murmur(directory: str | os.PathLike[str]) -> tuple[str, list[str] | None] | None:
    """``(kind, paths written)`` from a directory's completion marker, None without one.

    Markers from before kinds were recorded hold ``ok``: kind ``""`` and paths unknown (None).
    """
    marker = Path(directory) / COMPLETE_MARKER
    if not marker.is_file() or marker.is_symlink():
        return None
    try:
        text = marker.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if text.strip() == "ok":
        return "", None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("murmur"), str):
        return None
    files = data.get("files")
    return data["murmur"], [f for f in files if isinstance(f, str)] if isinstance(files, list) else None


def check_not_inputs(target: str | os.PathLike[str], protect: Iterable[str | os.PathLike[str]]) -> None:
    """Raise :class:`OutputError` when the output folder ``target`` is, holds or lies inside one of ``protect``."""
    target = Path(target)
    real = target.resolve()
    for src in protect:
        s = Path(src).resolve()
        if real == s:
            raise OutputError("is also an input of this command; choose another output folder", target)
        if real in s.parents:
            raise OutputError(f"holds an input of this command ({src}); choose a folder outside it", target)
        if s in real.parents and s.is_dir():
            raise OutputError(f"lies inside an input of this command ({src}); choose a folder outside it",
                              target)


def check_output_dir(target: str | os.PathLike[str], kind: str, overwrite: bool = False,
                     protect: Iterable[str | os.PathLike[str]] = ()) -> None:
    """Raise :class:`OutputError` unless writing the directory ``target`` would delete only murmur's own output.

    The rule every command that writes a directory follows: the target is absent, an empty folder,
    or (with ``overwrite``) a complete murmur output of the same ``kind`` holding nothing murmur did
    not write. Never a file, a link, or a folder that is, holds or lies inside one of ``protect``.
    """
    target = Path(target)
    check_not_inputs(target, protect)
    if target.is_symlink():
        raise OutputError("is a symbolic link; give a new or empty folder (murmur does not write through links)",
                          target)
    if not target.exists():
        return
    if not target.is_dir():
        raise OutputError("is a file, not a folder; murmur never replaces what it did not write", target)
    try:
        present = _entries(target)
    except OSError as e:
        raise OutputError(f"cannot look inside: {e.strerror}", target) from None
    if not present and not (target / COMPLETE_MARKER).exists():
        return
    written = written_by_murmur(target)
    if written is None:
        raise OutputError("is not empty and was not written by murmur; choose a new or empty folder "
                          "(murmur never deletes what it did not write)", target)
    their_kind, files = written
    if their_kind and their_kind != kind:
        raise OutputError(f"holds a murmur {their_kind}, not a {kind}; choose another folder", target)
    if files is not None:
        foreign = sorted(set(present) - set(files))
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise OutputError(f"holds files murmur did not write ({shown}); move them or choose another folder",
                              target)
    if not overwrite:
        raise OutputError(f"already holds a murmur {their_kind or kind}; pass --overwrite to replace it", target)


def check_not_input(src: str | os.PathLike[str], out: str | os.PathLike[str]) -> None:
    """Raise :class:`InputError` when the single-file output ``out`` is the input ``src`` itself."""
    if Path(src).resolve() == Path(out).resolve():
        raise InputError("the output must not overwrite the input", path=src)


_WRITE_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                 errno.EFBIG: "file too large for this file system or limit",
                 errno.EROFS: "read-only file system"}
_CREATE_ERRNOS = {**_WRITE_ERRNOS, errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
                  errno.ENOTDIR: "a part of the path is a file, not a folder"}
_ERRNO_RE = re.compile(r"errno (\d+)", re.IGNORECASE)


def write_error(e: OSError, target: str | os.PathLike[str], creating: bool = True) -> Exception:
    """The one-line :class:`OutputError` for an OS error while writing ``target`` (full disk, no permission).

    ``creating`` is False for errors raised while the output was being filled, where only errors that
    are about writing (a full disk, a size limit) are the output's; other OS errors are returned
    unchanged (they concern an input, or are bugs, and keep their own message).
    """
    code = e.errno
    if code is None:  # pyarrow's OSError carries the errno in its message only
        m = _ERRNO_RE.search(str(e))
        code = int(m.group(1)) if m else None
    why = (_CREATE_ERRNOS if creating else _WRITE_ERRNOS).get(code if code is not None else -1)
    if why is None:
        return e
    return OutputError(f"cannot write: {why}; nothing was written", target)


def is_complete(directory: str | os.PathLike[str]) -> bool:
    """True when ``directory`` was finished by :func:`atomic_dir` (its marker exists)."""
    return (Path(directory) / COMPLETE_MARKER).is_file()


def open_text(path: str | os.PathLike[str], encoding: str = "utf-8") -> IO[str]:
    """Open a plain, ``.gz`` or ``.zst`` file for streaming text reads (strict decoding)."""
    return io.TextIOWrapper(open_binary(path), encoding=encoding, errors="strict", newline="")


def open_binary(path: str | os.PathLike[str]) -> IO[bytes]:
    """Open a plain, ``.gz`` or ``.zst`` file for streaming binary reads.

    A file that cannot be opened or read, compressed data that is corrupt, not compressed at all, or
    cut short (a truncated ``.zst`` too, which zstandard's own reader would end silently) raises one
    :class:`~murmur.errors.InputError` naming the file and the line of the decompressed text where the
    data breaks.
    """
    path = Path(path)
    name = path.name.lower()
    try:
        raw = open(path, "rb")
    except OSError as e:
        raise InputError(f"cannot open: {_os_reason(e)}", path) from None
    if name.endswith(".gz"):
        inner: Any = gzip.GzipFile(fileobj=raw, mode="rb")
        kind = "gzip"
    elif name.endswith((".zst", ".zstd")):
        inner, kind = _ZstdFrames(raw), "zstd"
    else:
        inner, kind = raw, None
    return io.BufferedReader(_CheckedReader(inner, raw, path, kind), buffer_size=1 << 16)


def _os_reason(e: OSError) -> str:
    if e.errno == errno.ELOOP:
        return "a symbolic link that loops"
    if e.errno == errno.ENOENT and e.filename and os.path.islink(e.filename):
        return "a symbolic link to nothing"
    return (e.strerror or str(e)).lower()


class _CheckedReader(io.RawIOBase):
    """Bytes of a (decompressed) file; every read failure becomes one InputError with the file and line."""

    def __init__(self, inner: Any, raw: IO[bytes], path: Path, kind: str | None):
        self._inner, self._raw, self._path, self._kind = inner, raw, path, kind
        self._read = getattr(inner, "read1", inner.read)  # one step at a time: data before a break comes out
        self._lines = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        try:
            data = self._read(len(b))
        except EOFError:
            raise InputError(f"{self._kind} data ends early: the file is truncated or corrupt", self._path,
                             self._lines + 1) from None
        except gzip.BadGzipFile as e:
            what = "not gzip data (the name ends in .gz)" if self._lines == 0 and "Not a gzipped" in str(e) \
                else f"corrupt gzip data ({e})"
            raise InputError(what, self._path, self._lines + 1) from None
        except zlib.error as e:
            raise InputError(f"corrupt gzip data ({e})", self._path, self._lines + 1) from None
        except OSError as e:
            raise InputError(f"cannot read: {_os_reason(e)}", self._path, self._lines + 1) from None
        except Exception as e:  # zstandard.ZstdError
            if self._kind != "zstd" or type(e).__name__ != "ZstdError":
                raise
            what = "not zstd data (the name ends in .zst)" if self._lines == 0 and "Unknown frame" in str(e) \
                else f"corrupt zstd data ({e})"
            raise InputError(what, self._path, self._lines + 1) from None
        n = len(data)
        b[:n] = data
        self._lines += data.count(b"\n")
        return n

    def close(self) -> None:
        if not self.closed:
            try:
                if self._inner is not self._raw:
                    self._inner.close()
            finally:
                self._raw.close()
        super().close()


class _ZstdFrames:
    """Every zstd frame of a file, decompressed in small steps (memory stays bounded for any ratio).

    Unlike ``ZstdDecompressor().stream_reader``, a file that ends inside a frame raises EOFError.
    """

    _STEP = 1 << 12  # compressed bytes per step: at most ~128 MB out even for the most extreme ratio

    def __init__(self, raw: IO[bytes]):
        import zstandard

        self._raw, self._dctx = raw, zstandard.ZstdDecompressor()
        self._obj = self._dctx.decompressobj()
        self._fed = False
        self._pending = b""
        self._done = False

    def read(self, n: int) -> bytes:
        while not self._pending and not self._done:
            chunk = self._raw.read(self._STEP)
            if not chunk:
                if self._fed and not self._obj.eof:
                    raise EOFError("zstd data ends inside a frame")
                self._done = True
                break
            out = []
            while chunk:
                if self._obj.eof:  # the next frame
                    self._obj, self._fed = self._dctx.decompressobj(), False
                self._fed = True
                out.append(self._obj.decompress(chunk))
                chunk = self._obj.unused_data if self._obj.eof else b""
            self._pending = b"".join(out)
        data, self._pending = self._pending[:n], self._pending[n:]
        return data

    def close(self) -> None:
        self._raw.close()


def strip_compression_suffix(name: str) -> str:
    """``posts.jsonl.gz`` -> ``posts.jsonl``."""
    for suffix in (".gz", ".zst", ".zstd"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program is so every ``finally`` (temporary outputs) runs."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_received: list[int] = []


def _raise_terminated(signum: int, frame: object) -> None:
    _received.append(signum)
    raise Terminated(signum)


def received_signal() -> int | None:
    """The SIGTERM/SIGHUP that :func:`cleanup_on_signals` turned into :class:`Terminated`, if one came."""
    return _received[-1] if _received else None


def cleanup_on_signals() -> None:
    """Make SIGTERM and SIGHUP unwind the stack like Ctrl-C, so temporary outputs are removed.

    The CLI calls this once at start; training and serving install their own handlers on top
    (graceful stop, drain) for as long as they run.
    """
    for s in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(s) in (signal.SIG_DFL, None):
            signal.signal(s, _raise_terminated)


def open_parquet(src: Any, where: object | None = None) -> Any:
    """``src`` (a path or an open file) as a ``pyarrow.parquet.ParquetFile`` read as a stream (no
    read-ahead: pyarrow's pre-buffering holds every column chunk it reads ahead), its schema read: one
    :class:`~murmur.errors.InputError` naming ``where`` (default: ``src``) for anything that is not a
    readable Parquet file, whatever pyarrow raises (a bad magic number, a cut footer, a column name
    that is not UTF-8)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(src, pre_buffer=False)
        pf.schema_arrow  # noqa: B018 - decodes the names: a name that is not UTF-8 fails here
    except (pa.ArrowException, OSError, ValueError) as e:  # UnicodeDecodeError is a ValueError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"not a readable Parquet file ({first})", where if where is not None else src) from None
    return pf
