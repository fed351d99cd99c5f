"""MinHash signatures equal datasketch's, LSH agrees with datasketch, and dedup keeps the earliest post."""

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest
from datasketch import LeanMinHash, MinHash, MinHashLSH

from murmur.data import dedup as dd
from murmur.data.clean import time_order
from murmur.data.normalize import dedup_key

BASE = ("the city council finally approved the new bike lanes on main street after two years of "
        "meetings and petitions, and honestly it is about time")
DOCS = [
    BASE,
    BASE.replace("honestly", "frankly"),           # one word changed: near
    BASE + " lol",                                 # a word added: near
    "the city council approved something today",  # shares words, but not near
    "completely different post about cats and their strange habits at night",
    "ab",                                          # shorter than a shingle
    "",
]


@pytest.fixture(scope="module")
def hasher():
    return dd.MinHasher(num_perm=128, threshold=0.8)


def test_signatures_equal_datasketch(hasher):
    sig = hasher.signatures(DOCS)
    hashes, starts = hasher.shingle_hashes(DOCS)
    ends = list(starts[1:]) + [len(hashes)]
    for i in range(len(DOCS)):
        m = MinHash(num_perm=128, seed=1, scheme="affine32", hashfunc=lambda h: h)
        for h in hashes[starts[i]:ends[i]]:
            m.update(int(h))
        assert np.array_equal(m.hashvalues, sig[i])


def test_permutations_and_known_lsh_params_equal_datasketch():
    for num_perm, seed in [(4, 0), (128, 1), (256, 12345)]:
        perms = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
        a, b = dd._permutations(num_perm, seed)
        assert np.array_equal(a, perms[0]) and np.array_equal(b, perms[1])
    for (threshold, num_perm), params in dd._KNOWN_LSH_PARAMS.items():
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        assert (lsh.b, lsh.r) == params


def test_batching_does_not_change_signatures(hasher):
    assert np.array_equal(hasher.signatures(DOCS[2:4]), hasher.signatures(DOCS)[2:4])
    assert np.array_equal(np.concatenate([hasher.signatures([d]) for d in DOCS]), hasher.signatures(DOCS))
    assert hasher.signatures([]).shape == (0, 128)


def test_bands_agree_with_datasketch_lsh(hasher):
    sig = hasher.signatures(DOCS)
    bands = hasher.band_keys(sig)
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    assert (lsh.b, lsh.r) == (hasher.bands, hasher.rows)
    minhashes = [LeanMinHash(seed=1, hashvalues=s, scheme="affine32") for s in sig]
    for i, m in enumerate(minhashes):
        lsh.insert(i, m)
    for i, m in enumerate(minhashes):
        ours = {j for j in range(len(DOCS)) if (bands[i] == bands[j]).any()}
        assert set(lsh.query(m)) == ours
    assert {1, 2} <= {j for j in range(len(DOCS)) if (bands[0] == bands[j]).any()}
    assert not (bands[0] == bands[3]).any() and not (bands[0] == bands[4]).any()


def test_exact_hash_is_stable():
    assert dd.exact_hash("hello world") == dd.exact_hash("hello world") != dd.exact_hash("hello world!")
    assert dd.exact_hashes(["a", "b"]).dtype == np.uint64


def _order(times, ids):
    return time_order(pa.array(times, pa.timestamp("us", tz="UTC")), pa.array(ids, pa.string()))


def test_time_order_ties_and_missing_timestamps():
    t = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    order = _order([t, None, t - dt.timedelta(seconds=1), t], ["b", "a", "z", "a"])
    assert order.tolist() == [2, 3, 0, 1]


def test_decide_keeps_the_earliest(hasher):
    # input order is not time order: the earliest post of each group comes last in the input
    docs = [dedup_key(d) for d in [BASE + "!!", BASE.replace("honestly", "frankly"), "a lonely post", BASE]]
    t = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    times = [t + dt.timedelta(hours=h) for h in (3, 2, 1, 0)]
    order = _order(times, ["p1", "p2", "p3", "p4"])
    decision = dd.decide(order, dd.exact_hashes(docs), hasher.keys_for(docs))
    assert decision.tolist() == [dd.DUPLICATE, dd.NEAR_DUPLICATE, dd.KEEP, dd.KEEP]
    # with the times reversed, the first post of the input is the earliest and is kept
    order = _order(times[::-1], ["p1", "p2", "p3", "p4"])
    decision = dd.decide(order, dd.exact_hashes(docs), hasher.keys_for(docs))
    assert decision.tolist() == [dd.KEEP, dd.NEAR_DUPLICATE, dd.KEEP, dd.DUPLICATE]


