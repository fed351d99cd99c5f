"""Serving throughput: murmur's engine vs transformers' ``generate``, same weights, same requests.

A random-init ``preset("20m")`` model (fp32, CPU; ``--device cuda --preset 124m --dtype bf16`` on a GPU) serves a closed-loop workload: ``C`` clients
(1, 8, 32) each send ``--rounds`` requests one after another; prompts are 16-128 tokens and each
request asks for 32-192 new tokens (seeded, so every system gets the same list; end-of-text is
ignored so lengths are exact). Sampling: temperature 0.8, top_p 0.95.

* **murmur engine**: ``Engine.submit`` from C threads (continuous batching, max_batch = 32).
* **HF generate**: ``LlamaForCausalLM`` with the same weights; the C requests of a round form one
  static batch, padded on the left, generated to the batch's largest ``max_tokens`` (what a server
  built on ``generate`` must do); a request's useful tokens are its own ``max_tokens``.
* **murmur HTTP**: ``murmur serve`` in a subprocess, called by C threads with the official
  ``openai`` client, streaming.

Reported: useful generated tokens per second, time to first token (p50/p90), and a probe: the TTFT
of a short request sent while 31 others are generating long replies, for two lengths of those
replies (it should not depend on them).

    python benchmarks/serve_throughput.py                # the full run
    python benchmarks/serve_throughput.py --quick        # fewer rounds, no HTTP
    python benchmarks/serve_throughput.py --write-docs   # also write the section of docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `import murmur` does; torch loads first here

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from report import write_section  # noqa: E402

from murmur.engine.engine import Engine  # noqa: E402
from murmur.engine.sampling import SamplingParams  # noqa: E402
from murmur.export import to_transformers  # noqa: E402
from murmur.model import ModelConfig, Transformer, preset  # noqa: E402
from murmur.progress import log  # noqa: E402

TEMPERATURE, TOP_P = 0.8, 0.95
WORDS = ("the a social network post reply thread coffee weather city music game news today people love new "
         "time good day great city rain sun morning night friends team win match goal launch update").split()


@dataclass
class Result:
    system: str
    concurrency: int
    tokens: int
    seconds: float
    ttft: list[float] = field(default_factory=list)
    vs_hf: float | None = None  # median over repeats of (this tok/s) / (HF tok/s in the same repeat)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    def pct(self, q: float) -> float:
        if not self.ttft:
            return float("nan")
        xs = sorted(self.ttft)
        return xs[min(len(xs) - 1, int(q * len(xs)))]


def median_run(runs: list[Result], vs_hf: float | None) -> Result:
    """The run with the median throughput (TTFTs from every run), tagged with the ratio to HF."""
    mid = sorted(runs, key=lambda r: r.tokens_per_s)[(len(runs) - 1) // 2]
    return Result(mid.system, mid.concurrency, mid.tokens, mid.seconds, [t for r in runs for t in r.ttft], vs_hf)


# ---------------------------------------------------------------- setup
def build_tokenizer(out: Path, vocab_size: int):
    """A byte-level BPE with the model's vocabulary size, trained in seconds on pseudo-words, so every
    id the random model samples is a real token with text (as with a trained model)."""
    from tokenizers import pre_tokenizers, trainers

    from murmur.tokenizer import new_tokenizer, save_tokenizer, special_added_tokens

    rng = random.Random(0)
    syllables = [a + b for a in "bcdfghklmnprstvwz" for b in "aeiou"] + ["th", "ch", "st", "er", "on", "an"]
    lexicon = WORDS + ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(12000)]
    corpus = [" ".join(rng.choice(lexicon) for _ in range(60)) for _ in range(6000)]
    inner = new_tokenizer()
    inner.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=special_added_tokens(), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return save_tokenizer(inner, out)


def hf_model(ours: Transformer):
    """transformers' Llama with ``ours``'s weights; no end-of-sequence id, so both sides generate max_tokens."""
    hf = to_transformers(ours).eval()
    hf.config.eos_token_id = hf.generation_config.eos_token_id = None
    return hf


def workload(tok, concurrency: int, rounds: int, seed: int) -> list[list[tuple[list[int], int]]]:
    """requests[client] = [(prompt ids, max_tokens), ...] for one concurrency level."""
    rng = random.Random(seed)
    out = []
    for _ in range(concurrency):
        reqs = []
        for _ in range(rounds):
            n_words = rng.randint(12, 100)
            ids = [tok.doc_id, *tok.encode(" ".join(rng.choice(WORDS) for _ in range(n_words)))][:rng.randint(16, 128)]
            reqs.append((ids, rng.randint(32, 192)))
        out.append(reqs)
    return out


def client_work(tok, concurrency: int, rounds: int) -> list[list[tuple[list[int], int]]]:
    """The workload of one concurrency level; a single client sends three requests in a row."""
    if concurrency == 1:
        return [sum(workload(tok, 3, 1, seed=1), [])]
    return workload(tok, concurrency, rounds, seed=concurrency)


# ---------------------------------------------------------------- the three systems
def run_engine(engine: Engine, work: list[list[tuple[list[int], int]]]) -> Result:
    ttft: list[float] = []
    lock = threading.Lock()

    def client(reqs: list[tuple[list[int], int]]) -> None:
        for i, (prompt, n) in enumerate(reqs):
            r = engine.submit(prompt, SamplingParams(max_tokens=n, temperature=TEMPERATURE, top_p=TOP_P,
                                                     ignore_eos=True, seed=i))
            r.result()
            with lock:
                ttft.append(r.time_to_first_token or 0.0)

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(reqs,)) for reqs in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    return Result("murmur engine", len(work), sum(n for reqs in work for _, n in reqs), seconds, ttft)


def run_hf(hf, work: list[list[tuple[list[int], int]]], pad_id: int) -> Result:
    """Static batches: round r of every client forms one left-padded batch."""
    import transformers

    class FirstToken(transformers.StoppingCriteria):
        def __init__(self) -> None:
            self.at: float | None = None

        def __call__(self, input_ids, scores, **kwargs):  # called once per generated token
            if self.at is None:
                self.at = time.perf_counter()
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    ttft: list[float] = []
    tokens = 0
    start = time.perf_counter()
    for r in range(len(work[0])):
        batch = [reqs[r] for reqs in work]
        width = max(len(p) for p, _ in batch)
        ids = torch.full((len(batch), width), pad_id)
        mask = torch.zeros(len(batch), width, dtype=torch.long)
        for i, (p, _) in enumerate(batch):
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        ids, mask = ids.to(hf.device), mask.to(hf.device)
        first = FirstToken()
        t0 = time.perf_counter()
        torch.manual_seed(r)
        with torch.inference_mode():
            hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max(n for _, n in batch), do_sample=True,
                        temperature=TEMPERATURE, top_p=TOP_P, top_k=0, pad_token_id=pad_id,
                        stopping_criteria=transformers.StoppingCriteriaList([first]))
        ttft.extend([(first.at or time.perf_counter()) - t0] * len(batch))
        tokens += sum(n for _, n in batch)
    return Result("HF generate (static batches)", len(work), tokens, time.perf_counter() - start, ttft)


def run_http(url: str, model: str, work: list[list[tuple[list[int], int]]], tok) -> Result:
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key="bench", max_retries=0, timeout=600)
    ttft: list[float] = []
    tokens = [0]
    lock = threading.Lock()

    def one(reqs: list[tuple[list[int], int]]) -> None:
        for i, (prompt, n) in enumerate(reqs):
            t0 = time.perf_counter()
            first = None
            stream = client.completions.create(
                model=model, prompt=prompt, max_tokens=n, temperature=TEMPERATURE, top_p=TOP_P, seed=i, stream=True,
                stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
            used = 0
            for chunk in stream:
                if first is None and chunk.choices:
                    first = time.perf_counter() - t0
                if chunk.usage is not None:
                    used = chunk.usage.completion_tokens
            with lock:
                ttft.append(first or 0.0)
                tokens[0] += used

    start = time.perf_counter()
    threads = [threading.Thread(target=one, args=(reqs,)) for reqs in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Result("murmur HTTP (openai client)", len(work), tokens[0], time.perf_counter() - start, ttft)


def probe_ttft(engine: Engine, tok, background_tokens: int, n_background: int = 31) -> float:
    """TTFT of a short request submitted while ``n_background`` requests generate long replies."""
    prompt = [tok.doc_id, *tok.encode("coffee and rain " * 8)]
    bg = [engine.submit(prompt, SamplingParams(max_tokens=background_tokens, ignore_eos=True, temperature=0.8))
          for _ in range(n_background)]
    while engine.n_decoding < n_background:  # everyone is generating
        time.sleep(0.005)
    for _ in range(5 if bg else 0):  # a few steps in
        steps = engine.stats.steps
        while engine.stats.steps == steps:
            time.sleep(0.001)
    probe = engine.submit(prompt, SamplingParams(max_tokens=4, temperature=0.8))
    probe.result()
    for r in bg:
        r.cancel()
    while engine.running:
        time.sleep(0.01)
    return probe.time_to_first_token or 0.0


# ---------------------------------------------------------------- HTTP server subprocess
def start_server(model: Transformer, tok, tmp: Path) -> tuple[subprocess.Popen, str]:
    from murmur.train.checkpoint import save_inference_model

    run = save_inference_model(tmp / "bench-model", model, model.cfg, tok.path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "murmur.cli", "serve", "--model", str(run), "--port", str(port),
                             "--max-batch", "32"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    import httpx

    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if httpx.get(url + "/health").status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("murmur serve exited")
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("murmur serve did not become healthy")


# ---------------------------------------------------------------- report
def machine() -> str:
    import transformers

    from murmur.train.metrics import cpu_model_name

    omp = os.environ.get("OMP_WAIT_POLICY", "default")
    gpu = f"{torch.cuda.get_device_name(0)}, " if torch.cuda.is_available() else ""
    return (f"{gpu}{cpu_model_name()}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} "
            f"threads, OMP_WAIT_POLICY={omp}), transformers {transformers.__version__}, "
            f"Python {platform.python_version()}, {datetime.date.today().isoformat()}")


def table(results: list[Result]) -> str:
    rows = ["| concurrency | system | generated tok/s | TTFT p50 | TTFT p90 | vs HF |", "|---|---|---|---|---|---|"]
    hf = {r.concurrency: r.tokens_per_s for r in results if r.system.startswith("HF")}
    for r in results:
        vs = r.vs_hf if r.vs_hf is not None else (r.tokens_per_s / hf[r.concurrency] if r.concurrency in hf else None)
        ratio = "" if vs is None else f"{vs:.2f}x"
        rows.append(f"| {r.concurrency} | {r.system} | {r.tokens_per_s:,.0f} | {r.pct(0.5) * 1000:,.0f} ms | "
                    f"{r.pct(0.9) * 1000:,.0f} ms | {ratio} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--rounds", type=int, default=2, help="requests per client")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved repeats of each comparison (median)")
    ap.add_argument("--quick", action="store_true", help="one round, no HTTP, no probe")
    ap.add_argument("--no-http", action="store_true")
    ap.add_argument("--write-docs", action="store_true")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (the model and both systems run there)")
    ap.add_argument("--preset", default="20m", help="model preset (random weights)")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="weights and compute")
    args = ap.parse_args()
    rounds = 1 if args.quick else args.rounds
    repeats = 1 if args.quick else args.repeats

    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp(prefix="murmur-serve-bench-"))
    cfg: ModelConfig = preset(args.preset)
    tok = build_tokenizer(tmp / "tokenizer", cfg.vocab_size)
    model = Transformer(cfg).to(args.device, {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]).eval()
    hf = hf_model(model)
    log(f"model: preset {args.preset} ({args.dtype}, {args.device}), {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, "
        f"vocab {cfg.vocab_size}; tokenizer {tok.vocab_size} tokens; {machine()}")

    results: list[Result] = []
    engine = Engine(model, tok, max_batch=32, max_queue=1024).start()
    engine.generate([tok.doc_id] * 8, SamplingParams(max_tokens=4))  # warm up
    hf.generate(input_ids=torch.zeros(1, 8, dtype=torch.long, device=hf.device), max_new_tokens=4, do_sample=False, pad_token_id=1)
    for c in args.concurrency:
        work = client_work(tok, c, rounds)
        ours, theirs = [], []
        for _ in range(repeats):  # interleaved, so a burst of load on a shared machine hits both
            ours.append(run_engine(engine, work))
            theirs.append(run_hf(hf, work, tok.pad_id))
            for res in (ours[-1], theirs[-1]):
                log(f"C={c:>2} {res.system:<30} {res.tokens_per_s:8.1f} tok/s  "
                    f"TTFT p50 {res.pct(0.5) * 1000:7.0f} ms")
        ratio = statistics.median(a.tokens_per_s / b.tokens_per_s for a, b in zip(ours, theirs, strict=True))
        results += [median_run(ours, ratio), median_run(theirs, 1.0)]
    probes: list[tuple[int, float]] = []
    if not args.quick:
        for n in (96, 384):
            probes.append((n, probe_ttft(engine, tok, n)))
            log(f"probe TTFT with 31 requests generating {n} tokens each: {probes[-1][1] * 1000:.0f} ms")
    idle = probe_ttft(engine, tok, 8, n_background=0) if probes else None
    engine.stop()

    if not args.quick and not args.no_http:
        proc, url = start_server(model, tok, tmp)
        try:
            for c in args.concurrency:
                work = client_work(tok, c, rounds)
                run_http(url, "bench-model", workload(tok, 1, 1, seed=99), tok)  # warm up
                res = run_http(url, "bench-model", work, tok)
                results.append(res)
                log(f"C={c:>2} {res.system:<30} {res.tokens_per_s:8.1f} tok/s  TTFT p50 {res.pct(0.5) * 1000:7.0f} ms")
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    results.sort(key=lambda r: (r.concurrency, r.system))
    lines = [
        "## Serving throughput (`benchmarks/serve_throughput.py`)",
        "",
        f"Machine: {machine()}. Model: random-init `preset(\"{args.preset}\")` "
        f"({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, {args.dtype}, {args.device}). "
        f"Workload: C clients, each sending {rounds} requests back to back (C = 1: three); prompts 16-128 "
        f"tokens, 32-192 new tokens each, temperature {TEMPERATURE}, top_p {TOP_P}. HF generate runs each round's "
        "C requests as one left-padded static batch to the longest `max_tokens`; tok/s counts useful tokens only. "
        f"Engine and HF runs alternate, {repeats} times; the table shows the median run and, in the last column, "
        "the median of the per-repeat ratios (HTTP: its tok/s over HF's median).",
        "",
        table(results),
    ]
    if probes:
        lines += ["", "Time to first token of a short request sent while 31 others generate "
                  f"(idle engine: {idle * 1000:.0f} ms): " + ", ".join(
                      f"{p * 1000:.0f} ms when they generate {n} tokens each" for n, p in probes) + "."]
    text = "\n".join(lines)
    print()
    print(text)
    if args.write_docs:
        write_section("serve_throughput", text)
        log("wrote docs/benchmarks.md")


if __name__ == "__main__":
    main()
