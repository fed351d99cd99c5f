"""Server-run tool calls in a stream: the chat server announces each ``search_posts`` run in a chunk's
extra field ``murmur_tool`` (arguments, then the posts numbered [1], [2] ... as the model read them);
OpenAI clients see ordinary chunks and never a tool call to run; the web page shows the search and
opens the post behind a citation [n] (headless Chromium, skipped without it; see tests/test_webchat.py).
A screenshot is written to ``test-artifacts/webtools.png``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import openai
import pytest
from browser_helpers import chromium, needs_chromium
from search_helpers import tiny_corpus
from serve_helpers import ServerThread, make_tokenizer, scripted_model

from murmur.chat.template import ASSISTANT_ID, END_ID, TOOL_CALL_ID
from murmur.engine import Engine
from murmur.errors import InputError
from murmur.search.index import SearchIndex, build_index
from murmur.search.tool import SearchPostsTool, ToolResult
from murmur.serve.app import create_app

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
ANSWER = "Most posts love the music [1] today"
CALL = '{"arguments":{"query": "music"},"name":"search_posts"}'
# The scripted model answers after every <|assistant|> with ANSWER and a call, so the server runs the
# search MAX_TOOL_ROUNDS times and then takes the text as the answer.
ROUNDS = 3


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    root = tmp_path_factory.mktemp("wt")
    _, clean = tiny_corpus(root, users=60, rows=400)
    build_index(clean, root / "idx", None, progress=False)
    with SearchIndex(root / "idx", writable=False) as ix:
        yield ix


def searching_engine(tmp_path: Path) -> Engine:
    tok = make_tokenizer(tmp_path / "tok", 500, [ANSWER, CALL])
    cycle = [ASSISTANT_ID, *tok.encode(ANSWER), TOOL_CALL_ID, *tok.encode(CALL), END_ID]
    return Engine(scripted_model(tok.vocab_size, cycle, max_seq_len=4096), tok, max_batch=2, name="m")


class SlowSearch(SearchPostsTool):
    """search_posts that takes a moment, so the page's "searching" line can be seen while it runs."""

    def __call__(self, arguments):
        time.sleep(0.6)
        return super().__call__(arguments)


def sse_chunks(text: str) -> list[dict]:
    data = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
    assert data[-1] == "[DONE]"
    return [json.loads(d) for d in data[:-1]]


def test_search_posts_gives_the_model_text_and_clients_items(index):
    result = SearchPostsTool(index)({"query": "music", "k": 3})
    assert isinstance(result, ToolResult) and [i["n"] for i in result.items] == [1, 2, 3]
    for line, item in zip(result.text.splitlines(), result.items, strict=True):
        assert line == f"[{item['n']}] {' '.join(item['text'].split())}"
        assert item["post_id"] and item["author_id"] and item["created_at"].startswith("20")


def test_stream_announces_server_tool_runs(index, tmp_path):
    tool = SearchPostsTool(index)
    expected = tool({"query": "music"}).items
    assert expected
    with ServerThread(create_app(searching_engine(tmp_path), tools=[tool])) as url:
        msgs = [{"role": "user", "content": "What do people say about music?"}]
        r = httpx.post(url + "/v1/chat/completions", json={"model": "m", "messages": msgs, "stream": True},
                       timeout=120)
        assert r.status_code == 200
        chunks = sse_chunks(r.text)
        events = [c["murmur_tool"] for c in chunks if "murmur_tool" in c]
        assert [e["status"] for e in events] == ["running", "done"] * ROUNDS
        assert all(e["name"] == "search_posts" and e["arguments"] == {"query": "music"} for e in events)
        assert len({e["id"] for e in events}) == ROUNDS
        assert events[1]["items"] == expected and "items" not in events[0]
        for c in chunks:   # tool events are chunks with an empty delta, never a tool call to run
            assert c["object"] == "chat.completion.chunk"
            assert all("tool_calls" not in ch["delta"] for ch in c["choices"])
            if "murmur_tool" in c:
                assert len(c["choices"]) == 1 and c["choices"][0]["delta"] == {}
        content = "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"])
        assert content == ANSWER and chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")

        # The official client: ordinary chunks, the answer intact, no tool calls; the event is an extra.
        c = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=120)
        got = list(c.chat.completions.create(model="m", messages=msgs, stream=True))
        assert all(ch.object == "chat.completion.chunk" for ch in got)
        assert "".join(ch.choices[0].delta.content or "" for ch in got if ch.choices) == ANSWER
        assert not any(ch.choices and ch.choices[0].delta.tool_calls for ch in got)
        extras = [ch.model_extra["murmur_tool"] for ch in got if (ch.model_extra or {}).get("murmur_tool")]
        assert len(extras) == 2 * ROUNDS and extras[1]["items"][0]["post_id"] == expected[0]["post_id"]
        whole = c.chat.completions.create(model="m", messages=msgs)   # not streamed: no events, same answer
        assert whole.choices[0].message.content == ANSWER and whole.choices[0].message.tool_calls is None


