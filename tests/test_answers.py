"""Answers with citations: the citation filter (whole and streamed), POST /v1/answers on a real
server, and `murmur ask`."""

from __future__ import annotations

import json

import httpx
import pytest
from search_helpers import tiny_corpus
from serve_helpers import ServerThread, make_tokenizer, micro_model, scripted_model

from murmur.engine import Engine
from murmur.errors import InputError
from murmur.search.answer import (
    CITE,
    Answerer,
    CitationStream,
    build_router,
    check_request,
    cited,
    clean_citations,
)
from murmur.search.index import SearchIndex, build_index
from murmur.serve.app import create_app
from murmur.tokenizer import ASSISTANT_ID, END_ID, TOOL_CALL_ID


def test_citations_outside_the_retrieved_posts_are_removed():
    assert clean_citations("Cats rule [1]. Dogs too [7]. Birds [2][0].", 3) == "Cats rule [1]. Dogs too. Birds [2]."
    results = [{"post_id": f"p{i}", "text": "t", "author_id": "a", "created_at": "x"} for i in range(3)]
    assert [c["n"] for c in cited("a [3] b [1] c [3] d [4]", results)] == [1, 3]
    text = "Cats rule [1]. Dogs too [7]. Birds [2] and [12] ok [ not"
    for cut in range(1, len(text)):
        s = CitationStream(3)
        out = s.feed(text[:cut]) + s.feed(text[cut:]) + s.flush()
        assert out == clean_citations(text, 3), cut


def test_bad_answer_requests_name_the_field():
    for body, field in [({}, "question"), ({"question": "x", "k": 0}, "k"), ({"question": "x", "nope": 1}, "nope"),
                        ({"question": "x", "temperature": 3}, "temperature")]:
        with pytest.raises(Exception) as e:
            check_request(body)
        assert getattr(e.value, "field", None) == field


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    root = tmp_path_factory.mktemp("ans")
    _, clean = tiny_corpus(root, users=60, rows=400)
    build_index(clean, root / "idx", None, progress=False)
    with SearchIndex(root / "idx", writable=False) as ix:
        yield ix


def test_answers_route_whole_and_streamed(index, tmp_path):
    tok = make_tokenizer(tmp_path / "tok")
    engine = Engine(micro_model(tok.vocab_size, max_seq_len=2048), tok, max_batch=2, max_queue=4, name="m")
    with ServerThread(create_app(engine, routers=[build_router(Answerer(index))])) as url:
        r = httpx.post(url + "/v1/answers", json={"question": "what about the weather?", "k": 3, "max_tokens": 24,
                                                  "seed": 1}, timeout=60)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) >= {"answer", "citations", "usage"} and body["usage"]["completion_tokens"] >= 1
        assert all(1 <= int(n) <= 3 for n in CITE.findall(body["answer"]))
        bad = httpx.post(url + "/v1/answers", json={"question": "x", "k": 50}, timeout=30)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "k"
        broken = httpx.post(url + "/v1/answers", content=b"{not json", headers={"Content-Type": "application/json"},
                            timeout=30)
        assert broken.status_code == 400 and broken.json()["error"]["param"] == "body", broken.text
        with httpx.stream("POST", url + "/v1/answers", json={"question": "what about the weather?", "k": 3,
                                                             "max_tokens": 24, "seed": 1, "stream": True},
                          timeout=60) as s:
            lines = [line[6:] for line in s.iter_lines() if line.startswith("data: ")]
        assert lines[-1] == "[DONE]"
        events = [json.loads(x) for x in lines[:-1]]
        assert "citations" in events[-1] and all("delta" in e for e in events[:-1])
        assert "".join(e["delta"] for e in events[:-1]).strip() == body["answer"]


