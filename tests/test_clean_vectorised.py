"""The batch (vectorised) kernels of clean against the per-post functions they replace, on a demo world.

Every post of a generated world goes through both: the dedup keys, the cleaned texts and the quality
verdicts must be equal, the spam pre-check must never hide a post that the per-post check would
search, and the batched language identifier must give py3langid's own answers. The regexes rewritten
for speed are checked against the ones they replace, and random Unicode text goes through every
batch kernel and its per-post function. A clean run on a world gives the digest that the per-post code
gave. A 20k-post world runs always; a 100k-post one is marked slow.
"""

import hashlib
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from murmur.data import normalize, quality
from murmur.data.clean import CleanConfig, clean
from murmur.data.langid import LanguageIdentifier, langid_text
from murmur.data.normalize import clean_text, clean_texts, fold_key, fold_keys, normalize_text
from murmur.data.quality import (
    QualityRules,
    _may_be_spam,
    quality_reason,
    quality_reasons,
    spam_candidates,
    strip_tags,
)
from murmur.data.sources import ingest
from murmur.world.generate import WorldConfig, generate_world

POSTS_PER_USER = 12


def world_texts(root: Path, posts: int) -> list[str]:
    """The cleaned text of every post of a world of about ``posts`` posts (steps 1-3 of clean)."""
    generate_world(root / "world", WorldConfig(users=posts // POSTS_PER_USER, seed=3))
    ingest([str(root / "world" / "archives"), str(root / "world" / "api")], root / "posts.parquet")
    raw = pq.read_table(root / "posts.parquet", columns=["text"]).column(0).to_pylist()
    return [clean_text(normalize_text(t or ""))[0] for t in raw]


@pytest.fixture(scope="module")
def texts_20k(tmp_path_factory):
    return world_texts(tmp_path_factory.mktemp("world20k"), 20_000)


# the regexes as they were before they were spelled out for speed: the reference
OLD_TAG_RE = re.compile(r"<(?:url|email|phone|card)>|(?:https?://|www\.)\S+|(?<![\w@&+-])[@#]\w+", re.IGNORECASE)
OLD_URL_RE = re.compile(r"(?:https?://|www\.)[^\s<>\"]+", re.IGNORECASE)
OLD_MENTION_RE = re.compile(r"(?<![\w@&+-])@\w+")

RULE_SETS = [QualityRules(), CleanConfig(spam_patterns=[r"\bmixtape\b"]).quality_rules(),
             QualityRules(max_char_run=2, min_words=1, max_emoji=1, caps_min_letters=3, max_caps_ratio=0.5,
                          max_tag_ratio=0.1),
             QualityRules(min_chars=0, min_words=0, max_char_run=0, max_emoji=0, caps_min_letters=0, spam_patterns=())]
CLEAN_MODES = [("placeholder", "placeholder", True), ("remove", "keep", True), ("keep", "remove", False)]


def check_rewritten_regexes(texts: list[str]) -> None:
    for new, old in ((quality._TAG_RE, OLD_TAG_RE), (normalize.URL_RE, OLD_URL_RE),
                     (normalize.MENTION_RE, OLD_MENTION_RE)):
        assert [[m.span() for m in new.finditer(t)] for t in texts] == [[m.span() for m in old.finditer(t)]
                                                                         for t in texts], new.pattern


def check_batch_functions(normalised: list[str]) -> None:
    """Every batch function against its per-post function, on already normalised texts."""
    for mode in CLEAN_MODES:
        assert clean_texts(normalised, *mode) == [clean_text(t, *mode) for t in normalised]
    texts = [clean_text(t)[0] for t in normalised]
    stripped = [strip_tags(t) for t in texts]
    for rules in RULE_SETS:
        spam = spam_candidates(texts, rules)
        assert quality_reasons(texts, rules, stripped) == [
            quality_reason(t, rules, s, m) for t, s, m in zip(texts, stripped, spam, strict=True)]
        assert quality_reasons(texts, rules) == [quality_reason(t, rules) for t in texts]
    contents = [c for c, _ in stripped]
    for fold in (True, False):
        assert fold_keys(contents, fold) == [fold_key(c, fold) for c in contents]


def check_kernels(texts: list[str], langid_sample: int) -> None:
    contents = [strip_tags(t)[0] for t in texts]
    for fold in (True, False):
        assert fold_keys(contents, fold) == [fold_key(c, fold) for c in contents]
    check_rewritten_regexes(texts)
    for rules in RULE_SETS[:2]:
        assert quality_reasons(texts, rules) == [quality_reason(t, rules) for t in texts]
    for rules in (QualityRules(), CleanConfig(spam_patterns=[r"\bmixtape\b"]).quality_rules()):
        batch = spam_candidates(texts, rules)
        per_post = [rules._spam is not None and _may_be_spam(t, rules) for t in texts]
        assert not [t for t, b, p in zip(texts, batch, per_post, strict=True) if p and not b]
    from py3langid.langid import MODEL_FILE
    from py3langid.langid import LanguageIdentifier as Py3

    ident = LanguageIdentifier()
    reference = Py3.from_model_file(MODEL_FILE, norm_probs=True)
    reference.set_languages(ident.languages)
    sample = [langid_text(t) for t in contents[:langid_sample] if any(ch.isalpha() for ch in t)]
    found = ident.identify(sample)
    for text, (code, conf) in zip(sample, found, strict=True):
        ref_code, ref_conf = reference.classify(text.lower() if text.isupper() else text)
        assert (code if conf >= ident.min_confidence else "und") == (
            ref_code if ref_conf >= ident.min_confidence else "und"), text
        assert conf == pytest.approx(ref_conf, abs=1e-5), text


def test_batch_kernels_equal_per_post_functions(texts_20k):
    assert len(texts_20k) > 15_000
    check_kernels(texts_20k, langid_sample=2_000)


def test_batch_clean_equals_per_post_on_a_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world6k")
    generate_world(root / "world", WorldConfig(users=500, seed=5))
    ingest([str(root / "world" / "archives"), str(root / "world" / "api")], root / "posts.parquet")
    raw = pq.read_table(root / "posts.parquet", columns=["text"]).column(0).to_pylist()
    normalised = [normalize_text(t or "") for t in raw]
    check_rewritten_regexes(normalised)
    check_batch_functions(normalised)


def test_caseless_letters_are_pythons():
    """The letters spelled out in the rewritten regexes match what ``re.IGNORECASE`` matches, everywhere."""
    every = "".join(map(chr, range(0xD800))) + "".join(map(chr, range(0xE000, 0x110000)))
    for letter in sorted(set("urlemailphonecardhttpswww")):
        ignorecase = re.findall("(?i)" + letter, every)
        spelled = re.findall(quality._caseless(letter), every)
        assert ignorecase == spelled, letter
    assert re.findall("(?i)s", every) == re.findall("[Ss\u017f]", every)  # URL_RE's s


EDGE_TEXTS = [
    "", " ", "__", "a", "_a_", "\u03a3\u0391\u03a3 \u03c3\u03b1\u03c2 OK", "\u0130stanbul 12 \u0131", "  x  ", "12 34",
    "a1b22c", "\u0661\u0662\u0663 \u0664", "\u01c5emal \u01c8", "K\u212a", "!!x!!", "\ud800 lone",
    "\ufb01 \u00df \u1e9e", "<URL>#tag <url>@bob", "HTTP\u017f://x.co/a #b", "wWw.x.co @a@b a@b.co", "#a#b #a.#b #a-#b",
    "<EMA\u0130L> <ema\u0131l> <Phone>", "loooooooool \U0001F600\U0001F600\U0001F600\U0001F600\U0001F600\U0001F600\U0001F600",
    "CALL +1 (555) 123-4567 NOW PLEASE OK", "mail a.b+c@ex-ample.co.uk, card 4111 1111 1111 1111",
    "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669 \uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19",
    "line one\n\nline  two\t end", "x@y.z\u00e9 r\u00e9sum\u00e9@b.com", "\u1680 \u3000 wide  spaces",
]


def test_edge_texts_through_every_batch_function():
    check_rewritten_regexes(EDGE_TEXTS)
    check_batch_functions(EDGE_TEXTS + [normalize_text(t) for t in EDGE_TEXTS])


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# text built from the pieces the rules look for, and any other character
_PIECES = st.sampled_from(["@", "#", "<url>", "<EMAIL>", "http://", "HTTPS://a.b/", "www.", "a@b.co", " ", "\n",
                           "_", "0", "9", "\u0663", "+", "-", "(", ")", ".", "\u0130", "\u03a3", "\u017f", "\U0001F600",
                           "aaaaaaaa", "AB", "Ab", "\u01c5", "\u212a", "\t", "  ", "4111 1111 1111 1111", "555-123-4567"])
_TEXT = st.lists(st.one_of(_PIECES, st.text(max_size=4)), max_size=25).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_TEXT, min_size=1, max_size=12))
def test_random_text_through_every_batch_function(texts):
    check_rewritten_regexes(texts)
    check_batch_functions(texts)


