"""A clean run on a small world equals a post-by-post reference of every step, dedup included.

The reference is written from the per-post functions and the reference libraries only: the per-post
normalisation, scrubbing and quality rules, py3langid's own classifier, datasketch's ``MinHash`` for
the signatures, and ``dedup.decide`` over all keys in memory. The clean stage runs the batch kernels
(compiled loops, pyarrow's RE2, the spilled dedup index); the kept posts, their
texts and languages must be the same, and so must the counts per drop reason.
"""

import re
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
from datasketch import MinHash

from murmur.data import dedup as dd
from murmur.data.clean import CleanConfig, _source_code, clean, time_order
from murmur.data.langid import MAX_CHARS, UND
from murmur.data.normalize import clean_text, dedup_key, fold_key, is_retweet, normalize_text
from murmur.data.quality import quality_reason, strip_tags
from murmur.data.sources import ingest
from murmur.world.generate import WorldConfig, generate_world

LETTER = re.compile(r"[^\W\d_]")  # a letter: what the identifier needs to say anything


def reference_clean(posts, cfg: CleanConfig):
    """(kept (post_id, text, lang) in input order, Counter of drop reasons), one post at a time."""
    from py3langid.langid import MODEL_FILE
    from py3langid.langid import LanguageIdentifier as Py3

    py3 = Py3.from_model_file(MODEL_FILE, norm_probs=True)
    py3.set_languages(cfg.langid_languages)
    rules = cfg.quality_rules()
    hasher = dd.MinHasher(num_perm=cfg.minhash_perms, threshold=cfg.near_dup_threshold,
                          shingle_size=cfg.shingle_size, seed=cfg.minhash_seed)
    reasons: Counter = Counter()
    survivors = []
    for row in posts:
        text = normalize_text(row["text"] or "")
        if is_retweet(text):
            reasons["retweet"] += 1
            continue
        text, _ = clean_text(text)
        content, tags = strip_tags(text)
        reason = quality_reason(text, rules, (content, tags))
        if reason is not None:
            reasons[reason] += 1
            continue
        lang = UND
        if LETTER.search(content):
            probe = content[:MAX_CHARS]
            code, conf = py3.classify(probe.lower() if probe.isupper() else probe)
            lang = code if conf >= cfg.min_lang_confidence else UND
        if lang == UND:  # the source's label as the fallback
            lang = _source_code(row["lang"]) or UND
        if lang not in cfg.allowed_langs:
            reasons["language"] += 1
            continue
        survivors.append((row, text, lang, fold_key(content)))
    keys = [key for *_, key in survivors]
    assert keys == [dedup_key(text) for _, text, _, _ in survivors]
    hashes, starts = hasher.shingle_hashes(keys)
    ends = list(starts[1:]) + [len(hashes)]
    perms = MinHash(num_perm=cfg.minhash_perms, seed=cfg.minhash_seed, scheme="affine32").permutations
    sigs = []
    for i in range(len(keys)):
        m = MinHash(num_perm=cfg.minhash_perms, seed=cfg.minhash_seed, scheme="affine32", hashfunc=int,
                    permutations=perms)
        m.update_batch(hashes[starts[i]:ends[i]])
        sigs.append(m.hashvalues)
    order = time_order(posts_column(survivors, "created_at"), posts_column(survivors, "post_id"))
    decision = dd.decide(order, dd.exact_hashes(keys), hasher.band_keys(np.array(sigs, dtype=np.uint32)))
    reasons["duplicate"] += int((decision == dd.DUPLICATE).sum())
    reasons["near_duplicate"] += int((decision == dd.NEAR_DUPLICATE).sum())
    kept = [(row["post_id"], text, lang) for (row, text, lang, _), d in zip(survivors, decision, strict=True)
            if d == dd.KEEP]
    return kept, reasons


def posts_column(survivors, name):
    import pyarrow as pa

    values = [row[name] for row, *_ in survivors]
    return pa.array(values, pa.timestamp("us", tz="UTC") if name == "created_at" else pa.string())


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    generate_world(root / "world", WorldConfig(users=150, seed=7))
    ingest([str(root / "world" / "archives"), str(root / "world" / "api")], root / "posts.parquet")
    return root


def test_clean_equals_the_post_by_post_reference(world):
    cfg = CleanConfig(batch_size=500)
    result = clean(world / "posts.parquet", world / "clean.parquet", cfg, workers=1, stats_path=world / "stats.json")
    posts = pq.read_table(world / "posts.parquet").to_pylist()
    kept, reasons = reference_clean(posts, cfg)
    out = pq.read_table(world / "clean.parquet", columns=["post_id", "text", "lang"])
    got = list(zip(*(out.column(c).to_pylist() for c in ("post_id", "text", "lang")), strict=True))
    assert len(posts) > 1000 and 0 < len(kept) < len(posts)
    assert reasons["duplicate"] + reasons["near_duplicate"] > 0  # the world has duplicates to find
    assert got == kept
    assert {r: n for r, n in result.dropped_by_reason.items() if n} == {r: n for r, n in reasons.items() if n}
