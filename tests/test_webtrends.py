"""The chat page's trends panel in headless Chromium: it appears only on a server with trends (a search
index), behind the API key, lists the stories with their summaries, and a summary's [n] opens the cited
post. Skips when chromium is absent (see tests/test_webchat.py). Screenshot: test-artifacts/webtrends.png.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from browser_helpers import chromium, needs_chromium, open_chat
from search_helpers import story_index
from serve_helpers import ServerThread, make_tokenizer, scripted_model

from murmur.chat.template import ASSISTANT_ID
from murmur.engine import Engine
from murmur.search.index import SearchIndex
from murmur.search.trends import Trends, build_router
from murmur.serve.app import create_app

pytestmark = [pytest.mark.slow, needs_chromium]

KEY = "sk-trends-test"
REPLY = "Everyone is talking about it [2] tonight"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def test_trends_panel_shows_stories_and_opens_cited_posts(tmp_path):
    _, idx = story_index(tmp_path / "w", 4)
    tok = make_tokenizer(tmp_path / "tok", 500, [REPLY])
    engine = Engine(scripted_model(tok.vocab_size, [ASSISTANT_ID, *tok.encode(REPLY)], max_seq_len=4096), tok,
                    max_batch=2, name="murmur-demo")
    ARTIFACTS.mkdir(exist_ok=True)
    with SearchIndex(idx, writable=False) as ix, \
            ServerThread(create_app(engine, api_key=KEY, routers=[build_router(Trends(ix))])) as url, \
            chromium(tmp_path / "profile", 1400, 850) as ctx:
        expected = httpx.get(url + "/v1/trends", params={"window": "1h", "k": 5},
                             headers={"Authorization": f"Bearer {KEY}"}, timeout=120).json()["data"]
        assert expected and all(t["citations"] for t in expected)
        page = ctx.new_page()
        page.goto(url + "/")
        page.wait_for_selector("#key-box:not([hidden])")
        assert not page.is_visible("#trends-panel")  # 401 without the key: nothing shown
        page.fill("#api-key", KEY)
        page.press("#api-key", "Tab")
        page.wait_for_selector("#trends-panel .trend")
        items = page.locator("#trends-panel .trend")
        assert items.count() == len(expected)
        first = items.first
        assert first.locator(".trend-label").inner_text() == expected[0]["label"]
        assert first.locator(".trend-summary").inner_text().startswith("Everyone is talking about it [2]")
        assert first.locator(".trend-post").count() == 0
        first.locator(".trend-cite").first.click()
        post = first.locator(".trend-post")
        assert post.count() == 1
        cited = expected[0]["citations"][0]
        assert cited["n"] == 2 and post.get_attribute("data-post-id") == cited["post_id"]
        assert post.locator(".trend-post-text").inner_text() == cited["text"]
        page.screenshot(path=str(ARTIFACTS / "webtrends.png"))
        first.locator(".trend-cite").first.click()  # a second click closes it
        assert first.locator(".trend-post").count() == 0
        page.select_option("#trends-window", "6h")
        page.wait_for_function("document.getElementById('trends-when').textContent.includes('until')")
        assert page.is_visible("#trends-panel")


def test_trends_panel_stays_hidden_without_search(tmp_path):
    tok = make_tokenizer(tmp_path / "tok", 500, [REPLY])
    engine = Engine(scripted_model(tok.vocab_size, [ASSISTANT_ID, *tok.encode(REPLY)]), tok, max_batch=2,
                    name="plain")
    with ServerThread(create_app(engine)) as url, chromium(tmp_path / "profile") as ctx:
        page, responses = open_chat(ctx, url, "plain")
        assert any(u.endswith("/v1/trends?window=1h&k=5") and s == 404 for u, s in responses)
        assert not page.is_visible("#trends-panel")
