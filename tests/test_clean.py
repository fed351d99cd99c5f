"""The clean stage: quality rules, the full run on a small Parquet, determinism, bad input, the CLI."""

import datetime as dt
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from murmur import config as cfgmod
from murmur.data.clean import REASONS, CleanConfig, clean
from murmur.data.quality import QualityRules, quality_reason
from murmur.data.schema import POST_SCHEMA
from murmur.errors import ConfigError, InputError

ROOT = Path(__file__).resolve().parents[1]
T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
LONG = ("the city council finally approved the new bike lanes on main street after two years of meetings "
        "and petitions, and honestly it is about time we caught up with the rest of the country")


# ---------------------------------------------------------------- quality rules

@pytest.mark.parametrize(("text", "reason"), [
    ("lol", "too_short"),
    ("#tbt @user <url>", "too_short"),
    ("so tired 😴😴", "too_short"),
    ("FREE BITCOIN giveaway, retweet to win", "spam_pattern"),
    ("Click here to see what happened next", "spam_pattern"),
    ("follow back and I will follow you", "spam_pattern"),
    ("DM me for promo, cheap rates", "spam_pattern"),
    ("Daily reminder #123 to drink some water", "spam_pattern"),
    ("sígueme y te sigo, vamos a crecer", "spam_pattern"),
    ("#one #two #three #four #five with some words", "mostly_tags"),
    ("this is sooooooooo good, cannot believe it", "repeated_chars"),
    ("what a goal!!!!!!!!!!! unbelievable game", "repeated_chars"),
    ("party tonight 🎉🎈🥳🍾🎉🎈🥳🍾🎉🎈🥳 who is coming", "too_many_emoji"),
    ("so so good 😂🔥😂🔥😂🔥😂🔥😂", "too_many_emoji"),
    ("THIS IS THE BEST DAY OF MY ENTIRE LIFE", "all_caps"),
])
def test_quality_rule_fires(text, reason):
    assert quality_reason(text, QualityRules()) == reason


@pytest.mark.parametrize("text", [
    "good morning everyone",
    "we're hiring! DM for details about the role",
    "the giveaway at the library was books for kids",
    "#NBA finals tonight, who are you rooting for?",
    "noooo the game got cancelled",
    "scored 10000000 points lol what",
    "love this so much 😍😍😍 thank you",
    "NASA and ESA launch the ISS module today",
    "OMG yes we won the game",
    "a daily reminder that you are loved",
])
def test_quality_rule_does_not_fire(text):
    assert quality_reason(text, QualityRules()) is None


def test_quality_thresholds_are_knobs():
    assert quality_reason("ok fine", QualityRules(min_words=2, min_chars=4)) is None
    assert quality_reason("this is sooooooooo good, honestly", QualityRules(max_char_run=0)) is None
    assert quality_reason("FREE BITCOIN GIVEAWAY RETWEET TO WIN", QualityRules(spam_patterns=())) == "all_caps"
    assert quality_reason("buy my mixtape on the corner", QualityRules(spam_patterns=(r"\bmixtape\b",))) \
        == "spam_pattern"


def test_config_checks():
    with pytest.raises(ConfigError, match="spam_patterns"):
        CleanConfig(spam_patterns=["(unclosed"])
    with pytest.raises(ConfigError, match="near_dup_threshold"):
        CleanConfig(near_dup_threshold=1.5)
    with pytest.raises(ConfigError, match="did you mean 'min_words'"):
        cfgmod.load(CleanConfig, None, ["min_word=2"])
    cfg = cfgmod.load(CleanConfig, None, ["allowed_langs=en,fr", "url_mode=remove", "near_dup_threshold=0.9"])
    assert cfg.allowed_langs == ["en", "fr"] and cfg.url_mode == "remove"
    with pytest.raises(ConfigError, match="url_mode"):
        cfgmod.load(CleanConfig, None, ["url_mode=delete"])


# ---------------------------------------------------------------- the full stage

