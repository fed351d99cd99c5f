"""Connected components of the candidate pairs on Ray Data, no machine holding them all.

The Ray engine's dedup (``ray_engine.clean_ray``) turns every group of posts sharing a key into a star
of candidate pairs: the group's earliest post with each other member. Beyond
``CleanConfig.ray_driver_components`` candidate rows (below it the driver's union-find is faster: each
step here is a shuffle with a fixed cost, about half a second on 2 cores), this module joins those pairs
into connected components with the *alternating large-star / small-star* algorithm (Kiveris et al.,
"Connected Components in MapReduce and Beyond", SoCC 2014), each step one Ray Data shuffle by node
(a ``groupby`` on a hash bucket of the node, then one vectorised pass per bucket):

- *large-star*: every node ``u`` links each of its neighbours later than itself to the earliest of
  ``u`` and its neighbours;
- *small-star*: every node ``u`` links itself and each of its neighbours earlier than itself to the
  earliest of them.

A round is one large-star and one small-star. When a round changes no edge, every component is a
star around its earliest post (every other post has exactly one neighbour, that post): the posts
to drop are the star's leaves. Rounds grow with the logarithm of a component's diameter, not with it
(Kiveris et al. prove O(log^2 n)); a chain of 48 posts in random time order takes 5 rounds
(``tests/test_ray_engine.py``).

"Earliest" is the local engine's order (``dedup.Components``): ``created_at``, then ``post_id``,
then input position. Each node is named by one binary *order key* that sorts in that order
(``order_keys``), so the steps compare nodes as plain bytes, and the components' earliest posts are
``Components``'s roots: both engines drop the same posts.

The driver never holds the pairs: each step's edges stay in Ray's object store (materialised, spread
over the nodes), and the driver reads back only one number per step (the edges it changed) and, at
the end, the dropped positions (as the union-find's result was) and a few counts.
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from murmur.data import dedup as dd

EDGE_SCHEMA = pa.schema([("bucket", pa.int32()), ("u", pa.binary()), ("up", pa.int64()), ("v", pa.binary()),
                         ("vp", pa.int64()), ("changed", pa.int8()), ("leaf", pa.bool_())])
"""An edge row, filed under node ``u`` (order key ``u``, position ``up``) in ``bucket``: its neighbour
``v`` (``vp``), whether the step made it new, and (after small-star) whether ``u`` is the later end."""

_SIGN = np.uint64(1 << 63)


def _be8(values: np.ndarray) -> pa.Array:
    """Unsigned 64-bit values as 8 big-endian bytes each (so byte order is numeric order)."""
    data = np.ascontiguousarray(values, dtype=np.uint64).astype(">u8")
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(8), len(data), [None, pa.py_buffer(data.tobytes())]) \
        .cast(pa.binary())


def order_keys(t: np.ndarray, ids: pa.Array, pos: np.ndarray) -> pa.Array:
    """One binary key per post that sorts as (``t``, ``id``, ``pos``) do, missing ids after present
    ones (as Arrow's sort puts nulls last): ``t`` with its sign bit flipped, big-endian; then ``0x01``, the
    id's bytes with ``0x00`` escaped as ``0x00 0x01`` and ``0x00 0x00`` closing it (or ``0x02`` for no
    id); then ``pos``, big-endian."""
    t = np.asarray(t, dtype=np.int64).view(np.uint64) ^ _SIGN
    ids = pa.array(ids) if not isinstance(ids, pa.Array) else ids
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    escaped = pc.replace_substring(ids.cast(pa.string()), "\x00", "\x00\x01").cast(pa.binary())
    named = pc.binary_join_element_wise(pa.scalar(b"\x01"), escaped, pa.scalar(b"\x00\x00"), b"")
    idpart = pc.if_else(pc.is_null(ids), pa.scalar(b"\x02"), named)
    return pc.binary_join_element_wise(_be8(t), idpart, _be8(np.asarray(pos, dtype=np.int64)), b"")


def bucket_of(pos: np.ndarray, buckets: int) -> np.ndarray:
    return (dd.fmix64(np.ascontiguousarray(pos, dtype=np.uint64)) % np.uint64(buckets)).astype(np.int32)


def _edges(u, up, v, vp, changed, leaf, buckets: int) -> pa.Table:
    up, vp = np.asarray(up, np.int64), np.asarray(vp, np.int64)
    n = len(up)
    return pa.table([bucket_of(up, buckets), u, up, v, vp, np.asarray(changed, np.int8),
                     np.broadcast_to(np.asarray(leaf, bool), (n,)).copy()], schema=EDGE_SCHEMA)


def _both_ways(u, up, v, vp, changed, buckets: int) -> pa.Table:
    """Each edge filed under both of its ends (large-star needs every neighbour of a node);
    ``changed`` counted once, ``leaf`` set on the row filed under the later end ``u``."""
    zero = np.zeros(len(up), np.int8)
    return pa.concat_tables([_edges(u, up, v, vp, changed, True, buckets),
                             _edges(v, vp, u, up, zero, False, buckets)])


def pair_edges(candidates: pa.Table, buckets: int) -> pa.Table:
    """The star edges of candidate rows that carry order keys (``k``: the post's, ``fk``: its group's
    earliest post's), filed both ways: (post, earliest) for every row that is not its group's earliest."""
    pos = candidates.column("pos").to_numpy()
    first = candidates.column("first").to_numpy()
    rows = np.flatnonzero(pos != first)
    take = pa.array(rows)
    return _both_ways(candidates.column("k").take(take).combine_chunks(), pos[rows],
                      candidates.column("fk").take(take).combine_chunks(), first[rows],
                      np.ones(len(rows), np.int8), buckets)


def with_order_keys(candidates: pa.Table) -> pa.Table:
    """``dedup.candidate_rows`` output (rows of one group adjacent, its earliest post first) with the
    order keys of each row's post (``k``) and of its group's earliest post (``fk``)."""
    pos = candidates.column("pos").to_numpy()
    first = candidates.column("first").to_numpy()
    k = order_keys(candidates.column("t").to_numpy(), candidates.column("id"), pos)
    head = np.maximum.accumulate(np.where(pos == first, np.arange(len(pos), dtype=np.int64), 0)) \
        if len(pos) else np.zeros(0, np.int64)
    return candidates.append_column("k", k).append_column("fk", k.take(pa.array(head)))


def _numbered(edges: pa.Table) -> tuple[np.ndarray, np.ndarray, pa.Array, np.ndarray]:
    """The bucket's distinct edges (u, v) as node numbers in time order, the nodes' keys and positions."""
    u, v = edges.column("u").combine_chunks(), edges.column("v").combine_chunks()
    keys = pc.unique(pa.concat_arrays([u, v]))
    keys = keys.take(pc.sort_indices(keys))
    ui = pc.index_in(u, value_set=keys).to_numpy().astype(np.int64)
    vi = pc.index_in(v, value_set=keys).to_numpy().astype(np.int64)
    pos = np.empty(len(keys), np.int64)
    pos[ui] = edges.column("up").to_numpy()
    pos[vi] = edges.column("vp").to_numpy()
    distinct = np.unique(ui * len(keys) + vi)
    return distinct // len(keys), distinct % len(keys), keys, pos


def large_star(edges: pa.Table, buckets: int) -> pa.Table:
    """One bucket of large-star: each later neighbour ``v`` of ``u`` linked to the earliest of ``u``
    and its neighbours, filed under ``v`` (the later end, as small-star groups)."""
    if edges.num_rows == 0:
        return EDGE_SCHEMA.empty_table()
    ui, vi, keys, pos = _numbered(edges)
    low = np.arange(len(keys), dtype=np.int64)
    np.minimum.at(low, ui, vi)
    later = vi > ui
    v, m = vi[later], low[ui[later]]
    return _edges(keys.take(pa.array(v)), pos[v], keys.take(pa.array(m)), pos[m], m != ui[later], True, buckets)


def small_star(edges: pa.Table, buckets: int) -> pa.Table:
    """One bucket of small-star over edges filed under their later end ``u``: ``u`` and each of its
    earlier neighbours linked to the earliest of them; the new edges filed both ways."""
    if edges.num_rows == 0:
        return EDGE_SCHEMA.empty_table()
    ui, vi, keys, pos = _numbered(edges)
    low = np.arange(len(keys), dtype=np.int64)
    np.minimum.at(low, ui, vi)
    moved = vi != low[ui]  # (u, v) becomes (v, earliest): a new edge
    heads = np.unique(ui)
    heads = heads[low[heads] != heads]  # (u, earliest), an edge it had
    a = np.concatenate([vi[moved], heads])
    b = np.concatenate([low[ui[moved]], low[heads]])
    changed = np.concatenate([np.ones(int(moved.sum()), np.int8), np.zeros(len(heads), np.int8)])
    return _both_ways(keys.take(pa.array(a)), pos[a], keys.take(pa.array(b)), pos[b], changed, buckets)


def star_counts(edges: pa.Table) -> pa.Table:
    """One bucket of the final stars (rows filed under each root, ``leaf`` false): its roots and the
    size of its largest component."""
    roots = edges.filter(pc.invert(edges.column("leaf")))
    if roots.num_rows == 0:
        return pa.table({"roots": [0], "largest": [0]})
    pairs = np.unique(np.stack([roots.column("up").to_numpy(), roots.column("vp").to_numpy()]), axis=1)
    _, sizes = np.unique(pairs[0], return_counts=True)
    return pa.table({"roots": [len(sizes)], "largest": [int(sizes.max()) + 1]})


def _leaves(edges: pa.Table) -> pa.Table:
    return pa.table({"pos": edges.filter(edges.column("leaf")).column("up")})


def _exact(candidates: pa.Table) -> pa.Table:
    return pa.table({"pos": candidates.filter(candidates.column("exact")).column("pos")})


def _positions(ds) -> np.ndarray:
    parts = [np.zeros(0, np.int64)]
    for batch in ds.iter_batches(batch_format="numpy", batch_size=1 << 20):
        parts.append(batch["pos"])
    return np.concatenate(parts)


def components(candidates, buckets: int, max_rounds: int = 200,
               progress=None) -> tuple[np.ndarray, np.ndarray, dict, dict]:
    """The Ray Data dataset of candidate rows (with order keys, ``with_order_keys``) joined into
    components on the cluster: the positions of the dropped posts (ascending), their flag
    (``DUPLICATE`` when an earlier post has the exact hash, else ``NEAR_DUPLICATE``), the counts of
    ``dedup.Components.decide``, and ``rounds`` and ``seconds`` (from the candidates to the drops).
    ``progress(round, changed, seconds)`` after each round."""
    from ray.data.context import ShuffleStrategy

    # Each step is a small shuffle; Ray Data's default hash shuffle (built for a few large ones) adds
    # seconds of set-up to every one of them, the sort-based pull shuffle does not: a chain of 48
    # posts (tests/test_ray_engine.py) takes 145 s of rounds on the default, 10 s on it. A dataset
    # keeps the DataContext it was made under, shared by every dataset derived from it, so the
    # strategy is set there (the process's current context would not reach it), for these steps only.
    ctx = candidates.context
    before, ctx.shuffle_strategy = ctx.shuffle_strategy, ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    try:
        return _components(candidates, buckets, max_rounds, progress)
    finally:
        ctx.shuffle_strategy = before


def _components(candidates, buckets: int, max_rounds: int, progress) -> tuple[np.ndarray, np.ndarray, dict, dict]:
    candidates = candidates.materialize()
    started = time.perf_counter()
    edges = candidates.map_batches(pair_edges, fn_args=(buckets,), batch_format="pyarrow", batch_size=None) \
        .materialize()
    pairs = int(edges.sum("changed") or 0)
    empty = {"candidates": 0, "pairs": 0, "components": 0, "largest_component": 0}
    if pairs == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int8), empty, {"rounds": 0, "seconds": 0.0}
    rounds = 0
    while True:
        rounds += 1
        if rounds > max_rounds:
            raise RuntimeError(f"connected components did not settle in {max_rounds} rounds")
        large = edges.groupby("bucket", num_partitions=buckets).map_groups(
            large_star, fn_args=(buckets,), batch_format="pyarrow").materialize()
        small = large.groupby("bucket", num_partitions=buckets).map_groups(
            small_star, fn_args=(buckets,), batch_format="pyarrow").materialize()
        changes = int(large.sum("changed") or 0) + int(small.sum("changed") or 0)
        if progress is not None:
            progress(rounds, changes, time.perf_counter() - started)
        edges = small
        if changes == 0:
            break
    counts = edges.groupby("bucket", num_partitions=buckets).map_groups(star_counts, batch_format="pyarrow") \
        .to_pandas()
    dropped = _positions(edges.map_batches(_leaves, batch_format="pyarrow", batch_size=None))
    exact = _positions(candidates.map_batches(_exact, batch_format="pyarrow", batch_size=None))
    pos = np.unique(dropped)
    flag = np.where(np.isin(pos, exact), dd.DUPLICATE, dd.NEAR_DUPLICATE).astype(np.int8)
    roots = int(counts["roots"].sum())
    stats = {"candidates": len(pos) + roots, "pairs": pairs, "components": roots,
             "largest_component": int(counts["largest"].max())}
    return pos, flag, stats, {"rounds": rounds, "seconds": time.perf_counter() - started}
