"""A router from another package, mounted on the server: it gets the app's API key, error bodies,
metrics, body limit and engine, without importing murmur.serve (the contract in docs/serving.md)."""

from __future__ import annotations

from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from serve_helpers import ServerThread, make_tokenizer, micro_model

from murmur.engine import Engine, SamplingParams
from murmur.engine.http import current_engine
from murmur.errors import InputError
from murmur.serve.app import create_app

KEY = "sk-plugin"


class Query(BaseModel):
    q: str = Field(min_length=1)
    k: int = Field(5, ge=1, le=100)


def build_router() -> APIRouter:
    """What murmur.search.router.build_router does, in miniature."""
    router = APIRouter(prefix="/v1/search")

    @router.post("")
    def search(body: Query, engine: Annotated[Engine, Depends(current_engine)]) -> dict:
        if body.q == "boom":
            raise RuntimeError("a bug with a secret path /home/x/secret.py")
        if body.q.startswith("#"):
            raise InputError("hashtags are not searchable yet", field="q")
        ids = engine.tokenizer.encode(body.q)
        answer = engine.generate([engine.tokenizer.doc_id, *ids], SamplingParams(temperature=0, max_tokens=3))
        return {"q": body.q, "k": body.k, "answer_tokens": answer.completion_tokens}

    @router.post("/answer")
    async def answer(body: Query, engine: Annotated[Engine, Depends(current_engine)]) -> dict:
        prompt = [engine.tokenizer.doc_id, *engine.tokenizer.encode(body.q)]
        out = await engine.agenerate(prompt, SamplingParams(temperature=0, max_tokens=body.k, ignore_eos=True))
        return {"text": out.text, "tokens": out.completion_tokens}

    return router


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tok = make_tokenizer(tmp_path_factory.mktemp("tok"))
    engine = Engine(micro_model(tok.vocab_size), tok, max_batch=2, name="m")
    web = tmp_path_factory.mktemp("web")
    (web / "index.html").write_text("<h1>search</h1>")
    app = create_app(engine, api_key=KEY, routers=[build_router()], pages={"search": web}, max_body_bytes=4096)
    with ServerThread(app) as url:
        yield url


def test_a_mounted_router_shares_auth_errors_metrics_and_limits(server):
    url, auth = server, {"Authorization": f"Bearer {KEY}"}
    ok = httpx.post(url + "/v1/search", json={"q": "coffee"}, headers=auth)
    assert ok.status_code == 200 and ok.json()["answer_tokens"] >= 1
    r = httpx.post(url + "/v1/search/answer", json={"q": "coffee", "k": 4}, headers=auth)
    assert r.status_code == 200 and r.json()["tokens"] == 4
    # the app's auth
    r = httpx.post(url + "/v1/search", json={"q": "coffee"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    # InputError(field=...) -> 400 with param; validation -> 400 (not 422) with param
    r = httpx.post(url + "/v1/search", json={"q": "#tag"}, headers=auth)
    assert r.status_code == 400 and r.json()["error"]["param"] == "q" and "hashtags" in r.json()["error"]["message"]
    r = httpx.post(url + "/v1/search", json={"q": "x", "k": 1e30}, headers=auth)
    assert r.status_code == 400 and r.json()["error"]["param"] == "k"
    # a bug: 500 with an OpenAI body and no traceback or path
    r = httpx.post(url + "/v1/search", json={"q": "boom"}, headers=auth)
    assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
    assert "secret" not in r.text and "Traceback" not in r.text
    # the body limit
    r = httpx.post(url + "/v1/search", json={"q": "x" * 5000}, headers=auth)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    # the metrics count the router's responses
    text = httpx.get(url + "/metrics").text
    for status in (200, 400, 401, 500):
        assert f'murmur_http_requests_total{{route="/v1/search",status="{status}"}}' in text
    # the feature's web page is served by the same app
    page = httpx.get(url + "/search/")
    assert page.status_code == 200 and page.text == "<h1>search</h1>"
    # and the schema documents it as the server behaves
    op = httpx.get(url + "/openapi.json").json()["paths"]["/v1/search"]["post"]["responses"]
    assert {"200", "400", "401", "413", "500"} <= set(op) and "422" not in op


def test_a_router_answers_503_while_the_model_loads(tmp_path):
    import threading

    tok = make_tokenizer(tmp_path / "tok")
    ready = threading.Event()

    def loader() -> Engine:
        ready.wait(20)
        return Engine(micro_model(tok.vocab_size), tok, name="slow")

    with ServerThread(create_app(loader=loader, model_name="slow", routers=[build_router()])) as url:
        r = httpx.post(url + "/v1/search", json={"q": "coffee"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "model_loading"
        ready.set()
