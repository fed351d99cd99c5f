"""Drafts: every returned variant keeps the rules (length with links at 23, language, no personal data,
no near-duplicate of an indexed post), bad requests name their field, POST /v1/drafts on a real server
and `murmur draft`; the model is a real Transformer scripted to write a known sentence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from search_helpers import tiny_corpus
from serve_helpers import ServerThread, make_tokenizer, scripted_model

from murmur.data.normalize import scrub_pii, tweet_length
from murmur.engine import Engine
from murmur.errors import InputError
from murmur.search.drafts import (
    DraftConfig,
    Drafter,
    DraftRequest,
    build_router,
    check_request,
    max_jaccard,
    text_lang,
)
from murmur.search.index import SearchIndex, build_index
from murmur.serve.app import create_app

ROOT = Path(__file__).resolve().parent.parent
SENTENCE = " is what I drink before work every morning."
EMAIL = " mail me at bob.smith@example.com today"
TOPIC = "coffee"


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    root = tmp_path_factory.mktemp("drafts")
    _, clean = tiny_corpus(root, users=60, rows=400)
    build_index(clean, root / "idx", None, progress=False)
    with SearchIndex(root / "idx", writable=False) as ix:
        yield ix


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return make_tokenizer(tmp_path_factory.mktemp("tok"), 500, [SENTENCE, EMAIL, TOPIC])


def scripted_engine(tok, drafter: Drafter, req: DraftRequest, text: str) -> Engine:
    """An engine whose model continues ``req``'s prompt with ``text`` and a line break: after the topic
    the post prompt opens with, or (the chat prompt, which opens nothing) after the topic it writes."""
    req, context = drafter.resolve(req)
    probe = Engine(scripted_model(tok.vocab_size, [0, 1], max_seq_len=512), tok, max_batch=4)
    prompt, lead = drafter.prompt(probe, req, context, 64)
    cycle = [prompt[-1], *tok.encode(text if lead else (req.topic or "") + text), *tok.encode("\n")]
    return Engine(scripted_model(tok.vocab_size, cycle, max_seq_len=512), tok, max_batch=8, name="scripted")


def assert_kept_rules(drafter: Drafter, out: dict, lang: str) -> None:
    for d in out["data"]:
        t = d["text"]
        assert tweet_length(t) <= 280 and text_lang(t) == lang and scrub_pii(t)[0] == t, t
        near = [p["text"] for p in drafter.search(t, 10)]
        assert max_jaccard(t, near) < 0.8, t


def test_bad_draft_requests_name_the_field():
    for body, field in [({}, "topic"), ({"kind": "post", "topic": "  "}, "topic"), ({"kind": "reply"}, "reply_to"),
                        ({"kind": "story", "topic": "x"}, "kind"), ({"topic": "x", "n": 0}, "n"),
                        ({"topic": "x", "n": 17}, "n"), ({"topic": "x", "n": True}, "n"),
                        ({"topic": "x", "lang": "xx-nope"}, "lang"), ({"topic": "x", "lang": "klingon"}, "lang"),
                        ({"topic": "x", "nope": 1}, "nope"), ({"topic": "x", "reply_to": "p1"}, "reply_to"),
                        ({"topic": "x", "voice": ""}, "voice"),
                        ({"topic": "x", "temperature": 5}, "temperature"), ({"topic": "x" * 201}, "topic"),
                        ([], "body")]:
        with pytest.raises(InputError) as e:
            check_request(body)
        assert e.value.field == field, body
    assert check_request({"topic": "x", "lang": "ES"}).lang == "es"


def test_length_counts_links_as_23_and_near_duplicates_are_found():
    assert tweet_length("see https://example.com/a/very/long/path/that/goes/on/and/on/forever") == 4 + 23
    text = "The match last night was unbelievable, what a finish by the home team"
    assert max_jaccard(text + "!!", [text, "something else entirely"]) >= 0.8
    assert max_jaccard(text, ["a completely different post about cooking pasta at home"]) < 0.5


def test_each_rule_drops_what_breaks_it(index):
    drafter = Drafter(index)
    post = drafter.search("the", 1)[0]
    lang = post["lang"]
    assert drafter.violation(post["text"], lang, []) == "near_duplicate"
    assert drafter.violation("word " * 60, "en", []) == "too_long"
    assert drafter.violation("call me on +1 415 555 0134 about the game tonight", "en", []) == "pii"
    assert drafter.violation("Hoy el partido fue increíble y todos lo celebramos juntos", "en", []) == "wrong_lang"
    assert drafter.violation("", "en", []) == "empty"
    fine = "Finally tried that new coffee place downtown and the espresso was worth the wait"
    assert drafter.violation(fine, "en", []) is None


@pytest.mark.parametrize("prompt", ["chat", "post"])
def test_drafts_keep_every_rule_and_rank_by_score(index, tok, prompt):
    drafter = Drafter(index, DraftConfig(prompt=prompt))
    req = check_request({"topic": TOPIC, "lang": "en", "n": 3, "temperature": 0})
    with scripted_engine(tok, drafter, req, SENTENCE) as engine:
        out = drafter.draft(engine, req)
        assert out["candidates"] == 9 and out["requested"] == 3
        assert [d["text"] for d in out["data"]] == [TOPIC + SENTENCE]   # greedy: nine equal candidates
        assert out["filtered"]["duplicate"] == 8
        assert out["data"][0]["score"] > -1.0   # the scripted model is sure of its sentence
        assert_kept_rules(drafter, out, "en")
        # the same sentence asked in Spanish: none comes back, each counted as the wrong language
        es = drafter.draft(engine, check_request({"topic": TOPIC, "lang": "es", "n": 2, "temperature": 0}))
        assert es["data"] == [] and es["filtered"]["wrong_lang"] == 6 and es["short_by"] == 2
    with scripted_engine(tok, drafter, req, EMAIL) as engine:
        out = drafter.draft(engine, req)
        assert out["data"] == [] and out["filtered"]["pii"] == 9


def test_the_chat_prompt_is_the_drafting_turn_the_fine_tuning_data_teaches(index, tok):
    from murmur.chat.drafting import draft_messages
    from murmur.chat.template import render
    from murmur.engine import post_prompt
    from murmur.errors import ConfigError

    drafter = Drafter(index, DraftConfig(prompt="chat"))
    engine = Engine(scripted_model(tok.vocab_size, [0, 1], max_seq_len=512), tok, max_batch=2)
    parent = drafter.search("the", 1)[0]
    who, lang = parent["author_id"], parent["lang"]
    req, ctx = drafter.resolve(check_request({"topic": TOPIC, "voice": who}))
    assert drafter.prompt(engine, req, ctx, 64) == (
        render(tok, draft_messages("post", lang, TOPIC, voice=who, voice_posts=ctx)), "")
    req, ctx = drafter.resolve(check_request({"kind": "reply", "reply_to": parent["post_id"]}))
    assert drafter.prompt(engine, req, ctx, 64)[0] == render(tok, draft_messages("reply", lang, parent=ctx[-1]))
    req, ctx = drafter.resolve(check_request({"topic": TOPIC, "lang": "es"}))
    ids, _ = drafter.prompt(engine, req, ctx, 64)
    assert ids == render(tok, draft_messages("post", "es", TOPIC)) and ctx   # topic posts check novelty only
    assert "Write a post about coffee in Spanish." in tok.decode(ids, skip_special=True)
    req, ctx = drafter.resolve(check_request({"topic": TOPIC, "voice": who}))
    full, _ = drafter.prompt(engine, req, ctx, 64)
    short = Engine(scripted_model(tok.vocab_size, [0, 1], max_seq_len=len(full) + 63), tok, max_batch=2)
    ids, _ = drafter.prompt(short, req, ctx, 64)      # the voice's oldest post gives way to fit
    assert len(ids) + 64 <= short.max_len and ids == render(tok, draft_messages("post", lang, TOPIC, voice=who,
                                                                                voice_posts=ctx[:-1]))
    post = Drafter(index)   # the default: a post document, the topic its new line's opening
    ids, lead = post.prompt(engine, req, ctx, 64)
    assert lead == TOPIC and ids == post_prompt(tok, "\n".join([*ctx, TOPIC]))
    with pytest.raises(ConfigError, match="prompt"):
        Drafter(index, DraftConfig(prompt="poem"))


def test_replies_and_voices_come_from_the_index(index, tok):
    drafter = Drafter(index)
    parent = drafter.search("the", 1)[0]
    req, context = drafter.resolve(check_request({"kind": "reply", "reply_to": parent["post_id"]}))
    assert req.lang == parent["lang"] and context[-1] == " ".join(parent["text"].split())[:200]
    req, context = drafter.resolve(check_request({"topic": TOPIC, "voice": parent["author_id"]}))
    mine = drafter.recent_posts(parent["author_id"], 3)
    assert context == [" ".join(p["text"].split())[:200] for p in mine] and mine
    for body, field in [({"kind": "reply", "reply_to": "no-such-post"}, "reply_to"),
                        ({"topic": TOPIC, "voice": "no-such-account"}, "voice")]:
        with pytest.raises(InputError) as e:
            drafter.resolve(check_request(body))
        assert e.value.field == field


def test_drafts_route_on_a_real_server(index, tok):
    drafter = Drafter(index)
    req = check_request({"topic": TOPIC, "lang": "en", "n": 2})
    with scripted_engine(tok, drafter, req, SENTENCE) as engine:
        engine.start()
        with ServerThread(create_app(engine, routers=[build_router(drafter)])) as url:
            r = httpx.post(f"{url}/v1/drafts", json={"topic": TOPIC, "lang": "en", "n": 2}, timeout=120)
            assert r.status_code == 200, r.text
            body = r.json()
            assert 1 <= len(body["data"]) <= 2 and body["candidates"] == 6
            assert_kept_rules(drafter, body, "en")
            for bad, field in [({"topic": TOPIC, "n": 99}, "n"), ({"kind": "reply"}, "reply_to"),
                               ({"kind": "reply", "reply_to": "nope"}, "reply_to"),
                               ({"topic": TOPIC, "voice": "nobody"}, "voice"), ({"topic": TOPIC, "lang": "zz"}, "lang")]:
                r = httpx.post(f"{url}/v1/drafts", json=bad, timeout=60)
                assert r.status_code == 400 and r.json()["error"]["param"] == field, r.text
            r = httpx.post(f"{url}/v1/drafts", content=b"{not json", timeout=60)
            assert r.status_code == 400 and "error" in r.json()


@pytest.mark.slow
def test_murmur_draft_cli(index, tok, tmp_path):
    from murmur.model import ModelConfig
    from murmur.train.checkpoint import save_inference_model

    drafter = Drafter(index)
    req = check_request({"topic": TOPIC, "lang": "en", "n": 2})
    with scripted_engine(tok, drafter, req, SENTENCE) as engine:
        model = engine.model
    cfg = ModelConfig(vocab_size=tok.vocab_size, dim=64, n_layers=1, n_heads=4, max_seq_len=512, tie_embeddings=False)
    model_dir = save_inference_model(tmp_path / "model", model, cfg, tok.path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    base = [sys.executable, "-m", "murmur.cli", "draft", str(index.path), "--model", str(model_dir)]
    ok = subprocess.run(base + ["--topic", TOPIC, "--lang", "en", "-n", "2", "--json"], capture_output=True,
                        text=True, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    out = json.loads(ok.stdout)
    assert out["data"] and out["candidates"] == 6
    assert_kept_rules(drafter, out, "en")
    for args, word in [(["--topic", TOPIC, "-n", "0"], "n"), (["--kind", "reply"], "reply_to"),
                       (["--kind", "reply", "--reply-to", "nope"], "reply_to"), (["--topic", TOPIC, "--voice", "x"], "voice"),
                       (["--topic", TOPIC, "--lang", "zz"], "lang")]:
        bad = subprocess.run(base + args, capture_output=True, text=True, env=env, timeout=120)
        assert bad.returncode == 2, (args, bad.stderr)
        assert len(bad.stderr.strip().splitlines()) == 1 and word in bad.stderr and "Traceback" not in bad.stderr
