"""The app factory and ``murmur serve``: one FastAPI app over one engine, with room for other routers.

:func:`create_app` builds the shared state once (``state.py``), installs the error handlers
(``errors.py``), the response counters and the body-size limit (``middleware.py``), mounts the
server's own routers (``routes/openai.py`` behind the API key, ``routes/system.py`` open) and then
every extra router it is handed (search, ads, ...) behind the same API key. The server never
imports those packages: the command line builds their routers and passes them in. The contract a
mounted router follows is in docs/serving.md ("Mounting a router").
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles

from murmur.engine import Engine
from murmur.errors import InputError, MurmurError
from murmur.serve.errors import install_error_handlers
from murmur.serve.middleware import BodyLimit, CountResponses
from murmur.serve.protocol import ErrorResponse
from murmur.serve.routes import openai, system
from murmur.serve.state import ServerState, require_key

WEB_DIR = system.WEB_DIR
DEFAULT_MAX_BODY_BYTES = 8 * 2**20


def create_app(engine: Engine | None = None, *, loader: Callable[[], Engine] | None = None,
               model_name: str | None = None, api_key: str | None = None, routers: Sequence[APIRouter] = (),
               pages: Mapping[str, str | Path] | None = None,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, tools: Sequence[Any] = ()) -> FastAPI:
    """The server app.

    Pass a ready ``engine`` (started if it is not), or a ``loader`` that builds one: it runs in a
    background thread at startup, and generation routes answer 503 until it returns. ``routers``
    are mounted after the server's own, each behind the API key, under the app's error handlers,
    metrics and body limit. ``pages`` maps a URL prefix to a folder of static files (a feature's web
    page). ``tools`` are tools the server runs itself when the model calls them in a chat without
    client tools (each has ``name``, ``spec`` and is called with the arguments; see docs/chat.md). The
    app stops the engine on shutdown.
    """
    if (engine is None) == (loader is None):
        raise ValueError("pass exactly one of engine or loader")
    if max_body_bytes < 1:
        raise InputError("the request body limit must be positive", field="max_body_bytes")
    name = model_name or (engine.name if engine is not None else "murmur")
    state = ServerState(model_name=name, api_key=api_key or None, max_body_bytes=max_body_bytes,
                        tools={t.name: t for t in tools})

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if engine is not None:
            app.state.engine = engine.start()
        else:
            threading.Thread(target=load, args=(app,), name="murmur-load", daemon=True).start()
        yield
        with lock:
            closed.set()
            if app.state.engine is not None:
                app.state.engine.stop()

    lock, closed = threading.Lock(), threading.Event()

    def load(app: FastAPI) -> None:
        try:
            assert loader is not None
            built = loader()
            with lock:  # a model that finishes loading after shutdown is never started
                if not closed.is_set():
                    app.state.engine = built.start()
        except Exception as e:  # reported by /health and 503 bodies; the server keeps answering
            app.state.engine_error = f"{type(e).__name__}: {e}" if not isinstance(e, MurmurError) else str(e)

    app = FastAPI(title="murmur", summary="OpenAI-compatible API over a murmur model", lifespan=lifespan)
    app.state.murmur = state
    app.state.engine = None
    app.state.engine_error = None
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(CountResponses, counters=state.http)  # outermost: counts 413s too
    guarded = [openai.router, *routers]
    for router in guarded:
        app.include_router(router, dependencies=[Depends(require_key)])
    app.include_router(system.router)
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    for prefix, folder in (pages or {}).items():
        app.mount("/" + prefix.strip("/"), StaticFiles(directory=folder, html=True), name=prefix.strip("/"))
    # the chat page links to every mounted page (routes/system.py renders them into its sidebar)
    app.state.pages = [("/" + prefix.strip("/") + "/", page_title(folder, prefix))
                       for prefix, folder in (pages or {}).items()]
    guarded_paths = {route.path for router in guarded for route in router.routes}
    app.openapi = lambda: _openapi(app, guarded_paths)  # type: ignore[method-assign]
    return app


def page_title(folder: str | Path, prefix: str) -> str:
    """A mounted page's name for a link: its index.html ``<title>`` less a leading "murmur", else its prefix."""
    import html
    import re

    try:
        text = (Path(folder) / "index.html").read_text(encoding="utf-8", errors="replace")[:4096]
    except OSError:
        text = ""
    m = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
    title = re.sub(r"^murmur\s+", "", html.unescape(m.group(1)).strip(), flags=re.IGNORECASE) if m else ""
    title = title or prefix.strip("/")
    return title[:1].upper() + title[1:]


