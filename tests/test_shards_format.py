import numpy as np
import pytest

from murmur.data.shards_format import Shard, TokenShards, shard_name, write_shard
from murmur.errors import InputError
from murmur.io import atomic_dir, write_json


def _make(tmp_path, docs_per_shard):
    with atomic_dir(tmp_path / "shards") as d:
        infos = []
        for i, docs in enumerate(docs_per_shard):
            toks = np.concatenate([[0, *doc] for doc in docs]).astype(np.uint16)
            starts = np.cumsum([0] + [len(doc) + 1 for doc in docs[:-1]])
            write_shard(d / shard_name("train", i), toks, starts)
            infos.append({"file": shard_name("train", i), "tokens": len(toks), "docs": len(docs)})
        write_json(d / "manifest.json", {"vocab_size": 100, "dtype": "uint16", "doc_token_id": 0,
                                        "splits": {"train": {"shards": infos}}})
    return tmp_path / "shards"


def test_read_spans_shards(tmp_path):
    d = _make(tmp_path, [[[5, 6, 7], [8]], [[9, 10]]])
    ts = TokenShards(d, "train")
    assert ts.num_tokens == 9 and ts.num_docs == 3
    assert ts.read(0, 9).tolist() == [0, 5, 6, 7, 0, 8, 0, 9, 10]
    assert ts.read(4, 4).tolist() == [0, 8, 0, 9]
    assert [x.tolist() for x in ts.documents()] == [[0, 5, 6, 7], [0, 8], [0, 9, 10]]
    with pytest.raises(IndexError):
        ts.read(7, 3)


def test_truncated_shard_is_refused(tmp_path):
    d = _make(tmp_path, [[[5, 6, 7]]])
    p = d / shard_name("train", 0)
    p.write_bytes(p.read_bytes()[:-3])
    with pytest.raises(InputError, match="header says"):
        Shard.open(p)


def test_missing_split_and_incomplete_dir(tmp_path):
    d = _make(tmp_path, [[[1]]])
    with pytest.raises(InputError, match="no 'val' split"):
        TokenShards(d, "val")
    (d / "_COMPLETE").unlink()
    with pytest.raises(InputError, match="incomplete"):
        TokenShards(d, "train")
