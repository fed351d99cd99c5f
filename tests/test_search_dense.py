"""Dense and hybrid search with the packaged all-MiniLM-L6-v2, the HTTP routes on the real server
(the official openai client for /v1/embeddings) and a wrong embedder. Small corpus: embedding on
CPU is the slow part."""

from __future__ import annotations

import numpy as np
import pytest
from search_helpers import tiny_corpus

from murmur.errors import InputError, MurmurError
from murmur.search.dense import GraphConfig, recall_at_k
from murmur.search.embed import default_embedder_dir, load_embedder
from murmur.search.index import SearchIndex, build_index
from murmur.search.retrieve import make_request

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedder():
    return load_embedder(None)


@pytest.fixture(scope="module")
def built(tmp_path_factory, embedder):
    root = tmp_path_factory.mktemp("dense")
    world, clean = tiny_corpus(root, rows=160)
    build_index(clean, root / "idx", embedder, progress=False)
    return world, root / "idx"


def test_dense_hybrid_and_ann_recall(built, embedder):
    with SearchIndex(built[1], embedder=embedder) as ix:
        dense = ix.search(make_request("running a marathon", mode="dense", k=5))
        assert len(dense) == 5 and dense[0]["score"] >= dense[-1]["score"]
        hybrid = ix.search(make_request("running a marathon", mode="hybrid", k=5))
        assert len(hybrid) == 5
        es = ix.search(make_request("running a marathon", mode="dense", lang="es", k=5))
        assert es and {r["lang"] for r in es} == {"es"}
        queries = embedder.encode(["marathon", "cooking dinner", "football match", "new phone"], "query")
        assert recall_at_k(ix.dense, queries, ix.store.alive.view, k=10) >= 0.9
        ix.add([{"post_id": "d1", "text": "Just baked sourdough bread with a crunchy crust this morning"}])
        top = ix.search(make_request("homemade bread baking", mode="dense", k=3))
        assert "d1" in [r["post_id"] for r in top]
        assert ix.delete("d1")
        assert "d1" not in [r["post_id"] for r in ix.search(make_request("homemade bread baking", mode="hybrid"))]


def test_wrong_embedder_dimension(built, tmp_path):
    from transformers import AutoTokenizer, BertConfig, BertModel

    small = tmp_path / "tiny-bert"
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(small)
    AutoTokenizer.from_pretrained(default_embedder_dir()).save_pretrained(small)
    with pytest.raises(MurmurError, match="32-d"):
        SearchIndex(built[1], embedder=load_embedder(small), writable=False)


