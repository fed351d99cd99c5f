"""The demo world generator: real X formats, determinism, ground truth, realism."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import io
import json
import re
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from murmur import config as cfgmod
from murmur.data.normalize import dedup_key
from murmur.errors import ConfigError, InputError
from murmur.io import is_complete
from murmur.world import text as wt
from murmur.world.generate import (
    FIRST_LANG_SHARE,
    POST_KINDS,
    WorldConfig,
    generate_world,
    interest_weights,
    lang_weights,
    read_api_pages,
    read_tweets_js,
)
from murmur.world.truth import load_truth

CFG = WorldConfig(users=200, seed=0)
ARCHIVE_TIME = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) [A-Z][a-z]{2} \d{2} \d{2}:\d{2}:\d{2} "
                          r"\+0000 \d{4}$")
API_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.000Z$")


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    root = tmp_path_factory.mktemp("worlds")
    a = generate_world(root / "a", CFG, progress=False)
    b = generate_world(root / "b", CFG, progress=False)
    c = generate_world(root / "c", WorldConfig(users=200, seed=1), progress=False)
    return a, b, c


@pytest.fixture(scope="module")
def world(worlds):
    """Everything in world "a", loaded once: posts by id from both formats, plus the truth tables."""
    summary = worlds[0]
    root = summary.path
    api, api_users, archive = {}, {}, {}
    pages = []
    for f in sorted((root / "api").iterdir()):
        for page in read_api_pages(f):
            pages.append(page)
            for u in page["includes"]["users"]:
                api_users[u["id"]] = u
            for d in page["data"]:
                assert d["id"] not in api
                api[d["id"]] = d
    accounts = {}
    for handle, files in _archives(root).items():
        accounts[handle] = files
        for t in read_tweets_js(files["data/tweets.js"]):
            assert t["id_str"] not in archive and t["id_str"] not in api
            archive[t["id_str"]] = (handle, t)
    posts = pq.read_table(root / "truth" / "posts.parquet").to_pylist()
    users = pq.read_table(root / "truth" / "users.parquet").to_pylist()
    follows = pq.read_table(root / "truth" / "follows.parquet").to_pylist()
    text = {i: d["note_tweet"]["text"] if "note_tweet" in d else d["text"] for i, d in api.items()}
    text.update({i: t["full_text"] for i, (_, t) in archive.items()})
    return {"root": root, "summary": summary, "api": api, "api_users": api_users, "pages": pages,
            "archive": archive, "accounts": accounts, "posts": posts,
            "by_id": {p["post_id"]: p for p in posts}, "users": users,
            "user_by_id": {u["user_id"]: u for u in users}, "follows": follows, "text": text}


def _archives(root: Path) -> dict[str, dict[str, str]]:
    """handle -> {"data/tweets.js": text, ...} for directory and zipped archives alike."""
    out = {}
    for entry in sorted((root / "archives").iterdir()):
        if entry.suffix == ".zip":
            with zipfile.ZipFile(entry) as zf:
                out[entry.stem] = {n: zf.read(n).decode("utf-8") for n in zf.namelist()}
        else:
            out[entry.name] = {f"data/{f.name}": f.read_text(encoding="utf-8")
                               for f in (entry / "data").iterdir()}
    return out


def _all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- determinism
def test_same_seed_gives_identical_bytes_and_other_seed_differs(worlds):
    a, b, c = worlds
    fa, fb, fc = _all_files(a.path), _all_files(b.path), _all_files(c.path)
    assert fa.keys() == fb.keys()
    for name in fa:
        assert fa[name] == fb[name], f"{name} differs between two runs with the same seed"
    assert any(n.endswith("tweets.js") for n in fa) and any(n.endswith(".jsonl.gz") for n in fa)
    assert fa["api/posts-00000.jsonl.gz"] != fc["api/posts-00000.jsonl.gz"]
    assert set(n for n in fa if n.startswith("archives/")) != set(n for n in fc if n.startswith("archives/"))
    assert is_complete(a.path)


def test_summary_counts_match_files(world):
    s = world["summary"]
    assert s.posts == len(world["posts"]) == len(world["api"]) + len(world["archive"])
    assert s.api_posts == len(world["api"]) and s.archive_posts == len(world["archive"])
    assert s.archives == CFG.archive_users == len(world["accounts"])
    assert s.zipped_archives == round(CFG.archive_users * CFG.archive_zip_fraction)
    assert s.follows == len(world["follows"])
    assert 8 * CFG.users < s.posts < 16 * CFG.users  # ~12 posts per account
    text = s.describe()
    assert "posts/s" in text and f"{s.posts:,}" in text
    meta = json.loads((world["root"] / "world.json").read_text())
    assert meta["config"]["users"] == 200 and meta["counts"]["posts"] == s.posts


# ----------------------------------------------------------------------------- X archive format
def test_archive_tweets_js_is_the_real_format(world):
    for handle, files in world["accounts"].items():
        tweets_js = files["data/tweets.js"]
        assert tweets_js.startswith("window.YTD.tweets.part0 = [")
        tweets = json.loads(tweets_js[len("window.YTD.tweets.part0 = "):])
        assert all(set(entry) == {"tweet"} for entry in tweets)
        account_js = files["data/account.js"]
        assert account_js.startswith("window.YTD.account.part0 = [")
        account = json.loads(account_js.split("=", 1)[1])[0]["account"]
        assert account["username"] == handle
        assert {"accountId", "accountDisplayName", "createdAt"} <= set(account)
        assert files["data/manifest.js"].startswith("window.__THAR_CONFIG = {")
        user = world["user_by_id"][account["accountId"]]
        assert user["handle"] == handle and user["archive"].startswith(f"archives/{handle}")
        times = []
        for e in tweets:
            t = e["tweet"]
            for key in ("id_str", "id", "full_text", "created_at", "lang", "favorite_count", "retweet_count",
                        "source", "truncated", "retweeted", "entities"):
                assert key in t, key
            assert t["id"] == t["id_str"] and isinstance(t["favorite_count"], str)
            assert isinstance(t["retweet_count"], str) and t["favorite_count"].isdigit()
            assert ARCHIVE_TIME.match(t["created_at"]), t["created_at"]
            assert set(t["entities"]) == {"hashtags", "symbols", "user_mentions", "urls"}
            for h in t["entities"]["hashtags"]:
                s, end = map(int, h["indices"])
                assert t["full_text"][s:end] == "#" + h["text"]
            for m in t["entities"]["user_mentions"]:
                s, end = map(int, m["indices"])
                assert t["full_text"][s:end].lower() == "@" + m["screen_name"].lower()
                assert world["user_by_id"][m["id_str"]]["handle"] == m["screen_name"]
            for u in t["entities"]["urls"]:
                s, end = map(int, u["indices"])
                assert t["full_text"][s:end] == u["url"] and u["expanded_url"].startswith("https://")
            truth = world["by_id"][t["id_str"]]
            if truth["reply_to"] is not None:
                assert t["in_reply_to_status_id_str"] == truth["reply_to"]
                parent_author = world["by_id"][truth["reply_to"]]["author_id"]
                assert t["in_reply_to_user_id_str"] == parent_author
                assert t["in_reply_to_screen_name"] == world["user_by_id"][parent_author]["handle"]
            else:
                assert "in_reply_to_status_id_str" not in t
            times.append(dt.datetime.strptime(t["created_at"], "%a %b %d %H:%M:%S %z %Y"))
        assert times == sorted(times, reverse=True)  # newest first, as X writes it
    zipped = [p for p in (world["root"] / "archives").iterdir() if p.suffix == ".zip"]
    assert zipped
    with zipfile.ZipFile(zipped[0]) as zf:
        assert {"data/tweets.js", "data/account.js", "data/manifest.js"} <= set(zf.namelist())


# ----------------------------------------------------------------------------- X API v2 format
def test_api_pages_parse_and_carry_all_fields(world):
    pages, users = world["pages"], world["user_by_id"]
    for f in sorted((world["root"] / "api").iterdir()):
        assert f.name.startswith("posts-") and f.name.endswith(".jsonl.gz")
        for line in io.TextIOWrapper(gzip.open(f), encoding="utf-8"):
            # Written as compact JSON, exactly what json.dumps would write.
            canonical = json.dumps(json.loads(line), ensure_ascii=False, separators=(",", ":"))
            assert line.rstrip("\n") == canonical
    for i, page in enumerate(pages):
        assert set(page) == {"data", "includes", "meta"}
        assert page["meta"]["result_count"] == len(page["data"]) <= CFG.posts_per_page
        assert ("next_token" in page["meta"]) == (i < len(pages) - 1)
        included = {u["id"] for u in page["includes"]["users"]}
        assert included == {d["author_id"] for d in page["data"]}
        assert page["meta"]["newest_id"] == max(page["data"], key=lambda d: int(d["id"]))["id"]
        for u in page["includes"]["users"]:
            assert users[u["id"]]["handle"] == u["username"] and u["name"]
    assert all(len(p["data"]) == CFG.posts_per_page for p in pages[:-1])
    start = dt.datetime.fromisoformat(CFG.start).replace(tzinfo=dt.UTC)
    for d in world["api"].values():
        for key in ("id", "text", "author_id", "created_at", "lang", "conversation_id", "public_metrics",
                    "edit_history_tweet_ids"):
            assert key in d, key
        assert set(d["public_metrics"]) == {"retweet_count", "reply_count", "like_count", "quote_count"}
        assert API_TIME.match(d["created_at"])
        t = dt.datetime.fromisoformat(d["created_at"].replace("Z", "+00:00"))
        assert start <= t < start + dt.timedelta(days=CFG.days)
        assert users[d["author_id"]]["archive"] is None  # archive accounts never appear in the API
        text = d["text"]
        assert d.get("entities", True) != {}  # omitted when empty, as the API does
        ents = d.get("entities", {})
        for h in ents.get("hashtags", []):
            assert text[h["start"]:h["end"]] == "#" + h["tag"]
        for m in ents.get("mentions", []):
            assert text[m["start"]:m["end"]].lower() == "@" + m["username"].lower()
            assert users[m["id"]]["handle"] == m["username"]
        for u in ents.get("urls", []):
            assert text[u["start"]:u["end"]] == u["url"] and u["url"].startswith("https://t.co/")
            assert u["expanded_url"].startswith("https://") and u["display_url"]
        for c in ents.get("cashtags", []):
            assert text[c["start"]:c["end"]] == "$" + c["tag"]
        truth = world["by_id"][d["id"]]
        refs = {r["type"]: r["id"] for r in d.get("referenced_tweets", [])}
        assert refs.get("replied_to") == truth["reply_to"]
        assert refs.get("retweeted") == truth["retweet_of"]
        assert refs.get("quoted") == truth["quote_of"]
        if truth["reply_to"]:
            assert d["in_reply_to_user_id"] == world["by_id"][truth["reply_to"]]["author_id"]
    entity_kinds = Counter(k for d in world["api"].values() for k in d.get("entities", {}))
    assert {"hashtags", "mentions", "urls", "cashtags"} <= set(entity_kinds)


def test_long_posts_carry_a_note_tweet(world):
    long_api = [d for d in world["api"].values() if "note_tweet" in d]
    assert len(long_api) >= 5
    for d in long_api:
        full = d["note_tweet"]["text"]
        assert len(full) > 280 and d["text"] == full[:280] + "…"
        assert world["by_id"][d["id"]]["long"]
        for h in d.get("entities", {}).get("hashtags", []):
            assert h["end"] <= 280
        for h in d["note_tweet"].get("entities", {}).get("hashtags", []):
            assert full[h["start"]:h["end"]] == "#" + h["tag"]
    for d in world["api"].values():
        if "note_tweet" not in d:
            assert len(d["text"]) <= 280 and not world["by_id"][d["id"]]["long"]


# ----------------------------------------------------------------------------- ground truth
def test_truth_is_consistent_with_the_posts(world):
    posts, by_id, text = world["posts"], world["by_id"], world["text"]
    assert set(by_id) == set(world["api"]) | set(world["archive"])
    assert len(by_id) == len(posts)
    users = world["user_by_id"]
    n_replies = 0
    for p in posts:
        assert p["kind"] in POST_KINDS and p["author_id"] in users
        if p["reply_to"] is not None:
            n_replies += 1
            parent = by_id[p["reply_to"]]
            assert parent["created_at"] <= p["created_at"] and int(parent["post_id"]) < int(p["post_id"])
            assert p["conversation_id"] == parent["conversation_id"]
            if parent["topic"] is not None:
                assert p["topic"] == parent["topic"]  # replies stay on topic
        else:
            assert p["conversation_id"] == p["post_id"]
        for ref in ("duplicate_of", "retweet_of", "quote_of"):
            if p[ref] is not None:
                assert p[ref] in by_id
        if p["kind"] == "duplicate":
            assert text[p["post_id"]] == text[p["duplicate_of"]]
        if p["kind"] == "near_duplicate":
            a, b = set(text[p["post_id"]].lower().split()), set(text[p["duplicate_of"]].lower().split())
            assert text[p["post_id"]] != text[p["duplicate_of"]] and len(a & b) / len(a | b) >= 0.5
        if p["kind"] == "retweet":
            orig = by_id[p["retweet_of"]]
            assert text[p["post_id"]].startswith(f"RT @{users[orig['author_id']]['handle']}: ")
        if p["file"].startswith("api/"):
            assert p["post_id"] in world["api"]
        else:
            assert world["archive"][p["post_id"]][0] == users[p["author_id"]]["handle"]
    assert n_replies > 0.15 * len(posts)
    per_user = Counter(p["author_id"] for p in posts)
    assert all(u["posts"] == per_user.get(u["user_id"], 0) for u in world["users"])
    assert max(per_user.values()) > 5 * (len(posts) / len(users))  # heavy-tailed activity


def test_kinds_languages_and_accounts(world):
    posts, users = world["posts"], world["user_by_id"]
    kinds = Counter(p["kind"] for p in posts)
    assert set(kinds) == set(POST_KINDS), kinds
    for p in posts:
        kind = users[p["author_id"]]["kind"]
        assert (p["kind"] == "spam") == (kind == "spam")
        assert (p["kind"] == "bot") == (kind == "bot")
    ukinds = Counter(u["kind"] for u in world["users"])
    assert ukinds["spam"] == round(200 * CFG.spam_fraction) and ukinds["bot"] == round(200 * CFG.bot_fraction)
    langs = Counter(p["lang"] for p in posts)
    assert langs["es"] > 0.15 * len(posts) and langs["en"] > 0.5 * len(posts)
    assert {"fr", "de", "pt"} & set(langs)
    assert all(p["lang"] in ("fr", "de", "pt") for p in posts if p["kind"] == "foreign")
    spanish = [world["text"][p["post_id"]] for p in posts if p["lang"] == "es"]
    assert sum(bool(re.search("[áéíóúñ¿¡]", t)) for t in spanish) > 0.3 * len(spanish)
    assert any(len(u["langs"]) == 2 for u in world["users"])  # bilingual accounts
    for u in world["users"]:
        assert (2 <= len(u["interests"]) <= 4) == (u["kind"] == "human")
        assert set(u["interests"]) <= set(wt.TOPIC_NAMES)


def test_spam_bots_and_pii_look_the_part(world):
    text = world["text"]
    spam = [text[p["post_id"]] for p in world["posts"] if p["kind"] == "spam"]
    assert sum("!!!" in t or t.count("#") >= 6 for t in spam) > 0.8 * len(spam)
    bots = [text[p["post_id"]] for p in world["posts"] if p["kind"] == "bot"]
    assert all(re.search(r"\d", t) for t in bots)
    pii = re.compile(r"[\w.]+@[\w.]+\.\w+|\+?\d[\d .()-]{7,}\d|\d{4}[ -]?\d{4}[ -]?\d{4}[ -]?\d{4}")
    with_pii = [text[p["post_id"]] for p in world["posts"] if p["kind"] == "pii"]
    assert with_pii and all(pii.search(t) for t in with_pii)


def test_posts_use_their_topic_vocabulary(world):
    text = world["text"]
    normal = [p for p in world["posts"] if p["kind"] == "normal" and p["quote_of"] is None and p["story"] is None]
    stories = {s["id"]: s for s in json.loads((world["root"] / "world.json").read_text())["stories"]}
    for p in world["posts"]:  # a story's posts carry only its own hashtags
        if p["story"] is not None:
            tags = {t.lower() for t in stories[p["story"]]["hashtags"]}
            assert {t.lower() for t in re.findall(r"#(\w+)", text[p["post_id"]])} <= tags

    def norm(s: str) -> str:  # posts may be lower-cased or lose their accents
        return wt.strip_accents(s.lower())

    on_topic = 0
    for p in normal:
        topic = wt.TOPICS[p["topic"]]
        body = norm(text[p["post_id"]])
        # The first words of any noun phrase, sentence or hashtag of the post's own topic.
        on_topic += any(norm(t.split("{k}")[0])[:12].strip() in body for t in topic.terms(p["lang"]))
        tags = {t.lower() for lang in ("en", "es") for t in topic.tags[lang]}
        for tag in re.findall(r"#(\w+)", text[p["post_id"]]):
            assert tag.lower() in tags, (tag, p["topic"], body)
    assert len(normal) > 500 and on_topic > 0.95 * len(normal)


def test_ordinary_posts_rarely_collide_under_the_cleaning_key(tmp_path):
    """Posts and replies are composed from independent parts, so few are exact duplicates once
    mentions, hashtags, links, punctuation and numbers are stripped (the key cleaning dedups on);
    what does collide is mostly one-phrase replies such as "lol" or "Same."."""
    root = generate_world(tmp_path / "w", WorldConfig(users=500, seed=5), progress=False).path
    text = {}
    for f in sorted((root / "api").iterdir()):
        for page in read_api_pages(f):
            for d in page["data"]:
                text[d["id"]] = d["note_tweet"]["text"] if "note_tweet" in d else d["text"]
    for files in _archives(root).values():
        text.update((t["id_str"], t["full_text"]) for t in read_tweets_js(files["data/tweets.js"]))
    posts = pq.read_table(root / "truth" / "posts.parquet").to_pylist()
    ordinary = sorted((int(p["post_id"]), p["kind"]) for p in posts if p["kind"] in ("normal", "reply"))
    seen: set[str] = set()
    repeats = Counter()
    for post_id, kind in ordinary:
        key = dedup_key(text[str(post_id)])
        repeats[kind] += key in seen
        seen.add(key)
    kinds = Counter(kind for _, kind in ordinary)
    assert kinds["normal"] > 2000 and kinds["reply"] > 1000
    assert sum(repeats.values()) < 0.03 * len(ordinary), repeats
    assert repeats["normal"] < 0.02 * kinds["normal"], repeats


def test_follow_graph_has_homophily_and_popular_accounts(world):
    users = world["user_by_id"]
    interests = {u["user_id"]: set(u["interests"]) for u in world["users"] if u["kind"] == "human"}
    edges = [(f["src"], f["dst"]) for f in world["follows"]
             if f["src"] in interests and f["dst"] in interests]
    shared = sum(bool(interests[s] & interests[d]) for s, d in edges) / len(edges)
    ids = sorted(interests)
    pairs = [(ids[i], ids[(i * 7919 + 13) % len(ids)]) for i in range(len(ids))]
    baseline = sum(bool(interests[a] & interests[b]) for a, b in pairs) / len(pairs)
    assert shared > baseline + 0.15
    indeg = Counter(f["dst"] for f in world["follows"])
    assert all(users[k]["followers"] == v for k, v in indeg.items())
    assert max(indeg.values()) > 5 * (len(world["follows"]) / len(users))


# ----------------------------------------------------------------------------- config and CLI
def test_bad_config_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="spam_fraction"):
        generate_world(tmp_path / "w", WorldConfig(users=50, spam_fraction=1.5), progress=False)
    with pytest.raises(ConfigError, match="archive_users"):
        generate_world(tmp_path / "w", WorldConfig(users=20, archive_users=500), progress=False)
    with pytest.raises(ConfigError, match="start"):
        generate_world(tmp_path / "w", WorldConfig(users=50, start="May 1"), progress=False)
    with pytest.raises(ConfigError, match="did you mean 'spam_fraction'"):
        cfgmod.load(WorldConfig, None, ["spam_fractoin=0.1"])
    assert not (tmp_path / "w").exists()


def test_refuses_to_replace_a_directory_that_is_not_a_world(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a murmur world"):
        generate_world(tmp_path / "notes", WorldConfig(users=20, archive_users=1), progress=False)
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"
    generate_world(tmp_path / "w", WorldConfig(users=20, archive_users=1, seed=1), progress=False)
    generate_world(tmp_path / "w", WorldConfig(users=20, archive_users=1, seed=2), progress=False)
    assert json.loads((tmp_path / "w" / "world.json").read_text())["config"]["seed"] == 2  # replaced


def test_uncompressed_api_files(tmp_path):
    cfg = WorldConfig(users=40, archive_users=2, compress=False, posts_per_page=10, pages_per_file=5)
    s = generate_world(tmp_path / "w", cfg, progress=False)
    files = sorted((tmp_path / "w" / "api").iterdir())
    assert all(f.name.endswith(".jsonl") for f in files)
    pages = [p for f in files for p in read_api_pages(f)]
    assert len(files) == s.api_files == -(-len(pages) // 5) and s.api_pages == len(pages)
    assert sum(len(p["data"]) for p in pages) == s.api_posts


def test_cli_generates_a_world(tmp_path):
    from typer.testing import CliRunner

    from murmur.cli import app

    out = tmp_path / "cli-world"
    result = CliRunner().invoke(app, ["world", "generate", "-o", str(out), "--users", "60", "--seed", "3",
                                      "archive_users=2", "days=7"])
    assert result.exit_code == 0, result.output
    assert "world written to" in result.output
    meta = json.loads((out / "world.json").read_text())
    assert meta["config"]["users"] == 60 and meta["config"]["seed"] == 3 and meta["config"]["days"] == 7
    assert (out / "truth" / "posts.parquet").is_file() and is_complete(out)
    knobs = CliRunner().invoke(app, ["world", "generate", "--knobs"])
    assert knobs.exit_code == 0 and "spam_fraction" in knobs.output and "archive_zip_fraction" in knobs.output


# ----------------------------------------------------------------------------- the truth API
def test_truth_api_agrees_with_the_files(world):
    truth = load_truth(world["root"])
    assert truth.topics == wt.TOPIC_NAMES and truth.config["users"] == CFG.users
    assert (truth.users.num_rows, truth.posts.num_rows, truth.follows.num_rows) == (
        len(world["users"]), len(world["posts"]), len(world["follows"]))
    for raw in world["users"]:
        u = truth.user(raw["user_id"])
        assert (u.handle, u.kind, list(u.langs), list(u.interests)) == (
            raw["handle"], raw["kind"], raw["langs"], raw["interests"])
        assert truth.user_by_handle("@" + raw["handle"].upper()) == u
        assert u.interest_weights == interest_weights(len(u.interests))
        assert u.lang_weights == lang_weights(len(u.langs)) and sum(u.lang_weights) == pytest.approx(1)
        if u.interests:
            assert sum(u.interest_weights) == pytest.approx(1)
            assert u.interest_weights[0] > u.interest_weights[-1]
    follows = {(f["src"], f["dst"]) for f in world["follows"]}
    for raw in world["users"][:60]:
        uid = raw["user_id"]
        assert sorted(truth.following(uid)) == sorted(d for s, d in follows if s == uid)
        assert sorted(truth.followers(uid)) == sorted(s for s, d in follows if d == uid)
        assert truth.posts_by(uid) == [p["post_id"] for p in world["posts"] if p["author_id"] == uid]
    ptr, nbr = truth.follow_csr()
    assert ptr[-1] == len(nbr) == len(follows)
    for raw in world["posts"][::7]:
        p = truth.post(raw["post_id"])
        assert {k: getattr(p, k) for k in raw} == raw
        assert raw["post_id"] in truth.conversation(raw["conversation_id"])
    ids = [p["post_id"] for p in world["posts"]][::-3]
    assert truth.topics_of(ids) == [world["by_id"][i]["topic"] for i in ids]
    m = truth.interest_matrix()
    assert m.shape == (len(world["users"]), len(wt.TOPIC_NAMES))
    for i, raw in enumerate(world["users"]):
        got = {wt.TOPIC_NAMES[j]: float(m[i, j]) for j in np.flatnonzero(m[i])}
        assert got == pytest.approx(dict(zip(raw["interests"], raw["interest_weights"], strict=True)))


def test_posts_follow_the_interest_and_language_weights(world):
    """The weights are the generator's real behaviour: a human's own posts draw their topic and language
    from them (replies and quotes keep the other post's topic and story posts are about the news, so only
    the rest are counted)."""
    truth = load_truth(world["root"])
    own = [p for p in world["posts"] if p["kind"] in ("normal", "pii") and p["quote_of"] is None
           and p["story"] is None]
    expected = observed = 0.0
    off_interest = 0
    for p in own:
        u = truth.user(p["author_id"])
        if p["topic"] not in u.interests:
            off_interest += 1
            continue
        expected += u.interest_weights[0]
        observed += p["topic"] == u.interests[0]
    assert off_interest == 0
    assert observed / len(own) == pytest.approx(expected / len(own), abs=0.04)
    bilingual = [p for p in own if len(truth.user(p["author_id"]).langs) == 2]
    first = sum(p["lang"] == truth.user(p["author_id"]).langs[0] for p in bilingual)
    assert len(bilingual) > 50 and first / len(bilingual) == pytest.approx(FIRST_LANG_SHARE, abs=0.1)


def test_truth_lookups_refuse_unknown_ids(world):
    truth = load_truth(world["root"])
    for bad in ("0", "abc", "", "99999999999999999999999", "-5"):
        with pytest.raises(KeyError):
            truth.user(bad)
        with pytest.raises(KeyError):
            truth.post(bad)
    with pytest.raises(KeyError, match="nobody_here"):
        truth.user_by_handle("nobody_here")
    assert truth.conversation("0") == []


def test_load_truth_names_what_is_wrong(world, tmp_path):
    import shutil

    with pytest.raises(InputError, match="no world.json"):
        load_truth(tmp_path)
    w = tmp_path / "w"
    shutil.copytree(world["root"], w)
    meta = json.loads((w / "world.json").read_text())
    (w / "world.json").write_text(json.dumps({**meta, "version": 1}))
    with pytest.raises(InputError, match="world.json.*'version'.*generate the world again"):
        load_truth(w)
    (w / "world.json").write_text("{not json")
    with pytest.raises(InputError, match="world.json: not readable JSON"):
        load_truth(w)
    (w / "world.json").write_text(json.dumps(meta))
    users = pq.read_table(w / "truth" / "users.parquet").drop_columns(["interest_weights"])
    pq.write_table(users, w / "truth" / "users.parquet")
    with pytest.raises(InputError, match="users.parquet.*'interest_weights'"):
        load_truth(w)
    (w / "truth" / "users.parquet").write_text("garbage")
    with pytest.raises(InputError, match="users.parquet: not a readable parquet"):
        load_truth(w)
    (w / "truth" / "follows.parquet").unlink()
    (w / "truth" / "users.parquet").unlink()
    with pytest.raises(InputError, match="users.parquet: missing"):
        load_truth(w)


def test_stories_are_bursts_recorded_in_the_truth_and_leave_the_rest_of_the_world_alone(tmp_path):
    """Each story adds posts in its own hours, with its hashtags, in its language; the truth lists
    them; everyday posts are exactly those of a world without stories."""
    from murmur.world.truth import load_truth

    cfg = WorldConfig(users=150, seed=4, days=10, compress=False, archive_users=5)
    generate_world(tmp_path / "s", cfg, progress=False)
    generate_world(tmp_path / "flat", dataclasses.replace(cfg, stories=0), progress=False)
    truth, flat = load_truth(tmp_path / "s"), load_truth(tmp_path / "flat")
    bursts = truth.bursts
    assert len(bursts) == 4 and flat.bursts == ()
    assert {b.lang for b in bursts} == {"en", "es"}
    assert bursts[-1].end == dt.datetime(2024, 5, 11, tzinfo=dt.UTC)  # the last runs until the world's end
    assert all(a.end <= b.start for a, b in zip(bursts, bursts[1:], strict=False))
    texts = {}
    for f in sorted((tmp_path / "s" / "api").glob("*.jsonl")):
        for page in read_api_pages(f):
            texts.update({p["id"]: p.get("note_tweet", {}).get("text", p["text"]) for p in page["data"]})
    for b in bursts:
        assert len(b.post_ids) >= 5 and 3 <= (b.end - b.start).total_seconds() / 3600 <= 6
        for pid in b.post_ids:
            post = truth.post(pid)
            assert post.story == b.story_id and post.lang == b.lang and post.topic == b.topic
            assert b.start <= post.created_at < b.end
        tagged = [pid for pid in b.post_ids if pid in texts and any("#" + t in texts[pid] for t in b.hashtags)]
        both = [pid for pid in tagged if all("#" + t in texts[pid] for t in b.hashtags)]
        assert tagged and both  # posts carry one hashtag, the other, or both
    assert truth.stories_of([b.post_ids[0] for b in bursts]) == [b.story_id for b in bursts]
    everyday = truth.posts.filter(pc.is_null(truth.posts["story"])).drop(["story", "file"])
    assert everyday.equals(flat.posts.drop(["story", "file"]))


def test_old_worlds_without_stories_are_refused(tmp_path):
    generate_world(tmp_path / "w", WorldConfig(users=30, days=3, stories=1, archive_users=2), progress=False)
    meta = json.loads((tmp_path / "w" / "world.json").read_text())
    (tmp_path / "w" / "world.json").write_text(json.dumps({**meta, "version": 2}))
    with pytest.raises(InputError, match="version 2 is older than 3"):
        load_truth(tmp_path / "w")
