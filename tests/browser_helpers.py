"""Headless Debian chromium for the web page tests, through Playwright's Python package (never
``playwright install``: the system browser is used). Tests that need it carry ``needs_chromium`` and
skip cleanly where chromium (``apt-get install -y chromium``) or playwright is absent."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")


@contextmanager
def chromium(profile: Path | None = None, width: int = 1280, height: int = 800) -> Iterator[Any]:
    """A browser context of ``width`` x ``height``: with a ``profile`` directory its storage lasts
    across reloads (what the chat's saved conversations need), without one it is a fresh context.
    Closed, with the browser, when the block ends."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    viewport = {"width": width, "height": height}
    with sync_api.sync_playwright() as pw:
        if profile is not None:
            ctx = pw.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, headless=True,
                                                        args=ARGS, viewport=viewport)
            try:
                yield ctx
            finally:
                ctx.close()
        else:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            try:
                yield browser.new_context(viewport=viewport)
            finally:
                browser.close()


def open_chat(ctx: Any, url: str, model: str) -> tuple[Any, list[tuple[str, int]]]:
    """(page, [(url, status) of every response]) of the chat page once it shows ``model`` and has settled."""
    page = ctx.new_page()
    responses: list[tuple[str, int]] = []
    page.on("response", lambda r: responses.append((r.url, r.status)))
    page.goto(url + "/")
    page.wait_for_function(f"document.getElementById('model-name').textContent === {model!r}")
    page.wait_for_timeout(300)
    return page, responses
