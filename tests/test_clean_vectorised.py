"""The batch (vectorised) kernels of clean against the per-post functions they replace, on a demo world.

Every post of a generated world goes through both: the dedup keys must be equal, the spam pre-check
must never hide a post that the per-post check would search, and the batched language identifier
must give py3langid's own answers. A 20k-post world runs always; a 100k-post one is marked slow.
"""

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from murmur.data.clean import CleanConfig
from murmur.data.langid import LanguageIdentifier, langid_text
from murmur.data.normalize import clean_text, fold_key, fold_keys, normalize_text
from murmur.data.quality import QualityRules, _may_be_spam, spam_candidates, strip_tags
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


def check_kernels(texts: list[str], langid_sample: int) -> None:
    contents = [strip_tags(t)[0] for t in texts]
    for fold in (True, False):
        assert fold_keys(contents, fold) == [fold_key(c, fold) for c in contents]
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
