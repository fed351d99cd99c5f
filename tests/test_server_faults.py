"""The server under hostile input: every bad field is a 400 naming it, no request affects another's
stream, a 500 carries no traceback, large bodies are capped and never stall /health, and
`murmur serve` checks before it prints and never prints the key."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from serve_helpers import ServerThread, make_tokenizer, micro_model

from murmur.engine import Engine, SamplingParams
from murmur.serve.app import create_app

KEY = "sk-faults"
AUTH = {"Authorization": f"Bearer {KEY}"}
HELLO = [{"role": "user", "content": "Hello there!"}]
CHAT, TEXT = "/v1/chat/completions", "/v1/completions"


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return make_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def server(tok):
    engine = Engine(micro_model(tok.vocab_size), tok, max_batch=8, max_queue=64, name="m")
    with ServerThread(create_app(engine, api_key=KEY, max_body_bytes=256 * 1024)) as url:
        yield url, engine


def chat(**fields) -> dict:
    return {"messages": HELLO, "max_tokens": 4, **fields}


def text(**fields) -> dict:
    return {"prompt": "hello", "max_tokens": 4, **fields}


# (route, body, the param the error must name); every one is a 400 with an OpenAI error body.
BAD = [
    (CHAT, chat(top_k=1e30), "top_k"),
    (CHAT, chat(top_k=-2), "top_k"),
    (CHAT, chat(seed=2**64), "seed"),
    (CHAT, chat(seed=-(2**63) - 1), "seed"),
    (TEXT, {"prompt": [-1, 5]}, "prompt"),
    (TEXT, {"prompt": [5, 10**30]}, "prompt"),
    (TEXT, {"prompt": [5, 999_999]}, "prompt"),
    (TEXT, {"prompt": []}, "prompt"),
    (TEXT, {"prompt": "a\ud800b"}, "prompt"),
    (CHAT, {"messages": [{"role": "user", "content": "a\ud800b"}]}, "messages[0].content"),
    (CHAT, chat(stop_token_ids=[-1]), "stop_token_ids"),
    (CHAT, chat(stop_token_ids=[10**6]), "stop_token_ids"),
    (CHAT, chat(temperature=-0.1), "temperature"),
    (CHAT, chat(temperature=2.5), "temperature"),
    (CHAT, chat(temperature="hot"), "temperature"),
    (CHAT, chat(top_p=0), "top_p"),
    (CHAT, chat(top_p=1.5), "top_p"),
    (CHAT, chat(min_p=2), "min_p"),
    (CHAT, chat(n=0), "n"),
    (CHAT, chat(n=17), "n"),
    (CHAT, chat(max_tokens=0), "max_tokens"),
    (CHAT, chat(max_tokens=1e30), "max_tokens"),
    (CHAT, chat(max_completion_tokens=-1), "max_completion_tokens"),
    (CHAT, chat(max_tokens=10**6), "max_tokens"),
    (CHAT, chat(frequency_penalty=3), "frequency_penalty"),
    (CHAT, chat(presence_penalty=-3), "presence_penalty"),
    (CHAT, chat(repetition_penalty=0), "repetition_penalty"),
    (CHAT, chat(repetition_penalty=1e9), "repetition_penalty"),
    (CHAT, chat(logprobs=True), "logprobs"),
    (CHAT, chat(stop=["a", "b", "c", "d", "e"]), "stop"),
    (CHAT, chat(stop=""), "stop"),
    (CHAT, chat(stream="maybe"), "stream"),
    (CHAT, {"messages": []}, "messages"),
    (CHAT, {"max_tokens": 4}, "messages"),
    (CHAT, {"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
    (CHAT, {"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    (CHAT, {"messages": [{"role": "user", "content": "word " * 5000}]}, "messages"),
    (TEXT, text(prompt="word " * 5000), "prompt"),
    (TEXT, text(stream=True, prompt=["a", "b"]), "prompt"),
]
RAW = [  # bodies that are not a JSON object of the right shape
    (CHAT, b"{nope"), (CHAT, b""), (CHAT, b"[1, 2]"), (CHAT, b'{"messages": NaN}'),
    (CHAT, b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}'),
    (CHAT, b'{"messages": [{"role": "user", "content": "hi"}], "top_p": Infinity}'),
    (TEXT, b'{"prompt": "a", "max_tokens": 1' + b"0" * 5000 + b"}"),
    (CHAT, b"[" * 100_000 + b"]" * 100_000),
]


def post(url: str, body: dict, headers: dict | None = None) -> httpx.Response:
    """POST ``body`` as JSON with non-ASCII escaped, so a lone surrogate travels as ``\\ud800``."""
    return httpx.post(url, content=json.dumps(body).encode(), timeout=60,
                      headers={**(headers or {}), "Content-Type": "application/json"})


def assert_error(r: httpx.Response, status: int, param: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert "Traceback" not in r.text and ".py" not in r.text
    if param is not None:
        assert err["param"] == param, err
    return err


@pytest.mark.parametrize(("route", "body", "param"), BAD, ids=[f"{r[0][4:]}-{r[2]}-{i}" for i, r in enumerate(BAD)])
def test_bad_field_is_a_400_naming_it(server, route, body, param):
    url, _ = server
    assert_error(post(url + route, body, AUTH), 400, param)


@pytest.mark.parametrize(("route", "raw"), RAW, ids=[f"raw{i}" for i in range(len(RAW))])
def test_bad_body_is_a_400(server, route, raw):
    url, _ = server
    r = httpx.post(url + route, content=raw, headers={**AUTH, "Content-Type": "application/json"}, timeout=30)
    assert_error(r, 400)


def test_bodies_over_the_limit_are_413_and_other_errors_keep_their_shape(server):
    url, _ = server
    big = json.dumps(chat(messages=[{"role": "user", "content": "x" * 300_000}])).encode()
    assert_error(httpx.post(url + CHAT, content=big, headers={**AUTH, "Content-Type": "application/json"}), 413)

    def chunks():  # no Content-Length: the limit holds on the bytes read
        for _ in range(100):
            yield b" " * 4096

    assert_error(httpx.post(url + CHAT, content=chunks(), headers={**AUTH, "Content-Type": "application/json"}), 413)
    assert_error(httpx.get(url + "/v1/nothing", headers=AUTH), 404)
    assert_error(httpx.delete(url + CHAT, headers=AUTH), 405)
    assert_error(httpx.get(url + "/v1/models/other", headers=AUTH), 404, "model")
    assert_error(httpx.post(url + CHAT, json=chat(), headers={"Authorization": "Bearer nope"}), 401)


@pytest.mark.slow
def test_a_bad_request_never_affects_other_streams(server, tok):
    """Concurrent streams while bad requests (every case of the table, twice) hit the same server:
    every stream completes with the tokens it has alone."""
    url, engine = server
    body = chat(max_tokens=24, temperature=0, ignore_eos=True, stream=True,
                stream_options={"include_usage": True})
    alone = httpx.post(url + CHAT, json={**body, "stream": False}, headers=AUTH, timeout=60).json()
    want = alone["choices"][0]["message"]["content"]

    def stream(_: int) -> tuple[str, list[str], int]:
        parts, reasons, usage = [], [], 0
        with httpx.stream("POST", url + CHAT, json=body, headers=AUTH, timeout=60) as r:
            assert r.status_code == 200
            lines = [line for line in r.iter_lines() if line.startswith("data: ")]
        assert lines[-1] == "data: [DONE]"
        for line in lines[:-1]:
            chunk = json.loads(line[6:])
            assert "error" not in chunk, chunk
            for c in chunk["choices"]:
                parts.append(c["delta"].get("content", ""))
                reasons.append(c["finish_reason"])
            usage = (chunk.get("usage") or {}).get("completion_tokens", usage)
        return "".join(parts), [x for x in reasons if x], usage

    def bad(i: int) -> int:
        route, b, _ = BAD[i % len(BAD)]
        return post(url + route, b, AUTH).status_code

    with ThreadPoolExecutor(16) as pool:
        streams = [pool.submit(stream, i) for i in range(8)]
        bads = [pool.submit(bad, i) for i in range(2 * len(BAD))]
        results = [s.result() for s in streams]
        statuses = [b.result() for b in bads]
    assert statuses == [400] * len(statuses)
    assert all(r == (want, ["length"], 24) for r in results), results
    assert engine.running == 0


@pytest.mark.slow
def test_a_large_body_does_not_stall_health(tok):
    """A body under the cap whose text takes seconds to tokenize: /health answers meanwhile."""
    engine = Engine(micro_model(tok.vocab_size, max_seq_len=1 << 20), tok, max_batch=1, name="big")
    engine.max_token_bytes = None  # no size shortcut: tokenize all of it
    with ServerThread(create_app(engine, max_body_bytes=16 * 2**20)) as url:
        big = {"messages": [{"role": "user", "content": "the quick brown fox " * 300_000}], "max_tokens": 1}
        slow = threading.Thread(target=lambda: httpx.post(url + CHAT, json=big, timeout=120))
        t0 = time.perf_counter()
        slow.start()
        waits = []
        while slow.is_alive():
            t = time.perf_counter()
            assert httpx.get(url + "/health", timeout=30).status_code == 200
            waits.append(time.perf_counter() - t)
            time.sleep(0.02)
        took = time.perf_counter() - t0
    # The big request was slow, and /health kept answering meanwhile: many answers, the typical one
    # quick, the slowest a part of that time (a blocked loop gives one or two answers, each about
    # `took`; the bounds allow for a machine loaded by other work).
    print(f"/health while a {len(big['messages'][0]['content']) // 2**20} MiB prompt was tokenized for {took:.1f} s: "
          f"{len(waits)} answers, slowest {max(waits):.2f} s")
    assert took > 0.5 and len(waits) >= 5, (took, len(waits))
    assert sorted(waits)[len(waits) // 2] < 0.25, sorted(waits)
    assert max(waits) < max(2.0, took / 2), (max(waits), took)


def test_an_oversized_text_is_refused_before_tokenizing(server):
    url, _ = server
    t = time.perf_counter()
    err = assert_error(httpx.post(url + CHAT, json=chat(messages=[{"role": "user", "content": "x" * 200_000}]),
                                  headers=AUTH), 400, "messages")
    assert err["code"] == "context_length_exceeded" and time.perf_counter() - t < 2


def test_max_tokens_is_fitted_only_when_not_set(server):
    url, engine = server
    from murmur.engine import post_prompt

    prompt = "hello"
    while len(post_prompt(engine.tokenizer, prompt + " hello")) < engine.max_len - 4:
        prompt += " hello"  # leaves fewer than 16 tokens of the 128-token context
    r = httpx.post(url + TEXT, json={"prompt": prompt, "ignore_eos": True, "stop_token_ids": []}, headers=AUTH)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["usage"]["prompt_tokens"] + out["usage"]["completion_tokens"] == engine.max_len
    assert out["choices"][0]["finish_reason"] == "length"
    r = httpx.post(url + TEXT, json={"prompt": prompt, "max_tokens": 16}, headers=AUTH)
    assert assert_error(r, 400, "max_tokens")["code"] == "context_length_exceeded"


def test_a_failing_logits_processor_ends_only_its_request(tok):
    model = micro_model(tok.vocab_size)

    def boom(prompt, output, logits):
        if len(output) == 2:
            raise ValueError("no")
        return logits

    def ban_first(prompt, output, logits):
        logits[:10] = float("-inf")
        return logits

    with Engine(model, tok, max_batch=4) as engine:
        prompt = [tok.doc_id, *tok.encode("hello")]
        good = engine.submit(prompt, SamplingParams(temperature=0, max_tokens=10, ignore_eos=True))
        bad = engine.submit(prompt, SamplingParams(temperature=0, max_tokens=10, ignore_eos=True, logits_processor=boom))
        banned = engine.submit(prompt, SamplingParams(temperature=0, max_tokens=10, ignore_eos=True,
                                                      logits_processor=ban_first))
        with pytest.raises(RuntimeError, match="logits processor failed: ValueError"):
            bad.result(timeout=20)
        assert good.result(timeout=20).completion_tokens == 10
        assert all(t >= 10 for t in banned.result(timeout=20).token_ids)


def test_an_engine_bug_fails_its_requests_without_a_traceback(tok, monkeypatch):
    engine = Engine(micro_model(tok.vocab_size), tok, max_batch=2, name="m")
    with ServerThread(create_app(engine)) as url:
        real = engine._forward

        def broken(*args, **kwargs):
            raise RuntimeError("kaboom in /secret/path.py")

        monkeypatch.setattr(engine, "_forward", broken)
        r = httpx.post(url + CHAT, json=chat())
        assert_error(r, 500)
        assert "kaboom" not in r.text
        with httpx.stream("POST", url + CHAT, json=chat(stream=True)) as s:
            body = "".join(s.iter_lines())
        assert "kaboom" not in body and '"error"' in body and "[DONE]" not in body
        monkeypatch.setattr(engine, "_forward", real)
        assert httpx.post(url + CHAT, json=chat()).status_code == 200  # and it keeps serving


def test_cli_serve_checks_before_printing(tmp_path, tok):
    from typer.testing import CliRunner

    from murmur.cli import app
    from murmur.errors import MurmurError
    from murmur.train.checkpoint import save_inference_model

    runner = CliRunner()
    r = runner.invoke(app, ["serve", "--model", str(tmp_path / "nope"), "--api-key", KEY])
    assert isinstance(r.exception, MurmurError) and "not found" in str(r.exception)
    assert "serving" not in r.output and KEY not in r.output
    (tmp_path / "empty").mkdir()
    r = runner.invoke(app, ["serve", "--model", str(tmp_path / "empty")])
    assert isinstance(r.exception, MurmurError) and "not a murmur model directory" in str(r.exception)
    model = micro_model(tok.vocab_size)
    run = save_inference_model(tmp_path / "run", model, model.cfg, tok.path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = runner.invoke(app, ["serve", "--model", str(run), "--port", str(port), "--api-key", KEY])
    assert isinstance(r.exception, MurmurError) and f"cannot listen on 127.0.0.1:{port}" in str(r.exception)
    assert "serving" not in r.output and KEY not in r.output
    r = runner.invoke(app, ["serve", "--model", str(run), "--max-body-mb", "0"])
    assert isinstance(r.exception, MurmurError) and "max-body-mb" in str(r.exception)
