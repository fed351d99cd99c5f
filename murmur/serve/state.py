"""What the routes share, handed to them by FastAPI dependencies (never globals).

``app.state.murmur`` is the :class:`ServerState` (model name, API key, counters, limits);
``app.state.engine`` the loaded :class:`~murmur.engine.Engine` (None while loading) and
``app.state.engine_error`` why loading failed. Routers from other packages read the engine with
``Depends(murmur.engine.http.current_engine)``, so they need nothing from this package.
"""

from __future__ import annotations

import hmac
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from murmur.engine import Engine
from murmur.engine.http import current_engine
from murmur.serve.errors import APIError
from murmur.serve.metrics import HttpCounters


@dataclass
class ServerState:
    """The served model's name, the API key (None: open), counters, the request body limit."""

    model_name: str
    api_key: str | None = None
    max_body_bytes: int = 8 * 2**20
    created: int = field(default_factory=lambda: int(time.time()))
    http: HttpCounters = field(default_factory=HttpCounters)
    tool_calls: Counter[str] = field(default_factory=Counter)   # chat turns with tools, by outcome
    # Tools the server runs itself (name -> an object with ``spec``, the OpenAI tool definition, that
    # is called with the arguments and returns the result text), handed in like routers.
    tools: dict[str, Any] = field(default_factory=dict)


def get_state(request: Request) -> ServerState:
    return request.app.state.murmur


State = Annotated[ServerState, Depends(get_state)]


def loaded_engine(request: Request) -> Engine | None:
    """The engine if it is loaded, else None (for routes that answer while loading)."""
    return getattr(request.app.state, "engine", None)


def require_key(request: Request, state: State) -> None:
    """The app's auth dependency: ``Authorization: Bearer KEY`` when the server has a key."""
    if state.api_key is None:
        return
    auth = request.headers.get("authorization", "")
    scheme, _, key = auth.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip().encode(), state.api_key.encode()):
        raise APIError(401, "invalid or missing API key: send 'Authorization: Bearer <key>'",
                       "authentication_error", code="invalid_api_key")


EngineDep = Annotated[Engine, Depends(current_engine)]


def check_model(name: str | None, state: ServerState) -> str:
    if name is not None and name != state.model_name:
        raise APIError(404, f"the model {name!r} does not exist; this server serves {state.model_name!r}",
                       param="model", code="model_not_found")
    return state.model_name
