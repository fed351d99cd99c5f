"""Chat fine-tuning: the loss mask, packing, a real micro run that learns to answer, exact resume, bad input."""

from __future__ import annotations

import dataclasses
import json
import random
import shutil

import pytest
import torch
from chat_helpers import CONVERSATIONS, make_base_model, make_tokenizer, write_jsonl
from safetensors.torch import load_file

from murmur import config as cfgmod
from murmur.chat.sft import SFTConfig, encode_conversation, sft, sft_task, tokenize_conversations
from murmur.chat.template import ASSISTANT_ID, END_ID, render
from murmur.errors import CheckpointError, ConfigError, InputError
from murmur.generate import generate
from murmur.model import Transformer
from murmur.modeldir import load_model
from murmur.tokenizer import load_tokenizer
from murmur.train import checkpoint as ckpt
from murmur.train.metrics import read_metrics
from murmur.train.packing import make_batch, pack_rows
from murmur.train.task import IGNORE_INDEX, lm_loss
from murmur.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft")
    tok_dir = make_tokenizer(root)
    base = make_base_model(root, tok_dir)
    data = write_jsonl(root / "conversations.jsonl", CONVERSATIONS)
    return root, load_tokenizer(tok_dir), base, data


def micro(**kw) -> SFTConfig:
    base = {"steps": 60, "seed": 0, "dtype": "fp32", "device": "cpu", "log_every": 10, "seq_len": 64, "optim.lr": 3e-3,
            "schedule.warmup": 5, "batch.micro_batch": 2, "eval.val_fraction": 0.0, "eval.every": 0,
            "checkpoint.every": 0}
    base.update(kw)
    return cfgmod.load(SFTConfig, None, [f"{k}={v}" for k, v in base.items()])


def assistant_text(conv) -> str:
    return "".join(m["content"] + "<|end|>" for i, m in enumerate(conv) if m["role"] == "assistant" and i > 0)


# ---------------------------------------------------------------- the loss mask
def test_mask_covers_exactly_the_assistant_tokens(setup):
    _, tok, _, _ = setup
    for conv in CONVERSATIONS:
        ids, trained = encode_conversation(tok, conv)
        assert ids == render(tok, conv, add_generation_prompt=False)
        assert tok.decode([t for t, m in zip(ids, trained, strict=True) if m]) == assistant_text(conv)
        # the role tokens are prompt, never targets; each answer's <|end|> is a target
        assert not any(m for t, m in zip(ids, trained, strict=True) if t == ASSISTANT_ID)
        assert sum(m for t, m in zip(ids, trained, strict=True) if t == END_ID) == \
            sum(msg["role"] == "assistant" for msg in conv)
    # typed "<|end|>" stays text: it is trained as ordinary tokens, not as the end-of-turn id
    ids, trained = encode_conversation(tok, CONVERSATIONS[4])
    assert [t for t, m in zip(ids, trained, strict=True) if m].count(END_ID) == 1
    # an assistant message that opens a conversation is context only
    ids, trained = encode_conversation(tok, [{"role": "assistant", "content": "hi"}, *CONVERSATIONS[0]])
    assert tok.decode([t for t, m in zip(ids, trained, strict=True) if m]) == "I am murmur.<|end|>"


def test_packed_labels_decode_to_the_answers_and_positions_restart(setup):
    _, tok, _, _ = setup
    examples, cut = tokenize_conversations(tok, CONVERSATIONS, 64)
    assert cut == {"cut": 0, "dropped": 0}
    rows = pack_rows([len(e) for e in examples], 64, range(len(examples)))
    batch = make_batch(examples, rows, 64, tok.pad_id)
    for r, row in enumerate(rows):
        labels = batch.labels[r]
        assert tok.decode(labels[labels != IGNORE_INDEX].tolist()) == "".join(assistant_text(CONVERSATIONS[i])
                                                                             for i in row)
        at = 0
        for i in row:  # each conversation sits whole in its row, from position 0
            n = len(examples[i])
            assert batch.tokens[r, at:at + n].tolist() == examples[i].ids.tolist()
            assert batch.positions[r, at:at + n].tolist() == list(range(n))
            assert labels[at + n - 1] == IGNORE_INDEX  # no target across the boundary
            at += n
        assert (batch.tokens[r, at:] == tok.pad_id).all() and (labels[at:] == IGNORE_INDEX).all()


