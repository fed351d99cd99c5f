"""The byte-level BPE tokenizer: training, loading, special tokens, evaluation (see docs/formats.md).

The tokenizer is a Hugging Face ``tokenizers`` BPE model over bytes, with the Llama-3 / GPT-4
pre-tokenizer split regex, so every string round-trips exactly and the saved ``tokenizer.json``
loads in ``transformers`` (and converts for llama.cpp as a ``llama-bpe`` vocabulary).

The first 16 ids are murmur's special tokens, fixed forever so the trainer, the chat format and the
server can rely on them: ``<|doc|>`` = 0 starts every post in the token shards and ends
generation, then ``<|pad|>``, the chat roles, ``<|end|>`` (end of turn), tool calls and 8 reserved
ids. Ordinary text never turns into them: :meth:`MurmurTokenizer.encode` treats a user typing
``<|doc|>`` as plain characters; special ids enter a sequence only explicitly, through
:meth:`MurmurTokenizer.encode_parts` (or ``encode(..., allow_special=True)`` for trusted templates).

The tokenizer is trained on the train split only (posts whose stable hash of ``post_id`` says
train, :mod:`murmur.data.split`), so :func:`eval_tokenizer` measures bytes per token on posts the
tokenizer has never seen, and the token shards' validation split holds the same posts.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from murmur.config import knob
from murmur.data.split import DEFAULT_VAL_FRACTION, val_mask
from murmur.errors import ConfigError, InputError
from murmur.io import atomic_dir, check_output_dir, open_parquet
from murmur.progress import Progress, console, log

TOKENIZER_KIND = "tokenizer"  # what a tokenizer directory's completion marker says

# ---------------------------------------------------------------- special tokens (fixed ids)
DOC, PAD, SYSTEM, USER, ASSISTANT, END, TOOL_CALL, TOOL_RESULT = (
    "<|doc|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|tool_call|>", "<|tool_result|>")
RESERVED = tuple(f"<|reserved_{i}|>" for i in range(8))
SPECIAL_TOKENS: tuple[str, ...] = (DOC, PAD, SYSTEM, USER, ASSISTANT, END, TOOL_CALL, TOOL_RESULT, *RESERVED)
"""Special tokens in id order: ``SPECIAL_TOKENS[i]`` has id ``i``."""
DOC_ID, PAD_ID, SYSTEM_ID, USER_ID, ASSISTANT_ID, END_ID, TOOL_CALL_ID, TOOL_RESULT_ID = range(8)
NUM_SPECIAL = len(SPECIAL_TOKENS)
SPECIAL_IDS: dict[str, int] = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}

SPLIT_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
"""The Llama-3 / GPT-4 pre-tokenizer regex (what llama.cpp calls the ``llama-bpe`` pre-tokenizer)."""

TOKENIZER_FILE = "tokenizer.json"
META_FILE = "murmur_tokenizer.json"
MIN_VOCAB = 256 + NUM_SPECIAL


@dataclass(frozen=True)
class TokenizerConfig:
    """How to train the tokenizer."""

    vocab_size: int = knob(8192, "vocabulary size, the 16 special tokens and 256 byte tokens included")
    min_frequency: int = knob(2, "a pair must occur at least this often to be merged")
    max_posts: int = knob(50_000, "train on at most this many train-split posts (a seeded sample, ~6 MB of "
                                  "text; its cost stays constant in corpus size); 0 = all")
    val_fraction: float = knob(DEFAULT_VAL_FRACTION, "fraction of posts held out (stable hash of post_id); "
                                                     "use the same value for the token shards")
    seed: int = knob(0, "seed of the max_posts sample")
    batch_size: int = knob(8192, "posts read from Parquet at a time")

    def check(self) -> None:
        if self.vocab_size < MIN_VOCAB:
            raise ConfigError(f"vocab_size must be at least {MIN_VOCAB} (256 bytes + {NUM_SPECIAL} special tokens)")
        if self.vocab_size > 2**32:
            raise ConfigError("vocab_size must fit in uint32")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError("val_fraction must be in [0, 1)")
        if self.min_frequency < 0 or self.max_posts < 0 or self.batch_size < 1:
            raise ConfigError("min_frequency and max_posts must be >= 0 and batch_size >= 1")


# ---------------------------------------------------------------- the tokenizer object
class MurmurTokenizer:
    """A loaded tokenizer: plain-text encoding, explicit special ids, exact decoding.

    ``inner`` is the ``tokenizers.Tokenizer``; it is set to encode special-token strings as plain
    text (``encode_special_tokens = True``), like :meth:`encode`.
    """

    def __init__(self, inner: Tokenizer, path: Path | None = None, meta: dict[str, Any] | None = None):
        _check_special_tokens(inner, (Path(path) / TOKENIZER_FILE) if path else None)
        self.path = Path(path) if path else None
        self.meta: dict[str, Any] = meta or {}
        self.inner = inner
        self.inner.encode_special_tokens = True
        self._trusted = Tokenizer.from_str(inner.to_str())  # recognises special-token strings
        self._trusted.encode_special_tokens = False
        self.vocab_size: int = inner.get_vocab_size(with_added_tokens=True)
        self.special_ids: dict[str, int] = dict(SPECIAL_IDS)
        self.doc_id, self.pad_id, self.end_id = DOC_ID, PAD_ID, END_ID

    def __repr__(self) -> str:
        return f"MurmurTokenizer(vocab_size={self.vocab_size}, path={str(self.path)!r})"

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        """Token ids of ``text``. Special-token strings in it stay plain text unless ``allow_special``
        (only for trusted templates, never for user content)."""
        tok = self._trusted if allow_special else self.inner
        return tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Iterable[str], allow_special: bool = False) -> list[list[int]]:
        """``encode`` over many texts at once, in Rust threads."""
        tok = self._trusted if allow_special else self.inner
        return [e.ids for e in tok.encode_batch(list(texts), add_special_tokens=False)]

    def encode_parts(self, parts: Iterable[str | int]) -> list[int]:
        """Build a sequence explicitly: ``int`` parts are token ids kept as they are (for special
        tokens, e.g. ``[USER_ID, "hi", END_ID]``); ``str`` parts are encoded as plain text."""
        ids: list[int] = []
        for part in parts:
            if isinstance(part, str):
                ids.extend(self.encode(part))
            elif isinstance(part, int | np.integer) and 0 <= int(part) < self.vocab_size:
                ids.append(int(part))
            else:
                raise ValueError(f"part {part!r} is neither text nor a token id below {self.vocab_size}")
        return ids

    def decode(self, ids: Sequence[int] | np.ndarray, skip_special: bool = False) -> str:
        """The text of ``ids``; special tokens appear as their strings unless ``skip_special``."""
        ids = ids.tolist() if isinstance(ids, np.ndarray) else [int(i) for i in ids]
        return self.inner.decode(ids, skip_special_tokens=skip_special)

    def token_to_id(self, token: str) -> int | None:
        return self.inner.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self.inner.id_to_token(token_id)

    @property
    def sha256(self) -> str:
        """Hash of ``tokenizer.json`` (recorded by the token shards and checkpoints)."""
        if self.path is not None and (self.path / TOKENIZER_FILE).is_file():
            return hashlib.sha256((self.path / TOKENIZER_FILE).read_bytes()).hexdigest()
        return hashlib.sha256(self.inner.to_str().encode("utf-8")).hexdigest()


def _check_special_tokens(inner: Tokenizer, where: Path | None) -> None:
    added = inner.get_added_tokens_decoder()
    for i, name in enumerate(SPECIAL_TOKENS):
        got = inner.token_to_id(name)
        if got != i or i not in added or not added[i].special:
            raise InputError(f"not a murmur tokenizer: special token {name} must have id {i} "
                             f"(it has {got}); train one with `murmur tokenizer train`", where)


def new_tokenizer() -> Tokenizer:
    """An untrained byte-level BPE with murmur's pre-tokenizer and decoder."""
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    return tok


