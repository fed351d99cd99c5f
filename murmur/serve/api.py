"""The OpenAI-compatible HTTP API (FastAPI) over the engine, plus health, metrics and the web chat.

Routes: ``GET /v1/models``, ``POST /v1/chat/completions``, ``POST /v1/completions`` (non-streaming
and server-sent events), ``GET /health``, ``GET /metrics`` (Prometheus), ``GET /`` (the web chat).
The engine is shared state on ``app.state`` handed to routes by dependencies, never a global; while
the model loads, generation routes answer 503. Every error is OpenAI-shaped,
``{"error": {"message", "type", "param", "code"}}``: 400 for bad requests (validation errors
included), 401 for a missing or wrong API key, 404 for an unknown model, 429 when the queue is full,
503 while loading.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer
from starlette.exceptions import HTTPException as StarletteHTTPException

from murmur.chat.template import render
from murmur.errors import InputError, MurmurError
from murmur.serve.engine import ContextLengthError, Engine, EngineClosedError, Event, QueueFullError
from murmur.serve.engine import Request as EngineRequest
from murmur.serve.metrics import HttpCounters, render_metrics
from murmur.serve.sampling import SamplingParams

WEB_DIR = Path(__file__).parent / "web"


# ---------------------------------------------------------------- errors
class APIError(Exception):
    """An error answered as ``{"error": {...}}`` with an HTTP status."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


def error_response(err: APIError) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(message=err.message, type=err.type, param=err.param, code=err.code))
    headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
    if err.status in (429, 503):
        headers = {"Retry-After": "1"}
    return JSONResponse(body.model_dump(), status_code=err.status, headers=headers)


def from_murmur_error(e: MurmurError) -> APIError:
    if isinstance(e, ContextLengthError):
        return APIError(400, str(e), param=e.field, code="context_length_exceeded")
    if isinstance(e, InputError):
        return APIError(400, str(e), param=e.field, code="invalid_value")
    if isinstance(e, QueueFullError):
        return APIError(429, str(e), "rate_limit_error", code="queue_full")
    if isinstance(e, EngineClosedError):
        return APIError(503, str(e), "server_error", code="engine_stopped")
    return APIError(400, str(e))


def _loc(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or None


# ---------------------------------------------------------------- request and response models
class ContentPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant"]
    content: str | list[ContentPart] | None = None
    name: str | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class GenerationFields(BaseModel):
    """Sampling fields shared by chat and text completions (OpenAI's, plus vLLM's extras)."""

    model_config = ConfigDict(extra="ignore")
    model: str | None = Field(None, description="Model id from /v1/models (default: the served model).")
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=16)
    seed: int | None = None
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    top_k: int = Field(0, ge=-1)
    min_p: float = Field(0.0, ge=0.0, le=1.0)
    repetition_penalty: float = Field(1.0, gt=0.0, le=10.0)
    stop_token_ids: list[int] | None = None
    ignore_eos: bool = False
    logprobs: bool | int | None = None
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _stop(cls, v: str | list[str] | None) -> list[str] | None:
        if v is None:
            return None
        stops = [v] if isinstance(v, str) else v
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop sequences must not be empty")
        return stops

    @field_validator("logprobs")
    @classmethod
    def _logprobs(cls, v: bool | int | None) -> None:
        if v:
            raise ValueError("logprobs are not supported")
        return None

    def sampling(self, max_tokens: int | None) -> SamplingParams:
        return SamplingParams(
            max_tokens=max_tokens, temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p, top_k=self.top_k, min_p=self.min_p, seed=self.seed,
            stop=list(self.stop or []), stop_token_ids=self.stop_token_ids, frequency_penalty=self.frequency_penalty,
            presence_penalty=self.presence_penalty, repetition_penalty=self.repetition_penalty,
            ignore_eos=self.ignore_eos)


class ChatCompletionRequest(GenerationFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)