# ---------------------------------------------------------------- packing
def test_packing_keeps_every_conversation_once_and_apart(setup):
    rng = random.Random(0)
    lengths = [rng.randint(1, 50) for _ in range(500)]
    order = list(range(500))
    rng.shuffle(order)
    rows = pack_rows(lengths, 64, order, window=8)
    flat = [i for row in rows for i in row]
    assert sorted(flat) == list(range(500))
    assert all(sum(lengths[i] for i in row) <= 64 for row in rows)
    assert sum(lengths) / (64 * len(rows)) > 0.85  # first fit fills rows well
    with pytest.raises(ValueError):
        pack_rows([65], 64, [0])
    # a packed row computes each conversation exactly as if it were alone (block-diagonal attention)
    _, tok, _, _ = setup
    torch.manual_seed(0)
    model = Transformer(load_model(setup[2])[2]).eval()
    examples, _ = tokenize_conversations(tok, CONVERSATIONS, 64)
    rows = pack_rows([len(e) for e in examples], 64, range(len(examples)))
    assert any(len(r) > 1 for r in rows)
    with torch.no_grad():
        packed = lm_loss(model, make_batch(examples, rows, 64, tok.pad_id))
        total = count = 0.0
        for i in range(len(examples)):
            b = make_batch(examples, [[i]], len(examples[i]), tok.pad_id)
            n = b.n_labels
            total += float(model(b.tokens, b.labels)) * n  # plain causal forward, alone
            count += n
    assert float(packed) == pytest.approx(total / count, abs=1e-5)


# ---------------------------------------------------------------- a real run
def test_run_learns_to_answer_in_the_chat_format(setup, tmp_path):
    root, tok, base, data = setup
    out = tmp_path / "chat"
    result = sft(base, data, out, micro(steps=80, **{"eval.every": 40, "optim.lr": 2e-2}))
    assert result.steps == 80 and not result.interrupted
    assert json.loads((out / "sft.json").read_text())["conversations"] == len(CONVERSATIONS)
    assert result.train_loss < result.first_loss / 4
    records = read_metrics(out / "metrics.jsonl")
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert [r["step"] for r in records if r["kind"] == "train"] == list(range(10, 81, 10))
    assert losses[-1] < losses[0]
    # the resolved config reloads to the same run; the base model is unchanged
    assert cfgmod.load(SFTConfig, out / "config.toml") == dataclasses.replace(
        micro(steps=80, **{"eval.every": 40, "optim.lr": 2e-2}), model=str(base), data=str(data), out=str(out))
    assert json.loads((out / "sft.json").read_text())["base_model"] == str(base)
    # the fine-tuned model loads like any model directory and answers in the chat format
    model, tokenizer, _ = load_model(out)
    for conv in (CONVERSATIONS[0], CONVERSATIONS[2]):
        prompt = render(tokenizer, conv[:1], add_generation_prompt=True)
        answer = generate(model, [prompt], 20, temperature=0, stop_ids=[END_ID])[0]
        assert tokenizer.decode(answer) == conv[1]["content"]
    # multi-turn: the second answer follows the first
    conv = CONVERSATIONS[1]
    prompt = render(tokenizer, conv[:4], add_generation_prompt=True)
    assert tokenizer.decode(generate(model, [prompt], 20, temperature=0, stop_ids=[END_ID])[0]) == conv[4]["content"]


