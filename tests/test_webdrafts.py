"""The chat page's "Draft a post" action in headless Chromium: shown only on a server with drafts (a
search index) and behind the API key, it drafts posts on the topic typed in the message box, lists what
POST /v1/drafts returns, and "Use" puts a draft into the message box. Skips when chromium is absent (see
tests/test_webchat.py). Screenshot: test-artifacts/webdrafts.png.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from browser_helpers import chromium, needs_chromium, open_chat
from search_helpers import tiny_corpus
from serve_helpers import ServerThread, make_tokenizer, scripted_model
from test_drafts import EMAIL, SENTENCE, TOPIC, scripted_engine

from murmur.engine import Engine
from murmur.search.drafts import Drafter, build_router, check_request
from murmur.search.index import SearchIndex, build_index
from murmur.serve.app import create_app

pytestmark = [pytest.mark.slow, needs_chromium]  # a real browser

KEY = "sk-drafts-test"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def test_draft_a_post_lists_the_drafts_and_uses_one(tmp_path):
    _, clean = tiny_corpus(tmp_path, users=60, rows=400)
    build_index(clean, tmp_path / "idx", None, progress=False)
    tok = make_tokenizer(tmp_path / "tok", 500, [SENTENCE, EMAIL, TOPIC])
    ARTIFACTS.mkdir(exist_ok=True)
    with SearchIndex(tmp_path / "idx", writable=False) as ix, chromium(tmp_path / "profile", 1300, 850) as ctx:
        drafter = Drafter(ix)
        body = {"kind": "post", "topic": TOPIC, "n": 3}
        engine = scripted_engine(tok, drafter, check_request(body), SENTENCE).start()
        try:
            with ServerThread(create_app(engine, api_key=KEY, routers=[build_router(drafter)])) as url:
                expected = httpx.post(url + "/v1/drafts", json=body, headers={"Authorization": f"Bearer {KEY}"},
                                      timeout=120).json()
                assert expected["data"]
                page = ctx.new_page()
                page.goto(url + "/")
                page.wait_for_selector("#key-box:not([hidden])")
                assert not page.is_visible("#draft-post")   # 401 without the key: no action
                page.fill("#api-key", KEY)
                page.press("#api-key", "Tab")
                page.wait_for_selector("#draft-post:not([hidden])")
                page.click("#draft-post")                      # nothing typed: asks for a topic
                assert "Type a topic" in page.inner_text("#drafts-note")
                page.fill("#prompt", TOPIC)
                page.click("#draft-post")
                page.wait_for_selector("#drafts-list .draft")
                texts = page.locator("#drafts-list .draft-text").all_inner_texts()
                assert texts == [d["text"] for d in expected["data"]]
                assert f"from {expected['candidates']} candidates" in page.inner_text("#drafts-note")
                page.screenshot(path=str(ARTIFACTS / "webdrafts.png"))
                page.locator("#drafts-list .draft-use").first.click()
                assert page.input_value("#prompt") == texts[0]
            engine.stop()
            plain = Engine(scripted_model(tok.vocab_size, [0, 1]), tok, max_batch=2, name="plain")
            with ServerThread(create_app(plain)) as url:            # no search index: no drafts, no action
                page, responses = open_chat(ctx, url, "plain")
                assert any(u.endswith("/v1/drafts") and s == 404 for u, s in responses)
                assert not page.is_visible("#draft-post")
        finally:
            engine.stop()
