"""Search without embeddings (fast): analysis, the lexical index, filters, real-time add/delete,
durability across kill -9, atomic rebuilds, bad input. Dense/hybrid/HTTP are in test_search_dense.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from search_helpers import tiny_corpus

from murmur.errors import InputError, MurmurError
from murmur.search.analyze import doc_terms, highlight_spans, query_terms
from murmur.search.index import CompactConfig, SearchIndex, build_index
from murmur.search.retrieve import make_request

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return tiny_corpus(tmp_path_factory.mktemp("search"))


@pytest.fixture()
def index_dir(corpus, tmp_path):
    build_index(corpus[1], tmp_path / "idx", None, progress=False)
    return tmp_path / "idx"


def test_analysis_english_spanish_entities():
    terms = doc_terms("Canción NUEVA @user loving #MachineLearning <url> https://t.co/x", "es", [], ["Bob"])
    assert "cancion" in terms and "#machinelearning" in terms and "@bob" in terms
    assert not any(t in terms for t in ("url", "user", "@user", "https", "t", "co"))
    assert doc_terms("runners running", "en") == ["runner", "run"]
    # a query is stemmed both ways, accents folded: "canciones" finds "canción"
    groups = query_terms("canciones")
    assert doc_terms("canción", "es")[0] in groups[0]
    # function words do not make every post a match, unless the query has nothing else
    assert query_terms("la temporada de tierra") == query_terms("temporada tierra")
    assert query_terms("the") == [{"the"}]
    # a one-word hashtag query also finds the word without the '#'
    assert doc_terms("un gran partido de fútbol", "es")[-1] in query_terms("#Fútbol")[0]
    text = "Running with runners #running"
    assert [text[a:b] for a, b in highlight_spans(text, "en", set().union(*query_terms("run")))] == \
        ["Running", "#running"]
    # mentions by handle, never the @user placeholder, links or placeholders; a text with no wanted word
    text = "@Ana and @user ran to https://run.example/run <url> #RunClub"
    spans = highlight_spans(text, "en", set().union(*query_terms("@ana run")))
    assert [text[a:b] for a, b in spans] == ["@Ana", "#RunClub"]
    assert highlight_spans("Tacos tonight at the market", "en", set().union(*query_terms("run"))) == []
    assert highlight_spans(text, "en", set()) == []


def test_term_tables_start_again_when_full(monkeypatch):
    from murmur.search import analyze

    monkeypatch.setattr(analyze, "_TERMS_MAX", 3)
    monkeypatch.setattr(analyze, "_TERMS", {})
    words = ["running", "runners", "Canciones", "marathons", "baking", "ran"]
    assert [analyze.word_term(w, "en") for w in words] == ["run", "runner", "cancion", "marathon", "bake", "ran"]
    assert len(analyze._TERMS["en"]) <= 3
    for i in range(50):  # language codes without a stemmer share one table, whatever posts claim
        assert analyze.word_term("Canción", f"x{i}") == "cancion"
    assert set(analyze._TERMS) <= {"en", "es", ""}
    text = "Running and baking marathons, then running again"
    spans = highlight_spans(text, "en", {"run", "bake"})
    assert [text[a:b] for a, b in spans] == ["Running", "baking", "running"]


def test_highlights_read_words_as_the_token_rules_do(corpus):
    """The fast path (runs split off in C, wanted runs found again by ``str.find``) marks exactly the
    tokens :data:`_TOKEN_RE` reads, token by token: tags' names, placeholders and odd ``#``/``@`` are
    not words, repeated and accented words are, and a text with a link takes the token path."""
    from murmur.search.analyze import _terms, _token_spans

    tricky = ["run #run ##run a#run run#run @run @user x@run #<url> <url>run <URL> <run> url",
              "RUN, run; Run! running_run _run run_ 12run run12 run—run 🏃run run🏃",
              "Fútbol #FútbolSala sala futbol fútbol, FÚTBOL ¿fútbol? #Fútbol @Fútbol",
              "Running with runners #RunningShoes #running @Ana www.run.example/run run",
              "#runrun run #run@run @run#run #", "corre, correr, carrera #Carrera @carrera <email> email"]
    texts = tricky + pq.read_table(corpus[1], columns=["text"]).column("text").to_pylist()[:300]
    queries = ["run", "running shoes", "#running", "@run", "@ana", "fútbol sala", "url user email", "carrera 12"]
    marked = 0
    for lang in ("en", "es", "fr"):
        for q in queries:
            wanted = set().union(*query_terms(q))
            for text in texts:
                spans = highlight_spans(text, lang, wanted)
                assert spans == _token_spans(text, lang, wanted, _terms(lang)), (q, text)
                marked += bool(spans)
    assert marked > 50

def test_lexical_query_filters_and_sort(index_dir, corpus):
    posts = pq.read_table(corpus[1]).to_pylist()
    target = next(p for p in posts if p["lang"] == "es" and p["hashtags"])
    tag = target["hashtags"][0]
    with SearchIndex(index_dir, writable=False) as ix:
        res = ix.search(make_request("#" + tag, mode="lexical", k=50))
        assert res and all(tag.lower() in r["text"].lower() or r["highlights"] for r in res)
        assert target["post_id"] in {r["post_id"] for r in ix.search(make_request("#" + tag, mode="lexical", k=1000))}
        by_author = ix.search(make_request(target["text"], mode="lexical", author=target["author_id"], k=50))
        assert by_author and {r["author_id"] for r in by_author} == {target["author_id"]}
        es = ix.search(make_request(target["text"], mode="lexical", lang="es", k=50))
        assert es and {r["lang"] for r in es} == {"es"}
        day = target["created_at"].date().isoformat()
        dated = ix.search(make_request(target["text"], mode="lexical", since=day, until=day, k=50))
        assert dated and all(r["created_at"].startswith(day) for r in dated)
        recent = ix.search(make_request("#" + tag, mode="lexical", sort="recent", k=20))
        assert [r["created_at"] for r in recent] == sorted((r["created_at"] for r in recent), reverse=True)
        liked = ix.search(make_request(target["text"], mode="lexical", min_likes=5, k=50))
        likes = {p["post_id"]: p["likes"] or 0 for p in posts}
        assert all(likes[r["post_id"]] >= 5 for r in liked)
        assert ix.search(make_request("#" + tag, mode="lexical", hashtag=tag, k=5))


def test_one_list_is_read_k_deep_and_recent_reads_the_pool(index_dir, corpus):
    from collections import Counter

    from murmur.search.retrieve import RetrieveConfig, ranked

    tags = Counter(t for p in pq.read_table(corpus[1]).to_pylist() for t in p["hashtags"] or [])
    tag = tags.most_common(1)[0][0]
    with SearchIndex(index_dir, writable=False) as ix:
        pool = ranked(ix, make_request("#" + tag, mode="lexical", k=100), RetrieveConfig(candidates=100))
        assert len(pool) > 5
        assert ranked(ix, make_request("#" + tag, mode="lexical", k=5), RetrieveConfig(candidates=100)) == pool[:5]
        # newest first among the best `candidates` matches, not among the best k only
        created = ix.store.created.a
        recent = ranked(ix, make_request("#" + tag, mode="lexical", k=5, sort="recent"), RetrieveConfig(candidates=100))
        assert [k for k, _ in recent][:5] == sorted((k for k, _ in pool), key=lambda k: (-created[k], k))[:5]


def test_add_is_searchable_and_delete_is_gone_within_a_second(index_dir):
    with SearchIndex(index_dir) as ix:
        result = ix.add([{"post_id": "n1", "author_id": "a1", "created_at": "2030-01-01T00:00:00Z",
                          "text": "The zorblax festival in town was amazing this weekend, with friends #zorblax"},
                         {"post_id": "n2", "text": "RT @someone: zorblax retweet"},
                         {"post_id": "n3", "text": "zorblax"}])
        t0 = time.perf_counter()  # searchable within a second of the call returning
        hits = ix.search(make_request("zorblax", mode="lexical"))
        assert time.perf_counter() - t0 < 1.0
        assert result.added == ["n1"] and dict(result.dropped) == {"n2": "retweet", "n3": "too_short"}
        assert [h["post_id"] for h in hits] == ["n1"] and hits[0]["lang"] == "en"
        assert ix.delete("n1")
        t0 = time.perf_counter()
        assert ix.search(make_request("zorblax", mode="lexical")) == []
        assert time.perf_counter() - t0 < 1.0
        assert not ix.delete("n1")
        pii = ix.add([{"post_id": "n4", "text": "Call me at 06 12 34 56 78 about the zorblax meetup tonight"}])
        assert pii.added == ["n4"]
        assert "<phone>" in ix.search(make_request("zorblax", mode="lexical"))[0]["text"]
    with SearchIndex(index_dir) as ix:  # the log replays: the add and the delete both hold
        assert [h["post_id"] for h in ix.search(make_request("zorblax", mode="lexical"))] == ["n4"]


def test_bad_post_batch_refused_whole(index_dir):
    with SearchIndex(index_dir) as ix:
        n = len(ix)
        with pytest.raises(InputError) as e:
            ix.add([{"post_id": "ok", "text": "a perfectly fine post about gardening and tomatoes"},
                    {"post_id": "bad", "text": "another post", "created_at": "yesterday"}])
        assert e.value.field == "posts[1].created_at"
        with pytest.raises(InputError, match="unknown field"):
            ix.add([{"post_id": "x", "text": "hello there friends", "colour": "red"}])
        assert len(ix) == n


def test_acknowledged_add_survives_kill_9(index_dir):
    code = f"""
