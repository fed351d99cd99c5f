"""Conversation data: reply threads and templated instructions from posts, the checked JSONL reader."""

from __future__ import annotations

import dataclasses
import gzip
import json
import random
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from murmur.chat.data import (
    KINDS,
    ConversationDataConfig,
    InstructionMaker,
    build_conversations,
    read_conversations,
    read_posts,
    reply_paths,
    topic_name,
)
from murmur.errors import ConfigError, InputError

# (post_id, text, lang, reply_to, hashtags)
POSTS = [
    ("r1", "Pizza night is the best night #food", "en", None, ["food"]),
    ("a1", "@bo Totally agree, pizza wins.", "en", "r1", []),
    ("a2", "@ana @cy Pineapple on it though?", "en", "a1", []),
    ("a3", "@bo Never pineapple! Not once.", "en", "a2", []),
    ("b1", "@ana Tacos are better, sorry.", "en", "r1", []),
    ("r2", "¿Alguien ha probado la paella de Lisboa? #Viajes", "es", None, ["Viajes"]),
    ("c1", "@x Sí, está buenísima de verdad.", "es", "r2", []),
    ("c2", "@y Gracias, la probaré este finde.", "es", "c1", []),
    ("s1", "A post nobody answered about #food", "en", None, ["food"]),
    ("o1", "@z Replying to a post that is not in the file.", "en", "gone", []),
    ("t1", "Ramen at home tonight, so good #food", "en", None, ["food"]),
    ("t2", "Third #food post: curry with friends", "en", None, ["food"]),
    ("v1", "Me encanta Lisboa en primavera #Viajes", "es", None, ["Viajes"]),
    ("v2", "Maleta lista para Oporto #Viajes", "es", None, ["Viajes"]),
    ("sp", "BUY NOW!!!! 90% off <url> #food", "en", None, ["food"]),
    ("x1", "ok", "en", None, []),
]


def write_posts(path, rows=POSTS):
    cols = list(zip(*rows, strict=True))
    table = pa.table({"post_id": list(cols[0]), "text": list(cols[1]), "lang": list(cols[2]),
                      "reply_to": pa.array(cols[3], pa.string()), "hashtags": pa.array(cols[4], pa.list_(pa.string())),
                      "likes": [0] * len(rows)})
    pq.write_table(table, path)
    return path


def cfg(**kw) -> ConversationDataConfig:
    return dataclasses.replace(ConversationDataConfig(), **kw)