def test_http_routes_and_openai_embeddings(built, embedder, tmp_path):
    import httpx
    import openai
    from serve_helpers import ServerThread, make_tokenizer, micro_model

    from murmur.engine import Engine
    from murmur.search.router import WEB_DIR, build_router
    from murmur.serve.app import create_app

    tok = make_tokenizer(tmp_path / "tok")
    engine = Engine(micro_model(tok.vocab_size), tok, max_batch=1, name="m")
    with SearchIndex(built[1], embedder=embedder) as ix:
        app = create_app(engine, routers=[build_router(ix)], pages={"/search": WEB_DIR}, api_key="k")
        with ServerThread(app) as url:
            h = {"Authorization": "Bearer k"}
            r = httpx.get(f"{url}/v1/search", params={"q": "marathon", "mode": "hybrid", "k": 3}, headers=h)
            assert r.status_code == 200 and r.json()["object"] == "list" and len(r.json()["data"]) == 3
            assert httpx.get(f"{url}/v1/search", params={"q": "x"}).status_code == 401
            r = httpx.post(f"{url}/v1/search", json={"q": "marathon", "mode": "lexical", "k": 2}, headers=h)
            assert r.status_code == 200 and len(r.json()["data"]) == 2
            for params, param in (({"q": ""}, "q"), ({"q": "a", "colour": "red"}, "colour"),
                                  ({"q": "a", "since": "2024-99-01"}, "since"), ({"q": "x" * 10_000}, "q"),
                                  ({"q": "a", "k": "many"}, "k")):
                r = httpx.get(f"{url}/v1/search", params=params, headers=h)
                assert r.status_code == 400 and r.json()["error"]["param"] == param, (params, r.text)
            r = httpx.post(f"{url}/v1/posts", headers=h, json={"posts": [
                {"post_id": "h1", "author_id": "u9", "created_at": "2030-01-01T00:00:00Z",
                 "text": "Plingle pottery class tonight, my first bowl came out lopsided"}]})
            assert r.status_code == 200 and r.json()["added"] == ["h1"]
            hits = httpx.get(f"{url}/v1/search", params={"q": "plingle", "mode": "lexical"}, headers=h).json()["data"]
            assert [d["post_id"] for d in hits] == ["h1"] and hits[0]["highlights"] == [[0, 7]]
            r = httpx.post(f"{url}/v1/posts", headers=h, json={"posts": [{"post_id": "h2"}]})
            assert r.status_code == 400 and "posts[0].text" in r.json()["error"]["message"]
            assert httpx.delete(f"{url}/v1/posts/h1", headers=h).status_code == 200
            assert httpx.delete(f"{url}/v1/posts/h1", headers=h).status_code == 404
            assert httpx.get(f"{url}/v1/search", params={"q": "plingle", "mode": "lexical"},
                             headers=h).json()["data"] == []
            assert httpx.get(f"{url}/search/").status_code == 200
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="k")
            out = client.embeddings.create(model="all-MiniLM-L6-v2", input=["hello world", "hola mundo"])
            assert len(out.data) == 2 and len(out.data[0].embedding) == 384
            v = np.array(out.data[0].embedding)
            assert abs(np.linalg.norm(v) - 1.0) < 1e-3
            assert np.allclose(v, embedder.encode(["hello world"])[0], atol=1e-4)
            b64 = client.embeddings.create(model="m", input="hello world", encoding_format="base64")
            import base64

            assert np.allclose(np.frombuffer(base64.b64decode(b64.data[0].embedding), "<f4"), v, atol=1e-4)
            assert out.usage.total_tokens > 0
    engine.stop()


def test_compaction_keeps_vectors_and_graph(built, embedder, tmp_path):
    import shutil

    from murmur.search.index import CompactConfig

    idx = tmp_path / "idx"
    shutil.copytree(built[1], idx)
    cfg = CompactConfig(auto=False)
    with SearchIndex(idx, embedder=embedder, compact=cfg) as ix:
        ix.add([{"post_id": "v1", "text": "Just baked sourdough bread with a crunchy crust this morning"}])
        assert ix.compact()
        ix.add([{"post_id": "v2", "text": "Our kayak trip down the river was wild and wet and wonderful"}])
        victim = ix.search(make_request("running a marathon", mode="dense", k=1))[0]["post_id"]
        assert ix.delete(victim)
    assert not list(idx.glob("wal-*")) and list(idx.glob("graph-*.faiss")) and list(idx.glob("seg-*.npy"))
    with SearchIndex(idx, embedder=embedder, compact=cfg) as ix:
        assert ix.search(make_request("homemade bread baking", mode="dense", k=1))[0]["post_id"] == "v1"
        assert ix.search(make_request("paddling on a river", mode="dense", k=1))[0]["post_id"] == "v2"
        assert victim not in [r["post_id"] for r in ix.search(make_request("running a marathon", mode="dense"))]
        queries = embedder.encode(["bread", "river kayak", "marathon"], "query")
        assert recall_at_k(ix.dense, queries, ix.store.alive.view, k=10) >= 0.9


