"""The search page in headless Chromium (Debian's chromium via Playwright, as the chat page's test):
a query with filters shows results with the matched words marked, and a post added through the API
appears while the page is open. Skips when chromium is absent."""

from __future__ import annotations

import pytest
from browser_helpers import chromium, needs_chromium
from search_helpers import tiny_corpus
from serve_helpers import ServerThread, make_tokenizer, micro_model

from murmur.engine import Engine
from murmur.search.index import SearchIndex, build_index
from murmur.search.router import WEB_DIR, build_router
from murmur.serve.app import create_app

pytestmark = [pytest.mark.slow, needs_chromium]


def test_search_page_shows_highlights_and_new_posts(tmp_path):
    import httpx

    _, clean = tiny_corpus(tmp_path)
    build_index(clean, tmp_path / "idx", None, progress=False)
    tok = make_tokenizer(tmp_path / "tok")
    engine = Engine(micro_model(tok.vocab_size), tok, max_batch=1, name="m")
    with SearchIndex(tmp_path / "idx") as ix, \
            ServerThread(create_app(engine, routers=[build_router(ix)], pages={"/search": WEB_DIR})) as url, \
            chromium() as ctx:
        page = ctx.new_page()
        page.goto(url + "/search/")
        page.select_option("#mode", "lexical")
        page.fill("#lang", "en")
        page.fill("#q", "the")
        page.press("#q", "Enter")
        page.wait_for_selector(".hit mark")
        assert page.locator(".hit").count() >= 5
        assert "· en ·" in page.inner_text(".hit .meta")
        page.fill("#q", "flumpernox")
        page.press("#q", "Enter")
        page.wait_for_selector("text=No results.")
        r = httpx.post(f"{url}/v1/posts", json={"posts": [
            {"post_id": "web1", "text": "The flumpernox parade downtown was loud and wonderful today"}]})
        assert r.json()["added"] == ["web1"]
        page.wait_for_selector(".hit[data-post-id='web1'] mark", timeout=10_000)  # the live refresh
        assert page.inner_text(".hit[data-post-id='web1'] mark") == "flumpernox"
    engine.stop()
