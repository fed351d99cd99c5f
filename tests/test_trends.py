"""Trends: the burst score, grouping, detection of a small world's real stories (and none in a flat
world), posts added live, cited summaries, GET /v1/trends on a real server and `murmur trends`."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from search_helpers import story_index
from serve_helpers import ServerThread, make_tokenizer, scripted_model

from murmur.chat.template import ASSISTANT_ID
from murmur.engine import Engine
from murmur.errors import InputError
from murmur.search.index import SearchIndex
from murmur.search.trends import (
    TermStat,
    TrendConfig,
    Trends,
    build_router,
    burst_score,
    group_terms,
    parse_window,
)
from murmur.search.trends_eval import evaluate_trends
from murmur.serve.app import create_app

ROOT = Path(__file__).resolve().parent.parent


def test_burst_score_is_a_smoothed_poisson_z_score():
    cfg = TrendConfig()
    z, e = burst_score(10, 0, 20, 999, cfg)       # a new term: 10 of 20 posts, never seen in 999
    assert e == pytest.approx(20 * 0.5 / 1000) and z == pytest.approx((10 - e) / 1.0)  # sqrt of the floor
    z, e = burst_score(30, 100, 100, 999, cfg)    # an everyday term at three times its usual share
    assert e == pytest.approx(100 * 100.5 / 1000) and z == pytest.approx((30 - e) / e ** 0.5)
    assert burst_score(10, 100, 100, 999, cfg)[0] < 0  # at its usual rate: no burst
    assert parse_window("1h") == 3600 and parse_window("30m") == 1800 and parse_window("1.5h") == 5400
    assert parse_window("2d") == 172800
    for bad in ("1x", "", "0m", "8d", "h", 3):
        with pytest.raises(InputError) as e:
            parse_window(bad)
        assert e.value.field == "window"


def test_terms_sharing_posts_are_one_story():
    def term(name: str, keys: set[int], score: float) -> TermStat:
        return TermStat(name, name, len(keys), 0.1, score, 3, keys)

    a = term("#solareclipse", {1, 2, 3, 4}, 9.0)
    b = term("#eclipse2024", {5, 6, 7}, 8.0)     # never on the same post as a ...
    w = term("eclips", {1, 2, 5, 6, 7}, 7.0)     # ... but both share this word's posts
    other = term("#strike", {10, 11, 12}, 6.0)
    groups = group_terms([a, b, w, other], 0.5)
    assert sorted([t.term for t in g] for g in groups) == [["#solareclipse", "#eclipse2024", "eclips"], ["#strike"]]
    assert group_terms([a, b], 0.5) == [[a], [b]]


@pytest.fixture(scope="module")
def storied(tmp_path_factory):
    return story_index(tmp_path_factory.mktemp("storied"), 4)


@pytest.mark.slow
def test_the_real_bursts_of_a_small_world_are_found_and_a_flat_world_has_none(storied, tmp_path):
    from murmur.world.truth import load_truth

    world, idx = storied
    with SearchIndex(idx, writable=False) as ix:
        trends = Trends(ix)
        r = evaluate_trends(trends, world)
        assert r["stories"] == 4 and r["recall"] == 1.0, r
        assert r["precision"] >= 0.8, r
        assert r["per_lang"]["en"]["recall"] == 1.0 and r["per_lang"]["es"]["recall"] == 1.0
        # Grouping: a story's two hashtags come out as one trend, and its trend cites only its posts.
        truth = load_truth(world)
        joined = set()
        for b in truth.bursts:
            tags = {"#" + t.lower() for t in b.hashtags}
            for h in range(2, 7):  # two-hour windows: a tiny world's story has a few posts an hour
                at = int((b.start + dt.timedelta(hours=h)).timestamp() * 1e6)
                for t in trends.detect(7200, at).trends:
                    if tags <= {s.shown.lower() for s in t.terms}:
                        joined.add(b.story_id)
                        assert set(truth.stories_of(t.post_ids)) == {b.story_id}
        assert len(joined) == 4, joined
        newest = trends.detect(3600).trends  # the last story is breaking at the world's end
        assert newest and set(truth.stories_of(newest[0].post_ids)) == {truth.bursts[-1].story_id}
    _, flat = story_index(tmp_path, 0)
    with SearchIndex(flat, writable=False) as ix:
        r = evaluate_trends(Trends(ix), world)
        assert r["detected"] == 0, r["false_examples"]


@pytest.mark.slow
def test_posts_added_live_trend_at_once(storied, tmp_path):
    import shutil

    _, idx = storied
    shutil.copytree(idx, tmp_path / "idx")
    with SearchIndex(tmp_path / "idx") as ix:
        trends = Trends(ix)
        newest = ix.store.newest_us()
        before = {t.label for t in trends.detect(3600, newest + 3_600_000_000).trends}
        lines = ["Lluvia de meteoritos sobre la sierra esta noche, increíble", "Cuento doce meteoritos en un minuto",
                 "La lluvia de meteoritos se ve perfecta desde el pueblo", "Meteoritos cruzando todo el cielo ahora",
                 "Nunca había visto tantos meteoritos, qué noche", "Salid a la calle a ver los meteoritos ya mismo"]
        rows = [{"post_id": f"live{i}", "author_id": f"watcher{i % 6}", "lang": "es",
                 "created_at": dt.datetime.fromtimestamp(newest / 1e6 + 60 * (i + 1), dt.UTC).isoformat(),
                 "text": f"{lines[i % 6]} ({i + 1}) #LluviaDeMeteoritos", "hashtags": ["LluviaDeMeteoritos"]}
                for i in range(12)]
        added = ix.add(rows)
        assert len(added.added) >= 10, added.dropped
        report = trends.detect(3600, newest + 3_600_000_000)
        live = [t for t in report.trends if t.label == "#LluviaDeMeteoritos"]
        assert live and "#LluviaDeMeteoritos" not in before
        assert live[0].lang == "es" and set(live[0].post_ids) <= {r["post_id"] for r in rows}
        assert {s.shown for s in live[0].terms} >= {"#LluviaDeMeteoritos", "meteoritos"}
        assert not [t for t in trends.detect(3600, newest + 3_600_000_000, lang="en").trends
                    if t.label == "#LluviaDeMeteoritos"]


@pytest.mark.slow
def test_kept_hour_counts_follow_adds_and_deletes(storied, tmp_path):
    """The baseline's kept per-hour counts equal a count over the posts, also after a post is added
    into an old hour and another deleted from one (those hours count again)."""
    import shutil
    from collections import Counter

    import numpy as np

    from murmur.search.trends import HOUR_US

    _, idx = storied
    shutil.copytree(idx, tmp_path / "idx")
    with SearchIndex(tmp_path / "idx") as ix:
        trends, store = Trends(ix), ix.store
        since = store.newest_us() - 3_600_000_000
        start = since - 48 * 3_600_000_000

        def by_hand() -> tuple[Counter, int]:
            keys = np.flatnonzero(store.alive.view & (store.created.view > start) & (store.created.view <= since))
            return Counter(t for k in keys.tolist() for t, _ in trends._compute_terms(k)), len(keys)

        def kept() -> tuple[Counter, int]:
            counts, n = trends.baseline_counts(store.alive.view.copy(), start, since, None)
            return Counter({t: int(counts[i]) for t, i in trends._ids.items() if i < len(counts) and counts[i]}), n

        assert kept() == by_hand() and len(trends._hours) >= 40
        assert all(k[0] is None for k in trends._hours)
        middle = (start // HOUR_US + 20) * HOUR_US
        keys = np.flatnonzero(store.alive.view & (store.created.view > middle) & (store.created.view <= middle + HOUR_US))
        assert ix.delete(store.get(int(keys[0]))["post_id"])
        when = dt.datetime.fromtimestamp((middle + 2 * HOUR_US - 60_000_000) / 1e6, dt.UTC).isoformat()
        added = ix.add([{"post_id": "late1", "author_id": "late", "lang": "en", "created_at": when,
                         "text": "A zyzzyva beetle walked across my kitchen table this morning"}])
        assert added.added == ["late1"]
        counts, n = kept()
        assert (counts, n) == by_hand() and counts["zyzzyva"] == 1


REPLY = "Crowds cheer [3] tonight"


@pytest.mark.slow
def test_trends_route_summaries_cite_only_the_story_posts(storied, tmp_path):
    _, idx = storied
    tok = make_tokenizer(tmp_path / "tok", 500, [REPLY])
    engine = Engine(scripted_model(tok.vocab_size, [ASSISTANT_ID, *tok.encode(REPLY)], max_seq_len=4096), tok,
                    max_batch=2, name="m")
    with SearchIndex(idx, writable=False) as ix:
        trends = Trends(ix)
        few = Trends(ix, TrendConfig(examples=2))  # [3] is then not one of the story's posts
        with ServerThread(create_app(engine, routers=[build_router(trends)])) as url:
            r = httpx.get(url + "/v1/trends", params={"window": "2h", "k": 3}, timeout=120)
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["object"] == "list" and body["window"] == "2h" and body["data"]
            for t in body["data"]:
                assert t["summary"].startswith("Crowds cheer [3]")
                assert [c["n"] for c in t["citations"]] == [3]
                assert t["citations"][0]["post_id"] == t["examples"][2]["post_id"]
                assert {"label", "score", "posts", "lang", "terms", "examples"} <= set(t)
            off = httpx.get(url + "/v1/trends", params={"window": "2h", "summaries": "false"}, timeout=60).json()
            assert [t["label"] for t in off["data"]] == [t["label"] for t in body["data"]]
            assert all(t["summary"] is None for t in off["data"])
            for params, field in [({"window": "2x"}, "window"), ({"k": "0"}, "k"), ({"k": "many"}, "k"),
                                  ({"nope": "1"}, "nope"), ({"at": "yesterday"}, "at"), ({"lang": "e n"}, "lang")]:
                bad = httpx.get(url + "/v1/trends", params=params, timeout=30)
                assert bad.status_code == 400 and bad.json()["error"]["param"] == field, bad.text
            t = few.detect(7200).trends[0]
            few.summarize(engine, t)
            assert t.summary.startswith("Crowds cheer tonight") and t.citations == []


@pytest.mark.slow
def test_murmur_trends_cli(storied):
    _, idx = storied
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ok = subprocess.run([sys.executable, "-m", "murmur.cli", "trends", str(idx), "--window", "2h", "--json"],
                        capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    out = json.loads(ok.stdout)
    assert out["data"] and all(t["summary"] is None for t in out["data"])
    text = subprocess.run([sys.executable, "-m", "murmur.cli", "trends", str(idx), "--window", "2h"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert text.returncode == 0 and out["data"][0]["label"] in text.stdout
    bad = subprocess.run([sys.executable, "-m", "murmur.cli", "trends", str(idx), "--window", "2x"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "window" in bad.stderr


@pytest.mark.slow
def test_murmur_trends_cli_writes_summaries_with_a_model(storied, tmp_path):
    from murmur.model import ModelConfig
    from murmur.train.checkpoint import save_inference_model

    _, idx = storied
    tok = make_tokenizer(tmp_path / "tok", 500, [REPLY])
    cycle = [ASSISTANT_ID, *tok.encode(REPLY)]
    cfg = ModelConfig(vocab_size=tok.vocab_size, dim=64, n_layers=1, n_heads=4, max_seq_len=4096,
                      tie_embeddings=False)
    model_dir = save_inference_model(tmp_path / "model", scripted_model(tok.vocab_size, cycle, max_seq_len=4096),
                                     cfg, tok.path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "murmur.cli", "trends", str(idx), "--window", "2h", "--k", "2",
                        "--model", str(model_dir), "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    for t in json.loads(r.stdout)["data"]:
        assert t["summary"].startswith("Crowds cheer [3]")
        assert [c["post_id"] for c in t["citations"]] == [t["examples"][2]["post_id"]]


def test_trend_settings_come_from_toml_and_bad_knobs_name_themselves(tmp_path):
    from murmur import config as cfgmod
    from murmur.errors import ConfigError

    assert cfgmod.load(TrendConfig, ROOT / "configs" / "trends.toml") == TrendConfig()  # the file is the defaults
    f = tmp_path / "t.toml"
    f.write_text('window = "6h"\nmin_score = 3.5\nmin_authors = 2\n')
    cfg = cfgmod.load(TrendConfig, f, ["min_posts=7"]).check()
    assert (cfg.window, cfg.min_score, cfg.min_authors, cfg.min_posts, cfg.k) == ("6h", 3.5, 2, 7, 5)
    for key, value in [("window", "2x"), ("window", "8d"), ("k", "0"), ("k", "21"), ("min_posts", "0"),
                       ("baseline_windows", "0"), ("group_overlap", "0"), ("prior", "-1"), ("examples", "0")]:
        with pytest.raises(ConfigError) as e:
            cfgmod.load(TrendConfig, f, [f"{key}={value}"]).check()
        assert str(e.value).startswith(key), (key, str(e.value))
    with pytest.raises(ConfigError, match="min_scor"):
        cfgmod.load(TrendConfig, f, ["min_scor=1"])


@pytest.mark.slow
def test_trend_config_drives_the_cli_and_the_server(storied, tmp_path):
    from murmur.search.features import server_features

    _, idx = storied
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    f = tmp_path / "trends.toml"
    f.write_text('window = "2h"\nmin_posts = 100000\n')   # nothing is posted that often

    def cli(*args: str) -> dict:
        r = subprocess.run([sys.executable, "-m", "murmur.cli", "trends", str(idx), "--json", *args],
                           capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    base = cli("--window", "3h")
    assert base["window"] == "3h" and base["data"]
    got = cli("--config", str(f))                              # the file's window and thresholds
    assert got["window"] == "2h" and got["data"] == []
    got = cli("--config", str(f), "--window", "3h", "min_posts=5")  # a flag or key=value wins when given
    assert got["window"] == "3h" and [t["label"] for t in got["data"]] == [t["label"] for t in base["data"]]
    bad = subprocess.run([sys.executable, "-m", "murmur.cli", "trends", str(idx), "--config", str(f), "k=0"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "k must be" in bad.stderr

    tok = make_tokenizer(tmp_path / "tok", 500, [REPLY])
    engine = Engine(scripted_model(tok.vocab_size, [ASSISTANT_ID, *tok.encode(REPLY)], max_seq_len=4096), tok,
                    max_batch=2, name="m")
    import shutil

    from murmur import config as cfgmod

    shutil.copytree(idx, tmp_path / "idx")   # the server opens its index for writing
    features = server_features(tmp_path / "idx", trends=cfgmod.load(TrendConfig, f, ["min_posts=5"]))
    with ServerThread(create_app(engine, routers=features.routers)) as url:   # the file's window, then a request's
        body = httpx.get(url + "/v1/trends", params={"summaries": "false"}, timeout=60).json()
        assert body["window"] == "2h" and body["data"]
        body = httpx.get(url + "/v1/trends", params={"summaries": "false", "window": "3h"}, timeout=60).json()
        assert body["window"] == "3h" and [t["label"] for t in body["data"]] == [t["label"] for t in base["data"]]
    with SearchIndex(idx, writable=False) as ix, \
            ServerThread(create_app(engine, routers=[build_router(Trends(ix, cfgmod.load(TrendConfig, f)))])) as url:
        assert httpx.get(url + "/v1/trends", params={"summaries": "false"}, timeout=60).json()["data"] == []
