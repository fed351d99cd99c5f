"""The ad server end to end on a small world: pCTR from the logs, audiences, campaigns over HTTP, ad
selection with its auction, caps and brand safety, and the simulated A/B test."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from ads_helpers import build
from browser_helpers import chromium, needs_chromium
from serve_helpers import ServerThread, make_tokenizer, micro_model

from murmur.ads.audiences import AudienceBuilder, AudienceCatalog
from murmur.ads.pctr import log_features, read_logs, save_pctr, train_pctr
from murmur.ads.router import WEB_DIR, build_router
from murmur.ads.server import AdRequest
from murmur.ads.service import AdsConfig, AdsService
from murmur.ads.simulate import SimConfig, SimSetup, simulate
from murmur.ads.vectors import build_user_vectors, read_posts
from murmur.engine import Engine
from murmur.errors import InputError
from murmur.serve.app import create_app

pytestmark = pytest.mark.slow
TOPIC = "cooking"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("adsserver")
    fx = build(root, users=2500, impressions_per_day=5000, days=5)
    posts = read_posts(fx.clean, ("post_id", "author_id", "text", "lang", "created_at", "conversation_id"))
    vectors = build_user_vectors(posts)
    text = dict(zip(posts.column("post_id").to_pylist(), posts.column("text").to_pylist(), strict=True))
    imps, ads = read_logs(fx.ads)
    lf = log_features(imps, ads, vectors, text)
    model, report = train_pctr(lf)
    save_pctr(model, report, root / "pctr", lf.background)
    catalog = AudienceCatalog(root / "audiences")
    aud = AudienceBuilder(posts, vectors).interest(TOPIC, min_share=0.1)
    assert aud.size >= 100
    catalog.put("cooks", aud)
    return {"fx": fx, "root": root, "report": report, "members": aud.user_ids.tolist(), "text": text}


def test_pctr_beats_the_baselines_on_held_out_days(env):
    t = env["report"].test
    chosen = env["report"].chosen
    assert chosen in ("lightgbm", "torch")
    # the chosen model beats both baselines. NE divides by the entropy of the *training* CTR, so when the
    # held-out days' CTR differs (this world: the global CTR's calibration is 0.92) every NE, the global one's
    # included, can sit above 1: only the comparison is meaningful
    assert t[chosen]["ne"] < t["targeting"]["ne"] < t["global"]["ne"]
    assert t[chosen]["auc"] > t["targeting"]["auc"] > 0.5
    assert 0.7 < t[chosen]["calibration"] < 1.4


@pytest.fixture(scope="module")
def service(env):
    root = env["root"]
    svc = AdsService(AdsConfig(posts=str(env["fx"].clean), audiences=str(root / "audiences"),
                               database=f"sqlite:///{root / 'ads.db'}", pctr=str(root / "pctr"),
                               logs=str(env["fx"].ads), decisions=str(root / "decisions.jsonl"),
                               audience_embedder="lsa", follows=str(env["fx"].world / "truth" / "follows.parquet")))
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def url(service):
    tok = make_tokenizer(service.catalog.root.parent / "tok")
    engine = Engine(micro_model(tok.vocab_size), tok, max_batch=1, name="m")
    with ServerThread(create_app(engine, routers=[build_router(service)], pages={"/ads": WEB_DIR})) as u:
        yield u


CAMPAIGN = {"advertiser_id": "adv-test", "name": "Pans", "daily_budget": 20.0, "bid_type": "cpc", "bid": 0.9,
            "audience": "cooks", "frequency_cap": 2,
            "creatives": [{"text": "The Kalo pan for #homecooking. Shop now https://kalo.example/pan",
                           "url": "https://kalo.example/pan"},
                          {"text": "La sartén Kalo. https://kalo.example/pan", "url": "https://kalo.example/pan",
                           "lang": "es"}]}


def test_http_campaigns_audiences_and_selection(env, service, url):
    r = httpx.post(url + "/v1/ads/campaigns", json=CAMPAIGN)
    assert r.status_code == 200, r.text
    cid = r.json()["id"]
    sizes = httpx.get(url + "/v1/ads/audiences").json()["data"]
    assert sizes == [{"name": "cooks", "kind": "interest", "size": len(env["members"])}]
    member = env["members"][0]
    first = httpx.post(url + "/v1/ads/select", json={"user_id": member, "query": "easy pasta recipes", "slots": 2})
    assert first.status_code == 200, first.text
    ads = first.json()["data"]
    assert len(ads) == 1 and ads[0]["campaign_id"] == cid and 0 < ads[0]["pctr"] < 1
    assert ads[0]["price"] <= CAMPAIGN["bid"]
    httpx.post(url + "/v1/ads/select", json={"user_id": member, "slots": 1})
    capped = httpx.post(url + "/v1/ads/select", json={"user_id": member, "slots": 1}).json()["data"]
    assert capped == []  # frequency cap of 2 a day
    click = httpx.post(url + "/v1/ads/click", json={"request_id": ads[0]["request_id"], "position": 0})
    assert click.status_code == 200
    outsider = next(u for u in service.vectors.user_ids.tolist() if u not in set(env["members"]))
    assert httpx.post(url + "/v1/ads/select", json={"user_id": outsider}).json()["data"] == []
    other = env["members"][1]
    unsafe = httpx.post(url + "/v1/ads/select", json={"user_id": other, "query": "mail me at bob@example.com"})
    assert unsafe.json()["data"] == []


@pytest.mark.parametrize("change, param", [
    ({"audience": "nobody"}, "audience"),
    ({"daily_budget": 0}, "daily_budget"),
    ({"bid": 90000}, "bid"),
    ({"creatives": [{"text": "x https://kalo.example/a", "url": "https://kalo.example/a", "image": "/no.png"}]},
     "creatives[0].image"),
])
def test_http_bad_campaigns(url, change, param):
    r = httpx.post(url + "/v1/ads/campaigns", json={**CAMPAIGN, **change})
    assert r.status_code == 400 and r.json()["error"]["param"] == param


def test_http_bad_requests(url):
    assert httpx.post(url + "/v1/ads/select", json={"user_id": "u", "slots": 0}).status_code == 400
    assert httpx.post(url + "/v1/ads/select", json={"user_id": "u", "context_text": "x" * 10_000}).status_code == 400
    r = httpx.post(url + "/v1/ads/audiences", json={"kind": "interest", "topic": "no_such_topic"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "topic"
    r = httpx.post(url + "/v1/ads/audiences", json={"kind": "keyword", "keywords": ["zzqqxx"]})
    assert r.status_code == 400 and "fewer than 100" in r.json()["error"]["message"]
    assert httpx.post(url + "/v1/ads/click", json={"request_id": "nope"}).status_code == 400
    for knob, param in [({"size": 50}, "size"), ({"fraction": 1.5}, "fraction"), ({"fraction": -0.1}, "fraction"),
                        ({"min_similarity": -0.1}, "min_similarity"), ({"min_similarity": 2}, "min_similarity"),
                        ({"fraction": 0.01}, "fraction")]:
        r = httpx.post(url + "/v1/ads/audiences", json={"kind": "lookalike", "accounts": ["x"], **knob})
        assert r.status_code == 400 and r.json()["error"]["param"] == param, (knob, r.text)


def test_http_lookalike_knobs(service, url):
    followers = service.builder.follows.column("dst").value_counts()
    top = max(followers.to_pylist(), key=lambda d: d["counts"])["values"]
    body = {"kind": "lookalike", "accounts": [top]}
    n = len(service.vectors.user_ids)
    r = httpx.post(url + "/v1/ads/audiences", json={**body, "fraction": 0.25})
    assert r.status_code == 200 and r.json()["size"] == round(0.25 * n), r.text
    loose = httpx.post(url + "/v1/ads/audiences", json={**body, "min_similarity": 0.0}).json()["size"]
    strict = httpx.post(url + "/v1/ads/audiences", json={**body, "min_similarity": 0.15}).json()["size"]
    assert loose > strict >= 100
    capped = httpx.post(url + "/v1/ads/audiences", json={**body, "min_similarity": 0.0, "size": 120}).json()
    assert capped["size"] == 120 and "user_id" not in json.dumps(capped)


def test_every_decision_is_logged(service):
    service.select(AdRequest(user_id="someone-unknown"))
    service.decisions._f.flush()
    lines = [json.loads(x) for x in service.decisions.path.read_text().splitlines()]
    outcomes = {x.get("outcome") for x in lines}
    assert {"served", "no_ads", "unsafe_context"} <= outcomes
    served = next(x for x in lines if x.get("outcome") == "served")
    assert served["winners"][0]["price"] > 0 and "candidates" in served
    # spend reaches the store, and a rebuilt server starts from it
    service.flush()
    import datetime as dt

    spend = service.store.spend(dt.datetime.now(dt.UTC).date())
    assert sum(v[1] for v in spend.values()) == 2 and sum(v[2] for v in spend.values()) == 1
    morning = np.r_[np.full(48, 1 / 48), np.zeros(48)]  # a supply curve learned on earlier days
    share, level = service.server.pacer.learned()
    share[0], level[0] = morning, 5e6
    service.server.pacer.set_learned((share, level))
    service.reload()
    assert service.server.pacer.spent.sum() == sum(v[0] for v in spend.values())
    # the rebuilt server keeps what the pacer learned of each campaign's supply
    assert np.allclose(service.server.pacer.share[0], morning) and service.server.pacer.level[0] == 5e6
    assert service.server.pacer.cum[0, 48] == pytest.approx(1.0)


@pytest.fixture(scope="module")
def sim_setup(env, tmp_path_factory):
    fx = env["fx"]
    return SimSetup.build(fx.world, fx.ads, fx.clean, tmp_path_factory.mktemp("sim"), min_share=0.1)


def test_supply_forecast_is_the_slots_a_campaign_would_win(sim_setup):
    """The shadow auctions: with every campaign in every auction, what was served; with one held out (its
    budget spent), the slots it would have won, the others' served slots unchanged in the forecast."""
    import datetime as dt

    from murmur.ads.simulate import _server, make_campaigns

    setup, cfg = sim_setup, SimConfig(campaigns=8)
    campaigns = make_campaigns(setup, cfg, np.random.default_rng(3))
    users = setup.vectors.user_ids[:400]  # one request per user: no frequency cap binds
    now = dt.datetime(2024, 6, 3, 12, tzinfo=dt.UTC)
    reqs = lambda: [AdRequest(user_id=str(u), context_text=setup.post_texts[i], slots=2, now=now,  # noqa: E731
                              request_id=f"r-{i}") for i, u in enumerate(users)]

    def served(held_out: int | None):
        server = _server(setup, campaigns, "murmur", 0, None, cfg)
        server.pacer.full[:] = True
        server.pacer.unlimited[:] = True
        server.shadow = []
        server.resume(now.date(), {})  # the day begun: what is set below is not reset by its first request
        if held_out is not None:
            server.pacer.unlimited[held_out] = False
            server.pacer.spent[held_out] = server.pacer.budgets[held_out]
        placed = {(p.request_id, p.campaign, p.position, round(p.price, 9))
                  for ps in server.select_batch(reqs()) for p in ps}
        return placed, {(x.request_id, x.campaign, x.position, round(x.price, 9)) for x in server.shadow}

    placed, shadow = served(None)
    assert placed and shadow == placed
    top = max(range(len(campaigns)), key=lambda c: sum(1 for p in placed if p[1] == c))
    placed_out, shadow_out = served(top)
    assert not any(p[1] == top for p in placed_out)
    # the held-out campaign's forecast: the slots it won when it took part (each auction alike, no cap binding)
    assert {x for x in shadow_out if x[1] == top} == {p for p in placed if p[1] == top}
    assert {x for x in shadow_out if x[1] != top} == placed_out


