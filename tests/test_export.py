"""Hugging Face export: transformers loads the folder offline and computes what murmur computes."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may be fetched: the folder must be complete

import pytest
import torch
from chat_helpers import CONVERSATIONS, make_base_model, make_tokenizer, write_jsonl
from safetensors.torch import load_file, save_file

from murmur.chat.sft import SFTConfig, sft
from murmur.chat.template import END_ID, render
from murmur.errors import CheckpointError, InputError, OutputError
from murmur.export import export_hf, load_hf, weight_names
from murmur.generate import generate
from murmur.modeldir import load_model

transformers = pytest.importorskip("transformers")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def chat_run(tmp_path_factory):
    """A micro model fine-tuned until it answers the test conversations, exported to a HF folder."""
    root = tmp_path_factory.mktemp("export")
    tok = make_tokenizer(root)
    base = make_base_model(root, tok)
    data = write_jsonl(root / "c.jsonl", CONVERSATIONS)
    from murmur import config as cfgmod

    cfg = cfgmod.load(SFTConfig, None, ["steps=80", "dtype=fp32", "device=cpu", "seq_len=64", "optim.lr=2e-2",
                                        "schedule.warmup=5", "batch.micro_batch=2", "eval.val_fraction=0",
                                        "checkpoint.every=0", "log_every=80"])
    run = sft(base, data, root / "chat", cfg).run_dir
    return run, export_hf(run, root / "hf")


def hf_load(folder):
    model = transformers.LlamaForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return model, tokenizer


def ids_of(out) -> list[int]:
    """apply_chat_template's ids (transformers 5 returns a BatchEncoding, 4 a list)."""
    return list(out["input_ids"] if isinstance(out, Mapping) else out)


