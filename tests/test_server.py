"""The OpenAI-compatible server, called with the official openai client over a real uvicorn server."""

from __future__ import annotations

import json
import threading
import time

import httpx
import openai
import pytest
from serve_helpers import ServerThread, make_tokenizer, micro_model

from murmur.chat.template import render
from murmur.engine import Engine
from murmur.serve.app import create_app

KEY = "sk-test-murmur"


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return make_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def server(tok):
    engine = Engine(micro_model(tok.vocab_size), tok, max_batch=4, max_queue=8, name="murmur-micro")
    with ServerThread(create_app(engine, api_key=KEY)) as url:
        yield url, engine


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[0] + "/v1", api_key=KEY, max_retries=0, timeout=30)


HELLO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there!"}]


def test_models_list(client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["murmur-micro"]
    assert models.data[0].object == "model" and models.data[0].owned_by == "murmur" and models.data[0].created > 0


def test_chat_completion(client, tok):
    out = client.chat.completions.create(model="murmur-micro", messages=HELLO, max_tokens=12, temperature=0)
    assert out.object == "chat.completion" and out.id.startswith("chatcmpl-") and out.model == "murmur-micro"
    choice = out.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason in ("stop", "length")
    assert out.usage.prompt_tokens == len(render(tok, HELLO))
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
    assert 1 <= out.usage.completion_tokens <= 12


def test_chat_stream_with_usage_matches_non_stream(client):
    args = dict(model="murmur-micro", messages=HELLO, max_tokens=20, temperature=0,
                extra_body={"ignore_eos": True, "stop_token_ids": []})
    whole = client.chat.completions.create(**args)
    chunks = list(client.chat.completions.create(**args, stream=True, stream_options={"include_usage": True}))
    assert len({(c.id, c.created) for c in chunks}) == 1
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    body, usage = chunks[:-1], chunks[-1]
    assert [c.choices[0].finish_reason for c in body] == [None] * (len(body) - 1) + ["length"]
    assert usage.choices == [] and usage.usage.completion_tokens == 20 == whole.usage.completion_tokens
    assert usage.usage.prompt_tokens == whole.usage.prompt_tokens
    assert "".join(c.choices[0].delta.content or "" for c in body) == whole.choices[0].message.content


def test_completions_and_n_choices(client):
    out = client.completions.create(model="murmur-micro", prompt="the quick brown", max_tokens=8, temperature=0.9,
                                    seed=3, n=2)
    assert out.object == "text_completion" and len(out.choices) == 2
    assert out.usage.completion_tokens <= 16
    again = client.completions.create(model="murmur-micro", prompt="the quick brown", max_tokens=8, temperature=0.9,
                                      seed=3, n=2)
    assert [c.text for c in again.choices] == [c.text for c in out.choices]  # seeded: reproducible
    stream = client.completions.create(model="murmur-micro", prompt="hello", max_tokens=6, temperature=0,
                                       stream=True)
    pieces = list(stream)
    assert pieces[-1].choices[0].finish_reason in ("stop", "length")
    plain = client.completions.create(model="murmur-micro", prompt="hello", max_tokens=6, temperature=0)
    assert "".join(p.choices[0].text for p in pieces) == plain.choices[0].text


def test_logit_bias_through_the_openai_client(server, client, tok):
    plain = client.completions.create(model="murmur-micro", prompt="cats and dogs", max_tokens=6, temperature=0)
    first = tok.encode(plain.choices[0].text)[0]
    banned = client.completions.create(model="murmur-micro", prompt="cats and dogs", max_tokens=6, temperature=0,
                                       logit_bias={str(first): -100})
    assert tok.encode(banned.choices[0].text)[:1] != [first]
    chat = client.chat.completions.create(model="murmur-micro", messages=HELLO, max_tokens=4, temperature=0,
                                          logit_bias={str(first): 100})
    assert tok.encode(chat.choices[0].message.content) == [first] * 4
    for bias, says in [({"x": 1}, "token ids"), ({"5": 101}, "between -100 and 100"),
                       ({str(i): 1 for i in range(301)}, "at most 300"), ({str(tok.vocab_size + 1): 1}, "token ids")]:
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model="murmur-micro", messages=HELLO, max_tokens=4, logit_bias=bias)
        assert e.value.body["param"] == "logit_bias" and says in e.value.body["message"]


