"""Near-duplicate chains planted in a demo world's posts, and the rule deduplication used before
connected components ("drop a post when an earlier post shares a key with it"), for comparison."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from murmur.data import clean as cl
from murmur.data.schema import POST_SCHEMA


def _shared(x: np.ndarray, y: np.ndarray) -> bool:
    """Two posts' band keys share a band."""
    return bool((x == y).any())


def plant_chains(world: Path, posts: Path, out: Path, chains: int = 4, cfg: cl.CleanConfig | None = None) -> list:
    """Write ``posts`` plus ``chains`` planted chains to ``out``: for an original post A of the world
    (a normal post no other post duplicates), B = A without one word and C = B without another, chosen
    so that A ~ B and B ~ C (a shared LSH band) but A and C share no key; C is dated an hour after A,
    B two hours after it. Returns [(A, B, C) post ids]. The world's truth names A's copies ``near_duplicate``
    of A; so are B and C, by construction."""
    cfg = cfg or cl.CleanConfig()
    worker = cl._Worker(cfg)
    table = pq.read_table(posts)
    truth = pq.read_table(world / "truth" / "posts.parquet", columns=["post_id", "kind", "duplicate_of"])
    copied = set(truth.column("duplicate_of").drop_null().to_pylist())
    normal = set(truth.filter(pc.equal(truth.column("kind"), "normal")).column("post_id").to_pylist())
    rows = [r for r in table.to_pylist() if r["post_id"] in normal and r["post_id"] not in copied
            and r["lang"] == "en" and 14 <= len(r["text"].split()) and "#" not in r["text"] and "@" not in r["text"]
            and "http" not in r["text"]]
    planted, new_rows = [], []
    for a in rows:
        words = a["text"].split()
        variants = [" ".join(words[:i] + words[i + 1:]) for i in range(2, len(words) - 2, 2)]  # B candidates
        pairs = [(i, j) for i in range(len(variants)) for j in range(len(variants)) if abs(i - j) > 1]
        texts = [a["text"], *variants]
        for i, j in pairs:  # C: both words gone
            lo, hi = sorted((2 + 2 * i, 2 + 2 * j))
            texts.append(" ".join(words[:lo] + words[lo + 1:hi] + words[hi + 1:]))
        batch = pa.RecordBatch.from_pylist([dict(a, post_id=f"v{k}", text=t) for k, t in enumerate(texts)],
                                           schema=POST_SCHEMA)
        res = worker.process(batch)
        if res.kept.num_rows != len(texts):  # every variant must pass the quality and language rules
            continue
        bands, exact = res.bands, res.exact
        for (i, _), c in zip(pairs, range(1 + len(variants), len(texts)), strict=True):
            b = 1 + i
            if len({exact[0], exact[b], exact[c]}) == 3 and _shared(bands[0], bands[b]) and \
                    _shared(bands[b], bands[c]) and not _shared(bands[0], bands[c]):
                t = a["created_at"]
                new_rows.append(dict(a, post_id=f"{a['post_id']}-b", text=texts[b], created_at=t + dt.timedelta(hours=2)))
                new_rows.append(dict(a, post_id=f"{a['post_id']}-c", text=texts[c], created_at=t + dt.timedelta(hours=1)))
                planted.append((a["post_id"], f"{a['post_id']}-b", f"{a['post_id']}-c"))
                break
        if len(planted) == chains:
            break
    assert len(planted) == chains, f"only {len(planted)} chains found"
    pq.write_table(pa.concat_tables([table, pa.Table.from_pylist(new_rows, schema=POST_SCHEMA)]), out,
                   row_group_size=1000)
    return planted


def earlier_rule_drops(posts: Path, cfg: cl.CleanConfig | None = None) -> tuple[set[str], set[str]]:
    """The ids of the survivors of clean's steps 1-5, and of those the earlier rule drops as duplicates:
    a survivor that shares its exact hash or an LSH band with an earlier one (``created_at``, then ``post_id``)."""
    cfg = cfg or cl.CleanConfig()
    worker = cl._Worker(cfg)
    kept, keys = [], []
    for batch in pq.ParquetFile(posts).iter_batches(batch_size=4096):
        res = worker.process(cl._conform(batch, posts))
        kept.append(res.kept)
        keys.append(np.column_stack([res.exact, res.bands]))
    survivors = pa.Table.from_batches(kept)
    keys_all = np.concatenate(keys)
    order = cl.time_order(survivors.column("created_at"), survivors.column("post_id"))
    dropped = np.zeros(len(order), dtype=bool)  # in time order
    for column in keys_all[order].T:
        _, first = np.unique(column, return_index=True)
        repeat = np.ones(len(order), dtype=bool)
        repeat[first] = False
        dropped |= repeat
    ids = survivors.column("post_id").to_numpy(zero_copy_only=False)[order]
    return set(ids.tolist()), set(ids[dropped].tolist())
