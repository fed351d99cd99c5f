"""``murmur embed train``: a pretrained murmur model fine-tuned into a text embedder, on the one trainer.

Not a trainer of its own: :class:`murmur.train.trainer.Trainer` with the contrastive task
(:class:`murmur.train.contrastive.ContrastiveTask`), so it has what pretraining has (torchrun
layouts, checkpoints and exact resume, the loss guard, metrics). This module is the network side:

1. read the clean posts and build pairs (:mod:`murmur.embed.pairs`), hold a stable share out for
   validation (the validation loss is the in-batch InfoNCE on those pairs);
2. tokenize each text as the embedder will read it (:mod:`murmur.pooling`) and train;
3. write ``embedder.json`` (pooling, length) into the finished model directory, which makes it an
   embedder that ``murmur search index --embedder``, ``murmur serve --embedder`` and search eval load.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from murmur.config import knob
from murmur.embed.pairs import KINDS, build_pairs, kind_counts, read_posts, stable_unit
from murmur.errors import ConfigError, InputError
from murmur.io import write_json
from murmur.pooling import POOLINGS, EmbedderMeta, text_ids, write_meta
from murmur.progress import Progress
from murmur.train.checkpoint import file_digest
from murmur.train.config import (
    BatchSection,
    CheckpointSection,
    EvalSection,
    OptimSection,
    RunConfig,
    ScheduleSection,
)
from murmur.train.contrastive import ContrastiveTask, Pair

SUMMARY_NAME = "embed.json"


@dataclass(frozen=True)
class EmbedEvalSection(EvalSection):
    every: int = knob(100, "Evaluate the validation InfoNCE loss every N steps (0 = only at the end).")
    batches: int = knob(8, "Micro-batches of validation pairs per evaluation.")
    samples: int = knob(0, "Posts sampled from <|doc|> and logged at each evaluation (0 = none).")
    val_fraction: float = knob(0.02, "Fraction of pairs held out for validation (stable hash of the pair).")


@dataclass(frozen=True)
class EmbedConfig(RunConfig):
    """An embedding run: the trainer's knobs plus the model it starts from, the posts, the pairs and the
    loss; see docs/search.md ("murmur's own embedder")."""

    out: str = knob("runs/embed", "Run directory: config, metrics, checkpoints and the embedder.")
    steps: int = knob(200, "Optimizer steps (ignored when epochs > 0).")
    log_every: int = knob(20, "Log a line (and a metrics.jsonl record) every N steps.")
    optim: OptimSection = knob(OptimSection(lr=3e-4, weight_decay=0.0), "AdamW settings.")
    schedule: ScheduleSection = knob(ScheduleSection(warmup=20), "Learning-rate schedule.")
    batch: BatchSection = knob(BatchSection(micro_batch=64), "Pairs per pass (each pass's other pairs are the "
                                                             "negatives) and gradient accumulation.")
    eval: EmbedEvalSection = knob(EmbedEvalSection(), "Validation.")
    checkpoint: CheckpointSection = knob(CheckpointSection(every=100, keep_last=1), "Training checkpoints.")
    model: str = knob("", "Pretrained model directory (a finished `murmur train` run).")
    data: str = knob("", "Clean posts Parquet (`murmur data clean`).")
    pairs: list[str] = knob(list(KINDS), "Pair kinds: hashtag, reply, conversation, span.")
    late_pairs: list[str] = knob([], "Pair kinds that join `pairs` for the end of the run (a curriculum, e.g. "
                                     "[\"span\"]); empty = the same pairs throughout.")
    late_from: float = knob(0.7, "Fraction of the steps after which `late_pairs` join (with late_pairs set).")
    pooling: Literal["mean", "last", "eos"] = knob("mean", "Text vector: mean of the token states, the last "
                                                           "token's state, or an appended end token's state.")
    temperature: float = knob(0.05, "InfoNCE temperature (lower = sharper).")
    max_tokens: int = knob(64, "Tokens per text (longer texts are cut).")
    max_per_conversation: int = knob(8, "Conversation pairs taken from one thread at most.")


def _check(cfg: EmbedConfig) -> None:
    if not cfg.model:
        raise ConfigError("model is not set (the directory of a finished `murmur train` run)")
    if not cfg.data:
        raise ConfigError("data is not set (a clean posts Parquet from `murmur data clean`)")
    if cfg.pooling not in POOLINGS:
        raise ConfigError(f"pooling must be one of {', '.join(POOLINGS)} (got {cfg.pooling!r})")
    if not cfg.temperature > 0:
        raise ConfigError(f"temperature must be positive (got {cfg.temperature})")
    if not 0 <= cfg.eval.val_fraction < 1:
        raise ConfigError(f"eval.val_fraction must be in [0, 1) (got {cfg.eval.val_fraction})")
    if cfg.max_tokens < 4:
        raise ConfigError(f"max_tokens must be at least 4 (got {cfg.max_tokens})")
    if not cfg.pairs:
        raise ConfigError(f"pairs is empty (kinds: {', '.join(KINDS)})")
    if cfg.late_pairs and not 0 < cfg.late_from < 1:
        raise ConfigError(f"late_from must be in (0, 1) (got {cfg.late_from})")
    if cfg.late_pairs and cfg.epochs > 0:
        raise ConfigError("late_pairs needs a step count (steps), not epochs")
    if Path(cfg.out).resolve() == Path(cfg.model).resolve():
        raise ConfigError(f"out ({cfg.out}) must differ from the model directory it starts from")


def _key(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1


def embed_task(cfg: EmbedConfig) -> ContrastiveTask:
    """The contrastive task of ``cfg``: pairs built and tokenized, the base model's weights (all checked first)."""
    from murmur.modeldir import TOKENIZER_DIR, read_model_dir
    from murmur.tokenizer import load_tokenizer

    _check(cfg)
    kinds = list(dict.fromkeys([*cfg.pairs, *cfg.late_pairs]))
    posts = read_posts(cfg.data, kinds)  # checked before the model loads
    pairs = build_pairs(posts, kinds, cfg.seed, cfg.max_per_conversation)
    if len(pairs) < 2:
        raise InputError(f"{len(pairs)} training pair(s) from these posts (kinds {', '.join(cfg.pairs)}); "
                         "the posts need hashtags, replies or conversations", cfg.data)
    base = Path(cfg.model)
    model_cfg, weights = read_model_dir(base)
    if cfg.max_tokens > model_cfg.max_seq_len:
        raise ConfigError(f"max_tokens ({cfg.max_tokens}) is longer than the model's max_seq_len "
                          f"({model_cfg.max_seq_len})")
    tokenizer = load_tokenizer(base / TOKENIZER_DIR)
    cache: dict[str, np.ndarray] = {}

    def ids(text: str) -> np.ndarray:
        if text not in cache:
            cache[text] = text_ids(tokenizer, text, cfg.max_tokens, cfg.pooling)
        return cache[text]

    train: list[tuple[Pair, str]] = []
    val = []
    with Progress("embed: tokenize pairs", total=len(pairs), unit="pairs") as prog:
        for p in pairs:
            pair = Pair(ids(p.query), ids(p.passage), _key(p.query))
            if stable_unit("val", p.query, p.passage) < cfg.eval.val_fraction:
                val.append(pair)
            else:
                train.append((pair, p.kind))
            prog.advance()
    if not train:
        train, val = [(p, "") for p in val], []
    early = [p for p, kind in train if not cfg.late_pairs or kind in cfg.pairs or not kind]
    late = [p for p, _ in train] if cfg.late_pairs else []
    if not early:
        raise InputError(f"no training pairs of kinds {', '.join(cfg.pairs)} before the late pairs join", cfg.data)
    counts = kind_counts(pairs)
    about = ", ".join(f"{n:,} {k}" for k, n in counts.items())
    return ContrastiveTask(model_cfg, weights, tokenizer, base / TOKENIZER_DIR, early, val, cfg.max_tokens,
                           cfg.pooling, cfg.temperature, cfg.seed,
                           fingerprint={"data_sha256": file_digest(Path(cfg.data))["sha256"],
                                        "pairs": len(pairs)}, source=str(base), about=about,
                           late=late, late_from=round(cfg.late_from * cfg.steps))


