"""Routes for operators and browsers: ``GET /health``, ``GET /metrics`` (Prometheus), ``GET /`` (the web chat)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse

from murmur.serve.metrics import render_metrics
from murmur.serve.protocol import Health
from murmur.serve.state import State, loaded_engine

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

router = APIRouter()


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
def health(request: Request, state: State) -> JSONResponse:
    if loaded_engine(request) is not None:
        return JSONResponse(Health(status="ok", model=state.model_name).model_dump(exclude_none=True))
    error = getattr(request.app.state, "engine_error", None)
    body = Health(status="failed" if error else "loading", model=state.model_name, detail=error)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=503)


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request, state: State) -> PlainTextResponse:
    return PlainTextResponse(render_metrics(loaded_engine(request), state.http, state.model_name,
                                               dict(state.tool_calls)),
                             media_type="text/plain; version=0.0.4; charset=utf-8")


PAGES_NAV = '<nav id="pages" aria-label="Pages"></nav>'


@router.get("/", include_in_schema=False)
def index(request: Request) -> HTMLResponse:
    """The web chat, its sidebar linking to the pages mounted beside it (search, the ads studio, ...)."""
    from html import escape

    links = "".join(f'<a href="{escape(href)}">{escape(title)}</a>'
                    for href, title in getattr(request.app.state, "pages", []))
    page = (WEB_DIR / "index.html").read_text(encoding="utf-8").replace(
        PAGES_NAV, PAGES_NAV.replace("></nav>", f">{links}</nav>"), 1)
    return HTMLResponse(page, headers={"Cache-Control": "no-cache"})