def test_hybrid_weights_follow_the_query(built, embedder):
    """A tag-only query leans on the lexical list; an English query over Spanish posts on the dense one."""
    from murmur.search import retrieve
    from murmur.search.retrieve import RetrieveConfig, lexical_weight, query_language

    cfg = RetrieveConfig()
    retrieve._identifier.cache_clear()
    with SearchIndex(built[1], embedder=embedder, writable=False) as ix:
        langs = tuple(sorted(ix.store.langs))
        ix.warm_up()  # what the router does at startup: the first query then finds the identifier loaded
        assert retrieve._identifier.cache_info().currsize == 1
        assert query_language("the marathon training plan", langs) == "en"
        assert query_language("el plan de entrenamiento para la maratón", langs) == "es"
        assert lexical_weight(ix, make_request("#running"), cfg) == cfg.tag_lexical_weight == 2.0
        assert lexical_weight(ix, make_request("#running @coach"), cfg) == 2.0
        assert lexical_weight(ix, make_request("the marathon training plan"), cfg) == 1.0  # no language asked for
        assert lexical_weight(ix, make_request("the marathon training plan", lang="es"), cfg) == 0.25
        assert lexical_weight(ix, make_request("the marathon training plan", lang="en"), cfg) == 1.0
        assert lexical_weight(ix, make_request("el plan de entrenamiento para la maratón", lang="es"), cfg) == 1.0
        assert lexical_weight(ix, make_request("marathon", lang="es"), cfg) == 1.0  # one word: language unknown
        off = RetrieveConfig(tag_lexical_weight=1.0, lexical_weight_other_langs=1.0)
        assert lexical_weight(ix, make_request("#running"), off) == 1.0
        assert lexical_weight(ix, make_request("the marathon training plan", lang="es"), off) == 1.0
        # an English query over Spanish posts: the lexical list's weight drops, the results are still Spanish
        req = make_request("the marathon training plan", mode="hybrid", lang="es", k=10)
        hits = ix.search(req)
        assert hits and {h["lang"] for h in hits} == {"es"}
        assert [h["score"] for h in hits] != [h["score"] for h in ix.search(req, off)]


def test_filtered_dense_and_shared_forwards(built, embedder):
    import concurrent.futures as cf

    from murmur.search.retrieve import RetrieveConfig, ranked

    queries = ["running a marathon", "cooking dinner", "football match", "new phone", "#running", "viaje a la playa"]
    alone = np.stack([embedder.encode([q], "query")[0] for q in queries])
    with cf.ThreadPoolExecutor(6) as pool:  # concurrent queries share forwards, each gets its own vector
        together = np.stack(list(pool.map(lambda q: embedder.encode([q], "query")[0], queries * 3)))
    np.testing.assert_allclose(together, np.concatenate([alone] * 3), atol=1e-5)
    with SearchIndex(built[1], embedder=embedder, writable=False) as ix:
        vec = alone[0]
        for kw in ({"lang": "es"}, {"lang": "en"}, {"min_likes": 1}):
            req = make_request(queries[0], mode="dense", k=5, **kw)
            mask = ix.store.mask(req.filters)
            exact = [k for k, _ in ix.dense.search_exact(vec, np.flatnonzero(mask), 5)]
            assert [k for k, _ in ranked(ix, req, query_vec=vec)][:5] == exact  # few pass: exact search
            ann = [k for k, _ in ranked(ix, req, RetrieveConfig(exact_below=0), query_vec=vec)][:5]
            assert len(ann) == min(5, int(mask.sum())) and all(mask[k] for k in ann)