def special_added_tokens() -> list[AddedToken]:
    """The 16 special tokens as ``AddedToken``s, in id order (for building a tokenizer by hand)."""
    return [AddedToken(s, special=True, normalized=False) for s in SPECIAL_TOKENS]


# ---------------------------------------------------------------- reading posts
def post_batches(path: Path, columns: Sequence[str], batch_size: int = 8192,
                 optional: Sequence[str] = ()) -> Iterator[pa.RecordBatch]:
    """Stream ``columns`` (plus the ``optional`` ones that exist) of a posts Parquet file in batches.

    Raises InputError when the file is missing, is not Parquet, or lacks a required column.
    """
    pf = open_posts(path, columns)
    names = set(pf.schema_arrow.names)
    wanted = [*columns, *(c for c in optional if c in names)]
    yield from pf.iter_batches(batch_size=batch_size, columns=wanted)


def open_posts(path: Path, columns: Sequence[str]) -> pq.ParquetFile:
    """Open a posts Parquet file after checking it has string ``columns``."""
    path = Path(path)
    if not path.is_file():
        raise InputError("posts file not found", path)
    pf = open_parquet(path)
    schema = pf.schema_arrow
    for col in columns:
        if col not in schema.names:
            raise InputError(f"column is missing (have {', '.join(schema.names) or 'none'}); "
                             f"expected clean posts from `murmur data clean`", path, field=col)
        if not (pa.types.is_string(schema.field(col).type) or pa.types.is_large_string(schema.field(col).type)):
            raise InputError(f"column must be a string, not {schema.field(col).type}", path, field=col)
    return pf