def test_decide_checks_can_be_turned_off(hasher):
    docs = [BASE, BASE, BASE + " lol"]
    order = np.arange(3)
    assert dd.decide(order, None, hasher.keys_for(docs)).tolist() == [0, 2, 2]
    assert dd.decide(order, dd.exact_hashes(docs), None).tolist() == [0, 1, 0]
    assert dd.decide(order, None, None).tolist() == [0, 0, 0]
    assert dd.decide(np.zeros(0, np.int64), None, None).tolist() == []


def test_impossible_banding_is_a_config_error():
    from murmur.errors import ConfigError

    with pytest.raises(ConfigError, match="threshold 0.95 and 16 permutations"):
        dd.MinHasher(num_perm=16, threshold=0.95)


@pytest.mark.parametrize("buckets", [1, 7])
@pytest.mark.parametrize("checks", ["both", "exact", "near"])
def test_the_spilled_index_decides_as_the_in_memory_one(tmp_path, buckets, checks):
    # many collisions, tied and missing timestamps, tied post ids, added in several batches
    rng = np.random.default_rng(0)
    n = 5000
    exact = rng.integers(0, 1500, n).astype(np.uint64)
    bands = rng.integers(0, 4000, (n, 9)).astype(np.uint64)
    base = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    times = [None if rng.random() < 0.05 else base + dt.timedelta(seconds=int(s)) for s in rng.integers(0, 300, n)]
    ids = [f"p{i}" for i in rng.integers(0, 4000, n)]
    created = pa.array(times, pa.timestamp("us", tz="UTC"))
    post_id = pa.array(ids, pa.string())
    use_exact = exact if checks != "near" else None
    use_bands = bands if checks != "exact" else None
    expected = dd.decide(time_order(created, post_id), use_exact, use_bands)
    index = dd.SpilledIndex(tmp_path, buckets)
    for lo in range(0, n, 1234):
        hi = min(n, lo + 1234)
        index.add(None if use_exact is None else use_exact[lo:hi], None if use_bands is None else use_bands[lo:hi],
                  created.slice(lo, hi - lo), post_id.slice(lo, hi - lo))
    got = index.decide()
    assert got.tolist() == expected.tolist()
    assert ((got == dd.DUPLICATE).sum() > 100) == (checks != "near")
    assert ((got == dd.NEAR_DUPLICATE).sum() > 100) == (checks != "exact")
    assert list(tmp_path.iterdir()) == []  # every bucket file removed once read


def _components_by_hand(times: list, ids: list, keys: list[set]) -> tuple[list[int], list[int]]:
    """The reference: posts joined when any key is shared (a search over every pair); each component
    keeps its earliest post (time, then id, then position; no time last). Also the sizes of the
    components of two or more posts."""
    n = len(times)
    later = [(t is None, t or 0, i, p) for p, (t, i) in enumerate(zip(times, ids, strict=True))]
    seen, decision, sizes = [False] * n, [dd.KEEP] * n, []
    for start in range(n):
        if seen[start]:
            continue
        component, todo = [], [start]
        seen[start] = True
        while todo:
            p = todo.pop()
            component.append(p)
            for q in range(n):
                if not seen[q] and keys[p] & keys[q]:
                    seen[q] = True
                    todo.append(q)
        earliest = min(component, key=lambda p: later[p])
        for p in component:
            if p != earliest:
                exact = next(k for k in keys[p] if k[0] == "x")
                exact_earlier = any(exact in keys[q] and later[q] < later[p] for q in component)
                decision[p] = dd.DUPLICATE if exact_earlier else dd.NEAR_DUPLICATE
        if len(component) > 1:
            sizes.append(len(component))
    return decision, sizes


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_components_equal_a_search_by_hand(tmp_path, monkeypatch, seed):
    # sparse collisions: components of one to a few dozen posts, chains among them
    rng = np.random.default_rng(seed)
    n = 400
    exact = rng.integers(0, 340, n).astype(np.uint64)
    bands = rng.integers(0, 2500, (n, 3)).astype(np.uint64)
    base = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    times = [None if rng.random() < 0.05 else base + dt.timedelta(seconds=int(s)) for s in rng.integers(0, 60, n)]
    ids = [f"p{i}" for i in rng.integers(0, 300, n)]
    keys = [{("x", int(exact[p]))} | {(j, int(bands[p, j])) for j in range(3)} for p in range(n)]
    expected, sizes = _components_by_hand(times, ids, keys)
    created, post_id = pa.array(times, pa.timestamp("us", tz="UTC")), pa.array(ids, pa.string())
    assert dd.decide(time_order(created, post_id), exact, bands).tolist() == expected
    for buckets, step, compact_rows in ((1, n, 1 << 18), (5, 37, 10)):
        monkeypatch.setattr(dd, "NODE_COMPACT_ROWS", compact_rows)  # 10: the candidates compacted often
        index = dd.SpilledIndex(tmp_path, buckets)
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            index.add(exact[lo:hi], bands[lo:hi], created.slice(lo, hi - lo), post_id.slice(lo, hi - lo))
        assert index.decide().tolist() == expected
        assert list(tmp_path.iterdir()) == []
        assert (index.stats["candidates"], index.stats["components"]) == (sum(sizes), len(sizes))
        assert index.stats["largest_component"] == max(sizes) >= 4  # chains, not only pairs
    assert sum(d == dd.DUPLICATE for d in expected) > 10 and sum(d == dd.NEAR_DUPLICATE for d in expected) > 10