import sys
from murmur.search.index import SearchIndex
ix = SearchIndex({str(index_dir)!r})
ix.add([{{"post_id": "durable1", "text": "Quuxberry jam is the best thing on toast this morning"}}])
print("ack", flush=True)
import time; time.sleep(60)
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stdout.readline().strip() == "ack"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with SearchIndex(index_dir) as ix:
        assert [h["post_id"] for h in ix.search(make_request("quuxberry", mode="lexical"))] == ["durable1"]


def test_failed_rebuild_leaves_previous_index(index_dir, corpus, tmp_path):
    t = pq.read_table(corpus[1])
    texts = t.column("text").to_pylist()
    texts[-1] = None
    bad = tmp_path / "bad.parquet"
    pq.write_table(t.set_column(t.schema.get_field_index("text"), "text", pa.array(texts, pa.string())), bad)
    with pytest.raises(InputError, match="without post_id or text"):
        build_index(bad, index_dir, None, batch_size=64, progress=False, overwrite=True)
    with SearchIndex(index_dir, writable=False) as ix:
        assert len(ix) == t.num_rows and ix.search(make_request("the", mode="lexical"))
    with pytest.raises(MurmurError, match="--overwrite"):
        build_index(corpus[1], index_dir, None, progress=False)
    with SearchIndex(index_dir) as ix:  # a live index (log, new segments) can still be rebuilt
        ix.add([{"post_id": "z", "text": "one more post about the garden and the tomatoes"}])
    build_index(corpus[1], index_dir, None, progress=False, overwrite=True)
    assert [p.name for p in index_dir.parent.iterdir() if p.name.startswith(".idx")] == []