class CompletionRequest(GenerationFields):
    prompt: str | list[str] | list[int] = Field(description="Text, a list of texts, or token ids.")
    echo: bool = False
    max_tokens: int | None = Field(16, ge=1)


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length"] | None
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class Delta(BaseModel):
    """A streamed change: ``role`` on the first chunk, then ``content``; unset fields are left out."""

    role: Literal["assistant"] | None = None
    content: str | None = None

    @model_serializer(mode="wrap")
    def _drop_none(self, handler: Any) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class ChunkChoice(BaseModel):
    index: int
    delta: Delta
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class TextChoice(BaseModel):
    index: int
    text: str
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class TextCompletion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "murmur"
    max_model_len: int | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(BaseModel):
    status: Literal["ok", "loading", "failed"]
    model: str
    detail: str | None = None


# ---------------------------------------------------------------- shared state and dependencies
@dataclass
class ServerState:
    """What the routes share: the engine (None while loading), the key, counters."""

    model_name: str
    api_key: str | None = None
    engine: Engine | None = None
    load_error: str | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    http: HttpCounters = field(default_factory=HttpCounters)


def get_state(request: Request) -> ServerState:
    return request.app.state.murmur


State = Annotated[ServerState, Depends(get_state)]


def require_key(request: Request, state: State) -> None:
    if state.api_key is None:
        return
    auth = request.headers.get("authorization", "")
    scheme, _, key = auth.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip().encode(), state.api_key.encode()):
        raise APIError(401, "invalid or missing API key: send 'Authorization: Bearer <key>'",
                       "authentication_error", code="invalid_api_key")


def get_engine(state: State) -> Engine:
    if state.engine is None:
        if state.load_error:
            raise APIError(503, f"the model failed to load: {state.load_error}", "server_error", code="load_failed")
        raise APIError(503, "the model is still loading; retry in a moment", "server_error", code="model_loading")
    return state.engine


EngineDep = Annotated[Engine, Depends(get_engine)]


def check_model(name: str | None, state: ServerState) -> str:
    if name is not None and name != state.model_name:
        raise APIError(404, f"the model {name!r} does not exist; this server serves {state.model_name!r}",
                       param="model", code="model_not_found")
    return state.model_name


# ---------------------------------------------------------------- generation helpers
def submit_all(engine: Engine, prompt: list[int], params: SamplingParams, n: int) -> list[EngineRequest]:
    """n requests for one prompt (seeds seed, seed+1, ... so the choices differ yet reproduce)."""
    reqs: list[EngineRequest] = []
    try:
        for i in range(n):
            p = params if params.seed is None or i == 0 else dataclasses.replace(params, seed=params.seed + i)
            reqs.append(engine.submit(prompt, p))
    except MurmurError:
        for r in reqs:
            r.cancel()
        raise
    return reqs


async def merged_events(reqs: list[EngineRequest]) -> AsyncIterator[tuple[int, Event]]:
    """Events of several requests as they come, tagged with the request's index."""
    if len(reqs) == 1:
        async for event in reqs[0].aevents():
            yield 0, event
        return
    queue: asyncio.Queue[tuple[int, Event] | None] = asyncio.Queue()

    async def pump(i: int, r: EngineRequest) -> None:
        async for event in r.aevents():
            await queue.put((i, event))
        await queue.put(None)

    tasks = [asyncio.create_task(pump(i, r)) for i, r in enumerate(reqs)]
    try:
        left = len(tasks)
        while left:
            item = await queue.get()
            if item is None:
                left -= 1
            else:
                yield item
    finally:
        for t in tasks:
            t.cancel()
        for r in reqs:
            r.cancel()


async def collect(reqs: list[EngineRequest], request: Request) -> list[tuple[str, str, int, int]]:
    """Wait for every request: (text, finish_reason, prompt_tokens, completion_tokens) each.

    If the client goes away meanwhile, the requests are cancelled and their rows freed.
    """
    texts: list[list[str]] = [[] for _ in reqs]
    last: list[Event | None] = [None] * len(reqs)

    async def gather() -> None:
        async for i, event in merged_events(reqs):
            texts[i].append(event.text)
            if event.finish_reason is not None:
                last[i] = event

    async def watch() -> None:
        while not await request.is_disconnected():
            await asyncio.sleep(0.25)

    work, watcher = asyncio.create_task(gather()), asyncio.create_task(watch())
    done, _ = await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
    if work not in done:
        work.cancel()
        for r in reqs:
            r.cancel()
        raise APIError(499, "client closed the request")
    watcher.cancel()
    work.result()
    out = []
    for parts, event in zip(texts, last, strict=True):
        assert event is not None
        if event.finish_reason == "error":
            raise APIError(500, f"generation failed: {event.error}", "server_error")
        out.append(("".join(parts), event.finish_reason, event.prompt_tokens, event.completion_tokens))
    return out


