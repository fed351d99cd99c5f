"""Generation through the one engine: what re-running the model gives; the same tokens from the library,
`murmur generate` and the HTTP server; model loading."""

from __future__ import annotations

import json

import pytest
import torch
from train_helpers import build_corpus

from murmur.engine import SamplingParams, continue_post
from murmur.errors import CheckpointError, InputError
from murmur.generate import generate, generate_text
from murmur.model import ModelConfig, Transformer
from murmur.modeldir import load_model
from murmur.train.checkpoint import save_inference_model

CFG = ModelConfig(vocab_size=320, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=48)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Transformer(CFG).eval()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, model):
    root = tmp_path_factory.mktemp("gen")
    _, tok = build_corpus(root)
    return save_inference_model(root / "model", model, CFG, tok)


def reference(model, prompt: list[int], n: int, temperature: float = 0.0, top_k: int = 0,
              seed: int | None = None) -> list[int]:
    """Decoding without any cache (the whole sequence re-run for every token), sampled with the
    engine's own sampler on one row: what the batched, cached engine must reproduce."""
    from murmur.engine.sampling import sample

    seq, g = list(prompt), (torch.Generator().manual_seed(seed) if seed is not None else None)
    with torch.no_grad():
        for _ in range(min(n, CFG.max_seq_len - len(prompt))):
            logits = model(torch.tensor([seq]))[:, -1]
            t = sample(logits, torch.tensor([temperature]), torch.tensor([top_k]), torch.tensor([1.0]),
                       torch.tensor([0.0]), [g])
            seq.append(int(t))
    return seq[len(prompt):]


def test_engine_generation_matches_full_reforward(model):
    prompts = [[0, 5, 9, 11], [0], [0, 7, 7, 7, 7, 7, 3]]  # different lengths share one cache
    cached = generate(model, prompts, 20, temperature=0)
    assert cached == [reference(model, p, 20) for p in prompts] and all(len(o) == 20 for o in cached)
    # seeded sampling is reproducible, and prompt i (seed 7 + i) is what it is alone and uncached
    a = generate(model, prompts, 15, temperature=1.0, top_k=20, seed=7)
    assert a == generate(model, prompts, 15, temperature=1.0, top_k=20, seed=7)
    assert a == [reference(model, p, 15, 1.0, 20, seed=7 + i) for i, p in enumerate(prompts)]
    assert len(set(map(tuple, generate(model, [[0]] * 3, 10, temperature=1.0, seed=1)))) == 3


def test_stop_token_and_context_limit(model):
    greedy = generate(model, [[0, 4]], 10, temperature=0)[0]
    assert generate(model, [[0, 4]], 10, temperature=0, stop_ids=[greedy[0]])[0] == []
    stop_at = greedy.index(greedy[3])  # the first occurrence of the 4th token
    assert generate(model, [[0, 4]], 10, temperature=0, stop_ids=[greedy[3]])[0] == greedy[:stop_at]
    assert len(generate(model, [[0] * 40], 100, temperature=0)[0]) == CFG.max_seq_len - 40
    with pytest.raises(InputError, match="maximum context length is 48"):
        generate(model, [[0] * 48], 5)
    with pytest.raises(InputError, match="at least one token"):
        generate(model, [[]], 5)


def test_same_tokens_from_library_cli_and_server(model_dir):
    """One prompt, seed and sampling settings: the library call, `murmur generate` and
    POST /v1/completions give the same continuation."""
    import httpx
    from serve_helpers import ServerThread
    from typer.testing import CliRunner

    from murmur.cli import app
    from murmur.engine import Engine
    from murmur.serve.app import create_app

    loaded, tok, _ = load_model(model_dir)
    prompt = "just had coffee"
    cases = [dict(temperature=0.0), dict(temperature=0.9, top_k=20, seed=5), dict(temperature=1.3, top_p=0.8, seed=11)]
    for case in cases:
        lib = continue_post(loaded, tok, prompt, SamplingParams(max_tokens=12, **case))[0]
        assert lib.completion_tokens >= 1
        flags = ["--max-tokens", "12", "--temperature", str(case["temperature"])]
        flags += ["--top-k", str(case["top_k"])] if "top_k" in case else []
        flags += ["--top-p", str(case["top_p"])] if "top_p" in case else []
        flags += ["--seed", str(case["seed"])] if "seed" in case else []
        cli = CliRunner().invoke(app, ["generate", "--model", str(model_dir), "--device", "cpu", *flags, prompt])
        assert cli.exit_code == 0, cli.output
        assert cli.stdout == prompt + lib.text + "\n"
        case["text"] = lib.text
    with ServerThread(create_app(Engine.from_run_dir(model_dir, max_batch=4))) as url:
        for case in cases:
            text = case.pop("text")
            r = httpx.post(url + "/v1/completions", json={"prompt": prompt, "max_tokens": 12, **case}, timeout=30)
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["text"] == text


def test_load_model_and_generate_text(model_dir, model):
    loaded, tok, cfg = load_model(model_dir)
    assert cfg == CFG.resolved()
    assert loaded.output.weight is loaded.tok_embeddings.weight  # tie restored
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    texts = generate_text(loaded, tok, "hello", 8, temperature=0.8, seed=1, num_samples=2)
    assert len(texts) == 2 and all(t.startswith("hello") for t in texts)
    assert texts[1] == generate_text(loaded, tok, "hello", 8, temperature=0.8, seed=2)[0]  # sample i: seed + i


def test_load_model_errors(tmp_path, model_dir):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a murmur model directory"):
        load_model(tmp_path / "empty")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="has not finished"):
        load_model(tmp_path / "run")
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    cfg = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, "dim": 64}))
    with pytest.raises(CheckpointError, match="shape"):
        load_model(bad)
    (bad / "config.json").write_text(json.dumps({**cfg, "colour": "red"}))
    with pytest.raises(CheckpointError, match="unknown model config field"):
        load_model(bad)


def test_cli_generate(model_dir):
    from typer.testing import CliRunner

    from murmur.cli import app

    runner = CliRunner()
    args = ["generate", "--model", str(model_dir), "--max-tokens", "6", "--temperature", "0"]
    a = runner.invoke(app, [*args, "just had"])
    assert a.exit_code == 0, a.output
    assert a.stdout.startswith("just had")
    b = runner.invoke(app, args, input="just had\n")  # prompt from stdin
    assert b.exit_code == 0 and b.stdout == a.stdout
    c = runner.invoke(app, [*args, "--top-p", "1.5", "x"])
    assert isinstance(c.exception, InputError) and "top_p" in str(c.exception)
