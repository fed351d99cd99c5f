"""murmur's embedder at search time: the traced forward gives the eager vectors on rows of any shape,
queries run through an int8 copy that stays close to float32, and a swapped model is traced again.
(What the traced forward is for, its pace beside threads running Python, is measured by
benchmarks/search.py, not timed here.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from serve_helpers import make_tokenizer

from murmur.model import ModelConfig, Transformer
from murmur.pooling import embed_rows, pad_rows, text_ids
from murmur.search.murmur_embedder import INT8_MIN_COSINE, MurmurEmbedder, int8_copy, traced

TEXTS = ["marathon training plan for the spring", "receta de paella", "a", "jazz concert tonight downtown",
         "the quick brown fox jumps over the lazy dog " * 4, "#running", "new phone battery lasts two days"]


def _model(n_kv_heads: int = 4, seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(ModelConfig(vocab_size=400, dim=64, n_layers=2, n_heads=4, n_kv_heads=n_kv_heads,
                                   head_dim=16, ffn_dim=128, max_seq_len=64)).eval()


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return make_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.mark.parametrize("pooling,n_kv_heads", [("mean", 4), ("last", 2), ("eos", 4)])
def test_traced_forward_gives_the_eager_vectors_on_every_shape(pooling, n_kv_heads):
    model = _model(n_kv_heads)
    graph = traced(model, pooling, pad_id=0)
    assert graph is not None
    gen = np.random.default_rng(1)
    with torch.inference_mode():
        for n_rows in (1, 2, 5, 16):
            rows = [gen.integers(1, 400, int(n)) for n in gen.integers(1, 60, n_rows)]
            tokens, lengths = pad_rows(rows, 0)
            torch.testing.assert_close(graph(tokens, lengths), embed_rows(model, tokens, lengths, pooling),
                                       atol=1e-5, rtol=1e-5)


def test_a_model_that_cannot_be_traced_runs_eagerly():
    class Branchy(torch.nn.Module):  # its output depends on a Python branch over the data
        cfg = ModelConfig(vocab_size=400, dim=8, n_layers=1, n_heads=1, max_seq_len=64)

        def forward(self, tokens, return_hidden=True):
            h = torch.nn.functional.one_hot(tokens, 8).float()
            return h * 2 if int(tokens[0, 0]) == 1 else h

    assert traced(Branchy(), "mean", pad_id=3) is None


def test_int8_query_copy_stays_close_and_is_refused_when_it_strays():
    model = _model()
    q = int8_copy(model, "mean", pad_id=0)
    assert q is not None and any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in q.modules())
    assert all(type(m) is torch.nn.Linear for m in model.modules() if "Linear" in type(m).__name__)  # not touched
    with torch.no_grad():  # a model whose int8 copy points elsewhere: huge weights in one layer saturate int8
        model.layers["0"].feed_forward.w2.weight[0, 0] = 1e6
    assert int8_copy(model, "mean", pad_id=0) is None


def test_embedder_queries_int8_passages_float32_and_a_swapped_model(tok):
    model = _model()
    emb = MurmurEmbedder(Path("."), model, tok, "mean", 48, "micro")
    passages = emb.encode(TEXTS, "passage")
    rows = [text_ids(tok, t, 48, "mean") for t in TEXTS]
    with torch.inference_mode():
        ref = np.concatenate([embed_rows(model, *pad_rows([r], tok.pad_id), "mean").numpy() for r in rows])
    np.testing.assert_allclose(passages, ref, atol=1e-5)
    queries = emb.encode(TEXTS, "query")
    assert (queries * passages).sum(1).min() >= INT8_MIN_COSINE and not np.array_equal(queries, passages)
    emb.query_int8 = False
    emb.model = _model(seed=1)  # a new model: traced again, its vectors not the old one's
    assert not np.allclose(emb.encode(TEXTS[:2], "query"), queries[:2], atol=1e-3)
    np.testing.assert_array_equal(emb.encode(TEXTS, "query"), emb.encode(TEXTS, "passage"))
