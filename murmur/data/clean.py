"""``murmur data clean``: normalise, scrub PII, identify language, filter spam, remove duplicates.

Input and output are Parquet files in ``POST_SCHEMA``. The output holds the kept posts with their
cleaned ``text`` and a filled ``lang``, **in input order**; every other column is carried through
unchanged (the ``hashtags``/``mentions``/``urls`` lists included: they are metadata for search and
ads, not training text). A ``stats.json`` records what was dropped and why.

Each post goes through these steps; the first that drops it names its one reason, in this order:

1. normalise the text (``normalize.normalize_text``: HTML entities, NFC, control characters,
   whitespace; line breaks kept)
2. ``retweet``: the text starts with ``RT @user``
3. URLs -> ``<url>``, PII -> ``<email>``/``<phone>``/``<card>``, mentions -> ``@user``
   (``normalize.clean_text``; scrubbed posts are counted, not dropped). Placeholders for both URLs and
   mentions by default: a t.co hash or a handle teaches a model nothing but to invent them (and
   handles name private people), while the placeholder keeps the shape of a post ("@user totally
   agree", "thread below <url>") that a model drafting posts and replies should learn.
4. quality rules (``quality.py``): ``too_short``, ``spam_pattern``, ``mostly_tags``,
   ``repeated_chars``, ``too_many_emoji``, ``all_caps``
5. ``language``: the identified language is not in ``allowed_langs`` (``langid.py``). It runs after
   the quality rules because it is the expensive step and because a two-word post would otherwise be
   blamed on its language. A ``lang`` already in the input is used according to ``source_lang``:
   ``fallback`` (default) trusts the identifier and uses the source label only when the identifier
   is unsure ("und"); X's own labels are decent but often "und"/"qme"/"zxx" and absent from other
   sources, so one identifier gives consistent labels while the source still helps on short posts.
   ``prefer`` uses a real source label as is (and is faster); ``ignore`` never looks at it.
6. ``duplicate`` / ``near_duplicate`` (``dedup.py``): posts that share a dedup key (exact) or a
   MinHash LSH band (near) are joined into connected components; the earliest post of each component
   (earlier ``created_at``, then smaller ``post_id``) is kept, every other is dropped: ``duplicate``
   when an earlier post has the same dedup key, else ``near_duplicate``.

**Parallelism and determinism.** Steps 1-5 and the dedup hashes are per-post work: the input is read
in batches of ``batch_size`` rows and each batch is processed by a worker process (``--workers``);
results come back in batch order. Step 6 needs every post, in time order: each survivor's exact hash
and LSH band keys go, as key rows with its time-order key, to bucket files on disk partitioned by key
(``dedup.SpilledIndex``); each bucket is then sorted alone, its groups of posts sharing a key become
candidate pairs on disk, and the pairs are joined into components (``dedup.Components``). The output
is therefore identical for any number of workers, batch size or number of buckets (and equal to
``dedup.decide`` over all posts at once, and to the Ray engine's).

**Streaming.** Posts are read in batches; the survivors of steps 1-5 (with their PII masks) go to a
temporary Parquet file in a hidden directory beside the output, their key rows to the bucket files
there, and a second pass copies the kept ones to the output, counting PII and languages as it goes.
What stays in memory: one bucket of key rows while it is sorted (buckets are sized for about 1M key
rows, ~60 MB: ``DEDUP_BUCKET_ROWS``), one byte per surviving post for the decision (1 GB per billion
posts) and, while the components are joined, ~40 bytes per *candidate* (a post that shares a key
with another; 3 x 8 bytes more during the join). The spill directory is removed whatever happens; the output and ``stats.json`` are
written atomically.
"""

from __future__ import annotations

import multiprocessing
import shutil
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from murmur.config import knob, to_dict
from murmur.data import dedup as dd
from murmur.data.langid import DEFAULT_LANGUAGES, UND, LanguageIdentifier, is_language_code
from murmur.data.normalize import (
    PII_CARD,
    PII_EMAIL,
    PII_PHONE,
    clean_texts,
    fold_keys,
    is_retweet,
    normalize_text,
)
from murmur.data.quality import (
    DEFAULT_SPAM_PATTERNS,
    QualityRules,
    quality_reasons,
    strip_tags,
)
from murmur.data.schema import POST_SCHEMA
from murmur.errors import ConfigError, InputError
from murmur.io import atomic_path, check_not_input, open_parquet, temp_sibling, write_json
from murmur.progress import Progress, log