def _openapi(app: FastAPI, guarded: set[str]) -> dict[str, Any]:
    """The OpenAPI schema as the server behaves: bad requests are 400 (not FastAPI's 422), guarded
    routes may answer 401, any body may be refused with 413, and every error has the OpenAI shape."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("ErrorResponse", ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}"))
    for sub, sub_schema in ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}").get(
            "$defs", {}).items():
        components.setdefault(sub, sub_schema)
    components["ErrorResponse"].pop("$defs", None)
    error = {"description": "Error", "content": {"application/json": {"schema": {
        "$ref": "#/components/schemas/ErrorResponse"}}}}
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for path, ops in schema.get("paths", {}).items():
        for method, op in ops.items():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            if op.get("parameters") or op.get("requestBody"):
                responses.setdefault("400", error)
            if method in ("post", "put", "patch"):
                responses.setdefault("413", error)
            if path in guarded:
                responses.setdefault("401", error)
            responses.setdefault("500", error)
    app.openapi_schema = schema
    return schema


def check_model_dir(model_dir: Path) -> None:
    """The cheap checks before anything is printed: a model directory with a readable config."""
    from murmur.modeldir import CONFIG_FILE, MODEL_FILE, TOKENIZER_DIR, read_model_config

    if not model_dir.is_dir():
        raise InputError("model directory not found", model_dir)
    missing = [n for n in (MODEL_FILE, CONFIG_FILE, f"{TOKENIZER_DIR}/tokenizer.json") if not (model_dir / n).is_file()]
    if missing:
        raise InputError(f"not a murmur model directory (no {', '.join(missing)}); pass the run directory of a "
                         "finished `murmur train` or `murmur sft`", model_dir)
    read_model_config(model_dir / CONFIG_FILE)


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a MurmurError saying why not (port in use, bad host)."""
    if not 0 <= port <= 65535:
        raise InputError(f"must be between 0 and 65535 (got {port})", field="port")
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    except OSError as e:
        raise MurmurError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise MurmurError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def serve(model_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          max_batch: int = 32, max_queue: int = 256, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
          routers: Sequence[APIRouter] = (), pages: Mapping[str, str | Path] | None = None,
          announce: Callable[[str], None] = print, tools: Sequence[Any] = ()) -> None:
    """Check the model directory and the port, then load the model in the background and serve it
    until interrupted. The API key is never printed."""
    import uvicorn

    model_dir = Path(model_dir)
    check_model_dir(model_dir)
    sock = listen(host, port)
    name = model_dir.resolve().name
    app = create_app(loader=lambda: Engine.from_run_dir(model_dir, max_batch=max_batch, max_queue=max_queue,
                                                        name=name),
                     model_name=name, api_key=api_key, routers=routers, pages=pages, max_body_bytes=max_body_bytes,
                     tools=tools)
    bound = sock.getsockname()[1]
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    base = f"http://{shown}:{bound}"
    auth = " -H \"Authorization: Bearer $MURMUR_API_KEY\"" if api_key else ""
    payload = json.dumps({"model": name, "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 64})
    announce(f"murmur: serving {name} on {base}  (web chat: {base}/ , metrics: {base}/metrics)"
             + ("; API key required" if api_key else ""))
    announce(f"try: curl {base}/v1/chat/completions -H 'Content-Type: application/json'{auth} -d '{payload}'")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
