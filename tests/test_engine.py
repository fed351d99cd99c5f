"""The engine: batched = one-at-a-time greedy, stop strings, UTF-8 streaming, cancellation, sampling."""

from __future__ import annotations

import asyncio
import time

import pytest
import torch
from serve_helpers import make_tokenizer, micro_model, scripted_model

from murmur.engine.detokenize import Detokenizer, StopMatcher, token_bytes_table
from murmur.engine.engine import ContextLengthError, Engine, QueueFullError
from murmur.engine.sampling import SamplingParams, apply_penalties, draw, filter_logits, nucleus
from murmur.errors import InputError


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return make_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def model(tok):
    return micro_model(tok.vocab_size)


def greedy(**kw) -> SamplingParams:
    return SamplingParams(temperature=0.0, **kw)


def reference_greedy(model, prompt: list[int], n: int) -> list[int]:
    """Greedy decoding without any cache: the whole sequence re-run for every token."""
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
    return seq[len(prompt):]


def test_batched_decoding_matches_one_at_a_time(tok, model):
    texts = ["hello", "the quick brown fox jumps over the lazy dog " * 3, "a", "posts about cats and dogs",
             "numbers 123 456 and punctuation! " * 2, "coffee"]
    prompts = [[tok.doc_id, *tok.encode(t)] for t in texts]
    lengths = [9, 14, 20, 5, 11, 16]
    want = [reference_greedy(model, p, n) for p, n in zip(prompts, lengths, strict=True)]
    # Three rows for six requests (rows are reused), prompts read four tokens at a time (chunked,
    # padded prefill), and requests joining while others are halfway through their output.
    with Engine(model, tok, max_batch=3, prefill_chunk=4, prefill_budget=8) as engine:
        first = [engine.submit(p, greedy(max_tokens=n, ignore_eos=True)) for p, n in zip(prompts[:2], lengths[:2],
                                                                                          strict=True)]
        events = first[0].events(timeout=20)
        for _ in range(3):
            next(events)
        rest = [engine.submit(p, greedy(max_tokens=n, ignore_eos=True)) for p, n in zip(prompts[2:], lengths[2:],
                                                                                         strict=True)]
        got = [r.result(timeout=20).token_ids for r in first[1:] + rest]
        got.insert(0, want[0][:3] + [t for e in events for t in e.token_ids])
        assert engine.running == 0 and engine.n_decoding == 0
    assert got == want


def test_a_long_prompt_does_not_hold_up_a_short_one(tok, model):
    long_prompt = [tok.doc_id, *tok.encode("the quick brown fox jumps over the lazy dog " * 12)][:120]
    with Engine(model, tok, max_batch=4, prefill_chunk=8, prefill_budget=16) as engine:
        long = engine.submit(long_prompt, greedy(max_tokens=2, ignore_eos=True))  # 15 chunks to read
        short = engine.submit([tok.doc_id, *tok.encode("hello")], greedy(max_tokens=2, ignore_eos=True))
        short.result(timeout=20)
        long.result(timeout=20)
    assert short.first_token_at < long.first_token_at


def test_engine_output_is_what_the_tokenizer_decodes(tok, model):
    with Engine(model, tok, max_batch=2) as engine:
        req = engine.submit([tok.doc_id, *tok.encode("hello world")], greedy(max_tokens=30, ignore_eos=True))
        events = list(req.events(timeout=20))
    ids = [t for e in events for t in e.token_ids]
    assert "".join(e.text for e in events) == tok.decode(ids, skip_special=True)
    assert events[-1].finish_reason == "length" and events[-1].completion_tokens == 30 == len(ids)