RETWEET, LANGUAGE, DUPLICATE, NEAR_DUPLICATE = "retweet", "language", "duplicate", "near_duplicate"
REASONS = (RETWEET, "too_short", "spam_pattern", "mostly_tags", "repeated_chars", "too_many_emoji", "all_caps",
           LANGUAGE, DUPLICATE, NEAR_DUPLICATE)
"""Every drop reason, in the order the checks run (a post gets the first that applies)."""

_LEGACY_CODES = {"in": "id", "iw": "he", "ji": "yi", "jw": "jv"}
_OUTPUT_ROW_GROUP = 65536


@dataclass(frozen=True)
class CleanConfig:
    """Knobs of ``murmur data clean`` (``key=value`` on the command line, or a TOML file)."""

    keep_newlines: bool = knob(True, "keep line breaks (at most one blank line); false folds them to spaces")
    unescape_html: bool = knob(True, "turn HTML entities such as &amp; &lt; &gt; back into characters")
    drop_retweets: bool = knob(True, "drop classic retweets (text starting with 'RT @user')")
    url_mode: Literal["keep", "placeholder", "remove"] = knob("placeholder", "URLs: keep, replace by <url>, or remove")
    mention_mode: Literal["keep", "placeholder", "remove"] = knob(
        "placeholder", "@mentions: keep, replace by @user, or remove")
    scrub_pii: bool = knob(True, "replace e-mails, phone numbers and card numbers by <email> <phone> <card>")
    allowed_langs: list[str] = knob(["en", "es"], "languages to keep (BCP-47 primary codes; empty keeps all)")
    source_lang: Literal["fallback", "prefer", "ignore"] = knob(
        "fallback", "an input lang: used when the identifier is unsure, used first, or ignored")
    langid_backend: Literal["py3langid", "lingua"] = knob("py3langid", "language identifier package")
    langid_languages: list[str] = knob(list(DEFAULT_LANGUAGES), "candidate languages of the identifier")
    min_lang_confidence: float = knob(0.3, "below this top probability the language is 'und'")
    min_chars: int = knob(10, "too_short: fewer visible characters once URLs/mentions/hashtags are removed")
    min_words: int = knob(3, "too_short: fewer words once URLs/mentions/hashtags are removed")
    max_tag_ratio: float = knob(0.5, "mostly_tags: more than this share of words are hashtags/mentions/links")
    max_char_run: int = knob(6, "repeated_chars: a character repeated more than this many times in a row (0: off)")
    max_emoji: int = knob(10, "too_many_emoji: more emoji than this (0: no count limit)")
    max_emoji_ratio: float = knob(0.5, "too_many_emoji: emoji make up more than this share of visible characters")
    caps_min_letters: int = knob(12, "all_caps: only posts with at least this many cased letters (0: off)")
    max_caps_ratio: float = knob(0.9, "all_caps: more than this share of cased letters are upper case")
    spam_patterns: list[str] = knob(list(DEFAULT_SPAM_PATTERNS), "spam_pattern: regular expressions, case-insensitive")
    exact_dedup: bool = knob(True, "join posts with the same dedup key; the earliest of each component is kept")
    near_dedup: bool = knob(True, "join posts that share a MinHash LSH band; the earliest of each component is kept")
    near_dup_threshold: float = knob(0.8, "Jaccard similarity the LSH banding is tuned for")
    minhash_perms: int = knob(128, "MinHash permutations")
    shingle_size: int = knob(5, "characters per shingle for near-dedup")
    minhash_seed: int = knob(1, "seed of the MinHash permutations")
    fold_digits: bool = knob(True, "dedup key folds every number to 0 (templated posts become duplicates)")
    batch_size: int = knob(8192, "posts per work unit (the output does not depend on it)")
    ray_driver_components: int = knob(
        10_000_000, "with --engine ray: candidate rows up to this many are joined into components by the local "
        "engine's union-find on the driver (about 40 bytes each, pairs spilled to its disk); more, by rounds "
        "of shuffles on the cluster (no machine holds them; seconds per round). The output is the same")

    def __post_init__(self) -> None:
        import re

        checks = [
            (0.0 < self.near_dup_threshold < 1.0, "near_dup_threshold must be between 0 and 1"),
            (self.minhash_perms >= 4, "minhash_perms must be at least 4"),
            (self.shingle_size >= 1, "shingle_size must be at least 1"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (0.0 <= self.min_lang_confidence <= 1.0, "min_lang_confidence must be between 0 and 1"),
            (min(self.min_chars, self.min_words, self.max_char_run, self.max_emoji, self.caps_min_letters) >= 0,
             "counts must not be negative"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        for pattern in self.spam_patterns:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ConfigError(f"spam_patterns: {pattern!r} is not a valid regular expression: {e}") from None

    def quality_rules(self) -> QualityRules:
        return QualityRules(min_chars=self.min_chars, min_words=self.min_words, max_tag_ratio=self.max_tag_ratio,
                            max_char_run=self.max_char_run, max_emoji=self.max_emoji,
                            max_emoji_ratio=self.max_emoji_ratio, caps_min_letters=self.caps_min_letters,
                            max_caps_ratio=self.max_caps_ratio, spam_patterns=tuple(self.spam_patterns))


@dataclass
class CleanResult:
    """What a clean run did: counts by drop reason, PII scrubbed, languages of the kept posts."""

    src: Path
    out: Path
    stats_path: Path
    posts_in: int
    kept: int
    dropped_by_reason: dict[str, int]
    scrubbed: dict[str, int]
    languages: dict[str, int]
    seconds: float
    dedup: dict[str, int] = field(default_factory=dict)

    @property
    def dropped(self) -> int:
        return self.posts_in - self.kept

    def describe(self) -> str:
        pct = 100.0 * self.kept / self.posts_in if self.posts_in else 0.0
        return (f"kept {self.kept:,} of {self.posts_in:,} posts ({pct:.1f}%) in {self.seconds:.1f}s -> {self.out}; "
                f"stats in {self.stats_path}")

    def print_table(self) -> None:
        """A table on the terminal: posts in, dropped by reason, kept, with percentages."""
        from rich.console import Console
        from rich.table import Table

        def pct(n: int) -> str:
            return f"{100.0 * n / self.posts_in:.1f}%" if self.posts_in else "-"

        table = Table(title=f"murmur data clean: {self.src.name}", title_justify="left")
        table.add_column("")
        table.add_column("posts", justify="right")
        table.add_column("share", justify="right")
        table.add_row("posts in", f"{self.posts_in:,}", pct(self.posts_in), style="bold")
        for reason in REASONS:
            n = self.dropped_by_reason.get(reason, 0)
            table.add_row(f"  dropped: {reason}", f"{n:,}", pct(n), style=None if n else "dim")
        table.add_row("kept", f"{self.kept:,}", pct(self.kept), style="bold green")
        table.add_row("  PII scrubbed (kept posts)", f"{self.scrubbed.get('posts', 0):,}", pct(self.scrubbed.get("posts", 0)))
        if self.dedup.get("components"):
            table.add_row("  duplicate groups (one kept each)", f"{self.dedup['components']:,}",
                          f"largest {self.dedup['largest_component']:,}", style="dim")
        console = Console()
        console.print(table)
        langs = ", ".join(f"{k} {v:,}" for k, v in list(self.languages.items())[:8])
        rate = self.posts_in / max(self.seconds, 1e-9)
        console.print(f"languages kept: {langs or '-'}\n{self.seconds:.1f}s ({rate:,.0f} posts/s); "
                      f"output {self.out}, stats {self.stats_path}")


# ---------------------------------------------------------------- per-batch work (in worker processes)

@dataclass
class _BatchResult:
    n_in: int
    reasons: Counter
    identified: Counter
    kept: pa.RecordBatch
    exact: np.ndarray | None
    bands: np.ndarray | None
    pii: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))


def _source_code(code: str | None) -> str | None:
    """A real language code from the input's lang column, reduced to its primary subtag, or None."""
    if not is_language_code(code):
        return None
    primary = code.strip().split("-")[0].lower()  # type: ignore[union-attr]
    return _LEGACY_CODES.get(primary, primary)


@dataclass
class CleanedTexts:
    """Steps 1-5 over one batch of texts: the rows that pass with what cleaning made of them, and a
    reason for each row dropped."""

    rows: list[int]  # the input rows that pass, in input order; the lists below follow them
    texts: list[str]  # cleaned (placeholders, scrubbed PII)
    contents: list[str]  # their words without tags, mentions and links (what langid and dedup keys see)
    normalised: list[str]  # after step 1 only, where a post's own hashtags and mentions are read
    langs: list[str]
    pii: list[int]  # PII kinds scrubbed, one bit each
    reasons: Counter  # why the other rows were dropped
    dropped: list[tuple[int, str]]  # (input row, reason) of each
    identified: Counter  # languages identified among the posts that reached step 5


class TextCleaner:
    """Steps 1-5 of cleaning (normalise, retweets, placeholders and PII, quality rules, language),
    built once per process (the language identifier loads), for the corpus's batches and for posts
    that arrive one request at a time (``murmur.search.ingest``)."""

    def __init__(self, cfg: CleanConfig):
        self.cfg = cfg
        self.rules = cfg.quality_rules()
        self.allowed = {c.lower() for c in cfg.allowed_langs}
        self.langid = LanguageIdentifier(cfg.langid_backend, cfg.langid_languages, cfg.min_lang_confidence)

    def languages(self, contents: list[str], sources: list[str | None]) -> list[str]:
        """The language of each post, from its words (``contents``) and the input's lang column."""
        cfg = self.cfg
        out: list[str | None] = [None] * len(contents)
        todo = []
        for i, src in enumerate(sources):
            if cfg.source_lang == "prefer" and (code := _source_code(src)) is not None:
                out[i] = code
            else:
                todo.append(i)
        if todo:
            found = self.langid.identify([contents[i] for i in todo])
            for i, (code, _) in zip(todo, found, strict=True):
                if code == UND and cfg.source_lang == "fallback":
                    code = _source_code(sources[i]) or UND
                out[i] = code
        return out  # type: ignore[return-value]

    def clean(self, raw_texts: list[str | None], sources: list[str | None]) -> CleanedTexts:
        """Steps 1-5 over a batch: ``raw_texts`` as posted, ``sources`` the lang each came with."""
        cfg = self.cfg
        reasons: Counter = Counter()
        dropped: list[tuple[int, str]] = []
        rows, normalised = [], []
        for i, raw in enumerate(raw_texts):
            text = normalize_text(raw or "", keep_newlines=cfg.keep_newlines, unescape_html=cfg.unescape_html)
            if cfg.drop_retweets and is_retweet(text):
                dropped.append((i, RETWEET))
                continue
            rows.append(i)
            normalised.append(text)
        done = clean_texts(normalised, cfg.url_mode, cfg.mention_mode, cfg.scrub_pii)
        cleaned = [t for t, _ in done]
        stripped = [strip_tags(text) for text in cleaned]
        passed = []
        for j, reason in enumerate(quality_reasons(cleaned, self.rules, stripped)):  # the whole batch at once
            if reason is not None:
                dropped.append((rows[j], reason))
            else:
                passed.append(j)
        contents = [stripped[j][0] for j in passed]
        langs = self.languages(contents, [sources[rows[j]] for j in passed])
        identified = Counter(langs)
        keep = []
        for k, code in enumerate(langs):
            if not self.allowed or code in self.allowed:
                keep.append(k)
            else:
                dropped.append((rows[passed[k]], LANGUAGE))
        for _, reason in dropped:
            reasons[reason] += 1
        chosen = [passed[k] for k in keep]
        return CleanedTexts(rows=[rows[j] for j in chosen], texts=[cleaned[j] for j in chosen],
                            contents=[contents[k] for k in keep], normalised=[normalised[j] for j in chosen],
                            langs=[langs[k] for k in keep], pii=[done[j][1] for j in chosen],
                            reasons=reasons, dropped=dropped, identified=identified)


class _Worker(TextCleaner):
    """Everything one process needs for steps 1-5 and the dedup hashes, built once."""

    def __init__(self, cfg: CleanConfig):
        super().__init__(cfg)
        self.minhasher = dd.MinHasher(num_perm=cfg.minhash_perms, threshold=cfg.near_dup_threshold,
                                      shingle_size=cfg.shingle_size, seed=cfg.minhash_seed) \
            if cfg.near_dedup else None

    def process(self, batch: pa.RecordBatch) -> _BatchResult:
        cfg = self.cfg
        got = self.clean(batch.column("text").to_pylist(), batch.column("lang").to_pylist())
        kept = batch.take(pa.array(got.rows, type=pa.int64()))
        kept = kept.set_column(POST_SCHEMA.get_field_index("text"), POST_SCHEMA.field("text"),
                               pa.array(got.texts, type=pa.string()))
        kept = kept.set_column(POST_SCHEMA.get_field_index("lang"), POST_SCHEMA.field("lang"),
                               pa.array(got.langs, type=pa.string()))
        exact = bands = None
        if cfg.exact_dedup or cfg.near_dedup:
            keys = fold_keys(got.contents, cfg.fold_digits)  # == normalize.dedup_key(text) of each
            exact = dd.exact_hashes(keys) if cfg.exact_dedup else None
            bands = self.minhasher.keys_for(keys) if self.minhasher is not None else None
        return _BatchResult(batch.num_rows, got.reasons, got.identified, kept, exact, bands,
                            np.array(got.pii, dtype=np.uint8))


_WORKER: _Worker | None = None


def _init_worker(worker: _Worker) -> None:
    global _WORKER
    _WORKER = worker


def _process_in_worker(batch: pa.RecordBatch) -> _BatchResult:
    assert _WORKER is not None
    return _WORKER.process(batch)


def _process_all(batches: Iterator[pa.RecordBatch], cfg: CleanConfig, workers: int) -> Iterator[_BatchResult]:
    """Results of every batch, in batch order, computed here or by ``workers`` processes."""
    worker = _Worker(cfg)  # built once here (model loading takes ~1 s) and sent to the workers
    if workers <= 1:
        for batch in batches:
            yield worker.process(batch)
        return
    # spawn, not fork: forking a process that runs pyarrow's thread pools can deadlock
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(worker,))
    try:
        pending: deque = deque()
        for batch in batches:
            pending.append(pool.submit(_process_in_worker, batch))
            if len(pending) >= 4 * workers:  # deep enough that workers keep busy while this process waits
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------- input