def _nonempty(texts: pa.Array) -> pa.Array:
    """Mask of texts that are present and non-empty."""
    return pc.fill_null(pc.greater(pc.binary_length(texts), 0), False)


def _sample_hashes(post_ids: pa.Array, seed: int) -> np.ndarray:
    """Seeded 64-bit hashes of ids (independent of the split hash) for the max_posts sample."""
    key = f"murmur-sample-{seed}".encode()
    digest = b"".join(hashlib.blake2b((p or "").encode("utf-8"), digest_size=8, key=key).digest()
                      for p in post_ids.to_pylist())
    return np.frombuffer(digest, dtype="<u8").astype(np.uint64)


def _sample_threshold(paths: Sequence[Path], cfg: TokenizerConfig) -> int | None:
    """The sample's hash threshold, or None to keep every train-split post.

    A bottom-k sample of train-split posts by seeded hash of ``post_id``: the same posts whatever
    the file order. Skipped (no extra pass) when the files hold no more than ``max_posts`` rows.
    """
    k = cfg.max_posts
    if not k or _count_rows(paths) <= k:
        return None
    best = np.zeros(0, dtype=np.uint64)  # the k smallest hashes so far (plus up to k newer ones)
    for path in paths:
        for batch in post_batches(path, ["post_id"], cfg.batch_size):
            ids = batch.column("post_id")
            ids = ids.filter(pa.array(~val_mask(ids, cfg.val_fraction)))
            best = np.concatenate([best, _sample_hashes(ids, cfg.seed)])
            if len(best) > 2 * k:  # amortised: partition only when the buffer has doubled
                best = np.partition(best, k - 1)[:k]
    if len(best) < k:
        return None
    return int(np.partition(best, k - 1)[k - 1])


# ---------------------------------------------------------------- training
def train_tokenizer(paths: Sequence[Path] | Path, out_dir: Path,
                    cfg: TokenizerConfig | None = None, overwrite: bool = False) -> MurmurTokenizer:
    """Train the BPE on the train split of clean posts and write the tokenizer directory atomically.

    An existing ``out_dir`` is replaced only with ``overwrite`` and only when it is a murmur
    tokenizer (:func:`murmur.io.check_output_dir`).
    """
    cfg = cfg or TokenizerConfig()
    cfg.check()
    paths = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    if not paths:
        raise InputError("no input files given")
    check_output_dir(out_dir, TOKENIZER_KIND, overwrite, paths)
    for p in paths:
        open_posts(p, ["post_id", "text"])
    start = time.perf_counter()
    threshold = _sample_threshold(paths, cfg)
    rows = _count_rows(paths)
    expected = min(round(rows * (1 - cfg.val_fraction)), cfg.max_posts or rows)
    stats = {"posts": 0, "bytes": 0}

    def texts() -> Iterator[list[str]]:
        with Progress("tokenizer: read posts", total=expected, unit="posts") as prog:
            for path in paths:
                for batch in post_batches(path, ["post_id", "text"], cfg.batch_size):
                    ids, col = batch.column("post_id"), batch.column("text")
                    keep = np.asarray(_nonempty(col)) & ~val_mask(ids, cfg.val_fraction)
                    if threshold is not None:
                        keep &= _sample_hashes(ids, cfg.seed) <= np.uint64(threshold)
                    chosen = col.filter(pa.array(keep))
                    stats["posts"] += len(chosen)
                    stats["bytes"] += int(pc.sum(pc.binary_length(chosen)).as_py() or 0)
                    prog.advance(len(chosen))
                    if len(chosen):
                        yield chosen.to_pylist()

    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency, special_tokens=special_added_tokens(),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=console.is_terminal)
    inner = new_tokenizer()
    inner.train_from_iterator(texts(), trainer, length=expected)
    if stats["posts"] == 0:
        raise InputError("no train-split posts with text to train on", paths[0])
    seconds = time.perf_counter() - start
    training = {
        "sources": [str(p) for p in paths], "posts": stats["posts"], "bytes": stats["bytes"],
        "rows_read": rows, "seconds": round(seconds, 3),
        "posts_per_second": round(stats["posts"] / max(seconds, 1e-9), 1), "config": asdict(cfg),
        "val_fraction": cfg.val_fraction,
    }
    tok = save_tokenizer(inner, out_dir, training, overwrite=overwrite, protect=paths)
    log(f"tokenizer: {tok.vocab_size:,} tokens from {stats['posts']:,} posts in {seconds:.1f}s "
        f"({training['posts_per_second']:,.0f} posts/s)")
    if tok.vocab_size < cfg.vocab_size:
        log(f"tokenizer: the corpus supported only {tok.vocab_size:,} of the {cfg.vocab_size:,} tokens asked for")
    return tok