def test_stop_strings_and_stop_tokens(tok):
    cycle = [tok.token_to_id(c) for c in "abcdefg"]
    model = scripted_model(tok.vocab_size, cycle)
    prompt = [tok.doc_id, cycle[0]]  # the model continues "bcdefgabcdefg..."
    with Engine(model, tok, max_batch=4) as engine:
        req = engine.submit(prompt, greedy(max_tokens=50, stop=["zz", "efg"]))
        events = list(req.events(timeout=20))
        assert "".join(e.text for e in events) == "bcd"
        assert all("e" not in e.text for e in events) and events[-1].finish_reason == "stop"
        # Stop strings spanning several tokens, across the end of the cycle.
        assert engine.generate(prompt, greedy(max_tokens=50, stop=["ga"])).text == "bcdef"
        assert engine.generate(prompt, greedy(max_tokens=50, stop=["fgabcdefgab"])).text == "bcde"
        assert engine.generate(prompt, greedy(max_tokens=9, stop=["gx"])).text == "bcdefgabc"
        assert engine.generate(prompt, greedy(max_tokens=9, stop=["gx"])).finish_reason == "length"
        # Stop token ids end the text without appearing in it.
        out = engine.generate(prompt, greedy(max_tokens=50, stop_token_ids=[cycle[3]]))
        assert out.text == "bc" and out.finish_reason == "stop" and out.token_ids[-1] == cycle[3]


def test_utf8_is_never_split_when_streaming(tok):
    text = "😀你é"
    ids = tok.encode(text)
    assert len(ids) == len(text.encode()) and len(set(ids)) == len(ids)  # one token per byte, all different
    naive = [tok.decode([i]) for i in ids]
    assert "\ufffd" in "".join(naive)  # decoding token by token would stream broken characters
    model = scripted_model(tok.vocab_size, ids)
    with Engine(model, tok, max_batch=2) as engine:
        req = engine.submit([tok.doc_id, ids[-1]], greedy(max_tokens=3 * len(ids), ignore_eos=True))
        chunks = [e.text for e in req.events(timeout=20)]
    assert "".join(chunks) == text * 3
    assert [c for c in chunks if c] == list(text * 3)


def test_detokenizer_and_stop_matcher_units(tok):
    table = token_bytes_table(tok)
    assert table is not None and table[tok.doc_id] == b"" and table[tok.encode("a")[0]] == b"a"
    text = "日本語 and emoji 🎉🎉, ok"
    ids = tok.encode(text)
    for tbl in (table, None):  # byte-table path and the generic decode-everything path
        d = Detokenizer(tok, tbl, set(tok.special_ids.values()))
        pieces = [d.push(i) for i in ids] + [d.flush()]
        assert "".join(pieces) == text and "\ufffd" not in "".join(pieces)
    m = StopMatcher(["STOP", "xyz"])
    out = [m.feed(p) for p in ["abc S", "TO", "x", "yz and more"]]
    assert out == [("abc ", False), ("", False), ("STO", False), ("", True)]
    assert m.text == "abc STO"


def test_cancellation_frees_the_row(tok, model):
    prompt = [tok.doc_id, *tok.encode("hello")]
    with Engine(model, tok, max_batch=1, max_queue=4) as engine:
        req = engine.submit(prompt, greedy(max_tokens=100, ignore_eos=True))
        waiting = engine.submit(prompt, greedy(max_tokens=3, ignore_eos=True))
        for i, _ in enumerate(req.events(timeout=20)):
            if i == 2:
                break  # leaving the iterator early cancels the request
        assert waiting.result(timeout=20).completion_tokens == 3  # the row was handed on
        assert req.finish_reason == "cancelled" and len(req.output) < 100

        async def read_two_then_leave():
            r = engine.submit(prompt, greedy(max_tokens=100, ignore_eos=True))
            n = 0
            async for _ in r.aevents():
                n += 1
                if n == 2:
                    break
            return r

        r = asyncio.run(read_two_then_leave())
        deadline = time.time() + 10
        while engine.running and time.time() < deadline:
            time.sleep(0.01)
        assert engine.running == 0 and r.finish_reason == "cancelled"
        assert engine.stats.requests_finished["cancelled"] == 2


def test_seeded_sampling_is_reproducible_in_any_batch(tok, model):
    prompt = [tok.doc_id, *tok.encode("the weather")]
    params = dict(temperature=1.0, top_p=0.95, top_k=50, max_tokens=12, ignore_eos=True)
    with Engine(model, tok, max_batch=4) as engine:
        alone = engine.generate(prompt, SamplingParams(seed=7, **params)).token_ids
        crowd = [engine.submit(prompt, SamplingParams(seed=s, **params)) for s in (1, 7, 2, 3)]
        results = [r.result(timeout=20).token_ids for r in crowd]
    assert results[1] == alone
    assert len({tuple(r) for r in results}) > 1