def test_errors_map_to_openai_exceptions(server, client):
    url, _ = server
    bad = openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="murmur-micro", messages=HELLO, temperature=5)
    assert e.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="murmur-micro", messages=HELLO, stop=["a", "b", "c", "d", "e"])
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="murmur-micro", messages=[{"role": "robot", "content": "hi"}])
    assert e.value.body["param"] == "messages[0].role"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="murmur-micro", messages=[{"role": "user", "content": "word " * 200}])
    assert e.value.status_code == 400 and e.value.body["code"] == "context_length_exceeded"
    assert e.value.body["param"] == "messages" and "maximum context length is 128" in e.value.body["message"]
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="murmur-micro", prompt="hi", max_tokens=500)
    assert e.value.body["param"] == "max_tokens" and e.value.body["code"] == "context_length_exceeded"
    # The raw shape, for clients that are not the openai package.
    r = httpx.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                   json={"messages": HELLO, "top_p": 0})
    assert r.status_code == 400 and set(r.json()["error"]) == {"message", "type", "param", "code"}
    r = httpx.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, content=b"{nope")
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.get(url + "/v1/models")
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


def test_disconnect_frees_the_row_and_metrics(server):
    url, engine = server
    headers = {"Authorization": f"Bearer {KEY}"}
    body = {"messages": HELLO, "max_tokens": 100, "stream": True, "ignore_eos": True, "temperature": 0}
    with httpx.stream("POST", url + "/v1/chat/completions", headers=headers, json=body, timeout=30) as r:
        lines = r.iter_lines()
        first = json.loads(next(line for line in lines if line.startswith("data: "))[6:])
        assert first["choices"][0]["delta"]["role"] == "assistant"
    deadline = time.time() + 10
    while engine.running and time.time() < deadline:
        time.sleep(0.02)
    assert engine.running == 0
    text = httpx.get(url + "/metrics").text
    assert 'murmur_requests_total{finish_reason="cancelled"}' in text
    assert "murmur_time_to_first_token_seconds_bucket{le=\"+Inf\"}" in text
    assert 'murmur_http_requests_total{route="/v1/chat/completions",status="200"}' in text
    assert "murmur_queue_depth 0" in text and "murmur_running_requests 0" in text
    assert httpx.get(url + "/health").json()["status"] == "ok"


def test_queue_full_is_429(tok):
    engine = Engine(micro_model(tok.vocab_size, max_seq_len=4096), tok, max_batch=1, max_queue=0, name="m")
    with ServerThread(create_app(engine)) as url:
        body = {"messages": HELLO, "max_tokens": 4000, "stream": True, "ignore_eos": True}
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=30) as r:
            lines = r.iter_lines()  # keep a reference: a collected iterator closes the connection
            next(lines)  # the first request holds the only row
            busy = httpx.post(url + "/v1/chat/completions", json={**body, "stream": False})
            assert busy.status_code == 429 and busy.json()["error"]["code"] == "queue_full"
            assert busy.headers["retry-after"] == "1"


def test_503_while_loading(tok):
    ready = threading.Event()

    def loader() -> Engine:
        ready.wait(20)
        return Engine(micro_model(tok.vocab_size), tok, name="slow")

    with ServerThread(create_app(loader=loader, model_name="slow")) as url:
        r = httpx.post(url + "/v1/chat/completions", json={"messages": HELLO, "max_tokens": 2})
        assert r.status_code == 503 and r.json()["error"]["code"] == "model_loading"
        assert httpx.get(url + "/health").status_code == 503
        ready.set()
        deadline = time.time() + 10
        while httpx.get(url + "/health").status_code != 200 and time.time() < deadline:
            time.sleep(0.02)
        r = httpx.post(url + "/v1/chat/completions", json={"messages": HELLO, "max_tokens": 2})
        assert r.status_code == 200 and r.json()["model"] == "slow"


@pytest.mark.slow
def test_cli_serve_loads_a_model_directory(tmp_path, tok):
    import socket
    import subprocess
    import sys

    from murmur.train.checkpoint import save_inference_model

    model = micro_model(tok.vocab_size)
    run = save_inference_model(tmp_path / "run", model, model.cfg, tok.path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "murmur.cli", "serve", "--model", str(run), "--port", str(port),
                             "--api-key", KEY], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.1)
        client = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
        assert [m.id for m in client.models.list().data] == ["run"]
        out = client.chat.completions.create(model="run", messages=HELLO, max_tokens=3)
        assert out.usage.completion_tokens <= 3
    finally:
        proc.terminate()
        printed = proc.communicate(timeout=20)[0]
    assert f"web chat: {url}/" in printed and f"curl {url}/v1/chat/completions" in printed
    assert KEY not in printed and "$MURMUR_API_KEY" in printed
