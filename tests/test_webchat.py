"""The web chat end to end in headless Chromium: key, streaming, stop, regenerate, storage, safe markdown.

Needs Debian's chromium (``apt-get install -y chromium``) and the ``playwright`` Python package
(never ``playwright install``: the system browser is used). Skips when chromium is absent.
A screenshot is written to ``test-artifacts/webchat.png``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from browser_helpers import chromium, needs_chromium
from serve_helpers import ServerThread, make_tokenizer, scripted_model

from murmur.chat.template import ASSISTANT_ID
from murmur.engine import Engine
from murmur.serve.app import create_app

pytestmark = [pytest.mark.slow, needs_chromium]  # a real browser

KEY = "sk-web-test"
REPLY = "Streaming tokens live from **murmur**, press stop whenever you like. "
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

# A stored conversation whose "model" reply tries every trick; it must render as inert text.
HOSTILE = ("Here is the **plan**, with `inline <b>code</b>` and a [safe link](https://example.com/a?b=1&c=2).\n\n"
           "<img src=x onerror=\"window.__pwned = 1\">\n<script>window.__pwned = 2</script>\n"
           "[bad link](javascript:window.__pwned=3) and <a href=\"javascript:alert(1)\">click</a>\n\n"
           "- first *point*\n- second point\n\n1. one\n2. two\n\n"
           "```python\nprint(\"<script>alert('x')</script>\")\n```")


def test_web_chat_streams_stops_and_renders_safely(tmp_path):
    tok = make_tokenizer(tmp_path / "tok", 500, [REPLY])
    cycle = [ASSISTANT_ID, *tok.encode(REPLY)]
    engine = Engine(scripted_model(tok.vocab_size, cycle, max_seq_len=8192), tok, max_batch=2, name="murmur-demo")
    ARTIFACTS.mkdir(exist_ok=True)
    with ServerThread(create_app(engine, api_key=KEY)) as url, chromium(tmp_path / "profile") as ctx:
        page = ctx.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(url + "/")

        # The server wants a key: the page asks for it, then shows the model name.
        page.wait_for_selector("#key-box:not([hidden])")
        assert page.inner_text("#model-name") == "API key needed"
        page.fill("#api-key", KEY)
        page.press("#api-key", "Tab")
        page.wait_for_function("document.getElementById('model-name').textContent === 'murmur-demo'")

        # Send a message; the reply streams in; Stop aborts it and frees the engine row.
        page.fill("#max-tokens", "8000")
        page.press("#max-tokens", "Tab")
        page.fill("#prompt", "Hello murmur!")
        page.press("#prompt", "Enter")
        page.wait_for_function(
            "document.querySelector('.msg.assistant .bubble')?.textContent.includes('press stop')")
        assert page.is_visible("#stop")
        assert page.inner_html(".msg.assistant .bubble").count("<strong>murmur</strong>") >= 1
        page.click("#stop")
        page.wait_for_selector("#stop", state="hidden")
        reply = page.inner_text(".msg.assistant .bubble")
        assert reply.endswith("(stopped)")
        page.screenshot(path=str(ARTIFACTS / "webchat-stopped.png"))
        time.sleep(0.3)
        assert page.inner_text(".msg.assistant .bubble") == reply  # nothing arrives after Stop
        deadline = time.time() + 10
        while engine.running and time.time() < deadline:
            time.sleep(0.02)
        assert engine.running == 0 and engine.stats.requests_finished.get("cancelled") == 1

        # Regenerate replaces the reply (a short one this time).
        page.fill("#max-tokens", "6")
        page.press("#max-tokens", "Tab")
        page.click("#regenerate")
        page.wait_for_function("document.querySelector('.msg.assistant .note')?.textContent.includes('limit')")
        assert page.locator(".msg.assistant").count() == 1
        assert page.inner_text(".msg.assistant .bubble").startswith("Streaming tokens live from")

        # A second conversation, stored as if the model had written hostile markdown; reload.
        stored = json.loads(page.evaluate("localStorage.getItem('murmur.chat.v1')"))
        assert len(stored["conversations"]) == 1 and stored["settings"]["maxTokens"] == 6
        stored["conversations"].insert(0, {"id": "hostile", "title": "Markdown and injection", "updated": 1,
                                           "messages": [{"role": "user", "content": "Show me <b>markdown</b>"},
                                                        {"role": "assistant", "content": HOSTILE}]})
        stored["current"] = "hostile"
        page.evaluate("s => localStorage.setItem('murmur.chat.v1', s)", json.dumps(stored))
        page.reload()
        page.wait_for_function("document.getElementById('model-name').textContent === 'murmur-demo'")
        assert page.locator(".conv").count() == 2
        bubble = page.locator(".msg.assistant .bubble")
        assert bubble.locator("img, script, b").count() == 0
        assert page.locator(".msg.user .bubble b").count() == 0
        assert page.evaluate("window.__pwned") is None and not dialogs
        links = bubble.locator("a")
        assert links.count() == 1 and links.get_attribute("href") == "https://example.com/a?b=1&c=2"
        assert bubble.locator("strong").first.inner_text() == "plan"
        assert bubble.locator("ul li").count() == 2 and bubble.locator("ol li").count() == 2
        assert "<script>alert('x')</script>" in bubble.locator("pre code").inner_text()
        assert '<img src=x onerror="window.__pwned = 1">' in bubble.inner_text()
        page.screenshot(path=str(ARTIFACTS / "webchat.png"))

        # New chat: an empty conversation, and the old ones are still listed.
        page.click("#new-chat")
        assert page.locator(".conv").count() == 3 and page.locator(".msg").count() == 0
        assert page.evaluate("window.murmurChat.renderMarkdown('[x](javascript:alert(1))')").count("<a") == 0


def test_web_chat_fits_replies_to_a_small_context(tmp_path):
    """A model with a short context (as the demo's): the page clamps max tokens to it, and with the
    field empty the server fits each reply to the room the conversation leaves, turn after turn."""
    tok = make_tokenizer(tmp_path / "tok", 500, [REPLY])
    cycle = [ASSISTANT_ID, *tok.encode(REPLY)]
    engine = Engine(scripted_model(tok.vocab_size, cycle, max_seq_len=64), tok, max_batch=2, name="small")
    with ServerThread(create_app(engine)) as url, chromium(tmp_path / "profile") as ctx:
        page = ctx.new_page()
        page.goto(url + "/")
        page.wait_for_function("document.getElementById('model-name').textContent === 'small'")
        assert page.get_attribute("#max-tokens", "max") == "32"  # half the context
        page.fill("#max-tokens", "256")  # the old default, a small model's whole context
        page.press("#max-tokens", "Tab")
        stored = json.loads(page.evaluate("localStorage.getItem('murmur.chat.v1')"))
        assert stored["settings"]["maxTokens"] == 32
        page.fill("#prompt", "Hi!")
        page.press("#prompt", "Enter")
        page.wait_for_function("document.querySelectorAll('.msg.assistant .note').length === 1")
        page.wait_for_selector("#stop", state="hidden")
        assert not page.is_visible("#error")
        page.click("#new-chat")
        page.fill("#max-tokens", "")
        page.press("#max-tokens", "Tab")
        for turn in range(3):
            page.fill("#prompt", "Hello there, small model!")
            page.press("#prompt", "Enter")
            page.wait_for_function(f"document.querySelectorAll('.msg.assistant .note').length === {turn + 1}")
            page.wait_for_selector("#stop", state="hidden")
        notes = page.locator(".msg.assistant .note").all_inner_texts()
        assert all("token limit" in n for n in notes), notes  # each reply ran to the context's end
        assert "left out" in notes[-1]  # later turns drop the oldest messages to fit
        assert page.locator(".msg.assistant").count() == 3 and not page.is_visible("#error")