def _count_rows(paths: Sequence[Path]) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in paths)


def save_tokenizer(inner: Tokenizer, out_dir: Path, training: dict[str, Any] | None = None,
                   overwrite: bool = False, protect: Sequence[Path] = ()) -> MurmurTokenizer:
    """Write ``tokenizer.json``, the transformers configs and ``murmur_tokenizer.json`` atomically."""
    _check_special_tokens(inner, None)
    out_dir = Path(out_dir)
    inner = Tokenizer.from_str(inner.to_str())
    inner.encode_special_tokens = False
    vocab_size = inner.get_vocab_size(with_added_tokens=True)
    meta = {
        "format": "murmur-tokenizer", "version": 1, "vocab_size": vocab_size,
        "special_tokens": dict(SPECIAL_IDS), "pre_tokenizer": "llama3-regex + byte-level",
        "split_pattern": SPLIT_PATTERN, "training": training or {},
    }
    with atomic_dir(out_dir, TOKENIZER_KIND, overwrite, protect) as tmp:
        inner.save(str(tmp / TOKENIZER_FILE))
        _write_json(tmp / "tokenizer_config.json", _transformers_config())
        _write_json(tmp / "special_tokens_map.json", _special_tokens_map())
        _write_json(tmp / META_FILE, meta)
    return load_tokenizer(out_dir)


def _special_tokens_map() -> dict[str, Any]:
    return {"bos_token": DOC, "eos_token": DOC, "pad_token": PAD,
            "additional_special_tokens": list(SPECIAL_TOKENS[2:])}


def _transformers_config() -> dict[str, Any]:
    """``tokenizer_config.json`` for ``AutoTokenizer``: no BOS/EOS added, no space clean-up, so
    transformers gives exactly murmur's ids and text. ``<|doc|>`` is both BOS and EOS (a base model
    stops at the next document); a chat export sets ``<|end|>`` as its stop token."""
    added = {str(i): {"content": s, "lstrip": False, "normalized": False, "rstrip": False,
                      "single_word": False, "special": True} for i, s in enumerate(SPECIAL_TOKENS)}
    return {"tokenizer_class": "PreTrainedTokenizerFast", **_special_tokens_map(),
            "add_bos_token": False, "add_eos_token": False, "clean_up_tokenization_spaces": False,
            "added_tokens_decoder": added}


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# ---------------------------------------------------------------- loading
def load_tokenizer(path: str | Path) -> MurmurTokenizer:
    """Load a tokenizer directory (or its ``tokenizer.json``); InputError if it is not one."""
    path = Path(path)
    directory = path.parent if path.name == TOKENIZER_FILE and path.is_file() else path
    if not directory.is_dir():
        raise InputError("tokenizer directory not found", directory)
    file = directory / TOKENIZER_FILE
    if not file.is_file():
        raise InputError(f"not a tokenizer directory (no {TOKENIZER_FILE}); train one with "
                         f"`murmur tokenizer train`", directory)
    try:
        inner = Tokenizer.from_file(str(file))
    except Exception as e:  # tokenizers raises plain Exception on bad JSON
        raise InputError(f"cannot read tokenizer ({str(e).splitlines()[0] if str(e) else type(e).__name__})",
                         file) from None
    meta: dict[str, Any] = {}
    if (directory / META_FILE).is_file():
        try:
            meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise InputError(f"invalid JSON: {e.msg}", directory / META_FILE, e.lineno) from None
    return MurmurTokenizer(inner, directory, meta)


