"""The built-in ``search_posts`` tool: the server runs it for a chat without client tools and the model
answers from the results; a client that passes its own tools still gets its calls back."""

from __future__ import annotations

import httpx
import openai
import pytest
from search_helpers import tiny_corpus
from serve_helpers import ServerThread, make_tokenizer, micro_model

from murmur.engine import Engine
from murmur.errors import InputError
from murmur.search.index import SearchIndex, build_index
from murmur.search.tool import SearchPostsTool, format_results
from murmur.serve.app import create_app


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    root = tmp_path_factory.mktemp("st")
    _, clean = tiny_corpus(root, users=60, rows=400)
    build_index(clean, root / "idx", None, progress=False)
    with SearchIndex(root / "idx", writable=False) as ix:
        yield ix


def test_search_posts_tool_numbers_its_results(index):
    tool = SearchPostsTool(index)
    hits = tool.search({"query": "the", "k": 3})
    text = tool({"query": "the", "k": 3}).text
    assert len(hits) == 3 and text.splitlines()[0].startswith(f"[1] {hits[0]['text'].split()[0]}")
    assert format_results([]) == "No posts found."
    with pytest.raises(InputError) as e:
        tool({"query": "the", "k": 99})
    assert e.value.field == "k"
    with pytest.raises(InputError):
        tool({"query": ""})


def test_server_runs_search_posts_and_answers(index, tmp_path):
    tok = make_tokenizer(tmp_path / "tok")
    engine = Engine(micro_model(tok.vocab_size, max_seq_len=2048), tok, max_batch=2, max_queue=4, name="m")
    with ServerThread(create_app(engine, tools=[SearchPostsTool(index)])) as url:
        c = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=120)
        msgs = [{"role": "user", "content": "What are people saying about the weather?"}]
        r = c.chat.completions.create(model="m", messages=msgs, max_tokens=8, seed=0,
                                      tool_choice={"type": "function", "function": {"name": "search_posts"}})
        assert r.choices[0].message.tool_calls is None and r.choices[0].finish_reason in ("stop", "length")
        metrics = httpx.get(url + "/metrics").text
        assert 'murmur_tool_calls_total{outcome="forced"} 1' in metrics
        assert 'murmur_tool_calls_total{outcome="server_run"} 1' in metrics
        # the server's own turn holds the results: more prompt tokens than the question alone
        plain = c.chat.completions.create(model="m", messages=msgs, max_tokens=8, tool_choice="none")
        assert r.usage.prompt_tokens > 2 * plain.usage.prompt_tokens
        mine = [{"type": "function", "function": {"name": "lookup", "parameters": {
            "type": "object", "properties": {"q": {"type": "string"}}}}}]
        own = c.chat.completions.create(model="m", messages=msgs, tools=mine, tool_choice="required")
        assert own.choices[0].message.tool_calls[0].function.name == "lookup"
