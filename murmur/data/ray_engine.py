"""Ray as the cluster engine of ``murmur data ingest|clean|tokenize``: the local engine's per-file and
per-batch work as Ray Data tasks (``ingest_ray``, ``clean_ray``, ``tokenize_ray``; clean described here).

``murmur data clean SRC -o OUT --engine ray [--address auto|HOST:PORT|ray://HOST:PORT]``

The work is the local engine's, function for function (``clean._Worker.process`` on each batch);
only where it runs changes. Paths may be anything pyarrow's filesystems open (a local path, or
``s3://``, ``gs://``, ``hdfs://``... on a cluster), read by the workers themselves.

**Stages.**

1. *Per-post work.* The input's row groups are cut into units of ``unit_rows`` rows; a pool of
   Ray Data actors (each builds the language identifier once) runs steps 1-5 of clean on each unit,
   writes its survivors to a temporary part file, and makes one *key row* per survivor and dedup key:
   its exact hash (kind 0) and each of its MinHash LSH band keys (kind 1..bands), with its time-order
   key (``created_at``, ``post_id``, input position). The key rows are hash-partitioned by key into
   ``partitions`` buckets and written as one Arrow file per unit and bucket.
2. *Shuffle by key, candidate pairs.* One Ray task per bucket reads that bucket's file of every unit
   (the shuffle goes through the temporary directory, as a MapReduce shuffle does: Ray Data's
   ``groupby`` over the object store took four times as long on 1M posts); the rows of one
   (kind, key) are sorted in time order and every group of two or more posts becomes candidate rows
   naming the group's earliest post (``dedup.candidate_rows``, the local engine's function).
3. *Connected components.* Up to ``CleanConfig.ray_driver_components`` candidate rows (10 million:
   about 400 MB, a corpus of tens of millions of posts) are joined by the local engine's union-find
   on the driver, pairs spilled to its disk. More are joined on the cluster by rounds of large-star
   and small-star (``ray_components``), each step a Ray Data shuffle of the edges by node; the driver
   reads back one count per step and, when a round changes nothing, every dropped post. Either way
   all but the earliest post of each component is dropped, ``duplicate`` when an earlier post has
   its exact hash, else ``near_duplicate``. (Each shuffle has a fixed cost however small: on 2 cores and
   250k posts the 6 rounds take about 10 s against about a second for the union-find.)
4. *Apply.* The drops are sorted by position, which groups them by unit (9 bytes per dropped post on
   the driver). For one output file the driver reads each unit's survivors in order, drops them and
   streams the kept posts into the file, as the local engine's second pass does; for a directory of
   parts one Ray task per unit writes its part. (Before, the drops went through a second Ray Data
   shuffle grouped by unit and every unit was written twice, as a part and again into the file: on
   2 cores and 250k posts that took 10-15 s, the write now ~1 s.)

No machine holds an index of the corpus: the workers hold one bucket of key rows (~60 bytes x
(1 + bands) per surviving post / ``partitions``) or of edges, the driver the drops (9 bytes per
dropped post) and, up to ``ray_driver_components``, the candidate rows' union-find. This is the
multi-stage MinHash scheme of datatrove and NeMo Curator: signatures, band buckets, candidate pairs,
connected components, the earliest post of each kept; the same kept posts as the local engine.

**Output.** A local ``OUT`` is one Parquet file, byte-for-byte the file the local engine writes: the
driver streams the units' kept posts into it in order (memory flat: one unit at a time) and renames it
into place. An ``OUT`` that
ends with ``/``, and any URI of another filesystem, gets a new directory of parts (``part-NNNNNN.parquet``, in input order) and a ``_COMPLETE`` marker written
last. Temporary files live in a hidden sibling directory that is removed on success and on failure,
so a failed run never leaves output that looks complete.

**Faults.** Ray retries a task or restarts an actor whose worker process dies; every file a task
writes has a name fixed by its unit and is written under a temporary name and moved into place, so a
retry rewrites the same file. An address that does not answer gives one line before any work starts.
"""