def test_simulated_ab_test(sim_setup, tmp_path):
    setup = sim_setup
    # two days: the second paced along each campaign's supply learned on the first
    report = simulate(setup, SimConfig(seeds=2, days=2, page_views=3000, campaigns=8, pacing_learn=0.5), work=tmp_path)
    s = report.summary()
    assert s["murmur"]["ctr"][0] > s["random"]["ctr"][0]
    for arm in ("murmur", "random"):
        assert s[arm]["max_over"][0] <= 0.01  # never more than 1% over a daily budget
        assert 0 <= s[arm]["supply_limited"][0] <= 1 - s[arm]["delivery_ok"][0] + 1e-9
        assert s[arm]["paced_ok"][0] >= s[arm]["delivery_ok"][0] - 1e-9  # misses less supply-limited
    for seed in report.per_seed:  # every campaign-day counted once: on budget, supply-limited or a pacing miss
        assert seed["murmur"]["delivery_ok"] + seed["murmur"]["supply_limited"] <= 1.0 + 1e-9
        assert np.isfinite(s[arm]["clicks"][0])
    assert "lift ctr" in report.table()
    d = report.delivery("murmur")  # the pacing distribution over every campaign-day
    assert d["campaign_days"] == sum(1 for r in report.campaign_days if r["arm"] == "murmur")
    assert report.delivery("murmur", range(1, 2))["campaign_days"] == d["campaign_days"] / 2
    assert d["under"] == d["under_supply_limited"] + d["under_took_part"] + d["under_paced"]
    assert d["max_over"] <= 0.01 and d["min"] <= d["p5"] <= d["median"] <= d["max"]
    assert "within -10%..+1%" in report.table() and "spent by half the traffic" in report.table()
    # how evenly: the share of each campaign-day's spend made by the time half the day's traffic had passed
    early = [r["early"] for r in report.campaign_days if r["delivery"] > 0]
    assert early and all(0.0 <= e <= 1.0 for e in early)
    assert d["early_p10"] <= d["early_median"] <= d["early_p90"] <= 1.0
    # pacing: every campaign-day within -10%..+1% of its budget, unless its audience cannot supply it (short
    # even in every auction, more likely than not) or the pacer kept it in nearly all its auctions and its few
    # clicks fell short (a chance the replay measures; no pacer removes it). At 3,000 page views a budget is a
    # handful of clicks and the first slot's participation (p0) alone can hold a campaign out of 5% of its
    # auctions: one such day of the 30 is let pass, none with a miss chance under a quarter
    held_back = 0
    for r in report.campaign_days:
        assert r["delivery"] <= 1.01, r
        if r["arm"] == "murmur" and r["delivery"] < 0.9:
            assert 0.0 <= r["miss_chance"] <= 1.0 and r["supply_limited"] == (r["miss_chance"] >= 0.5), r
            if not (r["supply_limited"] or r["held"] < 0.05):
                held_back += 1
                assert r["miss_chance"] >= 0.25, r
    assert held_back <= 1


