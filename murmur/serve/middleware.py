"""Pure ASGI middleware of the app (pure, so streaming responses and disconnects pass untouched):
``CountResponses`` (HTTP counters for /metrics) and ``BodyLimit`` (HTTP 413 past the body cap)."""

from __future__ import annotations

import json
from typing import Any

from murmur.serve.errors import APIError, error_body
from murmur.serve.metrics import HttpCounters


class CountResponses:
    """Count responses by route and status code."""

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


async def _send_error(send: Any, err: APIError) -> None:
    body = json.dumps(error_body(err)).encode()
    await send({"type": "http.response.start", "status": err.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuse a request body over ``max_bytes`` with HTTP 413, before anything parses it.

    A ``Content-Length`` over the limit is refused at once; otherwise the body is read (at most
    ``max_bytes``) and handed on whole, so no route ever holds more than the limit.
    """

    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    def _too_large(self) -> APIError:
        return APIError(413, f"the request body is larger than the server's limit of {self.max_bytes:,} bytes",
                        code="request_too_large")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _send_error(send, APIError(400, "the Content-Length header is not a number",
                                                 code="invalid_value"))
                return
            if declared > self.max_bytes:
                await _send_error(send, self._too_large())
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _send_error(send, self._too_large())
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