def test_resume_continues_exactly(setup, tmp_path):
    _, _, base, data = setup
    extra = {"steps": 8, "checkpoint.every": 4, "checkpoint.keep_last": 5, "log_every": 4}
    full = tmp_path / "full"
    ref = sft(base, data, full, micro(**extra))
    part = tmp_path / "part"
    (part / "checkpoints").mkdir(parents=True)
    shutil.copytree(ckpt.checkpoint_path(full, 4), ckpt.checkpoint_path(part, 4))
    shutil.copy(full / "metrics.jsonl", part / "metrics.jsonl")  # holds records past step 4
    with pytest.raises(CheckpointError, match="--resume"):
        sft(base, data, part, micro(**extra))
    resumed = sft(base, data, part, micro(resume=True, **extra))
    assert resumed.train_loss == ref.train_loss
    a, b = load_file(str(full / "model.safetensors")), load_file(str(part / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # records after the checkpoint were dropped, not duplicated
    assert [r["step"] for r in read_metrics(part / "metrics.jsonl") if r["kind"] == "train"] == [4, 8]
    # other data than the checkpoint was trained on is refused
    other = write_jsonl(tmp_path / "other.jsonl", CONVERSATIONS[:2])
    with pytest.raises(CheckpointError, match="changed"):
        sft(base, other, part, micro(resume=True, **extra))


def test_epochs_set_the_steps_and_validation_is_held_out(setup, tmp_path):
    _, _, base, data = setup
    many = write_jsonl(tmp_path / "many.jsonl", [
        [{"role": "user", "content": f"post {i}"}, {"role": "assistant", "content": f"pizza {i} #food"}]
        for i in range(60)])
    cfg = dataclasses.replace(micro(epochs=2.0, **{"eval.val_fraction": 0.2}), model=str(base), data=str(many),
                              out=str(tmp_path / "e"))
    trainer = Trainer(cfg, sft_task(cfg))
    task = trainer.task
    assert 0 < len(task.val_examples) < 30 and len(task.train_examples) + len(task.val_examples) == 60
    rows = task.stream.rows_in_epoch(0)
    assert trainer.steps == -(-2 * rows // 2)
    assert task.stream.epochs_at(trainer.steps * 2) == pytest.approx(2.0, abs=0.05)
    # the data order is a function of (seed, step) only
    again = sft_task(cfg)
    assert again.stream.rows(5, 7) == task.stream.rows(5, 7)


# ---------------------------------------------------------------- bad input, configs
def test_bad_inputs_fail_in_one_line_before_compute(setup, tmp_path):
    _, _, base, data = setup
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
                   '{"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}]}\n')
    with pytest.raises(InputError) as e:
        sft(base, bad, tmp_path / "o", micro())
    assert str(e.value) == f"{bad}:2 (field 'messages[1].role'): role must be one of system, user, assistant, tool, " \
                           "not 'robot'"
    with pytest.raises(ConfigError, match="must differ"):
        sft(base, data, base, micro())
    with pytest.raises(ConfigError, match="max_seq_len"):
        sft(base, data, tmp_path / "o", micro(seq_len=65))
    with pytest.raises(CheckpointError, match="not a murmur model directory"):
        sft(tmp_path, data, tmp_path / "o", micro())
    with pytest.raises(ConfigError, match="micro_batch"):
        sft(base, data, tmp_path / "o", micro(**{"batch.micro_batch": 0}))
    with pytest.raises(InputError, match="raise seq_len"):
        sft(base, data, tmp_path / "o", micro(seq_len=8))
    with pytest.raises(ConfigError, match="did you mean"):
        micro(**{"optim.lrr": 1})
    assert not (tmp_path / "o").exists()


def test_shipped_preset_loads():
    cfg = cfgmod.load(SFTConfig, "sft-tiny-cpu")
    assert cfg.out == "runs/sft-tiny-cpu" and cfg.seq_len == 256 and cfg.batch.micro_batch == 8
    assert cfg.batch.tokens_per_step == 8 * 256  # no gradient accumulation on one process


def test_cli_sft_and_knobs(setup, tmp_path):
    from typer.testing import CliRunner

    from murmur.cli import app

    _, _, base, data = setup
    runner = CliRunner()
    res = runner.invoke(app, ["sft", "--knobs"])
    assert res.exit_code == 0 and "batch.micro_batch" in res.output and "eval.val_fraction" in res.output
    out = tmp_path / "cli"
    res = runner.invoke(app, ["sft", "--model", str(base), "--data", str(data), "-o", str(out), "steps=2",
                              "dtype=fp32", "seq_len=64", "eval.val_fraction=0", "log_every=1"])
    assert res.exit_code == 0, res.output
    assert "fine-tuned 2 steps" in res.output and (out / "model.safetensors").is_file()


def test_data_source_contract_any_number_of_processes(setup, tmp_path):
    """What the trainer relies on: the rows of a global batch over all processes are the same whatever
    their number, and the micro-batch weights over all processes add up to 1 (their assistant tokens)."""
    from murmur.train.task import BatchPlan

    _, _, base, data = setup
    cfg = dataclasses.replace(micro(), model=str(base), data=str(data), out=str(tmp_path / "c"))
    task = sft_task(cfg)
    for index in (0, 3, 11):
        one = task.batches(index, BatchPlan(4, 2))
        rows = sorted(r for b in one for r in b.tokens.tolist())
        for dp in (2, 4):
            parts = [task.batches(index, BatchPlan(4, 1, rank, dp)) for rank in range(dp)]
            assert sorted(r for p in parts for b in p for r in b.tokens.tolist()) == rows
            assert sum(b.weight for p in parts for b in p) == pytest.approx(1.0)
            assert all(b.weight == pytest.approx(b.n_labels / sum(x.n_labels for x in one)) for p in parts for b in p)