@pytest.mark.parametrize("kwargs,field", [
    ({"q": ""}, "q"), ({"q": "x" * 10_000}, "q"), ({"q": "a", "mode": "fuzzy"}, "mode"),
    ({"q": "a", "since": "2024-13-45"}, "since"), ({"q": "a", "k": 0}, "k"), ({"q": "a", "sort": "old"}, "sort"),
    ({"q": "a", "min_likes": -1}, "min_likes"),
])
def test_bad_queries(kwargs, field):
    q = kwargs.pop("q")
    with pytest.raises(InputError) as e:
        make_request(q, **kwargs)
    assert e.value.field == field


def test_dense_mode_needs_embeddings(index_dir):
    with SearchIndex(index_dir, writable=False) as ix, pytest.raises(InputError, match="no embeddings"):
        ix.search(make_request("hello", mode="dense"))


def test_not_an_index(tmp_path):
    with pytest.raises(MurmurError, match="not found"):
        SearchIndex(tmp_path / "nope")
    (tmp_path / "junk").mkdir()
    with pytest.raises(MurmurError, match="not a search index"):
        SearchIndex(tmp_path / "junk")


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "murmur.cli", "search", *args], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.mark.slow
def test_cli_index_query_json_and_errors(corpus, tmp_path):
    out = tmp_path / "cli-idx"
    r = _cli("index", str(corpus[1]), "-o", str(out), "--lexical-only")
    assert r.returncode == 0, r.stderr
    r = _cli("query", str(out), "#running", "--mode", "lexical", "--k", "3", "--json")
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout)
    assert body["object"] == "list" and len(body["data"]) == 3
    assert set(body["data"][0]) == {"post_id", "author_id", "created_at", "lang", "text", "score", "highlights"}
    for args in (["query", str(out), ""], ["query", str(out), "x", "--since", "soon"],
                 ["query", str(tmp_path), "x"], ["query", str(out), "x" * 10_000]):
        r = _cli(*args)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, (args, r.stderr)