# (post_id, text, lang) of every post kept by steps 1-5 of a clean run (dedup off: it has tests of its
# own) on a world (users=1500, seed=11), as the per-post implementation wrote them: the batch kernels
# must not change a byte of it
GOLDEN = {
    "default": (17753, 15786, "83cc1e5df8180e7cfc3ef59757aa9692364362c0125ab7047eb5368bdf0298b1"),
    "other": (17753, 15339, "f630b64223b4023af00b793f4c5f97a6413441de1bc1bddce5336719062d9310"),
}
GOLDEN_CONFIGS = {
    "default": CleanConfig(exact_dedup=False, near_dedup=False),
    "other": CleanConfig(url_mode="remove", mention_mode="keep", keep_newlines=False, max_char_run=3,
                         caps_min_letters=5, max_caps_ratio=0.6, min_words=2, allowed_langs=[],
                         exact_dedup=False, near_dedup=False),
}


@pytest.mark.slow
def test_clean_output_is_the_per_post_implementations(tmp_path):
    generate_world(tmp_path / "world", WorldConfig(users=1500, seed=11))
    ingest([str(tmp_path / "world" / "archives"), str(tmp_path / "world" / "api")], tmp_path / "posts.parquet")
    for name, cfg in GOLDEN_CONFIGS.items():
        r = clean(tmp_path / "posts.parquet", tmp_path / f"{name}.parquet", cfg, workers=2,
                  stats_path=tmp_path / f"{name}.json")
        table = pq.read_table(tmp_path / f"{name}.parquet", columns=["post_id", "text", "lang"])
        h = hashlib.sha256()
        for pid, text, lang in zip(*(table.column(c).to_pylist() for c in ("post_id", "text", "lang")), strict=True):
            h.update(f"{pid}\x00{text}\x00{lang}\x01".encode("utf-8", "surrogatepass"))
        assert (r.posts_in, r.kept, h.hexdigest()) == GOLDEN[name], name


def test_edge_characters():
    texts = ["CL\u0130CK HERE for free stuff", "ma\u212aes", "\u017free crypto giveaway", "ÀÉÎ 123 ñandú_x 4.5",
             "", " ", "__", "Ünïcödé  ２０２４ and ١٢٣ digits", "ǅemal ǈ", "ΣΑΣ σας"]
    rules = QualityRules()
    assert all(b or not _may_be_spam(t, rules) for t, b in zip(texts, spam_candidates(texts, rules), strict=True))
    assert fold_keys(texts) == [fold_key(t) for t in texts]


@pytest.mark.slow
def test_batch_kernels_on_100k_posts(tmp_path):
    texts = world_texts(tmp_path, 100_000)
    assert len(texts) > 90_000
    check_kernels(texts, langid_sample=10_000)
