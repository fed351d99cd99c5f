"""Ingest, clean and tokenize on a real local Ray cluster: the local engine's output for any number of
workers, bad addresses, and a Ray worker killed mid-stage."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from murmur.data.clean import CleanConfig, clean
from murmur.data.sources import ingest
from murmur.errors import InputError
from murmur.world.generate import WorldConfig, generate_world

ROOT = Path(__file__).resolve().parents[1]
ray = pytest.importorskip("ray")


def make_posts(root: Path, users: int) -> Path:
    generate_world(root / "world", WorldConfig(users=users, seed=5))
    ingest([str(root / "world" / "archives"), str(root / "world" / "api")], root / "posts.parquet")
    return root / "posts.parquet"


def env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_address_that_does_not_answer(tmp_path):
    import pyarrow.parquet as pq

    posts = tmp_path / "posts.parquet"
    pq.write_table(pa.table({"post_id": ["1"], "text": ["a perfectly fine post about the weather"]}), posts)
    proc = subprocess.run([sys.executable, "-m", "murmur.cli", "data", "clean", str(posts), "-o",
                           str(tmp_path / "out.parquet"), "--engine", "ray", "--address", f"127.0.0.1:{free_port()}"],
                          capture_output=True, text=True, env=env(), cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "no Ray cluster answers at 127.0.0.1:" in proc.stderr
    assert not (tmp_path / "out.parquet").exists()


@pytest.mark.parametrize("stage", ["ingest", "tokenize"])
def test_ingest_and_tokenize_at_an_address_that_does_not_answer(tmp_path, stage):
    import pyarrow.parquet as pq

    posts = tmp_path / "posts.parquet"
    pq.write_table(pa.table({"post_id": ["1"], "text": ["a perfectly fine post about the weather"]}), posts)
    if stage == "ingest":
        args = ["data", "ingest", str(posts), "-o", str(tmp_path / "out.parquet")]
    else:
        from murmur.tokenizer import TokenizerConfig, train_tokenizer

        train_tokenizer([posts], tmp_path / "tok", TokenizerConfig(vocab_size=300, val_fraction=0.0))
        args = ["data", "tokenize", str(posts), "--tokenizer", str(tmp_path / "tok"), "-o", str(tmp_path / "out.parquet"),
                "val_fraction=0.0"]
    proc = subprocess.run([sys.executable, "-m", "murmur.cli", *args, "--engine", "ray",
                           "--address", f"127.0.0.1:{free_port()}"],
                          capture_output=True, text=True, env=env(), cwd=ROOT, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "no Ray cluster answers at 127.0.0.1:" in proc.stderr
    assert not (tmp_path / "out.parquet").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.fixture(scope="module")
def local_ray():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_gives_the_local_engines_file_for_any_workers(tmp_path, local_ray):
    from dedup_helpers import plant_chains

    from murmur.data.ray_engine import clean_ray

    planted = plant_chains(tmp_path / "world", make_posts(tmp_path, 300), tmp_path / "chained.parquet")
    posts = tmp_path / "chained.parquet"  # near-duplicate chains A ~ B ~ C whose ends share nothing
    cfg = CleanConfig(batch_size=512)
    local = clean(posts, tmp_path / "local.parquet", cfg, stats_path=tmp_path / "local.json")
    kept = set(pq.read_table(tmp_path / "local.parquet", columns=["post_id"]).column(0).to_pylist())
    assert all(a in kept and b not in kept and c not in kept for a, b, c in planted)
    # the components joined on the cluster (no candidate row on the driver), then by the driver's union-find
    for workers, unit_rows, partitions, driver in ((1, 1024, 3, 0), (2, 700, 5, cfg.ray_driver_components)):
        out = tmp_path / f"ray{workers}.parquet"
        res = clean_ray(str(posts), str(out), replace(cfg, ray_driver_components=driver), workers=workers,
                        stats_path=tmp_path / f"ray{workers}.json", unit_rows=unit_rows, partitions=partitions)
        assert out.read_bytes() == (tmp_path / "local.parquet").read_bytes()
        assert res.dropped_by_reason == local.dropped_by_reason and res.kept == local.kept
        assert res.scrubbed == local.scrubbed and res.languages == local.languages and res.dedup == local.dedup
        assert res.dropped_by_reason["duplicate"] > 0 and res.dropped_by_reason["near_duplicate"] > 0
    parts = tmp_path / "parts"
    clean_ray(str(posts), f"{parts}/", cfg, workers=2, stats_path=tmp_path / "parts.json", unit_rows=1024)
    assert (parts / "_COMPLETE").exists()
    names = sorted(p.name for p in parts.glob("part-*.parquet"))
    assert len(names) > 1
    table = pa.concat_tables([pq.read_table(parts / n) for n in names])
    assert table.equals(pq.read_table(tmp_path / "local.parquet"))
    with pytest.raises(InputError, match="not empty"):
        clean_ray(str(posts), f"{parts}/", cfg, workers=2, stats_path=tmp_path / "parts.json")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporaries left


@pytest.mark.slow
def test_ray_ingest_and_tokenize_give_the_local_engines_files(tmp_path, local_ray):
    from murmur.data.ray_engine import ingest_ray, tokenize_ray
    from murmur.data.shards import ShardConfig, tokenize_to_shards
    from murmur.tokenizer import TokenizerConfig, train_tokenizer

    posts = make_posts(tmp_path, 300)  # the local engine's file
    sources = [str(tmp_path / "world" / "archives"), str(tmp_path / "world" / "api")]
    for workers in (1, 2):
        out = tmp_path / f"ray{workers}.parquet"
        stats = ingest_ray(sources, out, workers=workers, batch_size=8192)
        assert out.read_bytes() == posts.read_bytes()
        assert stats.posts == pq.ParquetFile(posts).metadata.num_rows and stats.files > 2
    bad = tmp_path / "bad.jsonl"  # malformed on line 2: the worker's InputError, as the local engine's
    bad.write_text('{"id": "1", "text": "a fine post"}\n{not json\n')
    with pytest.raises(InputError, match="bad.jsonl:2"):
        ingest_ray([*sources, str(bad)], tmp_path / "bad.parquet", workers=2)
    assert not (tmp_path / "bad.parquet").exists()

    train_tokenizer([posts], tmp_path / "tok", TokenizerConfig(vocab_size=600))
    cfg = ShardConfig(tokens_per_shard=5000, batch_size=300)
    tokenize_to_shards(posts, tmp_path / "tok", tmp_path / "local-shards", cfg)
    local = sorted(p.name for p in (tmp_path / "local-shards").iterdir())
    assert len(local) > 4  # several train shards, a val shard, the manifest and the marker
    for workers, unit_rows in ((1, 1000), (2, 700)):
        out = tmp_path / f"ray-shards{workers}"
        m = tokenize_ray(posts, tmp_path / "tok", out, cfg, workers=workers, unit_rows=unit_rows)
        assert sorted(p.name for p in out.iterdir()) == local
        for name in local:
            assert (out / name).read_bytes() == (tmp_path / "local-shards" / name).read_bytes(), name
        assert m.train_docs + m.val_docs > 3000
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporaries left


def _ray_workers(name: str) -> list[int]:
    """Processes whose command line (Ray sets it to the actor's name) mentions ``name``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and name in (proc / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(proc.name))
        except OSError:
            pass
    return found


def same_output(a: Path, b: Path) -> bool:
    """The same file, or directories of the same files."""
    if a.is_file():
        return a.read_bytes() == b.read_bytes()
    names = sorted(p.name for p in a.iterdir())
    return names == sorted(p.name for p in b.iterdir()) and all((a / n).read_bytes() == (b / n).read_bytes()
                                                                  for n in names)


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["clean", "tokenize"])
def test_a_killed_ray_worker_is_retried_or_fails_cleanly(tmp_path, stage):
    posts = make_posts(tmp_path, 2500)
    out = tmp_path / ("out.parquet" if stage == "clean" else "out")
    if stage == "clean":
        local = tmp_path / "local.parquet"
        clean(posts, local, CleanConfig(), stats_path=tmp_path / "local.json")
        args, actor = ["data", "clean", str(posts), "-o", str(out), "--stats", str(tmp_path / "stats.json")], "_CleanUnits"
    else:
        from murmur.data.shards import ShardConfig, tokenize_to_shards
        from murmur.tokenizer import TokenizerConfig, train_tokenizer

        train_tokenizer([posts], tmp_path / "tok", TokenizerConfig(vocab_size=2000))
        local = tmp_path / "local"
        tokenize_to_shards(posts, tmp_path / "tok", local, ShardConfig(tokens_per_shard=50_000))
        args = ["data", "tokenize", str(posts), "--tokenizer", str(tmp_path / "tok"), "-o", str(out),
                "tokens_per_shard=50000", "batch_size=512"]
        actor = "_EncodeUnits"
    port = free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    # --block in a new session: the head and every process it starts form one group, ended below
    head = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={port}",
                             "--node-ip-address=127.0.0.1", "--num-cpus=2", "--include-dashboard=false",
                             "--disable-usage-stats", f"--temp-dir={temp}"],
                            env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None and time.time() < deadline, "the Ray head did not start"
                time.sleep(0.5)
        run = subprocess.Popen([sys.executable, "-m", "murmur.cli", *args, "--engine", "ray",
                                "--address", f"127.0.0.1:{port}"], env=env(), cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        killed = None
        deadline = time.time() + 120
        while killed is None and run.poll() is None and time.time() < deadline:
            workers = _ray_workers(actor)
            if workers:
                time.sleep(1.0)  # let it start on its unit
                os.kill(workers[0], signal.SIGKILL)
                killed = workers[0]
            time.sleep(0.1)
        _, stderr = run.communicate(timeout=300)
        assert killed is not None, "no Ray worker ran the unit"
        print(f"killed Ray worker {killed}; exit status {run.returncode}")
        if run.returncode == 0:  # Ray restarted the actor and retried its unit
            assert same_output(out, local)
        else:
            assert run.returncode == 2 and stderr.strip().count("\n") == 0, stderr
            assert not out.exists()
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []  # no temporaries left
    finally:
        os.killpg(head.pid, signal.SIGKILL)  # this cluster's processes only (the group started above)
        head.wait()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_components_on_ray_follow_a_long_chain_to_its_earliest_post(tmp_path, local_ray):
    """A chain of 48 posts in random time order (each sharing one key with the next only), many time
    ties broken by ``post_id`` (prefixes, a NUL byte, a missing id), an exact copy inside it and a small
    second group: the large-star/small-star rounds on Ray drop what the local union-find drops."""
    import numpy as np

    from murmur.data import dedup as dd
    from murmur.data import ray_components as rc

    rng = np.random.default_rng(3)
    n = 60
    t = rng.integers(0, 4, n).astype(np.int64)
    t[7] = dd.NO_TIME
    ids = [f"p{int(i)}" for i in rng.integers(0, 30, n)]
    ids[3], ids[4], ids[9], ids[11] = "p1", "p1\x00z", "p10", None
    rows = [(1, 1000 + j, i) for j in range(47) for i in (j, j + 1)]  # the chain 0-1-...-47
    rows += [(0, 7, 5), (0, 7, 30)]  # 30 an exact copy of 5
    rows += [(2, 99, 50), (2, 99, 53), (3, 98, 53), (3, 98, 55)]  # a second component
    rows += [(4, 5000 + i, i) for i in range(n)]  # keys of one post: no pair
    kind, key, pos = (np.array(c) for c in zip(*rows, strict=True))
    keys = pa.table([kind.astype(np.int16), key.astype(np.uint64), t[pos], pa.array([ids[p] for p in pos]),
                     pos.astype(np.int64)], schema=dd.key_row_schema())
    buckets = dd.bucket_of(0, keys.column("key").to_numpy(), 3)
    cands = [dd.candidate_rows(keys.filter(pa.array(buckets == b))) for b in range(3)]
    local = dd.Components(tmp_path)
    for c in cands:
        local.add(c)
    want_pos, want_flag, want_stats = local.decide()
    assert len(want_pos) == 47 + 2 and want_stats["largest_component"] == 48

    from ray.data.context import ShuffleStrategy

    ds = ray.data.from_arrow([rc.with_order_keys(c) for c in cands])
    before = ds.context.shuffle_strategy
    during = []
    got_pos, got_flag, got_stats, info = rc.components(
        ds, buckets=3, progress=lambda r, changed, s: during.append(ds.context.shuffle_strategy))
    # every step ran on the sort-based shuffle (its small shuffles cost seconds each on the default),
    # and the dataset's own context is left as it was
    assert set(during) == {ShuffleStrategy.SORT_SHUFFLE_PULL_BASED} and ds.context.shuffle_strategy == before
    assert got_pos.tolist() == want_pos.tolist() and got_flag.tolist() == want_flag.tolist()
    assert got_stats == want_stats and info["rounds"] >= 3, info