def _hits(ix: SearchIndex, word: str) -> list[str]:
    return [h["post_id"] for h in ix.search(make_request(word, mode="lexical", k=50))]


def test_compaction_folds_the_log_into_segments(index_dir):
    cfg = CompactConfig(auto=False, max_segments=3)
    with SearchIndex(index_dir, compact=cfg) as ix:
        base = ix.store.get(0)["post_id"]
        for r in range(4):  # four compactions: segments are merged past max_segments
            ix.add([{"post_id": f"c{r}", "text": f"The plonkwort{r} market opened downtown with fresh bread today"}])
            assert ix.compact()
            assert sorted(p.name for p in index_dir.glob("wal-*")) == []
        assert not ix.compact()  # nothing new
        assert ix.delete("c1") and ix.delete(base)
        ix.add([{"post_id": "late", "text": "A late plonkwort9 post after the last compaction of the day"}])
        n = len(ix)
    state = json.loads((index_dir / "segments.json").read_text())
    assert len(state["segments"]) <= 3 and state["posts"] == n + 2  # close() compacted the rest
    with SearchIndex(index_dir, compact=cfg) as ix:
        assert len(ix) == n
        assert _hits(ix, "plonkwort0") == ["c0"] and _hits(ix, "plonkwort1") == [] and _hits(ix, "plonkwort9") == ["late"]
        assert base not in {ix.store.get(int(k))["post_id"] for k in np.flatnonzero(ix.store.alive.view)}
        ix.add([{"post_id": "c1", "text": "The plonkwort1 market is back again with cheese and honey"}])
    with SearchIndex(index_dir, writable=False) as ix:
        assert _hits(ix, "plonkwort1") == ["c1"]


_CHURN = """
import sys
from murmur.search.index import CompactConfig, SearchIndex
ix = SearchIndex(sys.argv[1], compact=CompactConfig(auto=False, on_close=False))
r = sys.argv[2]
for i in range(100000):
    pid = f"k{r}x{i}"
    ix.add([{"post_id": pid, "text": f"Notes from the zq{r}x{i} gardening club meeting with tomatoes today"}])
    print("A", pid, flush=True)
    if i % 3 == 2:
        gone = f"k{r}x{i - 1}"
        print("P", gone, flush=True)  # a delete under way: a kill may land before or after it takes
        ix.delete(gone)
        print("D", gone, flush=True)
    ix.compact()
"""


def test_kill_9_during_compaction_loses_nothing(index_dir):
    """A writer that adds, deletes and compacts in a loop is killed at random moments, again and again:
    every acknowledged add is found after each restart and no acknowledged delete comes back."""
    import random
    import threading

    rng = random.Random(0)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    added: set[str] = set()
    deleted: set[str] = set()
    pending: set[str] = set()  # deletes called but not acknowledged: either outcome is right
    for r in range(6):
        proc = subprocess.Popen([sys.executable, "-c", _CHURN, str(index_dir), str(r)], stdout=subprocess.PIPE,
                                env=env, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda p=proc, out=lines: out.extend(p.stdout), daemon=True)
        reader.start()
        deadline = time.monotonic() + 60
        while len(lines) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.5))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        reader.join(timeout=10)
        for line in list(lines):
            op, pid = line.split()
            {"A": added, "D": deleted, "P": pending}[op].add(pid)
        with SearchIndex(index_dir, compact=CompactConfig(auto=False, on_close=False)) as ix:
            alive = {ix.store.get(int(k))["post_id"] for k in np.flatnonzero(ix.store.alive.view)}
            assert added - deleted - pending <= alive, sorted(added - deleted - pending - alive)
            assert not deleted & alive, sorted(deleted & alive)
            # an unacknowledged delete that took is as final as an acknowledged one
            deleted |= pending - alive
            pending &= alive
            for pid in rng.sample(sorted(added - pending), min(10, len(added - pending))):
                r_, i_ = pid[1:].split("x")
                assert _hits(ix, f"zq{r_}x{i_}") == ([] if pid in deleted else [pid])
    assert len(added) > 20


