"""The ads world: advertisers, ads, logs, and the hidden click model they were drawn from."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from ads_helpers import build

from murmur.errors import ConfigError, InputError
from murmur.world.ads import AdsWorldConfig, ClickModel, copy_appeal, generate_ads_world

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return build(tmp_path_factory.mktemp("adsworld"))


def test_deterministic_from_seed(fx, tmp_path):
    cfg = AdsWorldConfig(seed=1, impressions_per_day=6000, days=5)
    generate_ads_world(fx.world, tmp_path / "again", cfg)
    for name in ("advertisers.parquet", "ads.parquet", "impressions.parquet", "clicks.parquet",
                 "truth/ads_truth.parquet", "truth/users.parquet"):
        assert pq.read_table(fx.ads / name).equals(pq.read_table(tmp_path / "again" / name)), name
    generate_ads_world(fx.world, tmp_path / "other", AdsWorldConfig(seed=2, impressions_per_day=6000, days=5))
    assert not pq.read_table(fx.ads / "impressions.parquet").equals(pq.read_table(tmp_path / "other" / "impressions.parquet"))


def test_logs_are_consistent(fx):
    imps = pq.read_table(fx.ads / "impressions.parquet").to_pandas()
    clicks = pq.read_table(fx.ads / "clicks.parquet").to_pandas()
    ads = pq.read_table(fx.ads / "ads.parquet").to_pandas()
    assert len(imps) == 5 * 6000 and set(imps.day) == set(range(5))
    assert set(imps.ad_id) <= set(ads.ad_id)
    assert imps.impression_id.is_unique
    assert set(clicks.impression_id) == set(imps.impression_id[imps.clicked])
    # one page view never shows the same ad twice
    assert not imps.groupby(["ts", "user_id", "context_post_id"]).ad_id.apply(lambda s: s.duplicated().any()).any()
    assert (ads.text.str.contains("https://")).all() and ads.apply(lambda r: r.brand.lower() in r.text.lower(), axis=1).all()
    assert 0.005 < imps.clicked.mean() < 0.08


def test_clicks_follow_the_hidden_model(fx):
    """Interest-matched ads, top positions and the model's own probabilities all show in the logs."""
    model = ClickModel.load(fx.ads)
    imps = pq.read_table(fx.ads / "impressions.parquet").to_pandas()
    u = model.user_index(imps.user_id.to_numpy())
    a = model.ad_index(imps.ad_id.to_numpy())
    interested = model.interests[u, model.ad_topic[a]]
    assert imps.clicked[interested].mean() > 2 * imps.clicked[~interested].mean()
    by_pos = imps.groupby("position").clicked.mean().to_numpy()
    assert by_pos[0] > by_pos[-1]
    p = model.p_click(u, a, imps.position.to_numpy(), imps.hour.to_numpy(), np.full(len(u), -1))
    hi, lo = p > np.quantile(p, 0.8), p < np.quantile(p, 0.2)
    assert imps.clicked[hi].mean() > 3 * imps.clicked[lo].mean()


def test_copy_appeal_rewards_topic_words_and_calls_to_action():
    plain = copy_appeal("Meet the Kalo guide. https://kalo.example/x", "football")
    good = copy_appeal("Meet the Kalo guide for the derby. #Football Shop now https://kalo.example/x", "football")
    shouting = copy_appeal("MEET THE KALO GUIDE FOR THE DERBY!!! https://kalo.example/x", "football")
    assert good > plain > shouting


def test_bad_input(tmp_path):
    with pytest.raises(InputError, match="world.json"):
        generate_ads_world(tmp_path / "nothing", tmp_path / "out")
    with pytest.raises(ConfigError, match="days"):
        generate_ads_world(tmp_path, tmp_path / "out", AdsWorldConfig(days=0))
    assert not (tmp_path / "out").exists()


def test_copy_fine_tuning_data(fx, tmp_path):
    import json

    from murmur.ads.copy import copy_sft_data

    n = copy_sft_data(fx.ads, tmp_path / "copy.jsonl")
    rows = [json.loads(x) for x in (tmp_path / "copy.jsonl").read_text().splitlines()]
    assert len(rows) == n and 0.3 * 296 < n < 0.8 * 296
    for r in rows:
        user, assistant = r["messages"][0]["content"], r["messages"][1]["content"]
        assert user.split("Link: ")[1] in assistant
        assert "Brief: Our " in user and "Audience: people into " in user


def test_ad_copy_is_a_sft_data_kind(fx, tmp_path):
    """`murmur sft-data --ad-copy` mixes the copy conversations into the chat data; a bad ads world exits 2."""
    import json
    import subprocess
    import sys

    from typer.testing import CliRunner

    from murmur.cli import app

    out = tmp_path / "conv.jsonl"
    r = CliRunner().invoke(app, ["sft-data", str(fx.clean), "-o", str(out), "--instructions", "20",
                                 "--ad-copy", str(fx.ads)])
    assert r.exit_code == 0, r.output
    added = int(r.output.split("ad copy: ")[1].split()[0].replace(",", ""))
    rows = [json.loads(x)["messages"] for x in out.read_text().splitlines()]
    copy = [m for m in rows if m[0]["content"].startswith("Write an ad post")]
    assert added > 20 and len(copy) == added and len(rows) > added
    r = subprocess.run([sys.executable, "-m", "murmur.cli", "sft-data", str(fx.clean), "-o", str(tmp_path / "x.jsonl"),
                        "--ad-copy", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and "ads.parquet" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.jsonl").exists()