def _finish(reason: str | None) -> Literal["stop", "length"]:
    return "length" if reason == "length" else "stop"


def sse(obj: BaseModel | str) -> str:
    data = obj if isinstance(obj, str) else obj.model_dump_json()
    return f"data: {data}\n\n"


def usage(prompt_tokens: int, completion: int) -> Usage:
    return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion, total_tokens=prompt_tokens + completion)


def event_stream(reqs: list[EngineRequest], make_chunk: Callable[[int, str | None, str | None], BaseModel],
                 make_usage_chunk: Callable[[Usage], BaseModel] | None, prompt_tokens: int,
                 first: list[BaseModel]) -> StreamingResponse:
    """SSE response: ``first`` chunks, a chunk per new text, a final chunk per choice, usage, [DONE].

    Text chunks are the hot path (one per token and stream): their JSON is a template made once per
    choice from the pydantic model, with the text spliced in.
    """
    templates: dict[int, tuple[str, str]] = {}

    def text_chunk(i: int, text: str) -> str:
        if i not in templates:
            head, tail = make_chunk(i, "\x00", None).model_dump_json().split('"\\u0000"')
            templates[i] = ("data: " + head, tail + "\n\n")
        head, tail = templates[i]
        return head + json.dumps(text, ensure_ascii=False) + tail

    async def batches() -> AsyncIterator[list[tuple[int, Event]]]:
        if len(reqs) == 1:
            async for batch in reqs[0].abatches():
                yield [(0, e) for e in batch]
        else:
            async for item in merged_events(reqs):
                yield [item]

    async def body() -> AsyncIterator[str]:
        completion = 0
        for chunk in first:
            yield sse(chunk)
        async for batch in batches():
            out: list[str] = []
            pending: dict[int, list[str]] = {}
            for i, event in batch:
                if event.text:
                    pending.setdefault(i, []).append(event.text)
                if event.finish_reason is None:
                    continue
                if event.finish_reason == "error":
                    err = ErrorResponse(error=ErrorBody(message=f"generation failed: {event.error}",
                                                        type="server_error"))
                    yield sse(err.model_dump_json())
                    return
                completion += event.completion_tokens
                if pending.get(i):
                    out.append(text_chunk(i, "".join(pending.pop(i))))
                out.append(sse(make_chunk(i, None, _finish(event.finish_reason))))
            out.extend(text_chunk(i, "".join(parts)) for i, parts in pending.items() if parts)
            if out:
                yield "".join(out)
        if make_usage_chunk is not None:
            yield sse(make_usage_chunk(usage(prompt_tokens * len(reqs), completion)))
        yield "data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# ---------------------------------------------------------------- routers
models_router = APIRouter(prefix="/v1", tags=["models"], dependencies=[Depends(require_key)])
chat_router = APIRouter(prefix="/v1", tags=["chat"], dependencies=[Depends(require_key)])
completions_router = APIRouter(prefix="/v1", tags=["completions"], dependencies=[Depends(require_key)])
system_router = APIRouter(tags=["system"])
web_router = APIRouter(tags=["web"])


@models_router.get("/models", response_model=ModelList)
def list_models(state: State) -> ModelList:
    max_len = state.engine.max_len if state.engine is not None else None
    return ModelList(data=[ModelCard(id=state.model_name, created=state.created, max_model_len=max_len)])


@models_router.get("/models/{model_id}", response_model=ModelCard)
def get_model(model_id: str, state: State) -> ModelCard:
    check_model(model_id, state)
    return list_models(state).data[0]


@chat_router.post("/chat/completions", response_model=ChatCompletion,
                  responses={400: {"model": ErrorResponse}, 401: {"model": ErrorResponse},
                             404: {"model": ErrorResponse}, 429: {"model": ErrorResponse},
                             503: {"model": ErrorResponse}})
