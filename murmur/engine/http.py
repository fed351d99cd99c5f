"""The engine as a FastAPI dependency, and the request-body reader, for routers mounted on murmur's
server (search, ads, ...).

``engine: Annotated[Engine, Depends(current_engine)]`` in a route gives the server's engine without
importing ``murmur.serve``: the server keeps it in ``app.state.engine`` (None while the model loads)
and why loading failed in ``app.state.engine_error``. While there is no engine the route answers 503.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from murmur.engine.engine import Engine, EngineNotReadyError
from murmur.errors import InputError


async def json_body(request: Request) -> Any:
    """The request's JSON body; a body that is not JSON is a 400 naming ``body``."""
    try:
        return await request.json()
    except ValueError:
        raise InputError("the body is not valid JSON", field="body") from None


def current_engine(request: Request) -> Engine:
    """The engine the app serves; ``EngineNotReadyError`` (HTTP 503) while loading or after a failed load."""
    state = request.app.state
    engine = getattr(state, "engine", None)
    if engine is None:
        error = getattr(state, "engine_error", None)
        if error:
            raise EngineNotReadyError(f"the model failed to load: {error}", failed=True)
        raise EngineNotReadyError("the model is still loading; retry in a moment")
    return engine
