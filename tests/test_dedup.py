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


def test_chunking_does_not_change_signatures(hasher):
    small = dd.MinHasher(num_perm=128, threshold=0.8, chunk_shingles=7)
    assert np.array_equal(small.signatures(DOCS), hasher.signatures(DOCS))
    assert np.array_equal(hasher.signatures(DOCS[2:4]), hasher.signatures(DOCS)[2:4])


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