# ---------------------------------------------------------------- evaluation
def eval_tokenizer(tokenizer_dir: Path, parquet: Path, val_fraction: float | None = None,
                   batch_size: int = 8192) -> dict[str, Any]:
    """Bytes per token (UTF-8 bytes / tokens) on held-out posts, overall and per ``lang``.

    Held-out posts are those the split hash puts in validation at the ``val_fraction`` the
    tokenizer was trained with (so none of them was seen in training). With ``val_fraction`` 0
    every post is measured and ``held_out`` is False.
    """
    tok = load_tokenizer(tokenizer_dir)
    if val_fraction is None:
        val_fraction = float(tok.meta.get("training", {}).get("val_fraction", DEFAULT_VAL_FRACTION))
    per_lang: dict[str, list[int]] = {}
    for batch in post_batches(parquet, ["post_id", "text"], batch_size, optional=["lang"]):
        keep = np.asarray(_nonempty(batch.column("text")))
        if val_fraction > 0:
            keep &= val_mask(batch.column("post_id"), val_fraction)
        if not keep.any():
            continue
        mask = pa.array(keep)
        texts = batch.column("text").filter(mask)
        n_bytes = pc.binary_length(texts).to_numpy()
        n_tokens = np.array([len(e) for e in tok.inner.encode_batch(texts.to_pylist(),
                                                                         add_special_tokens=False)])
        if "lang" in batch.schema.names:
            langs = [x or "und" for x in batch.column("lang").filter(mask).to_pylist()]
        else:
            langs = ["und"] * len(texts)
        for lang, b, t in zip(langs, n_bytes, n_tokens, strict=True):
            acc = per_lang.setdefault(lang, [0, 0, 0])
            acc[0] += 1
            acc[1] += int(b)
            acc[2] += int(t)
    if not per_lang:
        raise InputError(f"no held-out posts to measure (val_fraction {val_fraction}); use a larger file", parquet)

    def row(posts: int, n_bytes: int, n_tokens: int) -> dict[str, Any]:
        return {"posts": posts, "bytes": n_bytes, "tokens": n_tokens,
                "bytes_per_token": n_bytes / max(n_tokens, 1), "tokens_per_post": n_tokens / max(posts, 1)}

    totals = np.array(list(per_lang.values())).sum(axis=0)
    ordered = sorted(per_lang.items(), key=lambda kv: (-kv[1][0], kv[0]))
    return {"tokenizer": str(tokenizer_dir), "source": str(parquet), "vocab_size": tok.vocab_size,
            "val_fraction": val_fraction, "held_out": val_fraction > 0,
            "overall": row(*map(int, totals)), "languages": {lang: row(*acc) for lang, acc in ordered}}


def print_eval(result: dict[str, Any]) -> None:
    """Print an :func:`eval_tokenizer` result as a table (one row per language, then the total)."""
    from rich.console import Console
    from rich.table import Table

    which = "held-out" if result["held_out"] else "all (no held-out split)"
    table = Table(title=f"bytes per token on {which} posts",
                  caption=f"{result['tokenizer']} ({result['vocab_size']:,} tokens) on {result['source']}")
    for name in ("lang", "posts", "bytes", "tokens", "bytes/token", "tokens/post"):
        table.add_column(name, justify="left" if name == "lang" else "right")

    def add(name: str, r: dict[str, Any], **style: Any) -> None:
        table.add_row(name, f"{r['posts']:,}", f"{r['bytes']:,}", f"{r['tokens']:,}",
                      f"{r['bytes_per_token']:.2f}", f"{r['tokens_per_post']:.1f}", **style)

    langs = list(result["languages"].items())
    for i, (lang, r) in enumerate(langs):
        add(lang, r, end_section=i == len(langs) - 1)
    add("all", result["overall"], style="bold")
    Console().print(table)
