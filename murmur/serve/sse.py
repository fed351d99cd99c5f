"""Server-sent events: the stream of an OpenAI ``stream: true`` response, fed by engine requests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

from pydantic import BaseModel
from starlette.responses import StreamingResponse

from murmur.engine import Event
from murmur.engine import Request as EngineRequest
from murmur.serve.protocol import ErrorBody, ErrorResponse, Usage

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse(obj: BaseModel | str) -> str:
    """One ``data:`` event."""
    data = obj if isinstance(obj, str) else obj.model_dump_json()
    return f"data: {data}\n\n"


def usage(prompt_tokens: int, completion: int) -> Usage:
    return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion, total_tokens=prompt_tokens + completion)


def finish(reason: str | None) -> str:
    """The OpenAI finish_reason of an engine finish reason."""
    return "length" if reason == "length" else "stop"


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


def event_stream(reqs: list[EngineRequest], make_chunk: Callable[[int, str | None, str | None], BaseModel],
                 make_usage_chunk: Callable[[Usage], BaseModel] | None, prompt_tokens: int,
                 first: list[BaseModel]) -> StreamingResponse:
    """SSE response: ``first`` chunks, a chunk per new text, a final chunk per choice, usage, [DONE].

    Text chunks are the hot path (one per token and stream): their JSON is a template made once per
    choice from the pydantic model, with the text spliced in. A request that fails in the engine
    ends the stream with an error event (no details) instead of [DONE].
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
                if event.finish_reason in ("error", "cancelled"):
                    message = f"generation failed: {event.error}" if event.error else "generation was cancelled"
                    err = ErrorResponse(error=ErrorBody(message=message, type="server_error"))
                    yield sse(err.model_dump_json())
                    return
                completion += event.completion_tokens
                if pending.get(i):
                    out.append(text_chunk(i, "".join(pending.pop(i))))
                out.append(sse(make_chunk(i, None, finish(event.finish_reason))))
            out.extend(text_chunk(i, "".join(parts)) for i, parts in pending.items() if parts)
            if out:
                yield "".join(out)
        if make_usage_chunk is not None:
            yield sse(make_usage_chunk(usage(prompt_tokens * len(reqs), completion)))
        yield "data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream", headers=STREAM_HEADERS)
