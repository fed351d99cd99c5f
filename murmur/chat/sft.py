"""Supervised chat fine-tuning (SFT): teach a pretrained model the chat format on conversations.

One run, top to bottom:

1. load the pretrained model directory (``model.safetensors`` + ``config.json`` + ``tokenizer/``)
   and the conversation JSONL (checked line by line, :mod:`murmur.chat.data`);
2. render each conversation with the one chat renderer (:func:`murmur.chat.template.render`) and
   mark the tokens to learn: each assistant message's content and its ``<|end|>``. The mask is built
   by rendering message by message with the same renderer: the tokens an assistant turn adds after
   the generation prompt ``render(messages[:i], add_generation_prompt=True)`` are exactly the ones
   the model must produce. Labels are ``-100`` (the model's ``ignore_index``) everywhere else;
3. pack several conversations into each row of ``seq_len`` tokens (first fit over a seeded shuffle,
   a new shuffle each epoch). Packed conversations do not see each other: positions restart at 0
   for each conversation, and attention is block-diagonal (:class:`PackedRows`), so a conversation
   trains exactly as it would alone in the row;
4. AdamW and the learning-rate schedule of :mod:`murmur.train.optim`; checkpoints and exact resume
   through :mod:`murmur.train.checkpoint` (the data order is a pure function of seed and step);
   ``metrics.jsonl``; and at the end the consolidated inference model in the output directory, which
   ``murmur generate``, ``murmur serve --model`` and ``murmur export hf`` load.

Loss is averaged over all assistant tokens of an optimizer step (not per row), so long answers
weigh by their length, as in most SFT trainers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from murmur import config as cfgmod
from murmur.chat.data import Conversation, read_conversations
from murmur.chat.template import render
from murmur.config import knob
from murmur.errors import CheckpointError, ConfigError, InputError, MurmurError
from murmur.io import write_json
from murmur.progress import Progress, format_duration, log
from murmur.train import checkpoint as ckpt
from murmur.train.config import CheckpointSection, OptimSection, ScheduleSection
from murmur.train.metrics import MetricsLogger, truncate_metrics
from murmur.train.optim import build_optimizer, lr_at, set_lr

IGNORE_INDEX = -100  # Transformer.forward's default ignore_index
CONFIG_NAME = "config.toml"
METRICS_NAME = "metrics.jsonl"
SUMMARY_NAME = "sft.json"


# ---------------------------------------------------------------- config
@dataclass(frozen=True)
class SFTBatchSection:
    micro_batch: int = knob(8, "Packed rows per forward/backward pass.")
    grad_accum: int = knob(1, "Micro-batches per optimizer step.")


@dataclass(frozen=True)
class SFTEvalSection:
    val_fraction: float = knob(0.05, "Fraction of conversations held out for validation (stable hash of "
                                     "the conversation; 0 = none).")
    every: int = knob(100, "Evaluate validation loss every N steps (0 = only at the end).")
    batches: int = knob(4, "Micro-batches of validation rows per evaluation.")


@dataclass(frozen=True)
class SFTConfig:
    """A chat fine-tuning run; see docs/chat.md."""

    model: str = knob("", "Pretrained model directory (a finished `murmur train` or `murmur sft` run).")
    data: str = knob("", "Conversation JSONL (`murmur sft-data` or your own, OpenAI messages shape).")
    out: str = knob("runs/sft", "Run directory: config, metrics, checkpoints and the fine-tuned model.")
    steps: int = knob(300, "Optimizer steps (ignored when epochs > 0).")
    epochs: float = knob(0.0, "If > 0, train this many passes over the conversations instead of `steps`.")
    seed: int = knob(0, "Seed for the data order.")
    seq_len: int = knob(0, "Tokens per packed row (0 = the model's max_seq_len); longer conversations are cut.")
    pack: bool = knob(True, "Pack several conversations per row (false = one conversation per row, padded).")
    dtype: Literal["auto", "bf16", "fp32"] = knob("auto", "auto (bf16 autocast where fast), bf16 or fp32.")
    device: str = knob("auto", "auto, cpu, cuda or cuda:N.")
    log_every: int = knob(10, "Log a line (and a metrics.jsonl record) every N steps.")
    resume: bool = knob(False, "Continue from the newest complete checkpoint in `out`.")
    optim: OptimSection = knob(OptimSection(lr=1e-4, weight_decay=0.0), "AdamW settings.")
    schedule: ScheduleSection = knob(ScheduleSection(warmup=20), "Learning-rate schedule.")
    batch: SFTBatchSection = knob(SFTBatchSection(), "Batch size and gradient accumulation.")
    eval: SFTEvalSection = knob(SFTEvalSection(), "Validation.")
    checkpoint: CheckpointSection = knob(CheckpointSection(every=100), "Training checkpoints.")


def demo_config(out: str | Path = "runs/sft", model: str | Path = "", data: str | Path = "") -> SFTConfig:
    """The demo's SFT run: the tiny model, 250 steps of 8 rows x 256 tokens (about 2 minutes on 2 CPU cores).

    The same values as ``configs/sft-tiny-cpu.toml`` (a test keeps them equal).
    """
    return SFTConfig(model=str(model), data=str(data), out=str(out), steps=250, seq_len=256, log_every=25,
                     optim=OptimSection(lr=1e-3, weight_decay=0.0), schedule=ScheduleSection(warmup=20),
                     batch=SFTBatchSection(micro_batch=8, grad_accum=1),
                     eval=SFTEvalSection(val_fraction=0.05, every=125, batches=4),
                     checkpoint=CheckpointSection(every=125, keep_last=1))


@dataclass
class SFTResult:
    """What a fine-tuning run achieved."""

    run_dir: Path
    steps: int
    epochs: float
    conversations: int
    train_loss: float | None
    val_loss: float | None
    first_loss: float | None
    assistant_tokens: int
    tokens_per_s: float
    seconds: float
    interrupted: bool = False


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


@dataclass
class Example:
    """One tokenized conversation: ids and the per-token training mask (int32 / bool arrays)."""

    ids: np.ndarray
    trained: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


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


# ---------------------------------------------------------------- packing
def pack_rows(lengths: Sequence[int], capacity: int, order: Sequence[int], window: int = 64) -> list[list[int]]:
    """Group conversation indices (taken in ``order``) into rows of at most ``capacity`` tokens.

    First fit over the ``window`` most recently opened rows: a conversation goes into the first open
    row with room, else opens a new one; when more than ``window`` rows are open the oldest is
    closed. Every index appears in exactly one row, in ``order`` within it.
    """
    done: list[list[int]] = []
    open_rows: list[tuple[list[int], list[int]]] = []  # ([free tokens], indices)
    for i in order:
        n = lengths[i]
        if n > capacity:
            raise ValueError(f"conversation {i} has {n} tokens, more than a row of {capacity}")
        for free, items in open_rows:
            if free[0] >= n:
                free[0] -= n
                items.append(i)
                break
        else:
            open_rows.append(([capacity - n], [i]))
            if len(open_rows) > window:
                done.append(open_rows.pop(0)[1])
    done.extend(items for _, items in open_rows)
    return done


@dataclass
class Batch:
    """Packed rows as tensors, each [rows, seq_len]."""

    tokens: torch.Tensor     # input ids (pad id after the last conversation)
    labels: torch.Tensor     # next token where it is an assistant token of the same conversation, else -100
    positions: torch.Tensor  # position within its conversation (restarts at 0)
    doc: torch.Tensor        # which conversation of the row each token belongs to (padding: its own)

    @property
    def n_labels(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())

    def to(self, device: torch.device) -> Batch:
        return Batch(*(t.to(device, non_blocking=True) for t in (self.tokens, self.labels, self.positions, self.doc)))


def make_batch(examples: Sequence[Example], rows: Sequence[Sequence[int]], seq_len: int, pad_id: int) -> Batch:
    """Lay out ``rows`` (lists of example indices) as a :class:`Batch`."""
    R = len(rows)
    tokens = np.full((R, seq_len), pad_id, dtype=np.int64)
    labels = np.full((R, seq_len), IGNORE_INDEX, dtype=np.int64)
    positions = np.zeros((R, seq_len), dtype=np.int64)
    doc = np.zeros((R, seq_len), dtype=np.int64)
    for r, row in enumerate(rows):
        at = 0
        for d, i in enumerate(row):
            ex = examples[i]
            n = len(ex)
            tokens[r, at:at + n] = ex.ids
            lab = np.where(ex.trained[1:], ex.ids[1:], IGNORE_INDEX)
            labels[r, at:at + n - 1] = lab
            positions[r, at:at + n] = np.arange(n)
            doc[r, at:at + n] = d
            at += n
        positions[r, at:] = np.arange(seq_len - at)
        doc[r, at:] = len(row)
    return Batch(*(torch.from_numpy(a) for a in (tokens, labels, positions, doc)))


class PackedRows:
    """Keeps the conversations of a packed row apart inside :class:`murmur.model.Transformer`.

    The model's attention asks its ``cache`` argument for ``update(layer, k, v, positions, rows)``
    -> (keys, values, boolean mask); a KV cache stores the keys there, this one stores nothing and
    returns the row's block-diagonal causal mask: a token attends to earlier tokens of its own
    conversation only. Together with positions that restart at 0, every conversation in a row is
    computed exactly as if it were alone.
    """

    def __init__(self, doc: torch.Tensor):
        T = doc.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool, device=doc.device).tril()
        self.mask = ((doc[:, :, None] == doc[:, None, :]) & causal)[:, None]  # [B, 1, T, T]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor,
               rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return k, v, self.mask


def packed_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Mean cross-entropy over the batch's assistant tokens (conversations kept apart)."""
    return model(batch.tokens, batch.labels, positions=batch.positions, cache=PackedRows(batch.doc),
                 ignore_index=IGNORE_INDEX)


