"""Supervised chat fine-tuning (SFT): the one trainer on conversations, from a pretrained model directory.

Fine-tuning is not a trainer of its own: it is :class:`murmur.train.trainer.Trainer` with another
task (:class:`murmur.train.packing.PackedTask`), so it has everything pretraining has: FSDP2/HSDP/TP
layouts under torchrun, the loss guard, async checkpoints with exact resume, SIGTERM save,
consolidation, metrics and TensorBoard. This module is the chat side of that task:

1. read the pretrained model directory (``model.safetensors`` + ``config.json`` + ``tokenizer/``)
   and the conversation JSONL (checked line by line, :mod:`murmur.chat.data`);
2. render each conversation with the one chat renderer (:func:`murmur.chat.template.render`) and
   mark the tokens to learn: each assistant message's content and its ``<|end|>``. The mask is built
   by rendering message by message with the same renderer: the tokens an assistant turn adds after
   the generation prompt ``render(messages[:i], add_generation_prompt=True)`` are exactly the ones
   the model must produce;
3. hand the tokenized conversations to the packed task (rows of ``seq_len`` tokens, block-diagonal
   attention, loss averaged over every assistant token of an optimizer step), and train.

At the end the run directory holds the consolidated chat model, which ``murmur generate``,
``murmur serve --model`` and ``murmur export hf`` load, and ``sft.json`` (what it was trained from).
Under torchrun: ``torchrun --nproc-per-node N -m murmur.cli sft ... parallel.dp_shard=N``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from murmur.chat.data import Conversation, read_conversations
from murmur.chat.template import render
from murmur.config import knob, require_at_least
from murmur.errors import ConfigError, InputError, MurmurError
from murmur.io import write_json
from murmur.progress import Progress
from murmur.train.checkpoint import file_digest
from murmur.train.config import CheckpointSection, EvalSection, OptimSection, RunConfig, ScheduleSection
from murmur.train.packing import Example, PackedTask

SUMMARY_NAME = "sft.json"


# ---------------------------------------------------------------- config
@dataclass(frozen=True)
class SFTEvalSection(EvalSection):
    every: int = knob(100, "Evaluate validation loss every N steps (0 = only at the end).")
    batches: int = knob(4, "Micro-batches of validation rows per evaluation.")
    samples: int = knob(0, "Posts sampled from <|doc|> and logged at each evaluation (0 = none).")
    val_fraction: float = knob(0.05, "Fraction of conversations held out for validation (stable hash of "
                                     "the conversation; 0 = none).")


@dataclass(frozen=True)
class SFTConfig(RunConfig):
    """A chat fine-tuning run: the trainer's knobs (:class:`murmur.train.config.RunConfig`) plus where
    it starts and what it reads; see docs/chat.md."""

    out: str = knob("runs/sft", "Run directory: config, metrics, checkpoints and the fine-tuned model.")
    steps: int = knob(300, "Optimizer steps (ignored when epochs > 0).")
    optim: OptimSection = knob(OptimSection(lr=1e-4, weight_decay=0.0), "AdamW settings.")
    schedule: ScheduleSection = knob(ScheduleSection(warmup=20), "Learning-rate schedule.")
    eval: SFTEvalSection = knob(SFTEvalSection(), "Validation.")
    checkpoint: CheckpointSection = knob(CheckpointSection(every=100), "Training checkpoints.")
    model: str = knob("", "Pretrained model directory (a finished `murmur train` or `murmur sft` run).")
    data: str = knob("", "Conversation JSONL (`murmur sft-data` or your own, OpenAI messages shape).")
    seq_len: int = knob(0, "Tokens per packed row (0 = the model's max_seq_len); longer conversations are cut.")
    pack: bool = knob(True, "Pack several conversations per row (false = one conversation per row, padded).")


# ---------------------------------------------------------------- rendering and the loss mask
class _MemoEncoder:
    """Encodes each distinct text once (the mask renders a conversation's prefixes repeatedly)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.cache: dict[str, list[int]] = {}

    def encode(self, text: str) -> list[int]:
        ids = self.cache.get(text)
        if ids is None:
            ids = self.cache[text] = self.tokenizer.encode(text)
        return ids


def encode_conversation(tokenizer: Any, messages: Sequence[Mapping[str, Any]]) -> tuple[list[int], list[bool]]:
    """(ids, trained): the rendered conversation and, per token, whether the model learns to produce it.

    The trained tokens of assistant message ``i`` are what ``render(messages[:i + 1])`` adds after the
    generation prompt ``render(messages[:i], add_generation_prompt=True)``: the content and its
    ``<|end|>``. An assistant message that opens a conversation has no prompt and is context only.
    """
    enc = _MemoEncoder(tokenizer)
    messages = list(messages)
    ids = render(enc, messages, add_generation_prompt=False)
    trained = [False] * len(ids)
    for i, message in enumerate(messages):
        if i == 0 or message.get("role") != "assistant":
            continue
        prompt = render(enc, messages[:i], add_generation_prompt=True)
        full = render(enc, messages[: i + 1], add_generation_prompt=False)
        if full[: len(prompt)] != prompt or ids[: len(full)] != full:
            raise MurmurError("the chat renderer is not prefix-stable: the loss mask cannot be built")
        trained[len(prompt): len(full)] = [True] * (len(full) - len(prompt))
    return ids, trained


def tokenize_conversations(tokenizer: Any, conversations: Sequence[Conversation], seq_len: int
                           ) -> tuple[list[Example], dict[str, int]]:
    """Render and mask every conversation; cut those longer than ``seq_len`` (dropped if no answer is left)."""
    out, cut, dropped = [], 0, 0
    with Progress("sft: tokenize", total=len(conversations), unit="conversations") as prog:
        for conv in conversations:
            ids, trained = encode_conversation(tokenizer, conv)
            if len(ids) > seq_len:
                cut += 1
                ids, trained = ids[:seq_len], trained[:seq_len]
            prog.advance()
            if not any(trained[1:]):
                dropped += 1
                continue
            out.append(Example(np.asarray(ids, dtype=np.int32), np.asarray(trained, dtype=bool)))
    return out, {"cut": cut, "dropped": dropped}


def is_val(conversation: Conversation, fraction: float) -> bool:
    """Stable validation split: a hash of the conversation's content, independent of file order."""
    if fraction <= 0:
        return False
    digest = hashlib.sha256(json.dumps(conversation, ensure_ascii=False, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


# ---------------------------------------------------------------- the task and the run
def sft_task(cfg: SFTConfig) -> PackedTask:
    """The fine-tuning task of ``cfg``: conversations read, checked and tokenized, the base model's weights.

    Everything is checked here, before any compute: the data first (cheap), then the model directory.
    """
    from murmur.modeldir import TOKENIZER_DIR, read_model_dir
    from murmur.tokenizer import load_tokenizer

    if not cfg.model:
        raise ConfigError("model is not set (the directory of a finished `murmur train` run)")
    if not cfg.data:
        raise ConfigError("data is not set (a conversation JSONL, e.g. from `murmur sft-data`)")
    require_at_least(0, [("seq_len", cfg.seq_len)])
    if not 0 <= cfg.eval.val_fraction < 1:
        raise ConfigError(f"eval.val_fraction must be in [0, 1) (got {cfg.eval.val_fraction})")
    base, out = Path(cfg.model), Path(cfg.out)
    if out.resolve() == base.resolve():
        raise ConfigError(f"out ({out}) must differ from the model directory it starts from")
    conversations = read_conversations(cfg.data)  # checked before the (possibly large) model loads
    model_cfg, weights = read_model_dir(base)
    tokenizer = load_tokenizer(base / TOKENIZER_DIR)
    seq_len = cfg.seq_len or model_cfg.max_seq_len
    if seq_len > model_cfg.max_seq_len:
        raise ConfigError(f"seq_len ({seq_len}) is longer than the model's max_seq_len ({model_cfg.max_seq_len})")
    if seq_len < 8:
        raise ConfigError(f"seq_len must be at least 8 (got {seq_len})")
    val_convs = [c for c in conversations if is_val(c, cfg.eval.val_fraction)]
    train_convs = [c for c in conversations if not is_val(c, cfg.eval.val_fraction)]
    if not train_convs:
        train_convs, val_convs = conversations, []
    train, cut = tokenize_conversations(tokenizer, train_convs, seq_len)
    if not train:
        raise InputError(f"no conversation has an assistant token left within seq_len ({seq_len}); raise seq_len",
                         cfg.data)
    val = tokenize_conversations(tokenizer, val_convs, seq_len)[0] if val_convs else []
    about = f"{cut['cut']} cut to seq_len, {cut['dropped']} dropped" if cut["cut"] else ""
    return PackedTask(model_cfg, weights, tokenizer, base / TOKENIZER_DIR, train, val, seq_len, cfg.seed, cfg.pack,
                      fingerprint={"data_sha256": file_digest(Path(cfg.data))["sha256"]}, source=str(base), about=about)


def run_sft(cfg: SFTConfig) -> Any:
    """Fine-tune as ``cfg`` says (every process of a torchrun job calls this) -> ``TrainResult``."""
    from murmur.train.trainer import train

    task = sft_task(cfg)
    result = train(cfg, task)
    if not result.interrupted and result.rank == 0:
        summary = {"base_model": cfg.model, "data": cfg.data, **task.fingerprint(),
                   "conversations": len(task.train_examples),
                   **{k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(result).items()}}
        write_json(Path(cfg.out) / SUMMARY_NAME, summary)
    return result


def sft(run_dir: str | Path, conversations_jsonl: str | Path, out_dir: str | Path,
        cfg: SFTConfig | None = None) -> Any:
    """Fine-tune the model in ``run_dir`` on ``conversations_jsonl`` into ``out_dir`` (see the module doc)."""
    cfg = dataclasses.replace(cfg or SFTConfig(), model=str(run_dir), data=str(conversations_jsonl), out=str(out_dir))
    return run_sft(cfg)
