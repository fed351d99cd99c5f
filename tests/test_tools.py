"""Tool calls: the chat format with tool tokens (murmur and the exported Jinja template give the same
ids), the JSON-schema constraint, and /v1/chat/completions with tools through the official openai
client on a real uvicorn server."""

from __future__ import annotations

import json
from dataclasses import replace

import httpx
import openai
import pytest
from serve_helpers import ServerThread, make_tokenizer, micro_model, scripted_model

from murmur.chat.constrain import call_matcher, check_value, schema_matcher
from murmur.chat.template import (
    ASSISTANT_ID,
    CHAT_TEMPLATE,
    END_ID,
    TOOL_CALL_ID,
    TOOL_RESULT_ID,
    render,
    render_text,
)
from murmur.chat.tools import call_room, forced_call, forced_ids, parse_output
from murmur.engine import Engine, SamplingParams
from murmur.errors import InputError
from murmur.serve.app import create_app

SEARCH = {"type": "function", "function": {
    "name": "search_posts", "description": "Search the network's posts.",
    "parameters": {"type": "object", "required": ["query", "k", "lang", "fresh", "tags"], "properties": {
        "query": {"type": "string"}, "k": {"type": "integer"}, "lang": {"enum": ["en", "fr", "de"]},
        "fresh": {"type": "boolean"}, "tags": {"type": "array", "items": {"type": "string"}}}}}}
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "number"}}, "required": ["city"]}}}
TOOLS = [SEARCH, WEATHER]
CONVERSATION = [
    {"role": "user", "content": "What do people say about cats?"},
    {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
        "name": "search_posts", "arguments": "{\"query\": \"cats\", \"k\": 3}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "[1] cats are great"},
    {"role": "assistant", "content": "They like them [1]."},
]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return make_tokenizer(tmp_path_factory.mktemp("tok"))


# Tools whose signatures exercise every branch: no parameters, nested objects, untyped arrays, enums of numbers.
ODD_TOOLS = [{"type": "function", "function": {"name": "now"}},
             {"type": "function", "function": {"name": "post", "description": "Post it.\nNow.", "parameters": {
                 "type": "object", "properties": {"to": {"type": "object", "properties": {"id": {"type": "string"}}},
                                                  "ids": {"type": "array"}, "n": {"enum": [1, 2.5, None, "x"]}}}}}]


def test_tool_calls_render_with_tool_tokens_like_the_jinja_template(tok):
    transformers = pytest.importorskip("transformers")
    ids = render(tok, CONVERSATION, tools=TOOLS)
    assert ids.count(TOOL_CALL_ID) == 1 and ids.count(TOOL_RESULT_ID) == 1 and ids[-1] == ASSISTANT_ID
    hf = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tok.path / "tokenizer.json"),
                                              chat_template=CHAT_TEMPLATE)
    for tools in (TOOLS, TOOLS + ODD_TOOLS):
        out = hf.apply_chat_template(CONVERSATION, tools=tools, add_generation_prompt=True, tokenize=True)
        out = out["input_ids"] if hasattr(out, "keys") else out
        assert list(out) == render(tok, CONVERSATION, tools=tools)
    no_tools = hf.apply_chat_template(CONVERSATION[:1], add_generation_prompt=True, tokenize=True)
    no_tools = no_tools["input_ids"] if hasattr(no_tools, "keys") else no_tools
    assert list(no_tools) == render(tok, CONVERSATION[:1])


def test_the_tool_list_is_one_signature_a_line(tok):
    text = render_text(CONVERSATION[:1], tools=TOOLS + ODD_TOOLS)
    assert text.startswith(
        '<|doc|><|system|>Tools:\nsearch_posts(query: string, k: integer, lang: "en"|"fr"|"de", fresh: boolean, '
        'tags: string[]): Search the network\'s posts.\nget_weather(city: string, days?: number)\nnow()\n'
        'post(to?: object, ids?: any[], n?: 1|2.5|null|"x"): Post it.\nNow.<|end|><|user|>')
    # the signatures are a fraction of the JSON schemas they stand for
    assert len(render(tok, CONVERSATION[:1], tools=TOOLS)) * 2 < len(tok.encode(json.dumps(TOOLS)))