def test_logprobs_are_the_models_own_under_any_sampling_settings(tok, model):
    """Each generated token's log-probability is the one a plain forward pass gives it, whatever the
    temperature, top-p and penalties that chose it."""
    prompt = [tok.doc_id, *tok.encode("the weather today")]
    params = SamplingParams(temperature=1.3, top_p=0.9, top_k=40, presence_penalty=0.5, max_tokens=10, seed=3,
                            ignore_eos=True)
    with Engine(model, tok, max_batch=2, prefill_chunk=4) as engine:
        done = engine.generate(prompt, params)
    ids = torch.tensor([prompt + done.token_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids[:, :-1])[0, len(prompt) - 1:].float(), dim=-1)
    want = logp.gather(1, ids[0, len(prompt):, None]).squeeze(1)
    assert len(done.logprobs) == len(done.token_ids) == 10
    assert torch.allclose(torch.tensor(done.logprobs), want, atol=1e-4)
    assert done.mean_logprob == pytest.approx(float(want.mean()), abs=1e-4)


def test_penalties_change_the_distribution_as_documented():
    logits = torch.tensor([[2.0, -1.0, 0.5, 0.0]])
    counts = torch.tensor([[3.0, 1.0, 0.0, 0.0]])
    seen = torch.tensor([[True, True, False, True]])
    one, zero = torch.ones(1), torch.zeros(1)
    # OpenAI: logit - frequency * count - presence * (count > 0), over generated tokens
    out = apply_penalties(logits, counts, seen, torch.tensor([0.5]), torch.tensor([0.25]), one)
    torch.testing.assert_close(out, torch.tensor([[2.0 - 1.5 - 0.25, -1.0 - 0.5 - 0.25, 0.5, 0.0]]))
    # repetition (HF): seen positive logits divided, negative multiplied; unseen untouched
    out = apply_penalties(logits, counts, seen, zero, zero, torch.tensor([2.0]))
    torch.testing.assert_close(out, torch.tensor([[1.0, -2.0, 0.5, 0.0]]))


def test_top_k_top_p_min_p_and_draw():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(4, 1)
    out = filter_logits(logits, torch.tensor([2, 0, 0, -1]), torch.tensor([1.0, 0.7, 1.0, 1.0]),
                        torch.tensor([0.0, 0.0, 0.25, 0.0]))
    kept = torch.isfinite(out)
    assert kept.tolist() == [[True, True, False, False], [True, True, False, False],
                             [True, True, True, False], [True, True, True, True]]
    # the bucketed nucleus is the sorted-cumsum definition, without the sort
    gen = torch.Generator().manual_seed(0)
    for scale in (0.1, 1.0, 4.0):
        probs = (torch.randn(16, 3000, generator=gen) * scale).softmax(-1)
        top_p = torch.rand(16, generator=gen) * 0.98 + 0.01
        s, order = probs.sort(-1, descending=True)
        want = torch.empty_like(s, dtype=torch.bool).scatter_(-1, order, (s.cumsum(-1) - s) < top_p[:, None])
        assert (nucleus(probs, top_p) != want).sum() <= 2  # at most a float-rounding tie at the boundary
    probs = torch.tensor([[0.5, 0.3, 0.2, 0.0]]).repeat(20000, 1)
    gen = torch.Generator().manual_seed(0)
    freq = torch.bincount(draw(probs, [None] * 20000, gen), minlength=4) / 20000
    torch.testing.assert_close(freq, probs[0], atol=0.015, rtol=0)


def test_presence_penalty_changes_engine_output(tok, model):
    prompt = [tok.doc_id, *tok.encode("cats cats cats")]
    with Engine(model, tok) as engine:
        plain = engine.generate(prompt, greedy(max_tokens=40, ignore_eos=True)).token_ids
        penalised = engine.generate(prompt, greedy(max_tokens=40, ignore_eos=True, presence_penalty=2.0,
                                                   repetition_penalty=1.5)).token_ids
    assert plain != penalised
    assert len(set(penalised)) > len(set(plain))


