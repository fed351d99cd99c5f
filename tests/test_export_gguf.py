"""GGUF export: the file reads back with the gguf reader, holds llama.cpp's names, metadata and the
model's values, and computes what murmur computes under llama.cpp's RoPE convention."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from chat_helpers import make_base_model, make_tokenizer

from murmur.chat.template import CHAT_TEMPLATE
from murmur.errors import CheckpointError, InputError, OutputError
from murmur.export_gguf import export_gguf, permute_qk, unpermute_qk
from murmur.modeldir import load_model
from murmur.tokenizer import DOC_ID, END_ID, PAD_ID, SPECIAL_TOKENS

gguf = pytest.importorskip("gguf")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gguf")
    tok = make_tokenizer(root)
    run = make_base_model(root, tok, seed=3, tie_embeddings=False)
    return run


def read(path: Path) -> tuple[dict, dict]:
    r = gguf.GGUFReader(path)
    meta = {k: f.contents() for k, f in r.fields.items()}
    tensors = {t.name: t for t in r.tensors}
    return meta, tensors


def values(t) -> np.ndarray:
    """A reader tensor as float32 in the writer's (rows, cols) layout."""
    if t.tensor_type in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
        return np.asarray(t.data, np.float32)
    return gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)


def expected_tensors(model) -> dict[str, np.ndarray]:
    """What llama.cpp should find under each name: murmur's weights, Q and K permuted."""
    cfg = model.cfg.resolved()
    sd = {k: v.float().numpy() for k, v in model.state_dict().items()}
    out = {"token_embd.weight": sd["tok_embeddings.weight"], "output_norm.weight": sd["norm.weight"],
           "output.weight": sd["output.weight"]}
    for i in range(cfg.n_layers):
        p = f"layers.{i}."
        out.update({
            f"blk.{i}.attn_q.weight": permute_qk(sd[p + "attention.wq.weight"], cfg.n_heads),
            f"blk.{i}.attn_k.weight": permute_qk(sd[p + "attention.wk.weight"], cfg.n_kv_heads),
            f"blk.{i}.attn_v.weight": sd[p + "attention.wv.weight"],
            f"blk.{i}.attn_output.weight": sd[p + "attention.wo.weight"],
            f"blk.{i}.ffn_gate.weight": sd[p + "feed_forward.w1.weight"],
            f"blk.{i}.ffn_up.weight": sd[p + "feed_forward.w3.weight"],
            f"blk.{i}.ffn_down.weight": sd[p + "feed_forward.w2.weight"],
            f"blk.{i}.attn_norm.weight": sd[p + "attention_norm.weight"],
            f"blk.{i}.ffn_norm.weight": sd[p + "ffn_norm.weight"],
        })
    return out


def test_permutation_round_trips():
    w = np.random.default_rng(0).standard_normal((4 * 6, 5)).astype(np.float32)
    p = permute_qk(w, 4)
    assert not np.array_equal(p, w) and np.array_equal(unpermute_qk(p, 4), w)
    # head 0 of head_dim 6: rotate-half pairs (0,3), (1,4), (2,5) become adjacent rows
    assert np.array_equal(p[:6], w[[0, 3, 1, 4, 2, 5]])