# (post_id, minutes after T0 or None, source lang, text, expected reason or None for kept)
ROWS = [
    ("p01", 5, "en", "Just finished a great book about the history of Rome, highly recommend it!", "duplicate"),
    ("p02", 1, "und", "RT @alice: just finished a great book", "retweet"),
    ("p03", 2, None, "lol ok", "too_short"),
    ("p04", 3, None, "FREE BITCOIN GIVEAWAY!!! click here to claim your prize now", "spam_pattern"),
    ("p05", 4, None, "#one #two #three #four #five #six with some words", "mostly_tags"),
    ("p06", 6, None, "this is sooooooooooo good, I cannot believe it", "repeated_chars"),
    ("p07", 7, None, "party tonight 🎉🎉🎈🎈🥳🥳🍾🍾🎉🎉🎈🎈 who is coming", "too_many_emoji"),
    ("p08", 8, None, "THIS IS THE BEST DAY OF MY ENTIRE LIFE EVERYONE", "all_caps"),
    ("p09", 9, "fr", "Quelle belle journée pour une promenade au bord de la mer avec mes amis", "language"),
    ("p10", 10, "es", "Hoy fue un día increíble en la playa con toda mi familia, qué felicidad", None),
    ("p11", 0, None, "just finished a great book about the history of rome... highly recommend it 📚 https://t.co/x",
     None),  # the earliest of p01/p11 although it comes later in the file
    ("p12", 12, None, LONG.replace("honestly", "frankly"), "near_duplicate"),
    ("p13", 13, None, "Email me at jane.doe@example.com or call +1 415-555-0134 about the bike for sale", None),
    ("p14", 11, None, LONG, None),  # earlier than p12, later in the file
    ("p15", None, None, LONG + "!", "duplicate"),  # no timestamp: the latest
    ("p16", 16, "es", "2024 2025 2026 !!", None),  # no letters: the identifier is unsure, the source says es
    ("p17", 17, None, "Card 4111 1111 1111 1111 was charged twice for the same order, any idea why", None),
]
EXPECTED_KEPT = [r[0] for r in ROWS if r[4] is None]


def write_posts(path: Path, rows=ROWS, **columns) -> Path:
    table = pa.table({
        "post_id": [r[0] for r in rows],
        "author_id": ["u1"] * len(rows),
        "created_at": [None if r[1] is None else T0 + dt.timedelta(minutes=r[1]) for r in rows],
        "lang": [r[2] for r in rows],
        "text": [r[3] for r in rows],
        "hashtags": [[] for _ in rows],
        "likes": list(range(len(rows))),
        "source": ["test"] * len(rows),
        **columns,
    })
    table = pa.Table.from_arrays([table[n] if n in table.column_names else pa.nulls(len(rows), f.type)
                                  for n, f in zip(POST_SCHEMA.names, POST_SCHEMA, strict=True)], schema=POST_SCHEMA)
    pq.write_table(table, path, row_group_size=5)
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clean")
    src = write_posts(tmp / "posts.parquet")
    result = clean(src, tmp / "out" / "clean.parquet", CleanConfig(batch_size=4), workers=1)
    return tmp, src, result


def test_clean_drops_each_post_for_its_reason(run):
    tmp, _, result = run
    out = pq.read_table(tmp / "out" / "clean.parquet")
    assert out.schema == POST_SCHEMA
    assert out.column("post_id").to_pylist() == EXPECTED_KEPT  # input order
    expected = {reason: 0 for reason in REASONS}
    for row in ROWS:
        if row[4]:
            expected[row[4]] += 1
    assert result.dropped_by_reason == expected
    assert (result.posts_in, result.kept) == (len(ROWS), len(EXPECTED_KEPT))


def test_clean_text_and_lang(run):
    tmp, _, _ = run
    rows = {r["post_id"]: r for r in pq.read_table(tmp / "out" / "clean.parquet").to_pylist()}
    assert rows["p11"]["text"].endswith("highly recommend it 📚 <url>")
    assert rows["p13"]["text"] == "Email me at <email> or call <phone> about the bike for sale"
    assert rows["p17"]["text"].startswith("Card <card> was charged")
    assert {pid: rows[pid]["lang"] for pid in rows} == {"p10": "es", "p11": "en", "p13": "en", "p14": "en",
                                                          "p16": "es", "p17": "en"}
    assert rows["p13"]["likes"] == 12 and rows["p13"]["source"] == "test"  # other columns carried through


def test_stats_json(run):
    tmp, src, result = run
    stats = json.loads((tmp / "out" / "stats.json").read_text())
    assert stats["posts_in"] == len(ROWS) and stats["kept"] == len(EXPECTED_KEPT)
    assert stats["dropped"] == len(ROWS) - len(EXPECTED_KEPT)
    assert stats["dropped_by_reason"] == result.dropped_by_reason
    assert stats["reason_order"] == list(REASONS)
    assert stats["scrubbed"] == {"posts": 2, "email": 1, "phone": 1, "card": 1}
    assert stats["languages"] == {"en": 4, "es": 2}
    assert stats["languages_identified"]["fr"] == 1
    assert stats["config"]["allowed_langs"] == ["en", "es"] and stats["config"]["batch_size"] == 4
    assert {k: stats["dedup"][k] for k in ("candidates", "components", "largest_component")} == \
        {"candidates": 5, "components": 2, "largest_component": 3} and stats["dedup"]["pairs"] >= 3
    assert stats["seconds"] > 0 and stats["src"] == str(src)
    assert sorted(p.name for p in (tmp / "out").iterdir()) == ["clean.parquet", "stats.json"]  # no temp files left