async def chat_completions(body: ChatCompletionRequest, request: Request, state: State, engine: EngineDep
                           ) -> Response | ChatCompletion:
    model = check_model(body.model, state)
    messages = [m.model_dump(exclude_none=True) for m in body.messages]
    prompt = render(engine.tokenizer, messages, add_generation_prompt=True)
    max_field = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
    try:
        reqs = submit_all(engine, prompt, body.sampling(body.max_completion_tokens or body.max_tokens), body.n)
    except ContextLengthError as e:
        raise APIError(400, str(e), param="messages" if e.field == "prompt" else max_field,
                       code="context_length_exceeded") from None
    rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    if body.stream:
        def chunk(i: int, text: str | None, finish: str | None) -> ChatCompletionChunk:
            delta = Delta(content=text) if text is not None else Delta()
            return ChatCompletionChunk(id=rid, created=created, model=model,
                                       choices=[ChunkChoice(index=i, delta=delta, finish_reason=finish)])

        def usage_chunk(u: Usage) -> ChatCompletionChunk:
            return ChatCompletionChunk(id=rid, created=created, model=model, choices=[], usage=u)

        include = body.stream_options is not None and body.stream_options.include_usage
        first = [ChatCompletionChunk(id=rid, created=created, model=model, choices=[
            ChunkChoice(index=i, delta=Delta(role="assistant", content=""), finish_reason=None)])
            for i in range(len(reqs))]
        return event_stream(reqs, chunk, usage_chunk if include else None, len(prompt), first)
    results = await collect(reqs, request)
    return ChatCompletion(
        id=rid, created=created, model=model,
        choices=[ChatChoice(index=i, message=AssistantMessage(content=text), finish_reason=_finish(reason))
                 for i, (text, reason, _, _) in enumerate(results)],
        usage=usage(len(prompt) * len(reqs), sum(r[3] for r in results)))


@completions_router.post("/completions", response_model=TextCompletion,
                         responses={400: {"model": ErrorResponse}, 401: {"model": ErrorResponse},
                                    404: {"model": ErrorResponse}, 429: {"model": ErrorResponse},
                                    503: {"model": ErrorResponse}})
async def completions(body: CompletionRequest, request: Request, state: State, engine: EngineDep
                      ) -> Response | TextCompletion:
    model = check_model(body.model, state)
    tok = engine.tokenizer
    if isinstance(body.prompt, list) and body.prompt and all(isinstance(p, int) for p in body.prompt):
        prompts = [[int(t) for t in body.prompt]]
        texts = [tok.decode(prompts[0], skip_special=True)]
    else:
        texts = [body.prompt] if isinstance(body.prompt, str) else [str(p) for p in body.prompt]
        if not texts:
            raise APIError(400, "prompt must not be empty", param="prompt")
        # A base model continues a post: every post in the training data starts with <|doc|>.
        prompts = [[tok.doc_id, *tok.encode(t)] for t in texts]
    if body.stream and len(prompts) > 1:
        raise APIError(400, "streaming takes one prompt at a time", param="prompt")
    params = body.sampling(body.max_tokens)
    reqs: list[EngineRequest] = []
    try:
        for p in prompts:
            reqs.extend(submit_all(engine, p, params, body.n))
    except MurmurError:
        for r in reqs:
            r.cancel()
        raise
    rid, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    if body.stream:
        def chunk(i: int, text: str | None, finish: str | None) -> TextCompletion:
            return TextCompletion(id=rid, created=created, model=model,
                                  choices=[TextChoice(index=i, text=text or "", finish_reason=finish)])

        def usage_chunk(u: Usage) -> TextCompletion:
            return TextCompletion(id=rid, created=created, model=model, choices=[], usage=u)

        include = body.stream_options is not None and body.stream_options.include_usage
        first = [chunk(i, texts[0], None) for i in range(len(reqs))] if body.echo else []
        return event_stream(reqs, chunk, usage_chunk if include else None, len(prompts[0]), first)
    results = await collect(reqs, request)
    choices = []
    for i, (text, reason, _, _) in enumerate(results):
        prefix = texts[i // body.n] if body.echo else ""
        choices.append(TextChoice(index=i, text=prefix + text, finish_reason=_finish(reason)))
    prompt_tokens = sum(len(p) for p in prompts) * body.n
    return TextCompletion(id=rid, created=created, model=model, choices=choices,
                          usage=usage(prompt_tokens, sum(r[3] for r in results)))


@system_router.get("/health", response_model=Health, responses={503: {"model": Health}})
def health(state: State) -> Response:
    if state.engine is not None:
        return JSONResponse(Health(status="ok", model=state.model_name).model_dump(exclude_none=True))
    status = "failed" if state.load_error else "loading"
    return JSONResponse(Health(status=status, model=state.model_name, detail=state.load_error).model_dump(
        exclude_none=True), status_code=503)


@system_router.get("/metrics", response_class=PlainTextResponse)
def metrics(state: State) -> PlainTextResponse:
    return PlainTextResponse(render_metrics(state.engine, state.http, state.model_name),
                             media_type="text/plain; version=0.0.4; charset=utf-8")


@web_router.get("/", include_in_schema=False)
def index() -> FileResponse:
    return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})