def test_schema_matcher_accepts_exactly_the_layout():
    m = call_matcher({"search_posts": SEARCH["function"]["parameters"]})
    good = '{"name": "search_posts", "arguments": {"query": "a \\"b\\"", "k": 12, "lang": "fr", "fresh": true, ' \
           '"tags": ["x", "y"]}}'
    state = m.start()
    for ch in good:
        state = m.step(state, ch)
        assert state is not None, ch
    assert m.final(state)
    for bad in ['{"name": "other"', '{"name": "search_posts", "arguments": {"query": 3',
                '{"name": "search_posts", "arguments": {"query": "", "k": 1.5']:
        state = m.start()
        for ch in bad:
            state = m.step(state, ch) if state is not None else None
        assert state is None
    with pytest.raises(InputError, match="not supported"):
        schema_matcher({"type": "object", "properties": {"x": {"type": "null"}}})
    assert check_value(SEARCH["function"]["parameters"], json.loads(good)["arguments"])
    assert not check_value(SEARCH["function"]["parameters"], {"query": "x"})


def test_parse_output_refuses_malformed_calls(tok):
    tools = {"get_weather": WEATHER["function"]["parameters"]}

    def dec(ids):
        return tok.decode(ids, skip_special=True)

    def call(text):
        return [TOOL_CALL_ID, *tok.encode(text), END_ID]

    ok = parse_output(dec, tok.encode("hi") + call('{"name": "get_weather", "arguments": {"city": "Oslo"}}'), tools)
    assert ok.error is None and ok.content == "hi" and ok.calls[0].name == "get_weather"
    assert json.loads(ok.calls[0].arguments) == {"city": "Oslo"}
    assert "JSON" in parse_output(dec, call('{"name": '), tools).error
    assert "unknown" in parse_output(dec, call('{"name": "nope", "arguments": {}}'), tools).error
    assert "schema" in parse_output(dec, call('{"name": "get_weather", "arguments": {"days": 2}}'), tools).error


@pytest.fixture(scope="module")
def client(tok):
    engine = Engine(micro_model(tok.vocab_size, max_seq_len=1024), tok, max_batch=2, max_queue=8, name="m")
    with ServerThread(create_app(engine)) as url:
        yield openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=60), url


def _valid(call, tools=TOOLS):
    schema = {t["function"]["name"]: t["function"]["parameters"] for t in tools}[call.function.name]
    return check_value(schema, json.loads(call.function.arguments))


def test_forced_tool_calls_are_always_well_formed(client):
    c, url = client
    for seed in range(3):
        r = c.chat.completions.create(model="m", messages=CONVERSATION[:1], tools=TOOLS, seed=seed,
                                      tool_choice={"type": "function", "function": {"name": "search_posts"}})
        assert r.choices[0].finish_reason == "tool_calls"
        call = r.choices[0].message.tool_calls[0]
        assert call.function.name == "search_posts" and _valid(call) and call.id.startswith("call_")
    r = c.chat.completions.create(model="m", messages=CONVERSATION, tools=TOOLS, tool_choice="required", seed=7)
    assert r.choices[0].finish_reason == "tool_calls" and _valid(r.choices[0].message.tool_calls[0])
    # streamed: delta.tool_calls chunks and finish_reason tool_calls, as the client reads them
    stream = c.chat.completions.create(model="m", messages=CONVERSATION[:1], tools=[WEATHER], stream=True,
                                       tool_choice="required", seed=1)
    chunks = list(stream)
    calls = [tc for ch in chunks for choice in ch.choices for tc in choice.delta.tool_calls or []]
    assert len(calls) == 1 and calls[0].function.name == "get_weather" and calls[0].index == 0
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert check_value(WEATHER["function"]["parameters"], json.loads(calls[0].function.arguments))


def test_bad_tool_requests_are_400(client):
    c, url = client
    with pytest.raises(openai.BadRequestError, match="tool_choice"):
        c.chat.completions.create(model="m", messages=CONVERSATION[:1], tools=TOOLS,
                                  tool_choice={"type": "function", "function": {"name": "nope"}})
    with pytest.raises(openai.BadRequestError, match="not supported"):
        c.chat.completions.create(model="m", messages=CONVERSATION[:1], tool_choice="required", tools=[
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
                "x": {"type": "null"}}}}}])