def test_murmur_ask_prints_json_and_refuses_bad_k(index, tmp_path):
    from typer.testing import CliRunner

    from murmur.cli import app
    from murmur.model import ModelConfig
    from murmur.train.checkpoint import save_inference_model

    tok = make_tokenizer(tmp_path / "tok")
    cfg = ModelConfig(vocab_size=tok.vocab_size, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=2048,
                      init_std=0.5)
    model_dir = save_inference_model(tmp_path / "model", micro_model(tok.vocab_size, max_seq_len=2048), cfg,
                                     tok.path)
    args = ["ask", str(index.path), "what about the weather?", "--model", str(model_dir), "--max-tokens", "16",
            "--seed", "0", "--k", "3"]
    r = CliRunner().invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    assert set(out) >= {"answer", "citations", "usage"}
    bad = CliRunner().invoke(app, [*args[:-2], "--k", "99"])
    assert bad.exit_code == 1 and getattr(bad.exception, "field", None) == "k"   # main() prints it, exit 2


def test_sft_data_teaches_search_then_cited_answer(tmp_path):
    from murmur.chat.data import ConversationDataConfig, build_conversations, read_conversations
    from murmur.chat.grounded import SEARCH_POSTS
    from murmur.chat.template import TOOL_CALL_ID, TOOL_RESULT_ID, render

    _, clean = tiny_corpus(tmp_path, users=60, rows=600)
    stats = build_conversations(clean, tmp_path / "c.jsonl",
                                ConversationDataConfig(instructions=150, threads=False, system_fraction=0.0))
    assert stats.by_kind.get("search_answer", 0) > 0
    tok = make_tokenizer(tmp_path / "tok")
    found = offered = 0
    for conv in read_conversations(tmp_path / "c.jsonl"):
        if not any(m.get("tool_calls") for m in conv):
            continue
        found += 1
        call = conv[2]["tool_calls"][0]["function"]
        assert call["name"] == "search_posts" and json.loads(call["arguments"])["query"]
        n_results = conv[3]["content"].count("\n") + 1
        cites = [int(n) for n in CITE.findall(conv[4]["content"])]
        assert cites and all(1 <= n <= n_results for n in cites)
        ids = render(tok, conv, add_generation_prompt=False)
        assert ids.count(TOOL_CALL_ID) == 1 and ids.count(TOOL_RESULT_ID) == 1
        if "tools" in conv[0]:   # offered as a chat request offers it: rendered as render(tools=...) does
            offered += 1
            assert conv[0]["tools"] == [SEARCH_POSTS] and ids == render(tok, conv[1:], False, tools=[SEARCH_POSTS])
        else:
            assert conv[0]["content"].startswith("Answer from the posts found")
    assert found == stats.by_kind["search_answer"] and 0 < offered < found
    lines = (tmp_path / "c.jsonl").read_text().splitlines()
    # other kinds offer the tool too and answer without calling it
    plain = [c for c in read_conversations(tmp_path / "c.jsonl")
             if "tools" in c[0] and not any(m.get("tool_calls") for m in c)]
    assert plain and sum('"tools": [{"type": "function"' in line for line in lines) == offered + len(plain)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(lines[0] + "\n" + json.dumps({"messages": [{"role": "user", "content": "x"}, {
        "role": "assistant", "content": "y"}], "tools": [{"type": "function", "function": {"name": "a b"}}]}) + "\n")
    with pytest.raises(InputError, match=r"bad.jsonl:2 ") as e:
        read_conversations(bad)
    assert e.value.field == "tools[0].function.name"


def test_an_answer_never_opens_another_tool_call(index, tmp_path):
    """A model that would call search again after the results (as a fine-tuned tiny model sometimes
    does) writes text instead: the call's JSON never reaches the client as the answer."""
    tok = make_tokenizer(tmp_path / "tok")
    cats = tok.encode("cats")   # the call's text: several distinct tokens
    model = scripted_model(tok.vocab_size, [ASSISTANT_ID, TOOL_CALL_ID, *cats, END_ID], max_seq_len=2048)
    engine = Engine(model, tok, max_batch=2, max_queue=4, name="m")
    with ServerThread(create_app(engine, routers=[build_router(Answerer(index))])) as url:
        r = httpx.post(url + "/v1/answers", json={"question": "what about the weather?", "k": 3, "max_tokens": 6,
                                                  "temperature": 0}, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["completion_tokens"] >= 1 and "cats" not in r.json()["answer"]
