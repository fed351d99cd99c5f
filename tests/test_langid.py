"""Language identification on clear posts, the vectorised py3langid against py3langid itself, lingua."""

import sys
from pathlib import Path

import pytest

from murmur.data.langid import UND, LanguageIdentifier, is_language_code, langid_text
from murmur.errors import ConfigError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from langid_posts import OTHER_POSTS, POSTS, SHORT_POSTS  # noqa: E402

CLEAR = [
    ("en", "just got home from the game, what a match!! cant believe we won #NBA"),
    ("en", "does anyone know a good dentist near downtown? mine just retired"),
    ("es", "no puedo creer que ya sea lunes otra vez, necesito un cafe urgente"),
    ("es", "alguien me recomienda una serie para ver este fin de semana?"),
    ("fr", "quelle journée de malade, j'ai raté le bus deux fois ce matin"),
    ("fr", "vous me conseillez quelle série regarder ce soir avec les enfants?"),
]


@pytest.fixture(scope="module")
def ident():
    return LanguageIdentifier()


def test_clear_posts(ident):
    found = ident.identify([langid_text(t) for _, t in CLEAR])
    assert [code for code, _ in found] == [lang for lang, _ in CLEAR]
    assert all(conf > 0.5 for _, conf in found)


def test_no_letters_is_und(ident):
    assert ident.identify(["", "123 456 !!", "😂😂😂"]) == [(UND, 0.0)] * 3


def test_low_confidence_is_und():
    strict = LanguageIdentifier(min_confidence=0.999)
    assert strict.identify_one("ok")[0] == UND


def test_vectorised_equals_py3langid(ident):
    from py3langid.langid import MODEL_FILE
    from py3langid.langid import LanguageIdentifier as Py3

    reference = Py3.from_model_file(MODEL_FILE, norm_probs=True)
    reference.set_languages(ident.languages)
    texts = [langid_text(t) for _, t in POSTS + SHORT_POSTS + OTHER_POSTS] + ["ALL CAPS POST ABOUT THE GAME"]
    ours = ident.identify(texts)
    for text, (code, conf) in zip(texts, ours, strict=True):
        ref_code, ref_conf = reference.classify(text)
        assert conf == pytest.approx(ref_conf, abs=1e-5), text
        assert code == (ref_code if ref_conf >= ident.min_confidence else UND), text


def test_answer_does_not_depend_on_the_batch(ident):
    texts = [t for _, t in POSTS[:40]]
    together = ident.identify(texts)
    alone = [ident.identify_one(t) for t in texts]
    assert together == alone
    assert ident.identify(texts[::-1]) == together[::-1]


def test_benchmark_accuracy(ident):
    found = ident.identify([langid_text(t) for _, t in POSTS])
    accuracy = sum(code == lang for (lang, _), (code, _) in zip(POSTS, found, strict=True)) / len(POSTS)
    assert accuracy >= 0.95


def test_lingua_backend():
    lingua = LanguageIdentifier("lingua", ["en", "es", "fr", "de", "pt", "no"], min_confidence=0.0)
    assert [c for c, _ in lingua.identify([t for _, t in CLEAR])] == [lang for lang, _ in CLEAR]
    assert lingua.identify_one("jeg gleder meg til helgen, skal på fjellet med familien")[0] == "no"


def test_bad_languages():
    with pytest.raises(ConfigError, match="langid_languages"):
        LanguageIdentifier(languages=["en", "klingon"])
    with pytest.raises(ConfigError, match="langid_backend"):
        LanguageIdentifier(backend="cld3")  # type: ignore[arg-type]


def test_source_codes():
    assert is_language_code("en") and is_language_code("pt-BR") and is_language_code("fil")
    for code in (None, "", "und", "qme", "qht", "zxx", "x", "english"):
        assert not is_language_code(code)


def test_model_cache_gives_the_same_classifier(tmp_path, monkeypatch):
    import numpy as np

    from murmur.data import langid

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    languages = ("en", "es", "pt")
    langid._py3_model.cache_clear()
    try:
        loaded = langid._py3_model(languages)  # py3langid's loader, then written to the cache
        assert len(list((tmp_path / "murmur").glob("py3langid-*.npz"))) == 1
        langid._py3_model.cache_clear()
        cached = langid._py3_model(languages)  # from the cache
        assert cached.classes == loaded.classes and cached.alias_pairs == loaded.alias_pairs
        for name in loaded._ARRAYS:
            assert np.array_equal(getattr(cached, name), getattr(loaded, name))
        texts = ["the weather is lovely today", "hoy hace muy buen tiempo en la playa", "obrigado pela ajuda"]
        assert cached.classify(texts) == loaded.classify(texts)
        next((tmp_path / "murmur").glob("py3langid-*.npz")).write_bytes(b"broken")
        langid._py3_model.cache_clear()
        assert langid._py3_model(languages).classify(texts) == loaded.classify(texts)  # falls back
    finally:
        langid._py3_model.cache_clear()