def test_damaged_segment_state_is_one_line(index_dir):
    with SearchIndex(index_dir, compact=CompactConfig(auto=False)) as ix:
        ix.add([{"post_id": "s1", "text": "A post about the garden, the tomatoes and the summer rain"}])
    state = index_dir / "segments.json"
    good = state.read_text()
    state.write_text("{not json")
    with pytest.raises(MurmurError, match="segments.json: unreadable"):
        SearchIndex(index_dir)
    state.write_text(good)
    seg = next(index_dir.glob("seg-*.parquet"))
    seg.rename(index_dir / "moved.parquet")
    with pytest.raises(MurmurError, match="is missing"):
        SearchIndex(index_dir)


def test_a_waiting_writer_goes_before_later_readers():
    """A stream of short reads (searches, slices of trend counting) cannot hold an add back."""
    import threading
    import time

    from murmur.search.index import _RWLock

    lock, order = _RWLock(), []
    first = lock.read()
    first.__enter__()
    writer_waiting = threading.Event()

    def write():
        writer_waiting.set()
        with lock.write():
            order.append("write")

    def read():
        with lock.read():
            order.append("read")

    w = threading.Thread(target=write)
    w.start()
    writer_waiting.wait(5)
    deadline = time.monotonic() + 5
    while not lock._waiting and time.monotonic() < deadline:
        time.sleep(0.001)
    r = threading.Thread(target=read)
    r.start()
    time.sleep(0.05)
    assert order == []  # the later reader waits behind the writer, which waits for the first reader
    first.__exit__(None, None, None)
    w.join(5)
    r.join(5)
    assert order == ["write", "read"]


_WARM = """
import sys
from murmur.data import langid, quality
from murmur.search.index import SearchIndex
with SearchIndex(sys.argv[1]) as ix:
    ix.warm_up()
    print(quality._count.compiled is not None, langid._walk.compiled is not None)
"""


def test_warm_up_compiles_the_cleaners_kernels(index_dir):
    """A server's index warms up in the background at startup: the first add then finds the cleaner's
    compiled kernels ready instead of compiling them (a fresh process, so nothing else compiled them)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", _WARM, str(index_dir)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "True"]


def test_store_rows_are_the_posts_of_the_keys_in_order(index_dir):
    """A page of results is read with one Arrow take: the same posts, in the keys' order, build rows
    and added rows mixed, as one post at a time."""
    with SearchIndex(index_dir) as ix:
        ix.add([{"post_id": "r1", "author_id": "a9", "created_at": "2030-01-01T00:00:00Z",
                 "text": "A quiet evening of board games with the whole family #boardgames"}])
        store = ix.store
        added = store.ids["r1"]
        keys = [added, 3, 0, len(store) - 2, 3]
        rows = store.rows(keys)
        assert rows == [store.get(k) for k in keys]
        assert rows[0]["post_id"] == "r1" and rows[0]["author_id"] == "a9"
        assert [r["post_id"] for r in rows[1:3]] == [store.base.column("post_id")[k].as_py() for k in (3, 0)]
        assert store.rows([]) == []
        hits = ix.search(make_request("board games family", mode="lexical"))
        assert hits[0]["post_id"] == "r1" and hits[0]["highlights"]


def test_store_rows_read_the_arrow_buffers_as_arrow_does():
    """A page's strings are decoded from the column buffers: a table of several chunks, sliced (an offset
    into its buffers), with null conversation ids, reads as Arrow's own ``to_pylist``."""
    import datetime as dt

    from murmur.search.store import SCHEMA, Store

    when = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    rows = [dict(post_id=f"p{i}", author_id=f"a{i % 3}", created_at=when, lang="es" if i % 2 else "en",
                 text=f"canción {i} 🎸", hashtags=[], mentions=[], likes=i, reposts=0, replies=0, reply_to=None,
                 conversation_id=None if i % 2 else f"c{i}") for i in range(9)]
    whole = pa.Table.from_pylist(rows, schema=SCHEMA)
    table = pa.concat_tables([whole.slice(0, 4), whole.slice(4)]).slice(2)
    store = Store(table)
    want = table.select(["post_id", "author_id", "lang", "text", "conversation_id"]).to_pylist()
    got = store.rows([4, 0, 6, 1])
    assert [{k: r[k] for k in want[0]} for r in got] == [want[4], want[0], want[6], want[1]]
    assert store.get(1)["conversation_id"] is None and store.get(1)["text"] == "canción 3 🎸"
    assert Store(whole.slice(0, 0)).rows([]) == []