def test_f32_file_holds_the_model_and_its_tokenizer(run, tmp_path):
    out = export_gguf(run, tmp_path / "m.gguf", "f32")
    meta, tensors = read(out)
    model, _, _ = load_model(run)
    cfg = model.cfg.resolved()
    assert meta["general.architecture"] == "llama"
    assert meta["llama.context_length"] == cfg.max_seq_len and meta["llama.embedding_length"] == cfg.dim
    assert meta["llama.block_count"] == cfg.n_layers and meta["llama.feed_forward_length"] == cfg.ffn_dim
    assert (meta["llama.attention.head_count"], meta["llama.attention.head_count_kv"]) == (cfg.n_heads, cfg.n_kv_heads)
    assert meta["llama.attention.key_length"] == meta["llama.rope.dimension_count"] == cfg.head_dim
    assert meta["llama.rope.freq_base"] == pytest.approx(cfg.rope_theta)
    assert meta["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(cfg.norm_eps)
    assert meta["general.file_type"] == gguf.LlamaFileType.ALL_F32
    assert meta["tokenizer.ggml.model"] == "gpt2" and meta["tokenizer.ggml.pre"] == "llama-bpe"
    assert meta["tokenizer.chat_template"] == CHAT_TEMPLATE
    assert (meta["tokenizer.ggml.bos_token_id"], meta["tokenizer.ggml.eos_token_id"]) == (DOC_ID, DOC_ID)
    assert meta["tokenizer.ggml.eot_token_id"] == END_ID and meta["tokenizer.ggml.padding_token_id"] == PAD_ID
    assert meta["tokenizer.ggml.add_bos_token"] is False

    tok = json.loads((run / "tokenizer" / "tokenizer.json").read_text())
    tokens, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
    assert len(tokens) == len(types) == cfg.vocab_size
    assert tokens[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    assert set(types[: len(SPECIAL_TOKENS)]) == {gguf.TokenType.CONTROL}
    assert all(tokens[i] == t and types[i] == gguf.TokenType.NORMAL for t, i in tok["model"]["vocab"].items()
               if i >= len(SPECIAL_TOKENS))
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    assert meta["tokenizer.ggml.merges"] == merges and merges

    want = expected_tensors(model)
    assert set(tensors) == set(want)
    for name, arr in want.items():
        got = values(tensors[name])
        assert got.shape == arr.shape and np.array_equal(got, arr), name
    for i in range(cfg.n_layers):  # and undoing the permutation gives murmur's weights back
        q = unpermute_qk(values(tensors[f"blk.{i}.attn_q.weight"]), cfg.n_heads)
        assert np.array_equal(q, model.state_dict()[f"layers.{i}.attention.wq.weight"].numpy())


def _llama_cpp_forward(tensors: dict, meta: dict, ids: list[int]) -> np.ndarray:
    """The logits llama.cpp's ``llama`` graph computes from the file alone: RMS norm, RoPE on adjacent
    pairs (its NORM mode), grouped-query causal attention, SwiGLU; written here with numpy."""
    g = {name: values(t) for name, t in tensors.items()}
    n_head, n_kv = meta["llama.attention.head_count"], meta["llama.attention.head_count_kv"]
    hd, eps = meta["llama.attention.key_length"], meta["llama.attention.layer_norm_rms_epsilon"]
    theta = meta["llama.rope.freq_base"]
    T = len(ids)

    def norm(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w

    def rope(x):  # x [T, H, hd]; pairs (2i, 2i+1) rotate by pos * theta^(-2i/hd)
        ang = np.arange(T)[:, None] * theta ** (-np.arange(0, hd, 2) / hd)[None, :]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2], out[..., 1::2] = a * c - b * s, a * s + b * c
        return out

    x = g["token_embd.weight"][ids].astype(np.float64)
    for i in range(meta["llama.block_count"]):
        h = norm(x, g[f"blk.{i}.attn_norm.weight"])
        q = rope((h @ g[f"blk.{i}.attn_q.weight"].T).reshape(T, n_head, hd))
        k = rope((h @ g[f"blk.{i}.attn_k.weight"].T).reshape(T, n_kv, hd))
        v = (h @ g[f"blk.{i}.attn_v.weight"].T).reshape(T, n_kv, hd)
        k, v = np.repeat(k, n_head // n_kv, axis=1), np.repeat(v, n_head // n_kv, axis=1)
        att = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd)
        att = np.where(np.tril(np.ones((T, T), bool)), att, -np.inf)
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        x = x + np.einsum("hts,shd->thd", att, v).reshape(T, n_head * hd) @ g[f"blk.{i}.attn_output.weight"].T
        h = norm(x, g[f"blk.{i}.ffn_norm.weight"])
        gate = h @ g[f"blk.{i}.ffn_gate.weight"].T
        x = x + (gate / (1 + np.exp(-gate)) * (h @ g[f"blk.{i}.ffn_up.weight"].T)) @ g[f"blk.{i}.ffn_down.weight"].T
    out = g.get("output.weight", g["token_embd.weight"])
    return norm(x, g["output_norm.weight"]) @ out.T


@pytest.mark.parametrize("dtype, tol", [("f32", 1e-4), ("f16", 2e-2), ("q8_0", 6e-2)])
def test_llama_cpp_graph_on_the_file_gives_murmurs_logits(run, tmp_path, dtype, tol):
    out = export_gguf(run, tmp_path / f"m-{dtype}.gguf", dtype)
    meta, tensors = read(out)
    model, tok, _ = load_model(run)
    ids = [DOC_ID, *tok.encode("the best coffee in town is #coffee")][:24]
    with torch.no_grad():
        ours = model(torch.tensor([ids]))[0].double().numpy()
    theirs = _llama_cpp_forward(tensors, meta, ids)
    assert np.abs(theirs - ours).max() < tol * max(1.0, np.abs(ours).max())
    assert (theirs.argmax(-1) == ours.argmax(-1)).mean() >= (1.0 if dtype == "f32" else 0.9)
    kinds = {t.tensor_type for t in tensors.values() if len(t.shape) == 2}
    norms = {t.tensor_type for t in tensors.values() if len(t.shape) == 1}
    assert norms == {gguf.GGMLQuantizationType.F32}
    assert kinds == {{"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
                      "q8_0": gguf.GGMLQuantizationType.Q8_0}[dtype]}


def test_q8_0_keeps_f16_where_rows_do_not_split_into_blocks_and_ties_embeddings(tmp_path):
    tok = make_tokenizer(tmp_path)
    run = make_base_model(tmp_path, tok, dim=48, n_heads=4, n_kv_heads=4)  # rows of 48: not blocks of 32
    meta, tensors = read(export_gguf(run, tmp_path / "q.gguf", "q8_0"))
    assert "output.weight" not in tensors  # tied: llama.cpp reuses token_embd
    assert tensors["blk.0.attn_q.weight"].tensor_type == gguf.GGMLQuantizationType.F16
    assert tensors["blk.0.ffn_down.weight"].tensor_type == gguf.GGMLQuantizationType.Q8_0  # rows of 64
    assert meta["general.file_type"] == gguf.LlamaFileType.MOSTLY_Q8_0


def test_refuses_bad_requests_and_keeps_what_it_did_not_write(run, tmp_path):
    with pytest.raises(InputError, match="dtype must be one of f32, f16, q8_0"):
        export_gguf(run, tmp_path / "x.gguf", "int4")
    with pytest.raises(CheckpointError, match="not a murmur model directory"):
        export_gguf(tmp_path, tmp_path / "x.gguf")
    notes = tmp_path / "notes.gguf"
    notes.write_text("mine")
    with pytest.raises(OutputError, match="already exists; pass --overwrite"):
        export_gguf(run, notes)
    with pytest.raises(OutputError, match="is not a GGUF file"):
        export_gguf(run, notes, overwrite=True)
    assert notes.read_text() == "mine"
    first = export_gguf(run, tmp_path / "m.gguf", "f16")
    export_gguf(run, first, "q8_0", overwrite=True)
    assert read(first)[0]["general.file_type"] == gguf.LlamaFileType.MOSTLY_Q8_0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf", "notes.gguf"]  # no temporary left


def test_cli_exports_and_reports_errors_in_one_line(run, tmp_path):
    from typer.testing import CliRunner

    from murmur.cli import app

    out = tmp_path / "cli.gguf"
    r = CliRunner().invoke(app, ["export", "gguf", str(run), "-o", str(out), "--dtype", "q8_0"])
    assert r.exit_code == 0, r.output
    assert "GGUF model written to" in r.output and read(out)[0]["general.file_type"] == gguf.LlamaFileType.MOSTLY_Q8_0
    for args, words in (([], "already exists; pass --overwrite"), (["--dtype", "q4"], "dtype must be one of")):
        proc = subprocess.run([sys.executable, "-m", "murmur.cli", "export", "gguf", str(run), "-o", str(out), *args],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(not os.environ.get("LLAMA_CPP"), reason="set LLAMA_CPP to a llama.cpp llama-simple binary")
def test_llama_cpp_greedy_text_equals_murmurs(run, tmp_path):
    """With llama.cpp's ``llama-simple`` (greedy), the continuation equals murmur's greedy continuation."""
    out = export_gguf(run, tmp_path / "m.gguf", "f32")
    model, tok, _ = load_model(run)
    prompt = "the best coffee in town"
    ids = [DOC_ID, *tok.encode(prompt)]
    new: list[int] = []
    with torch.no_grad():
        for _ in range(16):  # greedy, stopping where llama.cpp stops (end of post or of turn)
            nxt = int(model(torch.tensor([ids + new]))[0, -1].argmax())
            if nxt in (DOC_ID, END_ID):
                break
            new.append(nxt)
    proc = subprocess.run([os.environ["LLAMA_CPP"], "-m", str(out), "-n", "16", "<|doc|>" + prompt],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert prompt + tok.decode(new) in proc.stdout