def test_stream_without_server_tools_has_no_events(tmp_path):
    with ServerThread(create_app(searching_engine(tmp_path))) as url:
        r = httpx.post(url + "/v1/chat/completions", timeout=120, json={
            "model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 4})
        assert r.status_code == 200 and not any("murmur_tool" in c for c in sse_chunks(r.text))


@pytest.mark.slow   # a real browser
@needs_chromium
def test_web_chat_shows_the_search_and_opens_cited_posts(index, tmp_path):
    tool = SearchPostsTool(index)
    cited = tool({"query": "music"}).items[0]
    ARTIFACTS.mkdir(exist_ok=True)
    with ServerThread(create_app(searching_engine(tmp_path), tools=[SlowSearch(index)])) as url, \
            chromium(tmp_path / "profile") as ctx:
        page = ctx.new_page()
        page.goto(url + "/")
        page.wait_for_function("document.getElementById('model-name').textContent === 'm'")
        page.fill("#prompt", "What do people say about music?")
        page.press("#prompt", "Enter")
        running = page.wait_for_selector(".msg.assistant .tool-line.running")
        assert running.inner_text() == "searching posts for “music”…"
        page.wait_for_selector("#stop", state="hidden")
        assert not page.is_visible("#error")
        bubble = page.locator(".msg.assistant .bubble")
        lines = bubble.locator(".tool-line").all_inner_texts()
        assert lines and all("searched posts for “music”" in t for t in lines), lines
        assert bubble.locator(".answer").inner_text() == ANSWER
        cite = bubble.locator("button.cite")
        assert cite.count() == 1 and cite.inner_text() == "[1]"
        assert bubble.locator(".cite-post").count() == 0
        cite.click()
        post = bubble.locator(".cite-post")
        assert post.count() == 1 and post.get_attribute("data-post-id") == cited["post_id"]
        assert post.locator(".cite-post-text").inner_text() == cited["text"]
        meta = post.locator(".cite-post-meta").inner_text()
        assert f"@{cited['author_id']}" in meta and cited["created_at"][:10] in meta
        page.screenshot(path=str(ARTIFACTS / "webtools.png"))
        cite.click()   # a second click closes it
        assert bubble.locator(".cite-post").count() == 0
        page.reload()   # the searches and citations are kept with the conversation
        page.wait_for_selector(".msg.assistant button.cite")
        page.locator(".msg.assistant button.cite").click()
        assert page.locator(".msg.assistant .cite-post").get_attribute("data-post-id") == cited["post_id"]


class FailingSearch(SearchPostsTool):
    """search_posts whose every run fails with a clear error (as a bad argument does)."""

    def __call__(self, arguments):
        raise InputError("must be a known language code", field="lang")


def test_stream_announces_a_failed_tool_run(index, tmp_path):
    with ServerThread(create_app(searching_engine(tmp_path), tools=[FailingSearch(index)])) as url:
        r = httpx.post(url + "/v1/chat/completions", timeout=120, json={
            "model": "m", "messages": [{"role": "user", "content": "music?"}], "stream": True})
        chunks = sse_chunks(r.text)
        events = [c["murmur_tool"] for c in chunks if "murmur_tool" in c]
        assert [e["status"] for e in events] == ["running", "error"] * ROUNDS
        assert "lang" in events[1]["error"] and "items" not in events[1]
        assert "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"]) == ANSWER
        assert 'murmur_tool_calls_total{outcome="server_error"} 3' in httpx.get(url + "/metrics").text


def test_server_rounds_fit_a_small_context(index, tmp_path):
    """A model that calls every time, in a context too small for three rounds of results: earlier
    rounds and the last posts give way, and the turn ends with an answer, never a context error."""
    from murmur.chat.template import render
    from murmur.chat.tools import call_room

    tok = make_tokenizer(tmp_path / "tok", 500, [ANSWER, CALL])
    msgs = [{"role": "user", "content": "What do people say about music?"}]
    tools = [SearchPostsTool.spec]
    prompt = len(render(tok, msgs, tools=tools))
    need = call_room({"search_posts": SearchPostsTool.spec["function"]["parameters"]})
    results = len(tok.encode(SearchPostsTool(index)({"query": "music"}).text))
    max_len = prompt + need + 40 + 64
    assert prompt + need + results > max_len   # one round's posts alone would not fit
    cycle = [ASSISTANT_ID, *tok.encode(ANSWER), TOOL_CALL_ID, *tok.encode(CALL), END_ID]
    engine = Engine(scripted_model(tok.vocab_size, cycle, max_seq_len=max_len), tok, max_batch=2, name="m")
    with ServerThread(create_app(engine, tools=[SearchPostsTool(index)])) as url:
        c = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=120)
        r = c.chat.completions.create(model="m", messages=msgs, max_tokens=20)
        assert r.choices[0].message.content.startswith(ANSWER) and r.choices[0].message.tool_calls is None
        assert 'outcome="server_run"' in httpx.get(url + "/metrics").text