def test_deleted_neighbours_and_an_index_built_with_another_graph(built, embedder, tmp_path, capfd):
    """Deleting a query's nearest posts still leaves k results (liveness inside the walk), and an index
    whose graph is another engine's file (built before) gets its graph rebuilt from the stored rows,
    answering as the original, until compaction saves it."""
    import json

    from murmur.search.index import CompactConfig

    idx = tmp_path / "idx"
    _, clean = tiny_corpus(tmp_path, rows=160)
    build_index(clean, idx, embedder, progress=False)
    req = make_request("running a marathon", mode="dense", k=5)
    with SearchIndex(idx, embedder=embedder, writable=False) as ix:
        before = [r["post_id"] for r in ix.search(req)]
        nearest = [r["post_id"] for r in ix.search(make_request("running a marathon", mode="dense", k=30))]
    (idx / "dense.faiss").unlink()
    manifest = json.loads((idx / "manifest.json").read_text())
    del manifest["graph"]
    (idx / "manifest.json").write_text(json.dumps(manifest))
    (idx / "dense.usearch").write_bytes(b"a graph of another engine")
    cfg = CompactConfig(auto=False)
    with SearchIndex(idx, embedder=embedder, compact=cfg) as ix:
        assert [r["post_id"] for r in ix.search(req)] == before
        for post_id in nearest[:25]:
            assert ix.delete(post_id)
        vec = embedder.encode(["running a marathon"], "query")[0]
        exact = [ix.store.get(k)["post_id"] for k, _ in ix.dense.search_exact(vec, np.flatnonzero(ix.store.alive.view), 5)]
        assert [r["post_id"] for r in ix.search(req)] == exact and not set(exact) & set(nearest[:25])
        assert ix.compact()
    assert not (idx / "dense.usearch").exists() and list(idx.glob("graph-*.faiss"))
    with SearchIndex(idx, embedder=embedder, compact=cfg) as ix:
        assert [r["post_id"] for r in ix.search(req)] == exact
    # a damaged graph file (it is derived from the stored rows) is built again, with a line saying why
    graph = next(idx.glob("graph-*.faiss"))
    graph.write_bytes(graph.read_bytes()[:100])
    with SearchIndex(idx, embedder=embedder, compact=cfg) as ix:
        assert [r["post_id"] for r in ix.search(req)] == exact
    assert f"{graph}: unreadable (" in capfd.readouterr().err