def lines(path):
    return [json.loads(line)["messages"] for line in path.read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------- threads
def test_reply_chains_become_alternating_conversations(tmp_path):
    src = write_posts(tmp_path / "posts.parquet")
    out = tmp_path / "c.jsonl"
    stats = build_conversations(src, out, cfg(instructions=0, system_fraction=0.0, shuffle=False))
    convs = lines(out)
    texts = sorted([[m["content"] for m in c] for c in convs])
    assert texts == sorted([
        ["Pizza night is the best night #food", "Totally agree, pizza wins.", "Pineapple on it though?",
         "Never pineapple! Not once."],
        ["Pizza night is the best night #food", "Tacos are better, sorry."],
        # an odd chain is cut to end on an assistant turn
        ["¿Alguien ha probado la paella de Lisboa? #Viajes", "Sí, está buenísima de verdad."],
    ])
    for c in convs:
        assert [m["role"] for m in c] == ["user", "assistant"] * (len(c) // 2)
    assert stats.conversations == 3 and stats.by_kind == {"thread": 3} and stats.threads == 2
    assert stats.by_lang == {"en": 2, "es": 1} and stats.assistant_messages == 4
    assert stats.posts == len(POSTS) - 1  # "ok" is below min_chars
    # max_turns and paths_per_thread bound what one tree gives
    build_conversations(src, out, cfg(instructions=0, system_fraction=0.0, max_turns=3, paths_per_thread=1))
    assert sorted(len(c) for c in lines(out)) == [2, 2]


def test_paths_follow_reply_links_and_ignore_cycles(tmp_path):
    rows = [("p1", "first post here", "en", "p2", []), ("p2", "second post here", "en", "p1", []),
            ("q1", "root post here", "en", None, []), ("q2", "child post here", "en", "q1", [])]
    posts = read_posts(write_posts(tmp_path / "p.parquet", rows))
    paths = reply_paths(posts, 5, random.Random(0))
    assert [[p.id for p in path] for path in paths] == [["q1", "q2"]]


# ---------------------------------------------------------------- determinism
def test_same_posts_and_seed_give_the_same_file_in_any_order(tmp_path):
    a = build_conversations(write_posts(tmp_path / "a.parquet"), tmp_path / "a.jsonl", cfg(instructions=100))
    shuffled = list(POSTS)
    random.Random(3).shuffle(shuffled)
    build_conversations(write_posts(tmp_path / "b.parquet", shuffled), tmp_path / "b.jsonl", cfg(instructions=100))
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    build_conversations(tmp_path / "a.parquet", tmp_path / "c.jsonl", cfg(instructions=100, seed=1))
    assert (tmp_path / "c.jsonl").read_bytes() != (tmp_path / "a.jsonl").read_bytes()
    assert a.conversations == len(read_conversations(tmp_path / "a.jsonl")) == 103


# ---------------------------------------------------------------- instructions
def test_instructions_are_filled_from_the_posts(tmp_path):
    src = write_posts(tmp_path / "posts.parquet")
    out = tmp_path / "c.jsonl"
    stats = build_conversations(src, out, cfg(instructions=400, threads=False))
    assert stats.conversations == 400 and set(stats.by_kind) == set(KINDS) and set(stats.by_lang) == {"en", "es"}
    assert len({json.dumps(c) for c in lines(out)}) == 400  # no duplicates
    assert sum(c[0]["role"] == "system" for c in lines(out)) > 50

    posts = read_posts(src, 12)
    texts = {p.text for p in posts}
    maker = InstructionMaker(posts, reply_paths(posts, 2, random.Random(0)), cfg(), random.Random(0))
    assert maker.tags == {"en": ["food"], "es": ["Viajes"]}  # the spam post is never quoted
    for _ in range(20):
        for lang in ("en", "es"):
            q, a = maker.make("write_post", lang)
            assert a["content"] in texts and ("#food" if lang == "en" else "#Viajes") in a["content"]
            assert "<url>" not in a["content"]
            q, a = maker.make("draft_reply", lang)
            parent = q["content"].split("\n\n", 1)[1]
            assert any(p.text == a["content"] and p.reply_to for p in posts) and parent in texts
            conv = maker.make("language", lang)
            assert conv[-1]["content"].split("\n", 1)[0] != "" and all(
                line[2:] in texts for line in conv[-1]["content"].split("\n")[1:])
            if conv[0]["role"] == "system":  # the system prompt is in the other language; the answer follows the user
                assert (lang == "es") == ("language the user" in conv[0]["content"])
            q, a = maker.make("identity", lang)
            assert "murmur" in a["content"]
    # a summary is built from the thread's own sentences
    q, a = maker.make("summarize", "en")
    thread = q["content"]
    assert "4 posts" in a["content"]
    for quoted in re.findall(r'"([^"]+)"', a["content"]) + [s[2:] for s in a["content"].split("\n") if s.startswith("- ")]:
        assert quoted.rstrip("…") in thread


def test_topic_names():
    assert topic_name("WeddingPlanning") == "wedding planning"
    assert topic_name("#CaféDeEspecialidad") == "café de especialidad"
    assert topic_name("SP500") == "sp500"


def test_on_a_generated_world(tmp_path):
    from murmur.data.sources import ingest
    from murmur.world.generate import WorldConfig, generate_world

    generate_world(tmp_path / "world", dataclasses.replace(WorldConfig(), users=150, seed=0))
    ingest([str(tmp_path / "world" / "archives")], tmp_path / "posts.parquet")
    stats = build_conversations(tmp_path / "posts.parquet", tmp_path / "c.jsonl", cfg(instructions=300))
    assert stats.by_kind["thread"] > 10 and set(stats.by_kind) == {"thread", *KINDS}
    convs = read_conversations(tmp_path / "c.jsonl")
    assert len(convs) == stats.conversations
    assert all(c[-1]["role"] == "assistant" and not c[-1]["content"].startswith("@") for c in convs)


def test_drafts_ask_what_the_drafter_asks_and_answer_with_real_posts_that_keep_its_rules(tmp_path):
    from murmur.chat.data import keeps_draft_rules
    from murmur.chat.drafting import draft_system
    from murmur.data.sources import ingest
    from murmur.search.drafts import text_lang
    from murmur.world.generate import WorldConfig, generate_world

    generate_world(tmp_path / "world", dataclasses.replace(WorldConfig(), users=150, seed=1), progress=False)
    ingest([str(tmp_path / "world" / "archives")], tmp_path / "posts.parquet", progress=False)
    stats = build_conversations(tmp_path / "posts.parquet", tmp_path / "c.jsonl", cfg(instructions=600, threads=False))
    posts = read_posts(tmp_path / "posts.parquet")
    by_text = {}
    for p in posts:
        by_text.setdefault(p.text, []).append(p)
    drafts = [c for c in read_conversations(tmp_path / "c.jsonl") if c[0]["content"].startswith("Write one post")]
    assert len(drafts) == stats.by_kind["drafts"] >= 40
    seen = {"post": 0, "reply": 0, "voice": 0}
    for system, user, answer in drafts:
        ask, text = user["content"], answer["content"]
        m = re.match(r"(?:Write a post about (.+) in (English|Spanish)\.|Reply to this post in (English|Spanish)"
                     r"(?:, about (.+))?:\n(.+?))(?:\nWrite it in the voice of @(\S+), who recently posted:\n(.+))?$",
                     ask, re.S)
        assert m, ask
        topic, lang_name = m.group(1) or m.group(4), m.group(2) or m.group(3)
        lang = {"English": "en", "Spanish": "es"}[lang_name]
        assert system["content"] == draft_system(lang)
        assert keeps_draft_rules(text) and text_lang(text) == lang, text   # the drafter would return it
        mine = by_text[text]
        if m.group(1):   # a post about its topic: a phrase of its own, or one of its hashtags (as words)
            seen["post"] += 1
            assert any(p.reply_to is None for p in mine)
            assert topic.lower() in text.lower() or any(topic in (topic_name(t), "#" + t) for p in mine
                                                         for t in p.hashtags), (topic, text)
        else:            # a reply to the post quoted
            seen["reply"] += 1
            parents = {p.reply_to for p in mine}
            assert any(q.id in parents for q in by_text[m.group(5)]), ask
        if m.group(6):   # in the voice of its own author, shown by other posts of theirs
            seen["voice"] += 1
            assert any(p.author == m.group(6) for p in mine)
            for line in m.group(7).split("\n"):
                assert any(q.author == m.group(6) for q in by_text[line[2:]])
    assert min(seen.values()) >= 5, seen
    off = build_conversations(tmp_path / "posts.parquet", tmp_path / "d.jsonl",
                              cfg(instructions=600, threads=False, drafts=False))
    assert "drafts" not in off.by_kind and off.conversations == 600


# ---------------------------------------------------------------- the reader
GOOD = '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}'


@pytest.mark.parametrize("line,message", [
    ("{not json", "invalid JSON"),
    ('["a list"]', "expected a JSON object"),
    ('{"msgs": []}', "(field 'messages'): missing or not a list"),
    ('{"messages": []}', "(field 'messages'): a conversation needs at least one message"),
    ('{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "bot", '
     '"content": "c"}]}', "(field 'messages[2].role'): role must be one of system, user, assistant, tool, not 'bot'"),
    ('{"messages": [{"role": "user", "content": 5}]}', "(field 'messages[0].content'): content must be a string"),
    ('{"messages": ["hi"]}', "(field 'messages[0]'): each message must be an object"),
    ('{"messages": [{"role": "user", "content": "hi"}]}', "(field 'messages'): no assistant message with text"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
])
def test_bad_lines_name_file_line_and_field(tmp_path, line, message):
    path = tmp_path / "c.jsonl"
    path.write_text(f"{GOOD}\n\n{line}\n{GOOD}\n", encoding="utf-8")
    with pytest.raises(InputError) as e:
        read_conversations(path)
    assert str(e.value).startswith(f"{path}:3") and message in str(e.value)
    assert "\n" not in str(e.value)


def test_reader_accepts_compressed_files_and_text_parts(tmp_path):
    path = tmp_path / "c.jsonl.gz"
    parts = '{"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},' \
            ' {"role": "assistant", "content": "c"}], "id": "x1"}'
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(GOOD + "\n" + parts + "\n")
    convs = read_conversations(path)
    assert convs[1] == [{"role": "user", "content": "ab"}, {"role": "assistant", "content": "c"}]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(InputError, match="no conversations"):
        read_conversations(empty)
    with pytest.raises(InputError, match="not found"):
        read_conversations(tmp_path / "missing.jsonl")


def test_bad_posts_and_config(tmp_path):
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"post_id": ["a"]}), bad)
    with pytest.raises(InputError, match="missing column 'text'"):
        build_conversations(bad, tmp_path / "c.jsonl")
    notparquet = tmp_path / "x.parquet"
    notparquet.write_text("hello")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        build_conversations(notparquet, tmp_path / "c.jsonl")
    with pytest.raises(ConfigError, match="max_turns"):
        build_conversations(write_posts(tmp_path / "p.parquet"), tmp_path / "c.jsonl", cfg(max_turns=1))
    assert not (tmp_path / "c.jsonl").exists()


def test_cli_sft_data(tmp_path):
    from typer.testing import CliRunner

    from murmur.cli import app

    src = write_posts(tmp_path / "posts.parquet")
    res = CliRunner().invoke(app, ["sft-data", str(src), "-o", str(tmp_path / "c.jsonl"), "--instructions", "50",
                                   "system_fraction=0"])
    assert res.exit_code == 0, res.output
    assert "53 conversations" in res.output
    assert not any(c[0]["role"] == "system" and "murmur" in c[0]["content"]
                   for c in read_conversations(tmp_path / "c.jsonl"))


def test_cli_sft_data_refuses_its_input_as_output(tmp_path):
    import subprocess
    import sys

    src = write_posts(tmp_path / "posts.parquet")
    before = src.read_bytes()
    res = subprocess.run([sys.executable, "-m", "murmur.cli", "sft-data", str(src), "-o",
                          str(tmp_path / "." / "posts.parquet")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    err = res.stderr.strip()
    assert "must not overwrite the input" in err and len(err.splitlines()) == 1 and not res.stdout
    assert src.read_bytes() == before
