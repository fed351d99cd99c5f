"""Errors as OpenAI-shaped bodies, for every route the app serves (its own and mounted routers).

``{"error": {"message", "type", "param", "code"}}`` with the status: 400 for a bad request
(``MurmurError``/``InputError`` raised anywhere below a route, pydantic validation, bad JSON), 401
bad key, 404 unknown model or path, 405, 413 body too large, 429 queue full, 503 loading, and 500
for a bug, whose body never carries a traceback (the traceback goes to the server log).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from murmur.engine import ContextLengthError, EngineClosedError, EngineNotReadyError, QueueFullError
from murmur.errors import InputError, MurmurError
from murmur.serve.protocol import ErrorBody, ErrorResponse

log = logging.getLogger("murmur.serve")


class APIError(Exception):
    """An error answered as ``{"error": {...}}`` with an HTTP status."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code


def error_body(err: APIError) -> dict[str, Any]:
    return ErrorResponse(error=ErrorBody(message=err.message, type=err.type, param=err.param,
                                         code=err.code)).model_dump()


def error_response(err: APIError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
    if err.status in (429, 503):
        headers = {"Retry-After": "1"}
    return JSONResponse(error_body(err), status_code=err.status, headers=headers)


def from_murmur_error(e: MurmurError) -> APIError:
    """The HTTP form of a murmur error: InputError's ``field`` becomes ``param``."""
    if isinstance(e, ContextLengthError):
        return APIError(400, str(e), param=e.field, code="context_length_exceeded")
    if isinstance(e, InputError):
        return APIError(400, str(e), param=e.field, code="invalid_value")
    if isinstance(e, QueueFullError):
        return APIError(429, str(e), "rate_limit_error", code="queue_full")
    if isinstance(e, EngineNotReadyError):
        return APIError(503, str(e), "server_error", code="load_failed" if e.failed else "model_loading")
    if isinstance(e, EngineClosedError):
        return APIError(503, str(e), "server_error", code="engine_stopped")
    return APIError(400, str(e), code="invalid_value")


UNION_TAGS = ("str", "int", "float", "bool", "none", "dict", "list")


def _loc(loc: tuple[Any, ...]) -> str | None:
    # pydantic names the member of a union it tried ("str", "list[ContentPart]"): not part of the field's path
    parts = [str(p) for p in loc if p not in ("body", "query", "path", *UNION_TAGS) and "[" not in str(p)]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or None


def validation_error(exc: RequestValidationError) -> APIError:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    param = _loc(tuple(first.get("loc", ())))
    msg = str(first.get("msg", "invalid request"))
    if first.get("type") == "json_invalid":
        msg, param = "the request body is not valid JSON", None
    extra = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return APIError(400, f"{param}: {msg}{extra}" if param else msg + extra, param=param, code="invalid_value")


def install_error_handlers(app: FastAPI) -> None:
    """Map every error any route raises to an OpenAI error body (see the module doc)."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(MurmurError)
    async def _murmur_error(request: Request, exc: MurmurError) -> JSONResponse:
        return error_response(from_murmur_error(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return error_response(APIError(exc.status_code, str(exc.detail), kind))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(APIError(500, "internal server error (details in the server log)", "server_error",
                                       code="internal_error"))