def run_embed_train(cfg: EmbedConfig) -> Any:
    """Train as ``cfg`` says (every process of a torchrun job calls this) -> ``TrainResult``."""
    from murmur.train.trainer import train

    task = embed_task(cfg)
    result = train(cfg, task)
    if not result.interrupted and result.rank == 0:
        out = Path(cfg.out)
        write_meta(out, EmbedderMeta(pooling=cfg.pooling, max_tokens=cfg.max_tokens, name=f"murmur-{out.name}"),
                   {"base_model": cfg.model, "temperature": cfg.temperature})
        summary = {"base_model": cfg.model, "data": cfg.data, **task.fingerprint(), "pooling": cfg.pooling,
                   "train_pairs": len(task.train_pairs), "val_pairs": len(task.val_pairs),
                   **{k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(result).items()}}
        write_json(out / SUMMARY_NAME, summary)
    return result


def embed_train(run_dir: str | Path, posts: str | Path, out_dir: str | Path, cfg: EmbedConfig | None = None) -> Any:
    """Fine-tune the model in ``run_dir`` into an embedder in ``out_dir`` on pairs from ``posts``."""
    cfg = dataclasses.replace(cfg or EmbedConfig(), model=str(run_dir), data=str(posts), out=str(out_dir))
    return run_embed_train(cfg)