def test_copy_keeps_the_rules_and_is_ranked(url):
    body = {"brief": "Our new cast iron pan makes weeknight dinners easy", "brand": "Kalo",
            "url": "https://kalo.example/pan", "audience": "cooks", "n": 4}
    r = httpx.post(url + "/v1/ads/copy", json=body)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert 1 <= len(data) <= 4
    from murmur.ads.store import tweet_length

    for d in data:
        assert tweet_length(d["text"]) <= 280 and "Kalo" in d["text"] and body["url"] in d["text"]
    assert [d["score"] for d in data] == sorted((d["score"] for d in data), reverse=True)
    assert httpx.post(url + "/v1/ads/copy", json={**body, "brief": "x" * 10_240}).status_code == 400
    r = httpx.post(url + "/v1/ads/copy", json={**body, "audience": "nobody"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "audience"


def test_copy_quality_is_measured(sim_setup, tmp_path):
    """Constraint satisfaction, audience fit and simulated CTR of generated copy against the brief as-is."""
    from murmur.ads.copy import engine_writer
    from murmur.ads.eval import copy_table, evaluate_copy

    setup = sim_setup
    tok = make_tokenizer(tmp_path / "tok")
    engine = Engine(micro_model(tok.vocab_size, max_seq_len=512), tok, max_batch=4, name="m")
    for prompt in ("post", "chat"):   # a continued post, and the copy conversation the fine-tuning data teaches
        res = evaluate_copy(setup, engine_writer(engine, prompt, max_tokens=12), advertisers=3, n=2)
        s = res["summary"]
        assert s["advertisers"] == 3 and len(res["per_advertiser"]) == 3
        assert s["with_copy"] >= 1 and s["constraints_ok"] == 1.0 and 0 < s["draft_pass_rate"] <= 1
        for r in res["per_advertiser"]:
            assert 0 < r["ctr_brief"] < 1 and 0 < r["ctr_world_ads"] < 1
            assert -1 <= r["fit_brief_own"] <= 1 and r["fit_brief_top1"] in (0.0, 1.0)
        assert "simulated CTR" in copy_table(s)


def test_copy_requests_are_asked_as_the_fine_tuning_data_asks():
    """The ``chat`` prompt is the copy conversation of the fine-tuning data (one function makes both); a
    wrong prompt kind is one line naming the field."""
    from murmur.ads.copy import Voice, check_prompt, copy_request

    assert check_prompt("chat") == "chat"
    with pytest.raises(InputError) as e:
        check_prompt("poem")
    assert e.value.field == "prompt"
    with pytest.raises(InputError) as e:   # the served API's knob: the error names it
        AdsService(AdsConfig(posts="x.parquet", pctr="p", copy_prompt="poem"))
    assert e.value.field == "copy_prompt"
    ask = copy_request("Our pan.", "Kalo", "https://kalo.example", "cooking", ["food", "recipes"], "es")
    assert ask == ("Write an ad post in Spanish for Kalo. Brief: Our pan. Audience: people into cooking "
                   "(they post #food #recipes). Link: https://kalo.example")
    voice = Voice("en", ["food"])   # an audience not built for a topic: its hashtags say who it is
    assert "Audience: people who post #food." in copy_request("Our pan.", "Kalo", "https://k.example", voice.topic,
                                                               voice.hashtags, voice.lang)


def test_demo_ads_stage(env, tmp_path):
    """What `murmur demo` runs for ads: audiences, campaigns in SQLite, a short A/B simulation with its lift,
    and a service (the studio's) over what it wrote."""
    from murmur.ads.demo import demo_ads_config, run_ads_demo
    from murmur.ads.store import CampaignStore

    fx = env["fx"]
    res = run_ads_demo(fx.world, fx.clean, None, tmp_path / "ads", seeds=2, page_views=1500, campaigns=4)
    assert res["audiences"] >= 1 and res["campaigns"] == 8
    assert res["ctr"]["murmur"] > 0 and np.isfinite(res["lift"]["clicks"][0]) and "lift ctr" in res["table"]
    store = CampaignStore(f"sqlite:///{tmp_path / 'ads' / 'ads.db'}")
    assert store.count()[0] >= 2
    store.close()
    svc = AdsService(demo_ads_config(tmp_path / "ads", fx.clean, None))
    try:
        assert len(svc.server.campaigns) >= 2
    finally:
        svc.close()


def test_copy_policy():
    from murmur.ads.copy import CopyPolicy, compose

    p = CopyPolicy()
    ok = compose("A pan that heats evenly. " * 3, "Kalo", "https://kalo.example/p", "cooking")
    assert p.violation(ok, "Kalo", "https://kalo.example/p") is None and ok.endswith("Kalo https://kalo.example/p")
    long = compose("word " * 200, "Kalo", "https://kalo.example/p", None)
    assert p.violation(long, "Kalo", "https://kalo.example/p") is None
    assert p.violation("Guaranteed results from Kalo https://kalo.example/p", "Kalo",
                       "https://kalo.example/p") == "prohibited_claim"
    assert p.violation("Kalo: call 555-867-5309 https://kalo.example/p", "Kalo", "https://kalo.example/p") == "pii"
    assert p.violation("A pan https://kalo.example/p", "Kalo", "https://kalo.example/p") == "no_brand"


@needs_chromium
def test_ads_studio_in_chromium(url, tmp_path):
    """Define an audience and see its size, write variants, preview the cards, launch, watch a simulated day."""
    with chromium(tmp_path / "profile") as ctx:
        page = ctx.new_page()
        page.goto(url + "/ads/")
        page.wait_for_function("document.querySelectorAll('#audiences tr.row').length >= 1")
        page.select_option("#aud-kind", "interest")
        page.fill("#aud-value", "cooking")
        page.fill("#aud-name", "cooks-again")
        page.click("#aud-build")
        page.wait_for_function("document.getElementById('aud-size').textContent.includes('users')")
        page.select_option("#copy-aud", "cooks")
        page.click("#write")
        page.wait_for_selector(".card.variant", timeout=120_000)
        assert "Kalo" in page.inner_text(".card.variant .text")
        page.click("#launch")
        page.wait_for_function("document.getElementById('delivery-totals').textContent.includes('impressions')",
                               timeout=120_000)
        assert "launched" in page.inner_text("#launched")
        assert page.locator("#chart-spend polyline").count() == 1
        page.fill("#budget", "0")
        page.click("#launch")
        page.wait_for_function("document.getElementById('launch-error').textContent.length > 0")
        assert "daily_budget" in page.inner_text("#launch-error")