class PackedStream:
    """The training rows of every epoch, in order; the rows of step ``s`` depend only on (seed, s).

    Epoch ``e`` shuffles the conversations with a generator seeded by ``(seed, e)`` and packs them;
    the stream is the concatenation of the epochs. Only row counts of past epochs are kept.
    """

    def __init__(self, examples: Sequence[Example], seq_len: int, seed: int, pack: bool = True):
        self.examples, self.seq_len, self.seed, self.pack = examples, seq_len, seed, pack
        self.lengths = [len(e) for e in examples]
        self._counts: list[int] = []
        self._cache: dict[int, list[list[int]]] = {}

    def epoch_rows(self, epoch: int) -> list[list[int]]:
        if epoch not in self._cache:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.examples)).tolist()
            rows = pack_rows(self.lengths, self.seq_len, order) if self.pack else [[i] for i in order]
            if len(self._cache) >= 2:
                self._cache.pop(min(self._cache))
            self._cache[epoch] = rows
        return self._cache[epoch]

    def rows_in_epoch(self, epoch: int) -> int:
        while len(self._counts) <= epoch:
            self._counts.append(len(self.epoch_rows(len(self._counts))))
        return self._counts[epoch]

    def locate(self, row: int) -> tuple[int, int]:
        """(epoch, index within it) of global row ``row``."""
        epoch = 0
        while row >= self.rows_in_epoch(epoch):
            row -= self.rows_in_epoch(epoch)
            epoch += 1
        return epoch, row

    def rows(self, start: int, count: int) -> list[list[int]]:
        out = []
        epoch, i = self.locate(start)
        while len(out) < count:
            rows = self.epoch_rows(epoch)
            take = rows[i: i + count - len(out)]
            out.extend(take)
            epoch, i = epoch + 1, 0
        return out

    def epochs_at(self, rows_done: int) -> float:
        """How many passes over the data ``rows_done`` rows make (fractional)."""
        epoch, i = self.locate(rows_done)
        return epoch + i / max(self.rows_in_epoch(epoch), 1)

    def batch(self, rows: Sequence[Sequence[int]], pad_id: int) -> Batch:
        return make_batch(self.examples, rows, self.seq_len, pad_id)


