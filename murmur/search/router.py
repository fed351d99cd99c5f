"""The search HTTP routes: a plain FastAPI ``APIRouter`` that ``murmur serve --index`` mounts.

- ``GET /v1/search?q=...&mode=...&k=...&lang=&author=&hashtag=&since=&until=&min_likes=&sort=``
  and ``POST /v1/search`` with the same fields as a JSON body: ``{"object": "list", "data": [...]}``
- ``POST /v1/posts`` ``{"posts": [{post_id, author_id, created_at, text, ...}]}``: add posts (the
  post schema's fields; the language is identified when absent); searchable when it returns
- ``DELETE /v1/posts/{post_id}``: gone from every result when it returns
- ``POST /v1/embeddings`` (OpenAI shape) with the index's embedder
- ``GET /search/`` the search page (static files in ``murmur/search/web/``)

It never imports murmur.serve: bad input raises ``InputError`` with ``field`` naming the parameter,
and the app that mounts the router turns it into an OpenAI-style 400.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from murmur.engine.http import json_body
from murmur.errors import InputError
from murmur.search.index import SearchIndex
from murmur.search.retrieve import RetrieveConfig, make_request, result_list

WEB_DIR = Path(__file__).resolve().parent / "web"
PARAMS = ("q", "mode", "k", "lang", "author", "hashtag", "since", "until", "min_likes", "sort")
MAX_EMBED_INPUTS = 256


def _int(value: object, name: str) -> int | None:
    if value is None or isinstance(value, int) and not isinstance(value, bool):
        return value  # type: ignore[return-value]
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise InputError(f"{value!r} is not an integer", field=name)


def _request(params: dict[str, Any], cfg: RetrieveConfig):
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise InputError(f"unknown parameter(s) {', '.join(unknown)}; accepted: {', '.join(PARAMS)}",
                         field=unknown[0])
    for name in ("q", "mode", "lang", "author", "hashtag", "since", "until", "sort"):
        if params.get(name) is not None and not isinstance(params[name], str):
            raise InputError("must be a string", field=name)
    return make_request(params.get("q"), mode=params.get("mode") or "hybrid",
                        k=_int(params.get("k"), "k") if params.get("k") is not None else 10,
                        lang=params.get("lang"), author=params.get("author"), hashtag=params.get("hashtag"),
                        since=params.get("since"), until=params.get("until"),
                        min_likes=_int(params.get("min_likes"), "min_likes"),
                        sort=params.get("sort") or "relevance", cfg=cfg)


def build_router(index: SearchIndex, cfg: RetrieveConfig | None = None) -> APIRouter:
    """The routes over one open index (writable for the post routes)."""
    cfg = cfg or RetrieveConfig()
    router = APIRouter()
    threading.Thread(target=index.warm_up, name="search-warm-up", daemon=True).start()  # serve meanwhile

    def run(params: dict[str, Any]) -> dict[str, Any]:
        return result_list(index.search(_request(params, cfg), cfg))

    @router.get("/v1/search")
    async def search_get(request: Request) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for key, value in request.query_params.multi_items():
            if key in params:
                raise InputError("given more than once", field=key)
            params[key] = value
        return await run_in_threadpool(run, params)

    @router.post("/v1/search")
    async def search_post(request: Request) -> dict[str, Any]:
        body = await json_body(request)
        if not isinstance(body, dict):
            raise InputError("the body must be a JSON object", field="body")
        return await run_in_threadpool(run, body)

    @router.post("/v1/posts")
    async def add_posts(request: Request) -> dict[str, Any]:
        body = await json_body(request)
        if not isinstance(body, dict) or set(body) != {"posts"}:
            raise InputError('the body must be {"posts": [...]}', field="posts")
        result = await run_in_threadpool(index.add, body["posts"])
        return result.to_json()

    @router.delete("/v1/posts/{post_id}")
    async def delete_post(post_id: str) -> dict[str, Any]:
        if not await run_in_threadpool(index.delete, post_id):
            raise HTTPException(404, f"post {post_id!r} is not in the index")
        return {"id": post_id, "object": "post", "deleted": True}

    if index.embedder is not None:
        embedder = index.embedder

        @router.post("/v1/embeddings")
        async def embeddings(request: Request) -> dict[str, Any]:
            body = await json_body(request)
            if not isinstance(body, dict):
                raise InputError("the body must be a JSON object", field="body")
            inputs = body.get("input")
            if isinstance(inputs, str):
                inputs = [inputs]
            if not isinstance(inputs, list) or not inputs or not all(isinstance(x, str) and x for x in inputs):
                raise InputError("must be a non-empty string or a list of non-empty strings", field="input")
            if len(inputs) > MAX_EMBED_INPUTS:
                raise InputError(f"at most {MAX_EMBED_INPUTS} inputs a request", field="input")
            fmt = body.get("encoding_format", "float")
            if fmt not in ("float", "base64"):
                raise InputError(f"{fmt!r} is not 'float' or 'base64'", field="encoding_format")
            model = body.get("model") or embedder.name
            vecs = await run_in_threadpool(embedder.encode, inputs, "passage")
            data = []
            for i, v in enumerate(vecs):
                if fmt == "base64":
                    import base64

                    emb: Any = base64.b64encode(v.astype("<f4").tobytes()).decode("ascii")
                else:
                    emb = [float(x) for x in v]
                data.append({"object": "embedding", "index": i, "embedding": emb})
            tok = getattr(embedder, "tokenizer", None)
            tokens = sum(len(tok(x)["input_ids"]) if tok is not None else len(x.split()) for x in inputs)
            return {"object": "list", "data": data, "model": model,
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    return router