def test_malformed_auto_call_is_retried_and_counted(tok):
    junk = tok.encode("dog")[0]
    model = scripted_model(tok.vocab_size, [ASSISTANT_ID, TOOL_CALL_ID, junk, END_ID], max_seq_len=1024)
    engine = Engine(model, tok, max_batch=2, max_queue=4, name="s")
    tools = [{"type": "function", "function": {"name": "pick", "parameters": {
        "type": "object", "properties": {"color": {"enum": ["red", "blue"]}}}}}]
    with ServerThread(create_app(engine)) as url:
        c = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=60)
        r = c.chat.completions.create(model="s", messages=CONVERSATION[:1], tools=tools, temperature=0)
        call = r.choices[0].message.tool_calls[0]
        assert call.function.name == "pick" and json.loads(call.function.arguments)["color"] in ("red", "blue")
        metrics = httpx.get(url + "/metrics").text
        assert 'murmur_tool_calls_total{outcome="malformed"} 1' in metrics
        assert 'murmur_tool_calls_total{outcome="forced"} 1' in metrics
        plain = c.chat.completions.create(model="s", messages=CONVERSATION[:1], tools=tools, tool_choice="none",
                                          max_tokens=4)
        assert plain.choices[0].message.tool_calls is None
        assert plain.choices[0].message.content != tok.decode([junk])   # nor does the call's text, as text


def _call_ok(tok, ids, tools):
    parsed = parse_output(lambda t: tok.decode(t, skip_special=True), forced_ids(ids), tools)
    return parsed.error is None and len(parsed.calls) == 1


def test_a_forced_call_is_whole_within_any_budget_that_can_hold_one(tok):
    """A random model writes long strings; with the budget, every call still closes in time (without
    it, the same budgets cut most calls short)."""
    tools = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    engine = Engine(micro_model(tok.vocab_size, max_seq_len=256), tok, max_batch=4, max_queue=64).start()
    try:
        prompt = render(tok, CONVERSATION[:1], tools=TOOLS)
        least = call_room(tools) - 1
        with_budget = without = 0
        for budget in range(least, least + 8):
            for seed in range(3):
                params = SamplingParams(max_tokens=budget, temperature=1.0, seed=seed)
                fprompt, proc = forced_call(tok, prompt, tools, budget)
                with_budget += _call_ok(tok, engine.generate(fprompt, replace(params, logits_processor=proc)).token_ids,
                                        tools)
                fprompt, proc = forced_call(tok, prompt, tools)
                without += _call_ok(tok, engine.generate(fprompt, replace(params, logits_processor=proc)).token_ids,
                                    tools)
        assert with_budget == 24 and without < 12
        with pytest.raises(ValueError, match="cannot hold a call"):
            forced_call(tok, prompt, tools, least - 1)
    finally:
        engine.stop()


def test_a_small_context_keeps_the_latest_turns_that_leave_room_for_a_call(tok):
    tools = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    last = [{"role": "user", "content": "cats?"}]
    max_len = len(render(tok, last, tools=TOOLS)) + call_room(tools) + 40
    old = [{"role": "user", "content": "tell me about the weather in the city today " * 2},
           {"role": "assistant", "content": "it is sunny and warm in the city " * 2}] * 3
    system = [{"role": "system", "content": "Be brief."}]
    assert len(render(tok, system + old + last, tools=TOOLS)) > max_len
    engine = Engine(micro_model(tok.vocab_size, max_seq_len=max_len), tok, max_batch=2, max_queue=8, name="t")
    with ServerThread(create_app(engine)) as url:
        c = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=60)
        for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
            r = c.chat.completions.create(model="t", messages=system + old + last, tools=TOOLS, tool_choice=choice,
                                          seed=3)
            assert r.choices[0].finish_reason == "tool_calls" and _valid(r.choices[0].message.tool_calls[0])
            assert r.usage.prompt_tokens + call_room(tools) - 1 <= max_len
        with pytest.raises(openai.BadRequestError, match="leaving .* a tool call needs at least") as e:
            c.chat.completions.create(model="t", messages=old + [{"role": "user", "content": "cats? " * 30}],
                                      tools=TOOLS, tool_choice="required")
        assert e.value.body["param"] == "messages" and e.value.body["code"] == "context_length_exceeded"
        with pytest.raises(openai.BadRequestError, match="cannot hold a call") as e:
            c.chat.completions.create(model="t", messages=last, tools=TOOLS, tool_choice="required", max_tokens=5)
        assert e.value.body["param"] == "max_tokens"