# ---------------------------------------------------------------- the app
class CountResponses:
    """ASGI middleware counting responses by route and status (pure ASGI, so streaming and client
    disconnects pass through untouched)."""

    def __init__(self, app: Any, counters: HttpCounters):
        self.app, self.counters = app, counters

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [500]

        async def send_and_note(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            self.counters.add(getattr(route, "path", "other"), status[0])


def create_app(engine: Engine | None = None, *, loader: Callable[[], Engine] | None = None,
               model_name: str | None = None, api_key: str | None = None) -> FastAPI:
    """The server app. Pass a ready ``engine`` (started if it is not), or a ``loader`` that builds one:
    it runs in a background thread at startup, and generation routes answer 503 until it returns.
    The app stops the engine on shutdown."""
    if (engine is None) == (loader is None):
        raise ValueError("pass exactly one of engine or loader")
    name = model_name or (engine.name if engine is not None else "murmur")
    state = ServerState(model_name=name, api_key=api_key or None)

    def load() -> None:
        try:
            assert loader is not None
            built = loader()
            state.engine = built.start()
        except Exception as e:  # reported by /health and 503 bodies; the server keeps answering
            state.load_error = f"{type(e).__name__}: {e}"

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if engine is not None:
            state.engine = engine.start()
        else:
            threading.Thread(target=load, name="murmur-load", daemon=True).start()
        yield
        if state.engine is not None:
            state.engine.stop()

    app = FastAPI(title="murmur", summary="OpenAI-compatible API over a murmur model", lifespan=lifespan)
    app.state.murmur = state

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(MurmurError)
    async def _murmur_error(request: Request, exc: MurmurError) -> JSONResponse:
        return error_response(from_murmur_error(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        param = _loc(tuple(first.get("loc", ())))
        msg = str(first.get("msg", "invalid request"))
        if first.get("type") == "json_invalid":
            msg, param = "the request body is not valid JSON", None
        extra = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return error_response(APIError(400, f"{param}: {msg}{extra}" if param else msg + extra, param=param,
                                       code="invalid_value"))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return error_response(APIError(exc.status_code, str(exc.detail), kind))

    app.add_middleware(CountResponses, counters=state.http)
    for router in (models_router, chat_router, completions_router, system_router, web_router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    return app


def serve(model_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          max_batch: int = 32, max_queue: int = 256, announce: Callable[[str], None] = print) -> None:
    """Load a model directory in the background and serve it until interrupted."""
    import uvicorn

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise InputError("model directory not found", model_dir)
    name = model_dir.resolve().name
    app = create_app(loader=lambda: Engine.from_run_dir(model_dir, max_batch=max_batch, max_queue=max_queue,
                                                        name=name),
                     model_name=name, api_key=api_key)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    base = f"http://{shown}:{port}"
    auth = f" -H 'Authorization: Bearer {api_key}'" if api_key else ""
    payload = json.dumps({"model": name, "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 64})
    announce(f"murmur: serving {name} on {base}  (web chat: {base}/ , metrics: {base}/metrics)")
    announce(f"try: curl {base}/v1/chat/completions -H 'Content-Type: application/json'{auth} -d '{payload}'")
    uvicorn.run(app, host=host, port=port, log_level="warning")