def test_folder_files_and_configs(chat_run):
    run, hf = chat_run
    names = {p.name for p in hf.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json",
            "special_tokens_map.json", "chat_template.jinja"} <= names
    cfg = json.loads((hf / "config.json").read_text())
    mine = json.loads((run / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["model_type"] == "llama"
    assert cfg["rope_theta"] == mine["rope_theta"]
    assert cfg["rope_parameters"] == {"rope_type": "default", "rope_theta": mine["rope_theta"]}
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"],
            cfg["head_dim"], cfg["intermediate_size"], cfg["max_position_embeddings"], cfg["vocab_size"]) == \
        (mine["dim"], mine["n_layers"], mine["n_heads"], mine["n_kv_heads"], mine["head_dim"], mine["ffn_dim"],
         mine["max_seq_len"], mine["vocab_size"])
    assert cfg["hidden_act"] == "silu" and cfg["attention_bias"] is False and cfg["mlp_bias"] is False
    assert cfg["tie_word_embeddings"] is True and cfg["torch_dtype"] == "float32"
    assert (cfg["bos_token_id"], cfg["eos_token_id"], cfg["pad_token_id"]) == (0, [END_ID, 0], 1)
    assert END_ID in json.loads((hf / "generation_config.json").read_text())["eos_token_id"]
    tok_cfg = json.loads((hf / "tokenizer_config.json").read_text())
    assert tok_cfg["eos_token"] == "<|end|>" and tok_cfg["bos_token"] == "<|doc|>" and "chat_template" in tok_cfg
    weights = load_file(str(hf / "model.safetensors"))
    assert "lm_head.weight" not in weights and "model.embed_tokens.weight" in weights
    assert "model.layers.1.self_attn.k_proj.weight" in weights and "model.layers.0.mlp.gate_proj.weight" in weights
    assert len(weights) == len(weight_names(load_model(run)[2]))
    assert (hf / "murmur_sft.json").is_file()


def test_transformers_logits_match_murmur(chat_run):
    run, hf = chat_run
    ours, _, _ = load_model(run)
    theirs, _ = hf_load(hf)
    assert theirs.dtype == torch.float32
    tokens = torch.randint(0, ours.cfg.vocab_size, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(theirs(tokens).logits.float(), ours(tokens), atol=1e-5, rtol=1e-5)


def test_chat_template_gives_the_renderers_ids(chat_run):
    run, hf = chat_run
    _, tok, _ = load_model(run)
    hf_tok = transformers.AutoTokenizer.from_pretrained(hf, local_files_only=True)
    for conv in CONVERSATIONS[:4]:
        for prompt in (True, False):
            got = ids_of(hf_tok.apply_chat_template(conv, add_generation_prompt=prompt, tokenize=True))
            assert got == render(tok, conv, add_generation_prompt=prompt)
    assert hf_tok.decode(render(tok, CONVERSATIONS[0])) == "<|doc|><|user|>who are you?<|end|><|assistant|>I am " \
                                                          "murmur.<|end|><|assistant|>"


def test_generate_with_the_generation_config_stops_at_end(chat_run):
    run, hf = chat_run
    ours, tok, _ = load_model(run)
    theirs, hf_tok = hf_load(hf)
    conv = CONVERSATIONS[0][:1]
    prompt = render(tok, conv, add_generation_prompt=True)
    answer = generate(ours, [prompt], 30, temperature=0, stop_ids=[END_ID])[0]
    assert tok.decode(answer) == "I am murmur."
    ids = ids_of(hf_tok.apply_chat_template(conv, add_generation_prompt=True, tokenize=True))
    with torch.no_grad():
        out = theirs.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                              max_new_tokens=30, do_sample=False)
    new = out[0, len(ids):].tolist()
    assert new == answer + [END_ID]  # stopped right after <|end|>, long before max_new_tokens
    assert hf_tok.decode(new, skip_special_tokens=True) == "I am murmur."


def test_untied_model_round_trips_through_load_hf(tmp_path):
    tok = make_tokenizer(tmp_path)
    run = make_base_model(tmp_path, tok, seed=1, tie_embeddings=False, n_kv_heads=4, rope_theta=500000.0,
                          norm_eps=1e-6)
    hf = export_hf(run, tmp_path / "hf", dtype="float32")
    weights = load_file(str(hf / "model.safetensors"))
    assert "lm_head.weight" in weights
    ours, _, _ = load_model(run)
    back = load_hf(hf)
    assert back.cfg == ours.cfg
    assert all(torch.equal(a, back.state_dict()[k]) for k, a in ours.state_dict().items())
    theirs, _ = hf_load(hf)
    tokens = torch.randint(0, ours.cfg.vocab_size, (1, 33), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(theirs(tokens).logits.float(), ours(tokens), atol=1e-5, rtol=1e-5)
    # a sharded checkpoint (index + several files) imports the same
    names = sorted(weights)
    half = len(names) // 2
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    (sharded / "config.json").write_text((hf / "config.json").read_text())
    save_file({k: weights[k] for k in names[:half]}, str(sharded / "model-00001-of-00002.safetensors"))
    save_file({k: weights[k] for k in names[half:]}, str(sharded / "model-00002-of-00002.safetensors"))
    index = {"weight_map": {k: f"model-0000{1 if i < half else 2}-of-00002.safetensors" for i, k in enumerate(names)}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    assert all(torch.equal(v, load_hf(sharded).state_dict()[k]) for k, v in back.state_dict().items())


def test_bfloat16_export_and_replacing_an_earlier_export(chat_run, tmp_path):
    run, _ = chat_run
    out = tmp_path / "bf16"
    export_hf(run, out, dtype="float16")
    with pytest.raises(OutputError, match="pass --overwrite"):
        export_hf(run, out, dtype="bfloat16")
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "float16"
    export_hf(run, out, dtype="bfloat16", overwrite=True)
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "bfloat16"
    assert all(t.dtype == torch.bfloat16 for t in load_file(str(out / "model.safetensors")).values())
    assert load_hf(out, dtype=None).tok_embeddings.weight.dtype == torch.bfloat16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bf16"]


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", ["non-empty folder", "a file", "parent of the model", "the model", "inside the model",
                                  "earlier export with a user file", "a tokenizer folder"])
def test_export_never_deletes_what_it_did_not_write(chat_run, tmp_path, case):
    """Each destructive target: refused with and without --overwrite, nothing changed on disk."""
    import shutil

    run, hf = chat_run
    runs = tmp_path / "runs"
    model = runs / "chat"
    shutil.copytree(run, model)
    (runs / "sibling").mkdir()
    (runs / "sibling" / "model.safetensors").write_bytes(b"another run")
    if case == "non-empty folder":
        out = tmp_path / "mine"
        out.mkdir()
        (out / "paper.tex").write_text("keep")
    elif case == "a file":
        out = tmp_path / "notes.txt"
        out.write_text("keep")
    elif case == "parent of the model":
        out = runs
    elif case == "the model":
        out = model
    elif case == "inside the model":
        out = model / "tokenizer"
    elif case == "earlier export with a user file":
        out = tmp_path / "hf"
        shutil.copytree(hf, out)
        (out / "README.md").write_text("my model card")
    else:
        out = tmp_path / "tok"
        shutil.copytree(model / "tokenizer", out)
        (out / "_COMPLETE").write_text(json.dumps({"murmur": "tokenizer", "files": sorted(
            p.name for p in out.iterdir() if p.name != "_COMPLETE")}))
    before = _tree(tmp_path)
    for overwrite in (False, True):
        with pytest.raises(OutputError) as e:
            export_hf(model, out, overwrite=overwrite)
        assert str(out) in str(e.value) and "\n" not in str(e.value)
    assert _tree(tmp_path) == before


def test_bad_inputs(chat_run, tmp_path):
    run, hf = chat_run
    with pytest.raises(CheckpointError, match="no model.safetensors or config.json"):
        export_hf(tmp_path, tmp_path / "out")
    with pytest.raises(InputError, match="dtype"):
        export_hf(run, tmp_path / "out", dtype="int8")
    with pytest.raises(OutputError, match="also an input"):
        export_hf(run, run)
    assert not (tmp_path / "out").exists()
    folder = tmp_path / "other"
    folder.mkdir()
    cfg = json.loads((hf / "config.json").read_text())
    for change, message in [({"model_type": "mistral"}, "only Llama"), ({"hidden_act": "gelu"}, "hidden_act"),
                            ({"rope_parameters": {"rope_type": "llama3", "rope_theta": 1.0}}, "RoPE scaling"),
                            ({"attention_bias": True}, "biases")]:
        (folder / "config.json").write_text(json.dumps({**cfg, **change}))
        with pytest.raises(InputError, match=message):
            load_hf(folder)
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="no model.safetensors"):
        load_hf(folder)


def test_cli_export_hf(chat_run, tmp_path):
    from typer.testing import CliRunner

    from murmur.cli import app

    run, _ = chat_run
    res = CliRunner().invoke(app, ["export", "hf", str(run), "-o", str(tmp_path / "hf")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "hf" / "model.safetensors").is_file() and "written to" in res.output