def _open_input(src: Path) -> pq.ParquetFile:
    """The input, opened without pyarrow's pre-buffering. With it (the default), ``iter_batches`` over
    the whole file reads the column chunks of every row group ahead and holds them: Arrow memory the
    size of the compressed file (measured: 131 MB reading a 128 MB, 1M-post file, 10 MB without; it was
    most of clean's growth in memory from 250k to 1M posts). Pre-buffering pays off on object stores,
    where the Ray engine reads one row group at a time anyway."""
    if not src.exists():
        raise InputError("file not found", path=src)
    if src.is_dir():
        raise InputError("is a directory; give the posts Parquet file from `murmur data ingest`", path=src)
    pf = open_parquet(src)
    names = pf.schema_arrow.names
    for required in ("text", "post_id"):
        if required not in names:
            raise InputError(f"no {required!r} column (columns: {', '.join(names)}); expected the post schema",
                             path=src, field=required)
    if pf.metadata.num_rows == 0:
        raise InputError("no posts in the file", path=src)
    return pf


def _conform(batch: pa.RecordBatch, src: Path) -> pa.RecordBatch:
    """The batch in POST_SCHEMA: columns in order, missing optional ones as nulls, types cast."""
    columns = []
    for f in POST_SCHEMA:
        idx = batch.schema.get_field_index(f.name)
        if idx < 0:
            columns.append(pa.nulls(batch.num_rows, f.type))
            continue
        col = batch.column(idx)
        if not col.type.equals(f.type):
            try:
                col = col.cast(f.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise InputError(f"cannot read as {f.type} ({e})", path=src, field=f.name) from None
        columns.append(col)
    return pa.RecordBatch.from_arrays(columns, schema=POST_SCHEMA)


# ---------------------------------------------------------------- the stage

def clean(src: Path, out: Path, cfg: CleanConfig | None = None, workers: int = 1,
          stats_path: Path | None = None) -> CleanResult:
    """Clean the posts in ``src`` into ``out``; write counts to ``stats_path`` (default ``<out dir>/stats.json``)."""
    src, out = Path(src), Path(out)
    cfg = cfg or CleanConfig()
    stats_path = Path(stats_path) if stats_path is not None else out.parent / "stats.json"
    check_not_input(src, out)
    start = time.perf_counter()
    pf = _open_input(src)
    total = pf.metadata.num_rows
    workers = max(1, int(workers))

    reasons: Counter = Counter()
    identified: Counter = Counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    spill = temp_sibling(out, ".clean")  # named before it exists: the finally below removes it
    survivors_path = spill / "survivors.parquet"
    dedup = cfg.exact_dedup or cfg.near_dedup
    try:
        spill.mkdir(mode=0o700)
        index = dd.SpilledIndex(spill, _buckets(total, cfg)) if dedup else None
        # pass 1: steps 1-5 and the dedup hashes, batch by batch; survivors and their key rows to disk
        batches = (_conform(b, src) for b in pf.iter_batches(batch_size=cfg.batch_size))
        n_surv = 0
        with pq.ParquetWriter(survivors_path, _SURVIVOR_SCHEMA, compression="lz4") as writer, \
                Progress("clean", total=total, unit="posts") as progress:
            for res in _process_all(batches, cfg, workers):
                reasons.update(res.reasons)
                identified.update(res.identified)
                writer.write_batch(res.kept.append_column(_PII, pa.array(res.pii, type=pa.uint8())))
                if index is not None and res.kept.num_rows:
                    index.add(res.exact, res.bands, res.kept.column("created_at"), res.kept.column("post_id"))
                n_surv += res.kept.num_rows
                progress.advance(res.n_in)

        # step 6: duplicates, one bucket of keys at a time
        decision = np.zeros(n_surv, dtype=np.int8)
        dedup_stats: dict[str, int] = {}
        if n_surv and index is not None:
            log(f"clean: finding duplicates among {n_surv:,} posts in time order ({index.buckets} key buckets)")
            decision = index.decide()
            dedup_stats = index.stats
        reasons[DUPLICATE] += int((decision == dd.DUPLICATE).sum())
        reasons[NEAR_DUPLICATE] += int((decision == dd.NEAR_DUPLICATE).sum())
        keep = decision == dd.KEEP
        del decision

        # pass 2: copy the kept survivors to the output, counting their PII and languages
        log(f"clean: writing {int(keep.sum()):,} kept posts")
        scrubbed: Counter = Counter()
        langs_kept: Counter = Counter()
        with atomic_path(out) as tmp_out:
            _write_kept(survivors_path, keep, tmp_out, cfg.batch_size, scrubbed, langs_kept)
    finally:
        shutil.rmtree(spill, ignore_errors=True)

    return finish(src, out, stats_path, cfg, total, reasons, identified, scrubbed, langs_kept,
                  time.perf_counter() - start, workers, dedup=dedup_stats)


_PII = "_pii"
_SURVIVOR_SCHEMA = POST_SCHEMA.append(pa.field(_PII, pa.uint8()))
DEDUP_BUCKET_ROWS = 1 << 20
"""Key rows per dedup bucket the local engine aims at (~60 MB while one is sorted)."""


def _buckets(total: int, cfg: CleanConfig) -> int:
    """Dedup buckets for ``total`` input posts: enough that one bucket's key rows stay near DEDUP_BUCKET_ROWS."""
    kinds = int(cfg.exact_dedup) + (dd.lsh_params(cfg.near_dup_threshold, cfg.minhash_perms)[0] if cfg.near_dedup else 0)
    return max(1, -(-total * kinds // DEDUP_BUCKET_ROWS))


def pii_counts(pii_kept: np.ndarray) -> Counter:
    """Kept posts with any PII scrubbed, and with each kind, from their PII bit masks."""
    return Counter({"posts": int((pii_kept != 0).sum()), "email": int((pii_kept & PII_EMAIL != 0).sum()),
                    "phone": int((pii_kept & PII_PHONE != 0).sum()), "card": int((pii_kept & PII_CARD != 0).sum())})


def finish(src: object, out: object, stats_path: Path, cfg: CleanConfig, total: int, reasons: Counter,
           identified: Counter, scrubbed: Counter, langs_kept: Counter, seconds: float, workers: int,
           engine: str = "local", dedup: dict[str, int] | None = None) -> CleanResult:
    """The result of a clean run from its counts, written to ``stats_path`` (either engine)."""
    kept = total - sum(reasons.values())
    scrubbed_d = {k: int(scrubbed.get(k, 0)) for k in ("posts", "email", "phone", "card")}
    result = CleanResult(src=Path(str(src)), out=Path(str(out)), stats_path=stats_path, posts_in=total, kept=kept,
                         dropped_by_reason={r: int(reasons.get(r, 0)) for r in REASONS}, scrubbed=scrubbed_d,
                         languages=_by_count(langs_kept), seconds=seconds, dedup=dict(dedup or {}))
    write_json(stats_path, {
        "src": str(src), "out": str(out),
        "posts_in": total, "kept": kept, "dropped": total - kept,
        "dropped_by_reason": result.dropped_by_reason,
        "reason_order": list(REASONS),
        "scrubbed": scrubbed_d,
        "languages": result.languages,
        "languages_identified": _by_count(identified),
        "dedup": result.dedup,
        "seconds": round(seconds, 3),
        "posts_per_second": round(total / max(seconds, 1e-9), 1),
        "workers": workers,
        "engine": engine,
        "config": to_dict(cfg),
    })
    log(f"clean: {result.describe()}")
    return result


def time_order(created_at: pa.ChunkedArray | pa.Array, post_id: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Positions from earliest to latest: by ``created_at``, then ``post_id``; missing timestamps last."""
    table = pa.table({"t": created_at, "id": post_id})
    try:  # pyarrow >= 25 takes the null placement per key
        idx = pc.sort_indices(table, sort_keys=[("t", "ascending", "at_end"), ("id", "ascending", "at_end")])
    except (TypeError, ValueError, pa.ArrowInvalid):
        idx = pc.sort_indices(table, sort_keys=[("t", "ascending"), ("id", "ascending")], null_placement="at_end")
    return idx.to_numpy(zero_copy_only=False).astype(np.int64)


def _write_kept(survivors: Path, keep: np.ndarray, target: Path, batch_size: int, scrubbed: Counter,
                langs: Counter) -> None:
    """Copy the rows of ``survivors`` whose ``keep`` flag is set, in order, in row groups of 64k; their
    PII (``pii_counts``) and languages are counted in ``scrubbed`` and ``langs``."""
    def kept_parts() -> Iterator[pa.RecordBatch]:
        offset = 0
        for batch in pq.ParquetFile(survivors, pre_buffer=False).iter_batches(batch_size=batch_size):
            mask = keep[offset:offset + batch.num_rows]
            offset += batch.num_rows
            kept = batch if mask.all() else batch.filter(pa.array(mask))
            scrubbed.update(pii_counts(kept.column(_PII).to_numpy(zero_copy_only=False).astype(np.uint8)))
            for item in pc.value_counts(kept.column("lang")).to_pylist():
                langs[item["values"]] += item["counts"]
            yield pa.RecordBatch.from_arrays(kept.columns[:-1], schema=POST_SCHEMA)

    write_posts(kept_parts(), target)


def write_posts(batches: Iterator[pa.RecordBatch], target: object) -> None:
    """Write post batches, in order, as one Parquet file in row groups of 64k rows (zstd).

    The file's bytes depend only on the rows, never on how they were batched: both engines' outputs
    of the same kept posts are the same file. ``target`` is a path or a writable pyarrow stream.
    """
    pool = pa.default_memory_pool()
    buffered: list[pa.RecordBatch] = []
    buffered_rows = 0
    with pq.ParquetWriter(target, POST_SCHEMA, compression="zstd") as writer:
        for part in batches:
            if part.num_rows:
                buffered.append(part)
                buffered_rows += part.num_rows
            if buffered_rows >= _OUTPUT_ROW_GROUP:
                table = pa.Table.from_batches(buffered, schema=POST_SCHEMA)
                full = buffered_rows // _OUTPUT_ROW_GROUP * _OUTPUT_ROW_GROUP
                writer.write_table(table.slice(0, full).combine_chunks(), row_group_size=_OUTPUT_ROW_GROUP)
                buffered = table.slice(full).to_batches()
                buffered_rows -= full
            pool.release_unused()  # else the allocator keeps freed pages and RSS grows with the corpus
        if buffered:
            writer.write_table(pa.Table.from_batches(buffered, schema=POST_SCHEMA).combine_chunks(),
                               row_group_size=_OUTPUT_ROW_GROUP)


def _by_count(counter: Counter) -> dict[str, int]:
    return {k: int(v) for k, v in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))}