def test_a_language_with_many_posts_gets_a_graph_of_its_own(embedder, tmp_path, capfd):
    """A filter on a language with a graph of its own walks that graph (not the main graph's neighbours,
    not an exact pass over the language's rows); adds in the language join it, compaction saves it and
    gives one to a language that has passed the threshold since, and a damaged one is built again."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import pyarrow.parquet as pq

    from murmur.search.dense import keyed_graph_of
    from murmur.search.index import CompactConfig
    from murmur.search.retrieve import RetrieveConfig, ranked

    _, clean = tiny_corpus(tmp_path, rows=160)
    langs = pq.read_table(clean, columns=["lang"]).column("lang").to_pylist()
    assert langs.count("en") > 100 > langs.count("es") > 30
    idx = tmp_path / "idx"
    done = subprocess.run([sys.executable, "-m", "murmur.cli", "search", "index", str(clean), "-o", str(idx),
                           "--lang-graph-min-posts", "100"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert done.returncode == 0, done.stderr
    assert "posts/s, embedded with all-MiniLM-L6-v2; graphs of their own: en)" in done.stdout
    assert json.loads((idx / "manifest.json").read_text())["lang_graphs"] == {"en": "dense-en.faiss"}
    vec = embedder.encode(["running a marathon"], "query")[0]
    ann = RetrieveConfig(exact_below=0, ann_max_fetch=10_000)
    cfg, grow = CompactConfig(auto=False), GraphConfig(lang_min_posts=30)
    with SearchIndex(idx, embedder=embedder, compact=cfg, graphs=grow) as ix:
        assert set(ix.dense.by_lang) == {"en"} and ix.dense.graph_size("en") == langs.count("en")
        assert ix.dense.graph_size() == 160
        en = np.flatnonzero(ix.store.mask(make_request("x", lang="en").filters))
        assert {k for k, _ in ix.dense.search_ann(vec, 200, lang="en")} == set(en.tolist())
        # an English filter walks the English graph: one over half its posts answers with those only
        half = en[::2]
        ix.dense.set_graph("en", keyed_graph_of(ix.dense.rows, half, ix.dense.dim, "en", progress=False))
        hits = [k for k, _ in ranked(ix, make_request("running a marathon", mode="dense", lang="en", k=10), ann, vec)]
        assert len(hits) == 10 and set(hits) <= set(half.tolist())
        ix.dense.set_graph("en", keyed_graph_of(ix.dense.rows, en, ix.dense.dim, "en", progress=False))
        hits = [k for k, _ in ranked(ix, make_request("running a marathon", mode="dense", lang="en", k=10), ann, vec)]
        assert hits == [k for k, _ in ix.dense.search_exact(vec, en, 10)]
        # posts added in a language join its graph; a compaction gives Spanish, now past 30 posts, its own
        added = ix.add([{"post_id": "es1", "text": "Hoy horneamos pan de masa madre con una corteza muy crujiente"},
                        {"post_id": "en1", "text": "Just baked sourdough bread with a crunchy crust this morning"}])
        assert added.added == ["es1", "en1"] and ix.dense.graph_size("en") == langs.count("en") + 1
        gone = ix.store.get(int(np.flatnonzero(ix.store.mask(make_request("x", lang="es").filters))[0]))["post_id"]
        assert ix.delete(gone)  # a graph built from here on holds the live posts only
        assert ix.compact() and set(ix.dense.by_lang) == {"en", "es"}
        es1 = ix.store.ids["es1"]
        assert ix.dense.search_ann(ix.dense.rows(np.array([es1]))[0], 1, lang="es")[0][0] == es1
        ix.add([{"post_id": "es2", "text": "El partido de fútbol de anoche fue emocionante hasta el final"}])
        assert ix.dense.graph_size("es") == langs.count("es") + 1  # es1 and es2, and not the deleted one
        es_hits = [k for k, _ in ranked(ix, make_request("partido de fútbol", mode="dense", lang="es", k=5), ann)]
        assert ix.store.ids["es2"] in es_hits and {ix.store.get(k)["lang"] for k in es_hits} == {"es"}
    assert not (idx / "dense-en.faiss").exists() and len(list(idx.glob("graph-*-e[ns].faiss"))) == 2
    capfd.readouterr()
    with SearchIndex(idx, embedder=embedder, compact=cfg) as ix:  # the log replayed on top: nothing added twice
        assert ix.dense.graph_size("es") == langs.count("es") + 1 and ix.dense.graph_size("en") == langs.count("en") + 1
        es = np.flatnonzero(ix.store.mask(make_request("x", lang="es").filters))
        assert gone not in {ix.store.get(int(k))["post_id"] for k in es}
        hits = [k for k, _ in ranked(ix, make_request("partido de fútbol", mode="dense", lang="es", k=5), ann)]
        assert hits == [k for k, _ in ix.dense.search_exact(embedder.encode(["partido de fútbol"], "query")[0], es, 5)]
    assert "building the HNSW graph" not in capfd.readouterr().err  # the saved graphs were read as they are
    graph = next(idx.glob("graph-*-es.faiss"))
    graph.write_bytes(graph.read_bytes()[:100])
    with SearchIndex(idx, embedder=embedder, compact=cfg, writable=False) as ix:
        assert ix.dense.graph_size("es") == langs.count("es") + 1
        assert [k for k, _ in ranked(ix, make_request("partido de fútbol", mode="dense", lang="es", k=5), ann)] == hits
    assert f"{graph}: unreadable (" in capfd.readouterr().err


@pytest.mark.parametrize("knobs, field", [({"rebuild_dead_share": -0.1}, "rebuild_dead_share"),
                                           ({"rebuild_dead_share": 1.0}, "rebuild_dead_share"),
                                           ({"rebuild_dead_share": "0.2"}, "rebuild_dead_share"),
                                           ({"lang_min_posts": -5}, "lang_min_posts"),
                                           ({"lang_min_posts": 2.5}, "lang_min_posts")])
def test_graph_knobs_out_of_range_are_refused_in_one_line(knobs, field):
    with pytest.raises(InputError) as e:
        GraphConfig(**knobs)
    assert e.value.field == field and field in str(e.value) and "\n" not in str(e.value)
    assert GraphConfig(rebuild_dead_share=0.0, lang_min_posts=0).rebuild_dead_share == 0.0  # 0: never / none


def test_a_graph_crowded_with_deleted_posts_is_built_again_over_the_live_ones(embedder, tmp_path, capfd):
    """faiss's HNSW cannot remove a vector: once deleted posts are more than ``rebuild_dead_share`` of a
    graph, compaction builds it again over the live posts (keyed), adds join it, and it opens as saved."""
    from murmur.search.dense import held_keys
    from murmur.search.index import CompactConfig
    from murmur.search.retrieve import ranked

    _, clean = tiny_corpus(tmp_path, rows=160)
    idx = tmp_path / "idx"
    graphs = GraphConfig(lang_min_posts=30, rebuild_dead_share=0.2)
    build_index(clean, idx, embedder, progress=False, graphs=graphs)
    vec = embedder.encode(["running a marathon"], "query")[0]
    req = make_request("running a marathon", mode="dense", k=10)
    with SearchIndex(idx, embedder=embedder, compact=CompactConfig(auto=False), graphs=graphs) as ix:
        assert set(ix.dense.by_lang) == {"en", "es"}
        ids = [ix.store.get(k)["post_id"] for k in range(160)]
        for post_id in ids[:30]:  # 19% of the main graph: it stays as it is
            assert ix.delete(post_id)
        assert ix.compact() and ix.dense.graph_size() == 160
        for post_id in ids[30:50]:  # 31%
            assert ix.delete(post_id)
        ix.add([{"post_id": "n1", "text": "Just baked sourdough bread with a crunchy crust this morning"}])
        assert ix.compact()
        live = np.flatnonzero(ix.store.alive.view)
        assert len(live) == 111 and sorted(held_keys(ix.dense.graph()).tolist()) == live.tolist()
        for lang in ("en", "es"):  # the languages' graphs, each by its own share of deleted posts
            assert ix.dense.dead_share(lang, ix.store.alive.view) <= 0.2
            mask = ix.store.mask(make_request("x", lang=lang).filters)
            assert set(np.flatnonzero(mask).tolist()) <= set(held_keys(ix.dense.graph(lang)).tolist())
        ix.add([{"post_id": "n2", "text": "Our kayak trip down the river was wild and wet and wonderful"}])
        assert ix.dense.graph_size() == 112
        live = np.flatnonzero(ix.store.alive.view)
        exact = [k for k, _ in ix.dense.search_exact(vec, live, 10)]
        assert [k for k, _ in ranked(ix, req, query_vec=vec)] == exact
        assert ix.search(make_request("paddling on a river", mode="dense", k=1))[0]["post_id"] == "n2"
    capfd.readouterr()
    with SearchIndex(idx, embedder=embedder, graphs=graphs) as ix:
        assert ix.dense.graph_size() == 112 and [k for k, _ in ranked(ix, req, query_vec=vec)] == exact
        for k in np.flatnonzero(ix.store.alive.view)[:40]:
            assert ix.delete(ix.store.get(int(k))["post_id"])
    # the compaction of a shutdown folds the log in but leaves building graphs to a running writer
    with SearchIndex(idx, embedder=embedder, writable=False) as ix:
        assert ix.dense.graph_size() == 112 and not list(idx.glob("wal-*"))
        assert ix.dense.dead_share(None, ix.store.alive.view) > 0.2
    assert "building the HNSW graph" not in capfd.readouterr().err  # the rebuilt graphs open as saved