def test_logit_bias_bans_and_forces_tokens_per_request(tok, model):
    prompt = [tok.doc_id, *tok.encode("cats and dogs")]
    with Engine(model, tok, max_batch=4) as engine:
        plain = engine.generate(prompt, greedy(max_tokens=12, ignore_eos=True)).token_ids
        banned = {t: float("-inf") for t in set(plain)}
        forced = plain[0] + 1
        reqs = [engine.submit(prompt, greedy(max_tokens=12, ignore_eos=True, logit_bias=b))
                for b in (banned, {forced: 100.0}, None, {plain[0]: -100.0})]
        outs = [r.result().token_ids for r in reqs]
    assert outs[0] and not set(outs[0]) & set(plain)       # every banned token stays out
    assert outs[1] == [forced] * 12                         # +100 wins every step
    assert outs[2] == plain                                 # a request without bias is untouched by its batch
    assert outs[3][0] != plain[0]
    with Engine(model, tok) as engine:
        with pytest.raises(InputError, match="token ids") as e:
            engine.submit(prompt, greedy(logit_bias={tok.vocab_size: 5.0}))
        assert e.value.field == "logit_bias"
        with pytest.raises(InputError, match="between -100 and 100") as e:
            engine.submit(prompt, greedy(logit_bias={3: float("nan")}))
        assert e.value.field == "logit_bias"


def test_context_limit_and_bad_requests(tok, model):
    with Engine(model, tok, max_batch=1, max_queue=1) as engine:
        limit = engine.max_len
        with pytest.raises(ContextLengthError, match="maximum context length is 128"):
            engine.submit([5] * limit)
        with pytest.raises(ContextLengthError, match="lower max_tokens"):
            engine.submit([5] * 100, greedy(max_tokens=29))
        done = engine.generate([tok.doc_id] * 100, greedy(ignore_eos=True))  # no max_tokens: up to the limit
        assert done.finish_reason == "length" and done.completion_tokens == limit - 100
        with pytest.raises(InputError, match="temperature"):
            engine.submit([1, 2], SamplingParams(temperature=3.0))
        with pytest.raises(InputError, match="token ids"):
            engine.submit([tok.vocab_size + 5])
        long = [engine.submit([tok.doc_id], greedy(max_tokens=100, ignore_eos=True)) for _ in range(2)]
        with pytest.raises(QueueFullError):
            engine.submit([tok.doc_id], greedy(max_tokens=5))
        for r in long:
            r.cancel()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_engine_on_cuda_matches_the_uncached_model_and_runs_bf16(tok, model):
    """On a GPU: batched, cached greedy decoding (fp32) equals re-running the model; seeded sampling
    reproduces; bf16 weights generate with the same code path."""
    import copy

    device = torch.device("cuda")
    gpu = copy.deepcopy(model).to(device)
    prompts = [[tok.doc_id, *tok.encode(t)] for t in ("hello", "the quick brown fox", "a", "coffee in the city")]
    want = []
    with torch.no_grad():
        for p in prompts:
            seq = list(p)
            for _ in range(12):
                seq.append(int(gpu(torch.tensor([seq], device=device))[0, -1].argmax()))
            want.append(seq[len(p):])
    with Engine(gpu, tok, max_batch=3, prefill_chunk=4) as engine:
        got = [r.result(timeout=60).token_ids for r in
               [engine.submit(p, greedy(max_tokens=12, ignore_eos=True)) for p in prompts]]
        seeded = SamplingParams(temperature=1.0, top_p=0.9, seed=5, max_tokens=12, ignore_eos=True)
        assert engine.generate(prompts[1], seeded).token_ids == engine.generate(prompts[1], seeded).token_ids
    assert got == want
    with Engine(copy.deepcopy(model).to(device, torch.bfloat16), tok, max_batch=2) as engine:
        out = engine.generate(prompts[0], SamplingParams(temperature=0.7, max_tokens=16, ignore_eos=True))
    assert out.completion_tokens == 16
