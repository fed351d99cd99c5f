"""The OpenAI-compatible routes: ``GET /v1/models``, ``POST /v1/chat/completions``, ``POST /v1/completions``.

Each route checks its body (pydantic, ranges in ``protocol.py``), tokenizes off the event loop (a
large prompt never stalls other streams or ``/health``), submits to the engine and answers whole or
as server-sent events (``sse.py``). The app factory mounts this router behind the API key.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from murmur.chat.constrain import call_matcher
from murmur.chat.template import recent_turns, render
from murmur.chat.tools import Parsed, answer_only, call_room, forced_call, forced_ids, parse_output
from murmur.engine import ContextLengthError, Engine, Event, SamplingParams
from murmur.engine import Request as EngineRequest
from murmur.engine.generate import post_prompt, seeded
from murmur.errors import InputError, MurmurError
from murmur.serve.errors import APIError
from murmur.serve.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkChoice,
    CompletionRequest,
    Delta,
    DeltaToolCall,
    ErrorBody,
    ErrorResponse,
    FunctionCall,
    ModelCard,
    ModelList,
    NamedToolChoice,
    TextChoice,
    TextCompletion,
    ToolCall,
    Usage,
)
from murmur.serve.sse import STREAM_HEADERS, event_stream, finish, merged_events, sse, usage
from murmur.serve.state import EngineDep, State, check_model, loaded_engine

router = APIRouter(prefix="/v1")

ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 429, 500, 503)}
# A stream: server-sent events whose data is a JSON chunk (the 200 body's schema), and last "[DONE]".
SSE_EVENT = {"type": "object", "required": ["data"], "description": "data: {chunk} events, then data: [DONE]",
             "properties": {"data": {"type": "string"}, "event": {"type": "string"}, "id": {"type": "string"},
                            "retry": {"type": "integer"}}}
STREAMED = {200: {"content": {"text/event-stream": {"schema": SSE_EVENT}}}}


class ReleasingEncoder:
    """The tokenizer's ``encode`` through ``encode_batch``, which releases the GIL while Rust works, so
    tokenizing a long prompt in a worker thread never stalls the event loop (``encode`` holds it)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def __getattr__(self, name: str) -> Any:  # doc_id and the rest: the tokenizer's own
        return getattr(self.tokenizer, name)

    def encode(self, text: str) -> list[int]:
        batch = getattr(self.tokenizer, "encode_batch", None)
        return batch([text])[0] if batch is not None else self.tokenizer.encode(text)