def test_a_chain_is_one_component_whatever_its_time_order(tmp_path):
    # A ~ B and B ~ C (one shared band each) but A and C share nothing; C is earlier than B
    bands = np.array([[1, 10, 20], [1, 11, 21], [2, 11, 22], [3, 12, 23]], dtype=np.uint64)  # A, B, C, D
    t = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    created = pa.array([t, t + dt.timedelta(hours=2), t + dt.timedelta(hours=1), t], pa.timestamp("us", tz="UTC"))
    post_id = pa.array(["a", "b", "c", "d"])
    decision = dd.decide(time_order(created, post_id), None, bands)
    assert decision.tolist() == [dd.KEEP, dd.NEAR_DUPLICATE, dd.NEAR_DUPLICATE, dd.KEEP]
    index = dd.SpilledIndex(tmp_path, 2)
    index.add(None, bands, created, post_id)
    assert index.decide().tolist() == decision.tolist()
    assert index.stats == {"candidates": 3, "pairs": 2, "components": 1, "largest_component": 3}


def test_union_joins_a_long_chain_given_in_any_order():
    rng = np.random.default_rng(0)
    n = 20000
    a = rng.permutation(n - 1)
    parent = np.arange(n, dtype=np.int64)
    dd.union(parent, a[: n // 2] + 1, a[: n // 2])  # later node first: the union does not care
    dd.union(parent, a[n // 2:], a[n // 2:] + 1)
    assert (dd.flatten(parent) == 0).all()
    parent = np.arange(6, dtype=np.int64)
    dd.union(parent, np.array([5, 4, 3]), np.array([3, 2, 4]))
    assert dd.flatten(parent).tolist() == [0, 1, 2, 2, 2, 2]


@pytest.mark.slow
def test_components_drop_the_chains_the_earlier_rule_keeps(tmp_path):
    import pyarrow.parquet as pq
    from dedup_helpers import earlier_rule_drops, plant_chains

    from murmur.data.clean import CleanConfig, clean
    from murmur.data.sources import ingest
    from murmur.world.generate import WorldConfig, generate_world

    generate_world(tmp_path / "world", WorldConfig(users=300, seed=5))
    ingest([str(tmp_path / "world" / "archives"), str(tmp_path / "world" / "api")], tmp_path / "posts.parquet")
    planted = plant_chains(tmp_path / "world", tmp_path / "posts.parquet", tmp_path / "chained.parquet")
    result = clean(tmp_path / "chained.parquet", tmp_path / "out.parquet", CleanConfig())
    kept = set(pq.read_table(tmp_path / "out.parquet", columns=["post_id"]).column(0).to_pylist())
    survivors, earlier = earlier_rule_drops(tmp_path / "chained.parquet")
    components = survivors - kept
    assert len(components) == result.dropped_by_reason["duplicate"] + result.dropped_by_reason["near_duplicate"]
    for a, b, c in planted:  # A ~ B ~ C, A and C share nothing, C earlier than B
        assert a in kept and b in components and c in components
        assert b in earlier and c not in earlier  # the earlier rule keeps C: its only pair, B, is later
    assert earlier <= components  # a post with an earlier pair is never its component's earliest
    # against the world's truth: what the components drop beyond the earlier rule
    truth = pq.read_table(tmp_path / "world" / "truth" / "posts.parquet", columns=["post_id", "kind"]).to_pylist()
    kind = {r["post_id"]: r["kind"] for r in truth} | {c: "near_duplicate" for _, _, c in planted}
    dupes = {p for p in survivors if kind.get(p) in ("duplicate", "near_duplicate")}
    more = components - earlier
    print(f"survivors {len(survivors)}, truth duplicates among them {len(dupes)}: dropped by components "
          f"{len(dupes & components)}, by the earlier rule {len(dupes & earlier)}; components drop "
          f"{len(more)} more ({len(more & dupes)} truth duplicates, {sum(kind.get(p) == 'normal' for p in more)} normal)")
    assert {c for _, _, c in planted} <= more & dupes
    assert result.dedup["components"] > 0 and result.dedup["largest_component"] >= 3