def test_print_table(run, capsys):
    _, _, result = run
    result.print_table()
    out = capsys.readouterr().out
    assert "near_duplicate" in out and "kept" in out and "posts in" in out
    assert "duplicate groups (one kept each)" in out and result.dedup["components"] == 2  # p01+p11, p12+p14+p15


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_workers_give_identical_output(run, tmp_path):
    tmp, src, _ = run
    one = clean(src, tmp_path / "w1.parquet", CleanConfig(batch_size=4), workers=1, stats_path=tmp_path / "s1.json")
    two = clean(src, tmp_path / "w2.parquet", CleanConfig(batch_size=4), workers=2, stats_path=tmp_path / "s2.json")
    other_batches = clean(src, tmp_path / "b.parquet", CleanConfig(batch_size=1000), stats_path=tmp_path / "s3.json")
    assert pq.read_table(tmp_path / "w1.parquet").equals(pq.read_table(tmp_path / "w2.parquet"))
    assert _digest(tmp_path / "w1.parquet") == _digest(tmp_path / "w2.parquet") == _digest(tmp / "out" / "clean.parquet")
    assert pq.read_table(tmp_path / "b.parquet").equals(pq.read_table(tmp_path / "w1.parquet"))
    assert one.dropped_by_reason == two.dropped_by_reason == other_batches.dropped_by_reason


