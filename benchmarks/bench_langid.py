"""Language identifiers on short, noisy posts: accuracy and posts/s, side by side in one run.

    python benchmarks/bench_langid.py [--repeat 40]

Candidates: lingua-language-detector (high and low accuracy mode, all 75 languages or murmur's
candidate set), py3langid's own per-post ``classify`` (all 97 languages or the candidate set), and
murmur's batch inference over py3langid's model (``murmur.data.langid``, the candidate set). The
posts are the hand-written ones in ``langid_posts.py``: ordinary posts in en/es/fr/de/pt, posts of
two to five words, and posts in languages outside the allow list (it, nl, ca, id, tr). Every
identifier sees the text as murmur's clean stage gives it (URLs, mentions and hashtags removed).
Speed is measured on the ordinary posts repeated ``--repeat`` times, one process, one thread.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from langid_posts import OTHER_POSTS, POSTS, SHORT_POSTS  # noqa: E402

from murmur.data.langid import DEFAULT_LANGUAGES, LanguageIdentifier  # noqa: E402
from murmur.data.quality import content_text  # noqa: E402

Identify = Callable[[list[str]], list[str]]


def lingua(all_languages: bool, low: bool) -> Identify:
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    codes = [getattr(IsoCode639_1, "NB" if c == "no" else c.upper()) for c in DEFAULT_LANGUAGES]
    builder = LanguageDetectorBuilder.from_all_languages() if all_languages else \
        LanguageDetectorBuilder.from_iso_codes_639_1(*codes)
    builder = builder.with_low_accuracy_mode() if low else builder.with_preloaded_language_models()
    detector = builder.build()

    def run(texts: list[str]) -> list[str]:
        found = (detector.detect_language_of(t) for t in texts)
        return [lang.iso_code_639_1.name.lower() if lang else "und" for lang in found]
    return run


def py3langid(restricted: bool) -> Identify:
    from py3langid.langid import MODEL_FILE
    from py3langid.langid import LanguageIdentifier as Py3

    model = Py3.from_model_file(MODEL_FILE, norm_probs=True)
    if restricted:
        model.set_languages(DEFAULT_LANGUAGES)
    return lambda texts: [model.classify(t)[0] for t in texts]


def murmur_batch() -> Identify:
    ident = LanguageIdentifier("py3langid", DEFAULT_LANGUAGES, min_confidence=0.0)
    return lambda texts: [code for code, _ in ident.identify(texts)]


CANDIDATES: dict[str, Callable[[], Identify]] = {
    "lingua high, all languages": lambda: lingua(True, False),
    "lingua high, candidate set": lambda: lingua(False, False),
    "lingua low, all languages": lambda: lingua(True, True),
    "py3langid, all languages": lambda: py3langid(False),
    "py3langid, candidate set": lambda: py3langid(True),
    "murmur batch (py3langid model), candidate set": murmur_batch,
}


def accuracy(identify: Identify, posts: list[tuple[str, str]]) -> float:
    found = identify([content_text(t) for _, t in posts])
    return sum(f == lang for (lang, _), f in zip(posts, found, strict=True)) / len(posts)


def leaks(identify: Identify) -> int:
    """Posts in other languages that come out as en or es (they would pass the default filter)."""
    return sum(f in ("en", "es") for f in identify([content_text(t) for _, t in OTHER_POSTS]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=40, help="copies of the ordinary posts for the speed test")
    args = parser.parse_args()
    texts = [content_text(t) for _, t in POSTS] * args.repeat
    print(f"{len(POSTS)} ordinary, {len(SHORT_POSTS)} very short, {len(OTHER_POSTS)} other-language posts; "
          f"speed on {len(texts):,} posts\n")
    print("| identifier | ordinary | very short | other languages | other -> en/es | posts/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, build in CANDIDATES.items():
        identify = build()
        identify(texts[:10])  # warm up (lazy model loading)
        start = time.perf_counter()
        identify(texts)
        rate = len(texts) / (time.perf_counter() - start)
        print(f"| {name} | {accuracy(identify, POSTS):.1%} | {accuracy(identify, SHORT_POSTS):.1%} | "
              f"{accuracy(identify, OTHER_POSTS):.1%} | {leaks(identify)} | {rate:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