def utf8_size(text: str, field: str) -> int:
    """Bytes of ``text`` in UTF-8; a lone surrogate (valid JSON, not valid Unicode) is refused."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InputError("the text holds a lone surrogate (\\ud800-\\udfff), which is not valid Unicode",
                         field=field) from None


def chat_prompt(engine: Engine, body: ChatCompletionRequest, tools: list[dict[str, Any]] | None = None,
                extra: list[dict[str, Any]] = (), room: tuple[int, int] | None = None   # type: ignore[assignment]
                ) -> list[int]:
    """The chat prompt's token ids (run in a worker thread): sizes checked before tokenizing.
    ``extra`` messages (the server's own tool calls and results) follow the request's.

    With ``room`` = (need, want), the prompt must leave ``need`` tokens of the context free and should
    leave ``want``: the oldest turns are dropped until it does, then the server's earlier tool rounds
    (a call and its results) but the latest, then the lines of the latest results (their numbered
    posts) from the end, down to one; if it still leaves less than ``need``, a ContextLengthError
    names the problem. ``extra`` is shortened in place, so later rounds start from what was kept."""
    size = 0
    for i, m in enumerate(body.messages):
        parts = [m.content] if isinstance(m.content, str) else [p.text for p in m.content or []]
        size += sum(utf8_size(t, f"messages[{i}].content") for t in parts)
    size += sum(len(str(m.get("content") or "").encode("utf-8", "replace")) for m in extra)
    engine.check_text_size(size, "prompt")
    messages = [m.model_dump(exclude_none=True) for m in body.messages] + list(extra)
    enc = ReleasingEncoder(engine.tokenizer)
    if room is None:
        return render(enc, messages, True, tools=tools)
    need, want = room
    while True:
        messages = [m.model_dump(exclude_none=True) for m in body.messages] + list(extra)
        ids = recent_turns(enc, messages, engine.max_len - want, tools)
        if len(ids) <= engine.max_len - want:
            break
        calls = [i for i, m in enumerate(extra) if m["role"] == "assistant"]
        results = [m for m in extra if m["role"] == "tool" and "\n" in m["content"]]
        if len(calls) > 1:
            del extra[:calls[1]]   # the oldest server round gives way
        elif results:
            results[-1]["content"] = results[-1]["content"].rsplit("\n", 1)[0]   # one post fewer
        else:
            break
    if len(ids) > engine.max_len - need:
        raise ContextLengthError(
            f"this model's maximum context length is {engine.max_len} tokens; the prompt with the tool list "
            f"takes {len(ids)} even with only its last turn, leaving {engine.max_len - len(ids)}, and a tool call "
            f"needs at least {need}: shorten the last message or the system message, or offer fewer tools",
            "prompt")
    return ids


def submit_all(engine: Engine, prompt: list[int], params: SamplingParams, n: int) -> list[EngineRequest]:
    """n requests for one prompt (seeds seed, seed+1, ... so the choices differ yet reproduce)."""
    reqs: list[EngineRequest] = []
    try:
        for i in range(n):
            reqs.append(engine.submit(prompt, seeded(params, i)))
    except MurmurError:
        for r in reqs:
            r.cancel()
        raise
    return reqs


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
        if event.finish_reason in ("error", "cancelled"):
            raise APIError(500 if event.finish_reason == "error" else 503,
                           f"generation failed: {event.error}" if event.error else "generation was cancelled",
                           "server_error")
        out.append(("".join(parts), event.finish_reason, event.prompt_tokens, event.completion_tokens))
    return out


@router.get("/models", response_model=ModelList, responses=ERRORS)
def list_models(request: Request, state: State) -> ModelList:
    engine = loaded_engine(request)
    max_len = engine.max_len if engine is not None else None
    return ModelList(data=[ModelCard(id=state.model_name, created=state.created, max_model_len=max_len)])


@router.get("/models/{model_id}", response_model=ModelCard, responses=ERRORS)
def get_model(model_id: str, request: Request, state: State) -> ModelCard:
    check_model(model_id, state)
    return list_models(request, state).data[0]


@router.post("/chat/completions", response_model=ChatCompletion, responses={**ERRORS, **STREAMED})
async def chat_completions(body: ChatCompletionRequest, request: Request, state: State, engine: EngineDep
                           ) -> Response | ChatCompletion:
    model = check_model(body.model, state)
    max_field = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
    if (body.tools or state.tools) and body.tool_choice != "none":
        try:
            return await tool_completion(body, request, state, engine, model)
        except ContextLengthError as e:
            raise APIError(400, str(e), param="messages" if e.field == "prompt" else max_field,
                           code="context_length_exceeded") from None
    try:
        prompt = await run_in_threadpool(chat_prompt, engine, body)
        # no tool on offer (or tool_choice "none"): the turn is text, never a call
        params = body.sampling(body.max_completion_tokens or body.max_tokens)
        params = dataclasses.replace(params, logit_bias=answer_only(params.logit_bias))
        reqs = await run_in_threadpool(submit_all, engine, prompt, params, body.n)
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
        choices=[ChatChoice(index=i, message=AssistantMessage(content=text), finish_reason=finish(reason))
                 for i, (text, reason, _, _) in enumerate(results)],
        usage=usage(len(prompt) * len(reqs), sum(r[3] for r in results)))


def completion_prompts(engine: Engine, body: CompletionRequest) -> tuple[list[list[int]], list[str]]:
    """The prompts of a completion request as token ids, and as text (for ``echo``); checked ids."""
    tok = engine.tokenizer
    if isinstance(body.prompt, list) and body.prompt and all(isinstance(p, int) for p in body.prompt):
        ids = [int(t) for t in body.prompt]
        engine.check_prompt(ids, None)  # ids outside the vocabulary are refused before decoding
        return [ids], [tok.decode(ids, skip_special=True)]
    texts = [body.prompt] if isinstance(body.prompt, str) else [str(p) for p in body.prompt]
    if not texts:
        raise APIError(400, "prompt must not be empty", param="prompt", code="invalid_value")
    for i, t in enumerate(texts):
        engine.check_text_size(utf8_size(t, "prompt" if isinstance(body.prompt, str) else f"prompt[{i}]"), "prompt")
    # A base model continues a post: every post in the training data starts with <|doc|>.
    return [post_prompt(ReleasingEncoder(tok), t) for t in texts], texts


def submit_prompts(engine: Engine, prompts: list[list[int]], params: SamplingParams, n: int, fit: bool
                   ) -> list[EngineRequest]:
    """``n`` requests per prompt; with ``fit``, ``max_tokens`` shrinks to the room each prompt leaves."""
    reqs: list[EngineRequest] = []
    try:
        for p in prompts:
            room = engine.max_len - len(p)
            p_params = dataclasses.replace(params, max_tokens=min(params.max_tokens or room, max(room, 1))) \
                if fit else params
            reqs.extend(submit_all(engine, p, p_params, n))
    except MurmurError:
        for r in reqs:
            r.cancel()
        raise
    return reqs


@router.post("/completions", response_model=TextCompletion, responses={**ERRORS, **STREAMED})
async def completions(body: CompletionRequest, request: Request, state: State, engine: EngineDep
                      ) -> Response | TextCompletion:
    model = check_model(body.model, state)
    prompts, texts = await run_in_threadpool(completion_prompts, engine, body)
    if body.stream and len(prompts) > 1:
        raise APIError(400, "streaming takes one prompt at a time", param="prompt", code="invalid_value")
    params = body.sampling(body.max_tokens)
    fit = "max_tokens" not in body.model_fields_set  # the default 16 shrinks to what the context has room for
    reqs = await run_in_threadpool(submit_prompts, engine, prompts, params, body.n, fit)
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
        choices.append(TextChoice(index=i, text=prefix + text, finish_reason=finish(reason)))
    prompt_tokens = sum(len(p) for p in prompts) * body.n
    return TextCompletion(id=rid, created=created, model=model, choices=choices,
                          usage=usage(prompt_tokens, sum(r[3] for r in results)))


MAX_TOOL_ROUNDS = 3   # server-run tool calls in one chat turn before the model must answer
CALL_MARGIN = 16      # tokens beyond the shortest call kept free for its values when older turns are dropped
ANSWER_ROOM = 64      # tokens kept free for the answer after a server-run tool's results, when posts can give way
ANSWER_MIN = 8        # ... and the least they must leave (then no further call fits: the model answers)


async def tool_completion(body: ChatCompletionRequest, request: Request, state: Any, engine: Engine, model: str
                          ) -> Response | ChatCompletion:
    """A chat turn with tools on offer. ``auto``: the model writes freely; a call it makes is parsed and
    checked, and a malformed one (bad JSON, unknown tool, arguments off the schema) is counted and
    retried under constraint. ``required`` or a named function: the call is decoded under the tools'
    JSON schemas, so it is always well-formed.

    With the client's own tools, the calls come back to the client to run. Without them, the tools
    are the server's own (e.g. ``search_posts``): the server runs each call, feeds the result back as
    a tool message and lets the model continue, so the client gets the grounded answer."""
    if body.n != 1:
        raise APIError(400, "with tools, n must be 1", param="n", code="invalid_value")
    client = bool(body.tools)
    specs = [t.model_dump(exclude_none=True) for t in body.tools] if body.tools else \
        [dict(t.spec) for t in state.tools.values()]
    tools = {s["function"]["name"]: s["function"].get("parameters") or {"type": "object"} for s in specs}
    choice = body.tool_choice or "auto"
    if isinstance(choice, NamedToolChoice):
        if choice.function.name not in tools:
            raise APIError(400, f"tool_choice names {choice.function.name!r}, which is not among the tools",
                           param="tool_choice", code="invalid_value")
        forced: dict[str, Any] | None = {choice.function.name: tools[choice.function.name]}
    else:
        forced = dict(tools) if choice == "required" else None
    call_matcher(tools)  # an unsupported schema is refused (400 naming it) before any generation
    params = body.sampling(body.max_completion_tokens or body.max_tokens)
    need = call_room(forced or tools)   # a prompt must leave room for a whole call, however short
    if forced is not None and client and params.max_tokens is not None and params.max_tokens < need - 1:
        raise APIError(400, f"max_tokens {params.max_tokens} cannot hold a call to {' or '.join(forced)}, which "
                       f"takes at least {need - 1} tokens", param="max_completion_tokens" if
                       body.max_completion_tokens else "max_tokens", code="invalid_value")
    tok = engine.tokenizer

    def decode(ids: list[int]) -> str:
        return tok.decode(ids, skip_special=True)

    async def turn(prompt: list[int], forced: dict[str, Any] | None, params: SamplingParams
                   ) -> tuple[Parsed, int, int, str]:
        """One model turn: (parsed output, prompt tokens, completion tokens, engine finish reason)."""
        completion_tokens, prompt_tokens, reason = 0, 0, "stop"
        parsed: Parsed | None = None
        if forced is None:
            done = await engine.agenerate(prompt, params)
            completion_tokens, prompt_tokens, reason = done.completion_tokens, len(prompt), done.finish_reason
            parsed = parse_output(decode, done.token_ids, tools)
            state.tool_calls["malformed" if parsed.error else ("auto" if parsed.calls else "none")] += 1
            if parsed.error and engine.max_len - len(prompt) >= need:
                forced, parsed = dict(tools), None   # retry, constrained
            elif parsed.error:   # no room left for a call (after a server-run tool): the text is the answer
                parsed = Parsed(parsed.content, [])
        if forced is not None:
            # the server's own calls are not the answer: max_tokens bounds the answer, not them
            room = engine.max_len - len(prompt) - 1
            budget = min(params.max_tokens, room) if client and params.max_tokens else room
            fprompt, proc = await run_in_threadpool(forced_call, tok, prompt, forced, budget)
            prompt_tokens += len(fprompt)
            try:
                done = await engine.agenerate(fprompt, dataclasses.replace(params, logits_processor=proc,
                                                                           max_tokens=budget))
            except RuntimeError as e:   # the constraint failed inside the engine: counted, answered cleanly
                parsed = Parsed("", [], str(e))
            else:
                completion_tokens += done.completion_tokens
                parsed = parse_output(decode, forced_ids(done.token_ids), forced)
            state.tool_calls["failed" if parsed.error else "forced"] += 1
            if parsed.error:   # never a broken call: a clean message instead
                parsed = Parsed("The model could not finish a tool call within max_tokens.", [], parsed.error)
                reason = "length"
        assert parsed is not None
        return parsed, prompt_tokens, completion_tokens, reason

    # In a stream, each server-run tool call is announced as it starts and ends (see ``tool_event``).
    events: asyncio.Queue[dict[str, Any]] | None = asyncio.Queue() if body.stream else None

    async def rounds() -> tuple[Parsed, list[ToolCall], str, int, int]:
        extra: list[dict[str, Any]] = []
        prompt_tokens = completion_tokens = 0
        for n_round in range(MAX_TOOL_ROUNDS + 1):
            # after a server-run tool, its posts give way to leave room for the answer, which max_tokens
            # (when given) bounds; what is still missing shortens the answer rather than failing the turn
            want = need + CALL_MARGIN if n_round == 0 else max(need + CALL_MARGIN, params.max_tokens or ANSWER_ROOM)
            prompt = await run_in_threadpool(chat_prompt, engine, body, specs, extra,
                                             (need if n_round == 0 else ANSWER_MIN, want))
            room = engine.max_len - len(prompt)
            round_params = params if n_round == 0 or not params.max_tokens else \
                dataclasses.replace(params, max_tokens=min(params.max_tokens, room))
            answering = dataclasses.replace(round_params, logit_bias=answer_only(round_params.logit_bias))
            if n_round > 0 and room < need + ANSWER_ROOM:   # no room for another call and its results
                round_params = answering
            parsed, p_tok, c_tok, reason = await turn(prompt, forced if n_round == 0 else None, round_params)
            prompt_tokens, completion_tokens = prompt_tokens + p_tok, completion_tokens + c_tok
            if n_round == MAX_TOOL_ROUNDS and parsed.calls and not parsed.content.strip():
                # still calling, with nothing written before the call: once more, as an answer
                parsed, p_tok, c_tok, reason = await turn(prompt, None, answering)
                prompt_tokens, completion_tokens = prompt_tokens + p_tok, completion_tokens + c_tok
            calls = [ToolCall(id=f"call_{uuid.uuid4().hex[:24]}", function=FunctionCall(name=c.name,
                                                                                        arguments=c.arguments))
                     for c in parsed.calls]
            if client or not calls:
                break
            if n_round == MAX_TOOL_ROUNDS:   # the model keeps calling: its text is the answer
                calls = []
                break
            extra.append({"role": "assistant", "content": parsed.content,
                          "tool_calls": [c.model_dump() for c in calls]})
            for c in calls:
                announce = {"id": c.id, "name": c.function.name, "arguments": json.loads(c.function.arguments)}
                if events is not None:
                    events.put_nowait({**announce, "status": "running"})
                text, items, error = await run_in_threadpool(run_server_tool, state, c)
                if events is not None:
                    events.put_nowait({**announce, "status": "error", "error": error} if error is not None
                                      else {**announce, "status": "done", "items": items})
                extra.append({"role": "tool", "tool_call_id": c.id, "content": text})
        return parsed, calls, reason, prompt_tokens, completion_tokens

    work = asyncio.ensure_future(rounds())
    first: dict[str, Any] | None = None
    if events is not None:   # wait for the answer or the first tool run, whichever comes first
        got = asyncio.ensure_future(events.get())
        await asyncio.wait({work, got}, return_when=asyncio.FIRST_COMPLETED)
        if got.done():
            first = got.result()
        else:
            got.cancel()
    if first is None:   # errors of the first turn (context length, bad schema) answer 4xx as before
        try:
            outcome = await work
        except BaseException:
            work.cancel()
            raise
    rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

    def answer(outcome: tuple[Parsed, list[ToolCall], str, int, int]
               ) -> tuple[str | None, list[ToolCall], str, Usage]:
        parsed, calls, reason, prompt_tokens, completion_tokens = outcome
        content = parsed.content if parsed.content or not calls else None
        return content, calls, "tool_calls" if calls else finish(reason), usage(prompt_tokens, completion_tokens)

    if not body.stream:
        content, calls, finish_reason, u = answer(outcome)
        return ChatCompletion(id=rid, created=created, model=model, usage=u, choices=[ChatChoice(
            index=0, message=AssistantMessage(content=content, tool_calls=calls or None), finish_reason=finish_reason)])

    def chunk(delta: Delta, reason: str | None = None) -> str:
        return sse(ChatCompletionChunk(id=rid, created=created, model=model,
                                       choices=[ChunkChoice(index=0, delta=delta, finish_reason=reason)]))

    def tool_chunk(event: dict[str, Any]) -> str:
        return sse(tool_event(ChatCompletionChunk(id=rid, created=created, model=model, choices=[
            ChunkChoice(index=0, delta=Delta(), finish_reason=None)]), event))

    def tail(outcome: tuple[Parsed, list[ToolCall], str, int, int]) -> list[str]:
        content, calls, finish_reason, u = answer(outcome)
        out = [chunk(Delta(content=content))] if content else []
        out += [chunk(Delta(tool_calls=[DeltaToolCall(index=j, **call.model_dump())]))
                for j, call in enumerate(calls)]
        out.append(chunk(Delta(), finish_reason))
        if body.stream_options is not None and body.stream_options.include_usage:
            out.append(sse(ChatCompletionChunk(id=rid, created=created, model=model, choices=[], usage=u)))
        return [*out, "data: [DONE]\n\n"]

    async def stream() -> Any:
        try:
            yield chunk(Delta(role="assistant", content=""))
            if first is not None:
                assert events is not None
                yield tool_chunk(first)
                while True:
                    got = asyncio.ensure_future(events.get())
                    await asyncio.wait({work, got}, return_when=asyncio.FIRST_COMPLETED)
                    if not got.done():
                        got.cancel()
                        break
                    yield tool_chunk(got.result())
                while not events.empty():
                    yield tool_chunk(events.get_nowait())
                try:
                    done = work.result()
                except MurmurError as e:   # a later turn failed: the stream ends with an error event
                    yield sse(ErrorResponse(error=ErrorBody(message=str(e), type="invalid_request_error")))
                    return
                except Exception:
                    yield sse(ErrorResponse(error=ErrorBody(message="generation failed", type="server_error")))
                    return
            else:
                done = outcome
            for part in tail(done):
                yield part
        finally:
            work.cancel()   # the client went away: no more turns or tool runs

    return StreamingResponse(stream(), media_type="text/event-stream", headers=STREAM_HEADERS)


def tool_event(chunk: ChatCompletionChunk, event: dict[str, Any]) -> str:
    """A chunk with an empty delta that carries a server-run tool call in the extra field ``murmur_tool``.

    OpenAI clients yield it as an ordinary chunk with no content (as the last chunk of every stream)
    and never see a tool call to run; the web chat shows the search and links the citations."""
    return json.dumps({**json.loads(chunk.model_dump_json()), "murmur_tool": event}, ensure_ascii=False)


def run_server_tool(state: Any, call: ToolCall) -> tuple[str, list[Any], str | None]:
    """Run one of the server's tools: (text for the model, items for clients, error or None).

    A tool returns a string, or an object with ``text`` (str) and ``items`` (JSON-ready, e.g. the posts
    numbered [1], [2], ... in ``text``). A failure becomes the text the model reads (counted)."""
    try:
        result = state.tools[call.function.name](json.loads(call.function.arguments))
        state.tool_calls["server_run"] += 1
        if isinstance(result, str):
            return result, [], None
        return str(result.text), list(getattr(result, "items", None) or []), None
    except MurmurError as e:
        state.tool_calls["server_error"] += 1
        return f"Error: {e}", [], str(e)
    except Exception as e:  # one bad tool run never takes the request down
        state.tool_calls["server_error"] += 1
        return f"Error: the tool failed ({type(e).__name__})", [], f"the tool failed ({type(e).__name__})"