def test_dedup_buckets_on_disk_give_identical_output(run, tmp_path, monkeypatch):
    import murmur.data.clean as cl

    tmp, src, base = run
    monkeypatch.setattr(cl, "DEDUP_BUCKET_ROWS", 7)  # a bucket file per few key rows: many buckets
    assert cl._buckets(len(ROWS), CleanConfig()) > 20
    many = clean(src, tmp_path / "m.parquet", CleanConfig(batch_size=4), stats_path=tmp_path / "m.json")
    assert _digest(tmp_path / "m.parquet") == _digest(tmp / "out" / "clean.parquet")
    assert many.dropped_by_reason == base.dropped_by_reason and many.scrubbed == base.scrubbed
    assert many.dropped_by_reason["duplicate"] and many.dropped_by_reason["near_duplicate"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.parquet"]  # no spill files left


def test_source_lang_policies(tmp_path):
    src = write_posts(tmp_path / "posts.parquet", [
        ("a", 0, "es", "2024 2025 2026 !!", None),
        ("b", 1, "en", "Quelle belle journée pour une promenade au bord de la mer avec mes amis", None),
    ])
    kept = {}
    for policy in ("fallback", "prefer", "ignore"):
        clean(src, tmp_path / f"{policy}.parquet", CleanConfig(source_lang=policy, near_dedup=False),
              stats_path=tmp_path / f"{policy}.json")
        kept[policy] = pq.read_table(tmp_path / f"{policy}.parquet").column("post_id").to_pylist()
    assert kept == {"fallback": ["a"], "prefer": ["a", "b"], "ignore": []}


def test_knobs_change_the_output(tmp_path):
    src = write_posts(tmp_path / "posts.parquet")
    cfg = CleanConfig(allowed_langs=[], exact_dedup=False, near_dedup=False, drop_retweets=False,
                      url_mode="keep", mention_mode="keep", scrub_pii=False)
    result = clean(src, tmp_path / "all.parquet", cfg)
    rows = {r["post_id"]: r["text"] for r in pq.read_table(tmp_path / "all.parquet").to_pylist()}
    assert {"p01", "p02", "p09", "p12", "p15"} <= set(rows)
    assert rows["p02"] == "RT @alice: just finished a great book"
    assert "jane.doe@example.com" in rows["p13"] and "https://t.co/x" in rows["p11"]
    assert result.dropped_by_reason["duplicate"] == result.dropped_by_reason["language"] == 0


def test_everything_dropped_still_writes_a_valid_file(tmp_path):
    src = write_posts(tmp_path / "posts.parquet", [("a", 0, None, "lol", None), ("b", 1, None, "ok", None)])
    result = clean(src, tmp_path / "out.parquet", CleanConfig())
    assert result.kept == 0 and result.dropped_by_reason["too_short"] == 2
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.num_rows == 0 and table.schema == POST_SCHEMA


# ---------------------------------------------------------------- bad input

def test_bad_input(tmp_path):
    with pytest.raises(InputError, match="missing.parquet: file not found"):
        clean(tmp_path / "missing.parquet", tmp_path / "out.parquet")
    pq.write_table(pa.table({"post_id": ["1"], "body": ["hello there my friends"]}), tmp_path / "notext.parquet")
    with pytest.raises(InputError, match=r"notext.parquet \(field 'text'\): no 'text' column"):
        clean(tmp_path / "notext.parquet", tmp_path / "out.parquet")
    pq.write_table(pa.table({"post_id": pa.array([], pa.string()), "text": pa.array([], pa.string())}),
                   tmp_path / "empty.parquet")
    with pytest.raises(InputError, match="empty.parquet: no posts"):
        clean(tmp_path / "empty.parquet", tmp_path / "out.parquet")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(InputError, match="junk.parquet: not a readable Parquet file"):
        clean(tmp_path / "junk.parquet", tmp_path / "out.parquet")
    pq.write_table(pa.table({"post_id": ["1"], "text": ["hello there my friends"], "created_at": ["yesterday"]}),
                   tmp_path / "badtime.parquet")
    with pytest.raises(InputError, match=r"badtime.parquet \(field 'created_at'\)"):
        clean(tmp_path / "badtime.parquet", tmp_path / "out.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "badtime.parquet", "empty.parquet", "junk.parquet", "notext.parquet"]  # nothing half-written


def test_minimal_columns_are_enough(tmp_path):
    pq.write_table(pa.table({"post_id": ["1", "2"], "text": ["hello there my good friends", "hello there my good friends"]}),
                   tmp_path / "min.parquet")
    result = clean(tmp_path / "min.parquet", tmp_path / "out.parquet")
    assert result.kept == 1 and result.dropped_by_reason["duplicate"] == 1
    assert pq.read_table(tmp_path / "out.parquet").schema == POST_SCHEMA


# ---------------------------------------------------------------- CLI

def test_cli(run, tmp_path):
    _, src, _ = run
    murmur = [str(ROOT / ".venv" / "bin" / "murmur")] if (ROOT / ".venv" / "bin" / "murmur").exists() \
        else [sys.executable, "-m", "murmur.cli"]
    out, stats = tmp_path / "c.parquet", tmp_path / "s.json"
    proc = subprocess.run([*murmur, "data", "clean", str(src), "-o", str(out), "--stats", str(stats),
                           "--workers", "1", "allowed_langs=en,es,fr", "batch_size=3"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "near_duplicate" in proc.stdout
    assert json.loads(stats.read_text())["languages"]["fr"] == 1
    assert "p09" in pq.read_table(out).column("post_id").to_pylist()
    bad = subprocess.run([*murmur, "data", "clean", str(src), "-o", str(out), "min_word=2"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "did you mean 'min_words'" in bad.stderr
    missing = subprocess.run([*murmur, "data", "clean", str(tmp_path / "nope.parquet"), "-o", str(out)],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "nope.parquet: file not found" in missing.stderr


def test_spam_hints_never_hide_a_match():
    import re

    from murmur.data import quality

    texts = ["FREE BITCOIN for everyone who retweets this now", "BTC mega GIVEAWAY starting right now folks",
             "huge giveaway today: crypto for the first 100", "Click HERE to claim your prize today",
             "tap link in my bio for more", "haz clic aquí para ganar premios hoy", "Follow4Follow anyone? drop names",
             "followback please, I always follow back", "SÍGUEME Y TE SIGO amigos de twitter",
             "DM me 4 shoutouts and rates this week", "Earn $500 A DAY from home, no joke",
             "make 2k usd per week with this trick", "Buy real followers cheap and fast here",
             "get instant RETWEETS for your posts", "Daily reminder #123 that you matter",
             "WEEKLY update 7 of the project is out", "an ordinary post about the weather today"]
    for pattern, hints in quality._SPAM_HINTS.items():
        compiled = re.compile(pattern, re.IGNORECASE | re.ASCII)
        matched = [t for t in texts if compiled.search(t)]
        assert matched, pattern
        for t in matched:
            assert any(h in t.lower() for h in hints), (pattern, t)