from __future__ import annotations

import json
import socket
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from murmur.data import clean as cl
from murmur.data import dedup as dd
from murmur.data import ray_components as rc
from murmur.data.schema import POST_SCHEMA
from murmur.errors import InputError, MurmurError
from murmur.progress import log

UNIT_ROWS = 65536
"""Input rows per unit of per-post work (one actor call)."""

_NO_TIME = np.iinfo(np.int64).max  # posts without a timestamp come last, as in the local engine
_PII = "_pii"
_SURVIVOR_SCHEMA = POST_SCHEMA.append(pa.field(_PII, pa.uint8()))
_KEY_SCHEMA = dd.key_row_schema()
_DONE_SCHEMA = pa.schema([("unit", pa.int64()), ("key_rows", pa.int64())])
_UNIT_SHIFT = 32  # a survivor's position: its unit << 32 | its place among the unit's survivors


class EngineError(MurmurError):
    """The Ray cluster cannot be reached or a stage failed on it."""


# ---------------------------------------------------------------- the cluster

def connect(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join the Ray cluster at ``address`` (``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``), or start a
    local one with ``num_cpus`` CPUs when ``address`` is None. One clear line when it does not answer."""
    try:
        import ray
    except ImportError:
        raise EngineError("the Ray engine needs Ray: pip install 'murmur-lm[ray]'") from None
    if ray.is_initialized():
        return
    if address and address != "auto":
        host, _, port = address.removeprefix("ray://").rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
        except (OSError, ValueError) as e:
            raise EngineError(f"no Ray cluster answers at {address} ({e}); start one with `ray start --head` "
                              "or give --address auto on a cluster node") from None
    try:
        if address:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except Exception as e:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EngineError(f"cannot join the Ray cluster at {address or 'local'}: {first}") from None
    _quiet_ray_data()


def _quiet_ray_data() -> None:
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


def cluster_cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


# ---------------------------------------------------------------- paths on any filesystem

def _resolve(uri: str | Path) -> tuple[pafs.FileSystem, str]:
    text = str(uri)
    if "://" not in text:
        return pafs.LocalFileSystem(), str(Path(text).resolve())
    try:
        return pafs.FileSystem.from_uri(text)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as e:
        raise InputError(f"no filesystem for this path ({e})", path=text) from None


def _join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


def _write_atomic(fs: pafs.FileSystem, path: str, table: pa.Table, compression: str = "lz4", ipc: bool = False) -> None:
    """Write ``table`` (Parquet, or an uncompressed Arrow IPC stream with ``ipc``) under a temporary name and
    move it to ``path`` (a retried task rewrites the same file)."""
    tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
    with fs.open_output_stream(tmp) as f:
        if ipc:
            with pa.ipc.new_stream(f, table.schema) as w:
                w.write_table(table)
        else:
            pq.write_table(table, f, compression=compression)
    fs.move(tmp, path)


# ---------------------------------------------------------------- stage 1: per-post work (actors)

@dataclass(frozen=True)
class _Unit:
    unit: int
    row_group: int
    start: int
    rows: int


def _units(pf: pq.ParquetFile, unit_rows: int) -> list[_Unit]:
    units = []
    for rg in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(rg).num_rows
        for start in range(0, n, unit_rows):
            units.append(_Unit(len(units), rg, start, min(unit_rows, n - start)))
    return units


class _CleanUnits:
    """A Ray Data actor: steps 1-5 of clean on whole units; survivors to part files, key rows to one
    file per key bucket (``keys-BBBB-UUUUUU.arrow``); out, one row per unit (its key-row count)."""

    def __init__(self, cfg: cl.CleanConfig, src: str, tmp: str, partitions: int):
        self.cfg, self.src, self.tmp, self.partitions = cfg, src, tmp, partitions
        self.fs, self.src_path = _resolve(src)
        self.tmp_fs, self.tmp_path = _resolve(tmp)
        self.worker = cl._Worker(cfg)
        self.pf: pq.ParquetFile | None = None

    def __call__(self, units: dict[str, np.ndarray]) -> pa.Table:
        if self.pf is None:
            self.pf = pq.ParquetFile(self.fs.open_input_file(self.src_path))
        done = [self._one(_Unit(*(int(units[k][i]) for k in ("unit", "row_group", "start", "rows"))))
                for i in range(len(units["unit"]))]
        return pa.table({"unit": [u for u, _ in done], "key_rows": [n for _, n in done]}, schema=_DONE_SCHEMA)

    def _one(self, u: _Unit) -> tuple[int, int]:
        cfg = self.cfg
        rows = self.pf.read_row_group(u.row_group).slice(u.start, u.rows)  # type: ignore[union-attr]
        kept, keys, reasons, identified = [], [], Counter(), Counter()
        n_surv = 0
        for batch in rows.to_batches(max_chunksize=cfg.batch_size):
            res = self.worker.process(cl._conform(batch, Path(self.src)))
            reasons.update(res.reasons)
            identified.update(res.identified)
            n = res.kept.num_rows
            kept.append(res.kept.append_column(_PII, pa.array(res.pii, type=pa.uint8())))
            if n:
                keys.append(self._key_rows(u, res, n_surv))
            n_surv += n
        survivors = pa.Table.from_batches(kept, schema=_SURVIVOR_SCHEMA)
        _write_atomic(self.tmp_fs, _join(self.tmp_path, f"surv-{u.unit:06d}.parquet"), survivors)
        key_rows = pa.concat_tables([t for t, _ in keys]) if keys else _KEY_SCHEMA.empty_table()
        bucket = np.concatenate([b for _, b in keys]) if keys else np.zeros(0, np.int32)
        order = np.argsort(bucket, kind="stable")
        bounds = np.searchsorted(bucket[order], np.arange(self.partitions + 1))
        key_rows = key_rows.take(pa.array(order))
        for b in range(self.partitions):
            _write_atomic(self.tmp_fs, _join(self.tmp_path, _key_file(b, u.unit)),
                          key_rows.slice(bounds[b], bounds[b + 1] - bounds[b]), ipc=True)
        summary = {"n_in": u.rows, "reasons": dict(reasons), "identified": dict(identified)}
        with self.tmp_fs.open_output_stream(_join(self.tmp_path, f"summary-{u.unit:06d}.json")) as f:
            f.write(json.dumps(summary).encode())
        return u.unit, key_rows.num_rows

    def _key_rows(self, u: _Unit, res: cl._BatchResult, offset: int) -> tuple[pa.Table, np.ndarray]:
        """The key rows of one batch's survivors and each row's key bucket."""
        n = res.kept.num_rows
        t = pc.fill_null(res.kept.column("created_at").cast(pa.int64()), _NO_TIME).to_numpy()
        ids = res.kept.column("post_id")
        pos = (np.int64(u.unit) << np.int64(_UNIT_SHIFT)) + offset + np.arange(n, dtype=np.int64)  # input order
        blocks = []
        if res.exact is not None:
            blocks.append((0, res.exact))
        if res.bands is not None:
            blocks += [(j + 1, res.bands[:, j]) for j in range(res.bands.shape[1])]
        parts, buckets = [], []
        for kind, key in blocks:
            key = np.ascontiguousarray(key, dtype=np.uint64)
            buckets.append((dd.fmix64(key ^ np.uint64(kind)) % np.uint64(self.partitions)).astype(np.int32))
            parts.append(pa.table([np.full(n, kind, np.int16), key, t, ids, pos], schema=_KEY_SCHEMA))
        if not parts:
            return _KEY_SCHEMA.empty_table(), np.zeros(0, np.int32)
        return pa.concat_tables(parts), np.concatenate(buckets)


def _key_file(bucket: int, unit: int) -> str:
    return f"keys-{bucket:04d}-{unit:06d}.arrow"


# ---------------------------------------------------------------- stages 2 and 3: pairs, then components

def _candidates(keys: pa.Table) -> pa.Table:
    """The candidate rows of one bucket of key rows (the local engine's function), with order keys."""
    return rc.with_order_keys(dd.candidate_rows(keys.select([name for name, _ in dd.KEY_ROW_FIELDS])))


def _bucket_candidates(tmp: str, bucket: int, units: list[int]) -> pa.Table:
    """A Ray task: the candidate rows of one key bucket, from the files every unit wrote for it."""
    fs, base = _resolve(tmp)
    tables = []
    for unit in units:
        with fs.open_input_stream(_join(base, _key_file(bucket, unit))) as f:
            tables.append(pa.ipc.open_stream(f).read_all())
    return _candidates(pa.concat_tables(tables) if tables else _KEY_SCHEMA.empty_table())


def _drops(candidates, buckets: int, driver_max: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """The candidate rows joined into components: the position and flag of every dropped survivor,
    sorted by position (so grouped by unit), and the components' counts. Up to ``driver_max`` rows by
    the local engine's union-find on the driver (``dedup.Components``, pairs spilled to its disk), more
    on the cluster (``ray_components``): each of its rounds is two shuffles, half a second or more each even
    when small, while the union-find over a few million rows takes a second."""
    candidates = candidates.materialize()
    n = candidates.count()
    if n <= driver_max:
        log(f"clean (ray): {n:,} candidate rows joined on the driver (at most {driver_max:,})")
        with tempfile.TemporaryDirectory(prefix="murmur-dedup-") as pairs_dir:  # the driver's local disk
            components = dd.Components(Path(pairs_dir))
            for table in candidates.iter_batches(batch_format="pyarrow", batch_size=None):
                components.add(table)
            pos, flag, stats = components.decide()
        order = np.argsort(pos, kind="stable")
        return pos[order], flag[order], stats

    def progress(r: int, changed: int, seconds: float) -> None:
        log(f"clean (ray): components round {r}: {changed:,} edges changed ({seconds:.1f} s)")

    log(f"clean (ray): {n:,} candidate rows joined on the cluster (more than {driver_max:,})")
    pos, flag, stats, info = rc.components(candidates, buckets, progress=progress)
    log(f"clean (ray): components settled in {info['rounds']} rounds, {info['seconds']:.1f} s")
    return pos, flag, stats


def _by_unit(pos: np.ndarray, flag: np.ndarray, units: list[_Unit]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """The drops of each unit: (place among the unit's survivors, flag), from drops sorted by position."""
    unit_of = pos >> np.int64(_UNIT_SHIFT)
    ids = np.array([u.unit for u in units], dtype=np.int64)
    lo, hi = np.searchsorted(unit_of, ids, "left"), np.searchsorted(unit_of, ids, "right")
    low = np.int64((1 << _UNIT_SHIFT) - 1)
    return {int(u): (pos[a:b] & low, flag[a:b]) for u, a, b in zip(ids, lo, hi, strict=True)}


# ---------------------------------------------------------------- stage 4: apply the drops per unit

def _apply_unit(survivors: pa.Table, places: np.ndarray, flags: np.ndarray) -> tuple[pa.Table, dict]:
    """One unit's kept posts (survivors less its drops, in order) and its counts."""
    decision = np.zeros(survivors.num_rows, dtype=np.int8)  # dd.KEEP
    decision[places] = flags
    keep = decision == dd.KEEP
    kept = survivors.filter(pa.array(keep))
    pii = kept.column(_PII).to_numpy()
    langs = {r["values"]: r["counts"] for r in pc.value_counts(kept.column("lang")).to_pylist()} \
        if kept.num_rows else {}
    summary = {"kept": int(keep.sum()), "duplicate": int((decision == dd.DUPLICATE).sum()),
               "near_duplicate": int((decision == dd.NEAR_DUPLICATE).sum()),
               "scrubbed": dict(cl.pii_counts(pii)), "languages": langs}
    return kept.drop_columns([_PII]), summary


def _read_survivors(fs: pafs.FileSystem, base: str, unit: int) -> pa.Table:
    return pq.read_table(fs.open_input_file(_join(base, f"surv-{unit:06d}.parquet")))


def _apply_and_write(tmp: str, unit: int, places: np.ndarray, flags: np.ndarray) -> dict:
    """A Ray task: one unit's kept posts written as its part file; returns its counts."""
    fs, base = _resolve(tmp)
    kept, summary = _apply_unit(_read_survivors(fs, base, unit), places, flags)
    _write_atomic(fs, _join(base, f"part-{unit:06d}.parquet"), kept, compression="zstd")
    return summary


# ---------------------------------------------------------------- the stage

def clean_ray(src: str | Path, out: str | Path, cfg: cl.CleanConfig | None = None, workers: int | None = None,
              stats_path: Path | None = None, address: str | None = None, partitions: int | None = None,
              unit_rows: int = UNIT_ROWS) -> cl.CleanResult:
    """``clean`` on a Ray cluster: the same kept posts as the local engine, for any number of workers."""
    import ray
    import ray.data

    cfg = cfg or cl.CleanConfig()
    start = time.perf_counter()
    src_fs, src_path = _resolve(src)
    out_fs, out_path = _resolve(out)
    local_out = isinstance(out_fs, pafs.LocalFileSystem) and not str(out).endswith("/")  # else a directory of parts
    if src_path == out_path:
        raise InputError("the output must not overwrite the input", path=src)
    pf = cl._open_input(Path(src_path)) if isinstance(src_fs, pafs.LocalFileSystem) else None
    if local_out:
        stats_path = Path(stats_path) if stats_path is not None else Path(out_path).parent / "stats.json"
    else:
        if stats_path is None:
            raise InputError("give --stats (a local path) when the output is a directory of parts", path=out)
        if out_fs.get_file_info(out_path).type != pafs.FileType.NotFound and \
                out_fs.get_file_info(pafs.FileSelector(out_path)):
            raise InputError("the output directory exists and is not empty; give a new one", path=out)
    if pf is None:
        try:
            pf = pq.ParquetFile(src_fs.open_input_file(src_path))
        except (pa.ArrowInvalid, OSError) as e:
            raise InputError(f"not a readable Parquet file ({e})", path=src) from None
    total = pf.metadata.num_rows
    if total == 0:
        raise InputError("no posts in the file", path=src)
    connect(address, num_cpus=workers)
    workers = workers or cluster_cpus()
    partitions = partitions or max(4, 2 * workers)
    units = _units(pf, unit_rows)

    parent = out_path.rstrip("/").rpartition("/")[0] or "/"
    tmp = _join(parent, f".{out_path.rstrip('/').rpartition('/')[2]}.ray-{uuid.uuid4().hex[:8]}")
    out_fs.create_dir(tmp, recursive=True)
    tmp_uri = _uri(out, tmp) if "://" in str(out) else tmp
    try:
        log(f"clean (ray): {total:,} posts in {len(units)} units on {workers} workers, {partitions} key buckets")
        unit_rows_ds = ray.data.from_items([u.__dict__ for u in units], override_num_blocks=len(units))
        done = unit_rows_ds.map_batches(
            _CleanUnits, fn_constructor_args=(cfg, str(src) if "://" in str(src) else src_path, tmp_uri, partitions),
            batch_size=1, compute=ray.data.ActorPoolStrategy(min_size=min(workers, len(units)), max_size=workers),
            num_cpus=1, batch_format="numpy").take_all()
        if sorted(int(r["unit"]) for r in done) != [u.unit for u in units]:
            raise EngineError(f"clean (ray): {len(done)} of {len(units)} units cleaned")
        log(f"clean (ray): {sum(int(r['key_rows']) for r in done):,} key rows in {partitions} buckets")
        # the shuffle by key goes through the files (as a MapReduce shuffle does): each bucket's task reads
        # what every unit wrote for it; Ray Data's groupby spent seconds more on these rows (1M posts:
        # 14 s against the tasks' 3.5)
        task = ray.remote(num_cpus=1)(_bucket_candidates)
        candidates = ray.data.from_arrow_refs(
            [task.remote(tmp_uri, b, [u.unit for u in units]) for b in range(partitions)])
        pos, flag, dedup_stats = _drops(candidates, partitions, cfg.ray_driver_components)
        if not (cfg.exact_dedup or cfg.near_dedup):
            dedup_stats = {}
        log(f"clean (ray): {len(pos):,} duplicates among {dedup_stats.get('candidates', 0):,} candidates")
        drops = _by_unit(pos, flag, units)
        del pos, flag
        reasons, identified, scrubbed, langs = Counter(), Counter(), Counter(), Counter()
        for u in units:
            with out_fs.open_input_stream(_join(tmp, f"summary-{u.unit:06d}.json")) as f:
                s = json.loads(f.read())
            reasons.update(s["reasons"])
            identified.update(s["identified"])

        def count(s: dict) -> None:
            reasons.update({cl.DUPLICATE: s["duplicate"], cl.NEAR_DUPLICATE: s["near_duplicate"]})
            scrubbed.update(s["scrubbed"])
            langs.update(s["languages"])

        if local_out:  # one file: the driver applies each unit's drops as it streams the units into it
            log(f"clean (ray): writing {out_path}")
            from murmur.io import atomic_path

            def kept_batches() -> Iterator[pa.RecordBatch]:
                for u in units:
                    kept, s = _apply_unit(_read_survivors(out_fs, tmp, u.unit), *drops[u.unit])
                    count(s)
                    yield from kept.to_batches(max_chunksize=_BATCH)

            with atomic_path(out_path) as tmp_out:
                cl.write_posts(kept_batches(), tmp_out)
        else:  # a directory of parts: each unit's part written by a Ray task
            task = ray.remote(num_cpus=1)(_apply_and_write)
            for s in ray.get([task.remote(tmp_uri, u.unit, *drops[u.unit]) for u in units]):
                count(s)
            out_fs.create_dir(out_path, recursive=True)
            for i, u in enumerate(units):
                out_fs.move(_join(tmp, f"part-{u.unit:06d}.parquet"), _join(out_path, f"part-{i:06d}.parquet"))
            with out_fs.open_output_stream(_join(out_path, "_COMPLETE")) as f:
                f.write(json.dumps({"kind": "clean", "parts": len(units)}).encode())
    except MurmurError:
        raise
    except Exception as e:  # noqa: BLE001 - a failed Ray stage: one line, nothing left behind
        raise EngineError(f"clean (ray) failed: {_one_line(e)}") from None
    finally:
        try:
            out_fs.delete_dir(tmp)
        except (OSError, pa.ArrowException):
            pass
    result = cl.finish(src, out, Path(stats_path), cfg, total, reasons, identified, scrubbed, langs,
                       time.perf_counter() - start, workers, engine="ray", dedup=dedup_stats)
    return result


def _one_line(e: BaseException) -> str:
    """The root cause of a (Ray-wrapped) exception, as one line."""
    while getattr(e, "cause", None) is not None and e.cause is not e:  # type: ignore[attr-defined]
        e = e.cause  # type: ignore[attr-defined]
    if isinstance(e, MurmurError):
        return str(e)
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[-1].strip()[:300]}" if lines else type(e).__name__


def _uri(original: str | Path, path: str) -> str:
    scheme = str(original).split("://", 1)[0]
    return f"{scheme}://{path.lstrip('/')}"


_BATCH = 65536



# ---------------------------------------------------------------- errors raised inside Ray

def _raise_from_ray(e: BaseException, stage: str) -> None:
    """Raise the MurmurError inside a (Ray-wrapped) exception as it is, anything else as one line."""
    seen, todo = set(), [e]
    while todo:  # Ray's wrappers hold the original as .cause, Ray Data's as __cause__
        cur = todo.pop(0)
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, MurmurError) and not type(cur).__module__.startswith("ray"):
            raise cur from None
        todo += [getattr(cur, "cause", None), cur.__cause__, cur.__context__]
    raise EngineError(f"{stage} (ray) failed: {_one_line(e)}") from None


def _in_order(ds, n: int, key: str, stage: str) -> Iterator[dict]:
    """The ``n`` one-row outputs of ``ds`` as they are made, in input order (``key`` = 0, 1, ...): the
    driver writes each as soon as it and those before it are done, while the workers make the next
    (waiting for all of them first left the cores idle while the driver wrote)."""
    ds.context.execution_options.preserve_order = True
    rows = iter(ds.iter_rows())
    for expected in range(n):
        try:
            row = next(rows, None)
        except Exception as e:  # noqa: BLE001 - one line for whatever Ray raises
            _raise_from_ray(e, stage)
        if row is None or int(row[key]) != expected:
            got = "nothing" if row is None else f"{key} {int(row[key])}"
            raise EngineError(f"{stage} (ray): expected {key} {expected} of {n}, got {got}")
        yield row


# ---------------------------------------------------------------- ingest on Ray

def _ingest_files(rows: dict[str, np.ndarray], batch_size: int, tmp: str) -> dict[str, np.ndarray]:
    """A Ray Data task: read whole files with the local engine's reader (``sources._read_to_ipc``) into
    Arrow IPC files named by their place in the plan; return each file's report."""
    import os
    import pickle

    from murmur.data import sources

    reports = []
    for i, blob in zip(rows["i"].tolist(), rows["task"], strict=True):
        dest = _join(tmp, f"{i:08d}.arrow")
        partial = f"{dest}.{uuid.uuid4().hex[:8]}.tmp"  # a retried task rewrites the same file
        try:
            report = sources._read_to_ipc(pickle.loads(blob), batch_size, partial)
        except MurmurError as e:  # bad input: handed back and raised by the driver in file order
            report = e
        else:
            os.replace(partial, dest)
        reports.append(pickle.dumps(report))
    return {"i": rows["i"], "report": np.array(reports, dtype=object)}


def ingest_ray(sources: list[str], out: str | Path, fmt: str = "auto", mapping: dict[str, str] | None = None,
               workers: int | None = None, batch_size: int = 8192, address: str | None = None,
               progress: bool = True):
    """``murmur data ingest`` on a Ray cluster: each file read by a Ray Data task, the same file as the local
    engine's (rows in plan order, row groups cut from the row stream). The temporary files go to a hidden
    directory beside ``out``, which every worker must reach (one machine, or a shared filesystem)."""
    import pickle

    from murmur.data import sources as src_mod

    if not sources:
        raise InputError("no sources given")

    def read(tasks: list, tmpdir: Path) -> Iterator:
        if not tasks:
            return
        import ray.data

        connect(address, num_cpus=workers)
        n_workers = workers or cluster_cpus()
        log(f"ingest (ray): {len(tasks):,} files on {n_workers} workers")
        items = [{"i": i, "task": pickle.dumps(t)} for i, t in enumerate(tasks)]
        ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            _ingest_files, fn_args=(batch_size, str(tmpdir)), batch_size=1, num_cpus=1,
            compute=ray.data.TaskPoolStrategy(size=n_workers), batch_format="numpy")
        for (i, task), row in zip(enumerate(tasks), _in_order(ds, len(tasks), "i", "ingest"), strict=True):
            report = pickle.loads(row["report"])
            if isinstance(report, BaseException):
                raise report
            yield task, src_mod._ipc_batches(str(tmpdir / f"{i:08d}.arrow")), report

    return src_mod.ingest_with(read, sources, out, fmt, mapping, batch_size, progress)


# ---------------------------------------------------------------- tokenize on Ray

class _EncodeUnits:
    """A Ray Data actor: the local engine's encoder (``shards._Encoder``) over whole units of rows; each
    unit's token ids and document lengths per split go to one ``.npz`` file named by the unit."""

    def __init__(self, tokenizer_json: str, val_fraction: float, src: str, tmp: str, batch_size: int):
        import os

        os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per worker; the workers are the parallelism
        from murmur.data.shards import _Encoder

        self.encoder = _Encoder(tokenizer_json, val_fraction)
        self.src, self.tmp, self.batch_size = src, tmp, batch_size
        self.pf: pq.ParquetFile | None = None

    def __call__(self, units: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import os

        from murmur.data.shards import SPLITS

        if self.pf is None:
            fs, path = _resolve(self.src)
            self.pf = pq.ParquetFile(fs.open_input_file(path))
        for i in range(len(units["unit"])):
            u = _Unit(*(int(units[k][i]) for k in ("unit", "row_group", "start", "rows")))
            rows = self.pf.read_row_group(u.row_group, columns=["post_id", "text"]).slice(u.start, u.rows)
            parts = [self.encoder(b) for b in rows.to_batches(max_chunksize=self.batch_size)]
            arrays = {"meta": np.array([sum(p.posts for p in parts), sum(p.skipped for p in parts)], np.int64)}
            for split in SPLITS:
                dtype = self.encoder.dtype
                arrays[f"{split}_tokens"] = np.concatenate([p.tokens[split] for p in parts] or [np.zeros(0, dtype)])
                arrays[f"{split}_lens"] = np.concatenate([p.doc_lens[split] for p in parts] or [np.zeros(0, np.int64)])
                arrays[f"{split}_bytes"] = np.array(sum(p.bytes[split] for p in parts), np.int64)
            dest = _join(self.tmp, f"enc-{u.unit:06d}.npz")
            partial = f"{dest}.{uuid.uuid4().hex[:8]}.tmp"
            with open(partial, "wb") as f:
                np.savez(f, **arrays)
            os.replace(partial, dest)
        return {"unit": units["unit"]}


def tokenize_ray(src: Path, tokenizer_dir: Path, out: Path, cfg=None, workers: int | None = None,
                 overwrite: bool = False, address: str | None = None, unit_rows: int = UNIT_ROWS):
    """``murmur data tokenize`` on a Ray cluster: units of rows encoded by Ray Data actors, the shards
    written here from the units in input order: the same shard directory as the local engine's (shard
    boundaries depend only on the documents). The units' temporary files go to a hidden directory beside
    ``out``, which every worker must reach (one machine, or a shared filesystem)."""
    import shutil

    from murmur.data import shards

    src, out = Path(src), Path(out)

    def encode(pf: pq.ParquetFile, tokenizer_json: str, cfg: shards.ShardConfig) -> Iterator:
        import ray.data

        connect(address, num_cpus=workers)
        n_workers = workers or cluster_cpus()
        units = _units(pf, unit_rows)
        out.parent.mkdir(parents=True, exist_ok=True)
        from murmur.io import temp_sibling

        tmp = temp_sibling(out, ".ray")  # named before it exists: the finally below removes it
        try:
            tmp.mkdir(mode=0o700)
            log(f"tokenize (ray): {pf.metadata.num_rows:,} posts in {len(units)} units on {n_workers} workers")
            ds = ray.data.from_items([u.__dict__ for u in units], override_num_blocks=len(units)).map_batches(
                _EncodeUnits, fn_constructor_args=(tokenizer_json, cfg.val_fraction, str(src.resolve()), str(tmp),
                                                   cfg.batch_size),
                batch_size=1, compute=ray.data.ActorPoolStrategy(min_size=min(n_workers, len(units)), max_size=n_workers),
                num_cpus=1, batch_format="numpy")
            for u, _ in zip(units, _in_order(ds, len(units), "unit", "tokenize"), strict=True):
                path = tmp / f"enc-{u.unit:06d}.npz"
                with np.load(path) as z:
                    posts, skipped = (int(v) for v in z["meta"])
                    yield shards._Encoded(posts, skipped, {s: z[f"{s}_tokens"] for s in shards.SPLITS},
                                          {s: z[f"{s}_lens"] for s in shards.SPLITS},
                                          {s: int(z[f"{s}_bytes"]) for s in shards.SPLITS})
                path.unlink()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    return shards.tokenize_with(encode, src, tokenizer_dir, out, cfg, overwrite)