def is_val(conversation: Conversation, fraction: float) -> bool:
    """Stable validation split: a hash of the conversation's content, independent of file order."""
    if fraction <= 0:
        return False
    digest = hashlib.sha256(json.dumps(conversation, ensure_ascii=False, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- the run
class SFTTrainer:
    """A fine-tuning run. Construction checks everything (config, model, data); :meth:`run` trains."""

    def __init__(self, cfg: SFTConfig):
        from murmur.modeldir import TOKENIZER_DIR, load_model
        from murmur.runtime import resolve_device, resolve_dtype

        self.cfg = cfg
        self._check_numbers()
        if not cfg.model:
            raise ConfigError("model is not set (the directory of a finished `murmur train` run)")
        if not cfg.data:
            raise ConfigError("data is not set (a conversation JSONL, e.g. from `murmur sft-data`)")
        self.base = Path(cfg.model)
        self.out = Path(cfg.out)
        if self.out.resolve() == self.base.resolve():
            raise ConfigError(f"out ({self.out}) must differ from the model directory it starts from")
        conversations = read_conversations(cfg.data)  # checked before the (possibly large) model loads
        self.data_sha256 = file_sha256(cfg.data)
        self.device = resolve_device(cfg.device)
        self.dtype = resolve_dtype(cfg.dtype, self.device)
        self.model, self.tokenizer, self.model_cfg = load_model(self.base, device=self.device)
        self.tokenizer_dir = self.base / TOKENIZER_DIR
        self.seq_len = cfg.seq_len or self.model_cfg.max_seq_len
        if self.seq_len > self.model_cfg.max_seq_len:
            raise ConfigError(f"seq_len ({self.seq_len}) is longer than the model's max_seq_len "
                              f"({self.model_cfg.max_seq_len})")
        if self.seq_len < 8:
            raise ConfigError(f"seq_len must be at least 8 (got {self.seq_len})")
        train_convs = [c for c in conversations if not is_val(c, cfg.eval.val_fraction)]
        val_convs = [c for c in conversations if is_val(c, cfg.eval.val_fraction)]
        if not train_convs:
            train_convs, val_convs = conversations, []
        self.train_examples, self.cut = tokenize_conversations(self.tokenizer, train_convs, self.seq_len)
        if not self.train_examples:
            raise InputError("no conversation has an assistant token left within seq_len "
                             f"({self.seq_len}); raise seq_len", cfg.data)
        self.val_examples, _ = tokenize_conversations(self.tokenizer, val_convs, self.seq_len) if val_convs \
            else ([], {})
        self.stream = PackedStream(self.train_examples, self.seq_len, cfg.seed, cfg.pack)
        self.global_batch = cfg.batch.micro_batch * cfg.batch.grad_accum
        self.steps = cfg.steps
        if cfg.epochs > 0:
            self.steps = max(1, math.ceil(cfg.epochs * self.stream.rows_in_epoch(0) / self.global_batch))
        self.val_batches = self._val_batches()
        self.resume_from = self._find_resume()

    def _check_numbers(self) -> None:
        c = self.cfg
        cfgmod.require_at_least(1, [("steps", c.steps), ("batch.micro_batch", c.batch.micro_batch),
                             ("batch.grad_accum", c.batch.grad_accum), ("log_every", c.log_every)])
        cfgmod.require_at_least(0, [("eval.every", c.eval.every), ("checkpoint.every", c.checkpoint.every),
                             ("schedule.warmup", c.schedule.warmup), ("seq_len", c.seq_len), ("epochs", c.epochs),
                             ("eval.batches", c.eval.batches)])
        if not 0 <= c.eval.val_fraction < 1:
            raise ConfigError(f"eval.val_fraction must be in [0, 1) (got {c.eval.val_fraction})")
        if c.optim.lr <= 0:
            raise ConfigError(f"optim.lr must be positive (got {c.optim.lr})")
        if len(c.optim.betas) != 2:
            raise ConfigError(f"optim.betas needs two numbers (got {c.optim.betas})")

    def _val_batches(self) -> list[Batch]:
        if not self.val_examples or self.cfg.eval.batches == 0:
            return []
        lengths = [len(e) for e in self.val_examples]
        order = range(len(self.val_examples))
        rows = pack_rows(lengths, self.seq_len, order) if self.cfg.pack else [[i] for i in order]
        mb = self.cfg.batch.micro_batch
        rows = rows[: mb * self.cfg.eval.batches]
        return [make_batch(self.val_examples, rows[i:i + mb], self.seq_len, self.tokenizer.pad_id)
                for i in range(0, len(rows), mb)]

    def _find_resume(self) -> Path | None:
        latest, state = ckpt.find_resume(self.out, self.cfg.resume, self.model_cfg, f"from {self.base}", log)
        if state.get("data_sha256") not in (None, self.data_sha256):
            raise CheckpointError(f"{latest}: the conversation file {self.cfg.data} changed since this checkpoint; "
                                  "resume with the same data or start a new out directory")
        return latest

    # -- setup
    def _setup(self) -> None:
        self.model.train()
        self.optimizer = build_optimizer(self.model, self.cfg.optim, self.device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.step, self.tokens_seen, self._last_saved = 0, 0, -1
        if self.resume_from is not None:
            state = ckpt.load_checkpoint(self.resume_from, self.model, self.optimizer, self.model_cfg)
            self.step = int(state["step"])
            self.tokens_seen = int(state.get("tokens", 0))
            self._last_saved = self.step
            ckpt.set_rng_state(state["rng"])
        self.start_step = self.step
        self.out.mkdir(parents=True, exist_ok=True)
        resolved = dataclasses.replace(self.cfg, steps=self.steps, epochs=0.0)
        cfgmod.dump_toml(resolved, self.out / CONFIG_NAME)
        if self.resume_from is None:
            (self.out / METRICS_NAME).unlink(missing_ok=True)
        else:
            truncate_metrics(self.out / METRICS_NAME, self.step)
        self.metrics = MetricsLogger(self.out / METRICS_NAME)

    def _describe(self) -> None:
        m = self.model_cfg
        rows = self.stream.rows_in_epoch(0)
        tokens = sum(len(e) for e in self.train_examples)
        fill = tokens / max(rows * self.seq_len, 1)
        start = f"resuming from {self.resume_from} (step {self.step})" if self.resume_from else f"from {self.base}"
        cut = f"; {self.cut['cut']} cut to seq_len, {self.cut['dropped']} dropped" if self.cut["cut"] else ""
        log(f"sft: {start}; {len(self.train_examples):,} train / {len(self.val_examples):,} val conversations"
            f"{cut}; {rows:,} rows of {self.seq_len} per epoch ({fill:.0%} filled); {self.steps} steps x "
            f"{self.global_batch} rows (~{self.steps * self.global_batch / max(rows, 1):.1f} epochs); "
            f"model dim {m.dim}, {m.n_layers} layers; {self.device} {str(self.dtype).removeprefix('torch.')}; "
            f"out {self.out}")

    # -- one step
    def train_step(self, step: int) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        """One optimizer step; returns (mean loss over its assistant tokens, grad norm, those tokens, real tokens).

        The loss and norm stay tensors on the device (no synchronisation until a log line needs them)."""
        from murmur.runtime import autocast

        cfg = self.cfg
        set_lr(self.optimizer, lr_at(step, self.steps, cfg.optim.lr, cfg.schedule))
        rows = self.stream.rows(step * self.global_batch, self.global_batch)
        mb = cfg.batch.micro_batch
        batches = [self.stream.batch(rows[i:i + mb], self.tokenizer.pad_id) for i in range(0, len(rows), mb)]
        total = sum(b.n_labels for b in batches)
        real = sum(len(self.train_examples[i]) for row in rows for i in row)
        loss_sum = torch.zeros((), device=self.device)
        for b in batches:
            n = b.n_labels
            if n == 0:
                continue
            b = b.to(self.device)
            with autocast(self.device, self.dtype):
                loss = packed_loss(self.model, b)
            (loss * (n / total)).backward()
            loss_sum += loss.detach() * (n / total)
        max_norm = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf
        grad_norm = nn.utils.clip_grad_norm_(self.params, max_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_sum, grad_norm, total, real

    @torch.no_grad()
    def evaluate(self) -> float | None:
        """Mean loss over the validation rows' assistant tokens (None without validation data)."""
        from murmur.runtime import autocast

        if not self.val_batches:
            return None
        self.model.eval()
        loss_sum, count = 0.0, 0
        for b in self.val_batches:
            n = b.n_labels
            if n == 0:
                continue
            with autocast(self.device, self.dtype):
                loss = packed_loss(self.model, b.to(self.device))
            loss_sum += float(loss) * n
            count += n
        self.model.train()
        return loss_sum / max(count, 1)

    def _save(self, step: int) -> None:
        state = {"tokens": self.tokens_seen, "rng": ckpt.rng_state(),
                 "model_config": dataclasses.asdict(self.model_cfg), "data_sha256": self.data_sha256,
                 "scheduler": {"kind": self.cfg.schedule.kind, "lr": self.optimizer.param_groups[0]["lr"],
                               "total_steps": self.steps},
                 "sampler": {"seed": self.cfg.seed, "step": step, "global_batch": self.global_batch},
                 "config": cfgmod.to_dict(self.cfg)}
        self._last_saved = step
        path = ckpt.save_checkpoint(self.out, step, self.model, self.optimizer, state, self.cfg.checkpoint.keep_last)
        log(f"checkpoint {path}")

    def _eval(self, step: int) -> float | None:
        val = self.evaluate()
        if val is not None:
            log(f"eval step {step} | val loss {val:.4f}")
            self.metrics.write({"kind": "eval", "step": step, "val_loss": val})
        return val

    def run(self) -> SFTResult:
        from murmur.runtime import StopOnSignal

        cfg = self.cfg
        self._setup()
        self._describe()
        start = time.perf_counter()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)  # since the last log line
        n_labels, n_tokens, seconds = 0, 0, 0.0
        train_time, train_tokens = 0.0, 0
        first = last = val = None
        interrupted = False
        with StopOnSignal() as stop:
            while self.step < self.steps:
                t0 = time.perf_counter()
                loss, grad_norm, labels, tokens = self.train_step(self.step)
                self.step += 1
                self.tokens_seen += labels
                loss_sum += loss * labels
                n_labels += labels
                n_tokens += tokens
                if self.step % cfg.log_every == 0 or self.step == self.steps or stop.requested:
                    if self.device.type == "cuda":
                        torch.cuda.synchronize(self.device)
                    seconds += time.perf_counter() - t0
                    last = float(loss_sum) / max(n_labels, 1)
                    if not math.isfinite(last):
                        raise MurmurError(f"fine-tuning diverged: loss is {last} at step {self.step}; "
                                          "lower optim.lr or raise schedule.warmup")
                    first = last if first is None else first
                    tok_s = n_tokens / max(seconds, 1e-9)
                    train_time += seconds
                    train_tokens += n_tokens
                    lr = self.optimizer.param_groups[0]["lr"]
                    epoch = self.stream.epochs_at(self.step * self.global_batch)
                    eta = (self.steps - self.step) * train_time / max(self.step - self.start_step, 1)
                    log(f"step {self.step}/{self.steps} | loss {last:.4f} | lr {lr:.2e} | grad {float(grad_norm):.3f}"
                        f" | epoch {epoch:.2f} | {tok_s:,.0f} tok/s | ETA {format_duration(eta)}")
                    self.metrics.write({"kind": "train", "step": self.step, "loss": last, "lr": lr,
                                        "grad_norm": float(grad_norm), "tokens_per_s": tok_s, "epoch": epoch,
                                        "assistant_tokens": self.tokens_seen})
                    loss_sum.zero_()
                    n_labels, n_tokens, seconds = 0, 0, 0.0
                else:
                    seconds += time.perf_counter() - t0
                if stop.requested:
                    self._save(self.step)
                    interrupted = True
                    log(f"stopped at step {self.step} ({stop.requested}); continue with --resume")
                    break
                if self.step < self.steps:
                    if cfg.eval.every and self.step % cfg.eval.every == 0:
                        val = self._eval(self.step)
                    if cfg.checkpoint.every and self.step % cfg.checkpoint.every == 0:
                        self._save(self.step)
            if not interrupted:
                val = self._eval(self.step)
                if self._last_saved != self.step:
                    self._save(self.step)
        result = SFTResult(self.out, self.step, self.stream.epochs_at(self.step * self.global_batch),
                           len(self.train_examples), last, val, first, self.tokens_seen,
                           train_tokens / max(train_time, 1e-9), time.perf_counter() - start, interrupted)
        if not interrupted:
            summary = {"base_model": str(self.base), "data": str(cfg.data), "data_sha256": self.data_sha256,
                       **{k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(result).items()}}
            write_json(self.out / SUMMARY_NAME, summary)
            ckpt.save_inference_model(self.out, self.model, self.model_cfg, self.tokenizer_dir)
            log(f"chat model written to {self.out} (murmur serve --model {self.out})")
        self.metrics.close()
        return result


def sft(run_dir: str | Path, conversations_jsonl: str | Path, out_dir: str | Path,
        cfg: SFTConfig | None = None) -> SFTResult:
    """Fine-tune the model in ``run_dir`` on ``conversations_jsonl`` into ``out_dir`` (see the module doc)."""
    cfg = dataclasses.replace(cfg or SFTConfig(), model=str(run_dir), data=str(conversations_jsonl), out=str(out_dir))
    return SFTTrainer(cfg).run()
