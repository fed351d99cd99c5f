"""The inference engine: a preallocated KV cache, continuous batching and streaming, on one thread.

Requests are submitted from any thread (``Engine.submit``) and read as a stream of ``Event``s, with a
plain iterator (``Request.events``) or an async one (``Request.aevents``). A background thread runs
the step loop; each step

1. drops cancelled requests and gives free cache rows to waiting ones (first come, first served);
2. runs one decode step for every request that is generating, as a single batch;
3. runs a chunk of prefill for requests that are still reading their prompt (at most
   ``prefill_chunk`` tokens each, ``prefill_budget`` in all, shortest first), so a long prompt is
   read over several steps and never holds up the others: a short request that arrives meanwhile
   starts at once;
4. samples the next token of every request that needs one in one vectorised call
   (``murmur.engine.sampling``) and streams the new text (``murmur.engine.detokenize``).

Requests join and leave the batch between steps. The cache keeps the generating requests in rows
``0..d-1`` so the decode step reads a view of the cache (no gather); when a request leaves, the last
row moves into its place, and a request that finishes its prompt moves to row ``d``. Row moves copy
one sequence's keys and values once per request, instead of copying the batch every step.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from murmur.engine.detokenize import Detokenizer, StopMatcher, token_bytes_table
from murmur.engine.sampling import SamplingParams, apply_penalties, sample
from murmur.errors import InputError, MurmurError
from murmur.model import KVCache, Transformer

log = logging.getLogger("murmur.engine")

TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ContextLengthError(InputError):
    """The prompt (plus the requested completion) does not fit the model's context.

    ``field`` is "prompt" or "max_tokens"; the message stands on its own (no field prefix).
    """

    def __init__(self, message: str, field: str):
        MurmurError.__init__(self, message)
        self.path, self.line, self.field = None, None, field


class QueueFullError(MurmurError):
    """Too many requests are already waiting; try again later (HTTP 429)."""


class EngineClosedError(MurmurError):
    """The engine has stopped and takes no more requests."""


class EngineNotReadyError(MurmurError):
    """The model is still loading (or failed to load): HTTP 503."""

    def __init__(self, message: str, failed: bool = False):
        super().__init__(message)
        self.failed = failed


@dataclass
class Event:
    """One step of a request's stream: new ``text`` (may be empty), the new ``token_ids``, and on the
    last event the ``finish_reason``: "stop" (stop token or string), "length" (max_tokens or the
    context is full), "cancelled" or "error" (with ``error`` set). ``logprobs`` holds, for each new
    token, its log-probability under the model itself (before penalties, processors and sampling
    settings), so callers rank outputs without a second forward pass."""

    text: str
    token_ids: list[int]
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    logprobs: list[float] = field(default_factory=list)


@dataclass
class Completion:
    """A whole request's result (``Request.result`` / ``Engine.generate``)."""

    text: str
    token_ids: list[int]
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    time_to_first_token: float | None = None
    logprobs: list[float] = field(default_factory=list)  # per generated token, as in :class:`Event`

    @property
    def mean_logprob(self) -> float:
        """The model's mean log-probability per generated token (-inf when nothing was generated)."""
        return sum(self.logprobs) / len(self.logprobs) if self.logprobs else float("-inf")


@dataclass
class EngineStats:
    """Counters for /metrics (written by the engine thread, read from anywhere)."""

    requests_finished: dict[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    generated_tokens: int = 0
    steps: int = 0
    ttft_buckets: list[int] = field(default_factory=lambda: [0] * len(TTFT_BUCKETS))
    ttft_count: int = 0
    ttft_sum: float = 0.0

    def observe_ttft(self, seconds: float) -> None:
        for i, bound in enumerate(TTFT_BUCKETS):
            if seconds <= bound:
                self.ttft_buckets[i] += 1
        self.ttft_count += 1
        self.ttft_sum += seconds


class Request:
    """A submitted request: iterate its events; ``cancel()`` to stop it and free its cache row."""

    _ids = itertools.count()

    def __init__(self, engine: Engine, prompt: list[int], params: SamplingParams, max_tokens: int,
                 stop_ids: set[int], generator: torch.Generator | None):
        self.id = next(Request._ids)
        self.engine = engine
        self.prompt = prompt
        self.params = params
        self.max_tokens = max_tokens
        self.stop_ids = stop_ids
        self.generator = generator
        self.submitted = time.perf_counter()
        self.first_token_at: float | None = None
        # Engine-side state (touched only by the engine thread).
        self.row: int | None = None
        self.pos = 0                  # tokens of this sequence in the cache
        self.next_token = -1          # the sampled token to feed at ``pos`` on the next decode step
        self.output: list[int] = []
        self.detok = Detokenizer(engine.tokenizer, engine.token_bytes, engine.special_ids)
        self.stopper = StopMatcher(list(params.stop))
        self.finish_reason: str | None = None
        # Consumer side.
        self._lock = threading.Lock()
        self._events: deque[Event] = deque()
        self._cond = threading.Condition(self._lock)
        self._async: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        self._cancelled = False
        self._done = False

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt)

    @property
    def time_to_first_token(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.submitted

    # ---------------------------------------------------------------- consumer side
    def cancel(self) -> None:
        """Stop generating (e.g. the client went away); the engine frees the row on its next step."""
        if not self._done:
            self._cancelled = True
            self.engine._wake()

    def _push(self, event: Event, wakeups: dict[asyncio.AbstractEventLoop, list[Request]] | None = None) -> None:
        """Deliver an event. An async consumer's loop is woken at once, or, when ``wakeups`` is given,
        later by ``wake_loops`` together with every other request of the step (one wakeup per loop)."""
        with self._lock:
            self._events.append(event)
            if event.finish_reason is not None:
                self._done = True
            self._cond.notify_all()
            waiter = self._async
        if waiter is not None:
            if wakeups is not None:
                wakeups.setdefault(waiter[0], []).append(self)
            else:
                wake_loops({waiter[0]: [self]})

    def _set_flag(self) -> None:
        if self._async is not None:
            self._async[1].set()

    def _take(self) -> list[Event]:
        with self._lock:
            out = list(self._events)
            self._events.clear()
            return out

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Blocking iterator over events, ending with the one that has a finish_reason."""
        try:
            while True:
                with self._lock:
                    if not self._events and not self._cond.wait_for(lambda: bool(self._events), timeout):
                        raise TimeoutError(f"no event from the engine in {timeout} s")
                for event in self._take():
                    yield event
                    if event.finish_reason is not None:
                        return
        finally:
            if not self._done:
                self.cancel()

    async def abatches(self) -> AsyncIterator[list[Event]]:
        """Async iterator over the events that arrived since the last wakeup, as lists (a consumer
        that falls behind gets several at once). Closing it early cancels the request."""
        flag = asyncio.Event()
        with self._lock:
            self._async = (asyncio.get_running_loop(), flag)
        try:
            while True:
                flag.clear()
                batch = self._take()
                if batch:
                    yield batch
                    if batch[-1].finish_reason is not None:
                        return
                else:
                    await flag.wait()
        finally:
            if not self._done:
                self.cancel()

    async def aevents(self) -> AsyncIterator[Event]:
        """Async iterator over events; closing it early (a client disconnect) cancels the request."""
        try:
            async for batch in self.abatches():
                for event in batch:
                    yield event
        finally:
            if not self._done:
                self.cancel()

    def result(self, timeout: float | None = None) -> Completion:
        """Wait for the whole completion."""
        return self._completion(list(self.events(timeout)))

    async def aresult(self) -> Completion:
        """Await the whole completion (in an async route: the event loop keeps running meanwhile)."""
        return self._completion([event async for event in self.aevents()])

    def _completion(self, events: list[Event]) -> Completion:
        last = events[-1] if events else None
        assert last is not None and last.finish_reason is not None
        if last.finish_reason == "error":
            raise RuntimeError(f"generation failed: {last.error}")
        return Completion("".join(e.text for e in events), [t for e in events for t in e.token_ids],
                          last.finish_reason, last.prompt_tokens, last.completion_tokens, self.time_to_first_token,
                          [lp for e in events for lp in e.logprobs])


def wake_loops(wakeups: dict[asyncio.AbstractEventLoop, list[Request]]) -> None:
    """Wake the async consumers of ``wakeups``: one thread-safe call per event loop."""
    for loop, reqs in wakeups.items():
        try:
            loop.call_soon_threadsafe(_set_flags, reqs)
        except RuntimeError:  # the consumer's loop is closed: nobody is listening any more
            for r in reqs:
                r._cancelled = True


def _set_flags(reqs: list[Request]) -> None:
    for r in reqs:
        r._set_flag()


def _is_fsdp(model: Any) -> bool:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # a torch build without distributed support
        return False
    return isinstance(model, FSDPModule)


class SlotCache(KVCache):
    """``KVCache`` whose ``rows`` may also be a slice: a contiguous run of rows is read as a view.

    The attention mask and the attended length depend only on the positions, so they are computed
    once per forward pass and shared by the layers.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._positions: torch.Tensor | None = None
        self._mask = torch.empty(0)
        self._span = 0
        self._b_idx = torch.empty(0)

    def _prepare(self, positions: torch.Tensor) -> None:
        self._positions = positions
        self._span = int(positions.max()) + 1
        if self._span > self.max_len:
            raise ValueError(f"position {self._span - 1} is past the cache length {self.max_len}")
        arange = torch.arange(self._span, device=positions.device)
        self._mask = (arange[None, None, :] <= positions[:, :, None])[:, None]
        B, T = positions.shape
        self._b_idx = torch.arange(B, device=positions.device)[:, None].expand(B, T)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor,
               rows: torch.Tensor | slice | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not isinstance(rows, slice):
            return super().update(layer, k, v, positions, rows)
        if positions is not self._positions:
            self._prepare(positions)
        kc, vc = self.k[layer][rows], self.v[layer][rows]  # views [B, H, L, D]
        kc[self._b_idx, :, positions] = k.transpose(1, 2).to(kc.dtype)
        vc[self._b_idx, :, positions] = v.transpose(1, 2).to(vc.dtype)
        S = self._span
        return kc[:, :, :S], vc[:, :, :S], self._mask

    def move(self, src: int, dst: int, length: int) -> None:
        """Copy the first ``length`` positions of row ``src`` to row ``dst``."""
        self.k[:, dst, :, :length] = self.k[:, src, :, :length]
        self.v[:, dst, :, :length] = self.v[:, src, :, :length]


class Engine:
    """Continuous-batching generation over one model (see the module doc).

    ``max_batch`` requests generate at once (the cache rows); up to ``max_queue`` more wait for a row
    before ``submit`` raises ``QueueFullError``. Use as a context manager, or ``start()``/``stop()``.
    """

    def __init__(self, model: Transformer, tokenizer: Any, *, max_batch: int = 32, max_queue: int = 256,
                 max_len: int | None = None, prefill_chunk: int = 256, prefill_budget: int = 512,
                 seed: int = 0, name: str = "murmur"):
        if max_batch < 1 or max_queue < 0 or prefill_chunk < 1 or prefill_budget < 1:
            raise InputError("max_batch, prefill_chunk and prefill_budget must be positive, max_queue >= 0")
        self.model = model.eval()
        self.cfg = model.cfg
        self.tokenizer = tokenizer
        self.name = name
        self.max_batch, self.max_queue = max_batch, max_queue
        self.max_len = min(max_len or self.cfg.max_seq_len, self.cfg.max_seq_len)
        self.prefill_chunk, self.prefill_budget = prefill_chunk, max(prefill_budget, prefill_chunk)
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.vocab_size = self.cfg.vocab_size
        self.cache = SlotCache(self.cfg, max_batch, self.max_len, self.device, self.dtype)
        self.counts = torch.zeros(max_batch, self.vocab_size, device=self.device)
        self.seen = torch.zeros(max_batch, self.vocab_size, device=self.device, dtype=torch.bool)
        self.token_bytes = token_bytes_table(tokenizer)
        # No token is longer than this: a text of more than max_len times as many bytes cannot fit.
        self.max_token_bytes = max((len(b) for b in self.token_bytes), default=1) if self.token_bytes else None
        special = getattr(tokenizer, "special_ids", {}) or {}
        self.special_ids = set(special.values() if isinstance(special, dict) else special)
        self.default_stop_ids = {i for i in (getattr(tokenizer, "end_id", None), getattr(tokenizer, "doc_id", None))
                                 if i is not None}
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        # A model sharded by FSDP2 gathers its root parameters (embeddings, norm, output) in the root's
        # forward, so it is called whole; a plain model is run block by block (logits where needed only).
        self._whole_forward = _is_fsdp(model)
        self.stats = EngineStats()
        # Scheduling state: ``rows[i]`` is the request in cache row i; rows [0, n_decoding) are generating.
        self.rows: list[Request | None] = [None] * max_batch
        self.n_decoding = 0
        self._waiting: deque[Request] = deque()
        self._admitted: list[Request] = []     # rows given, prompt not fully read yet (FIFO)
        self._prefill_turn = False
        self._cv = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, **kwargs: Any) -> Engine:
        """Load ``model.safetensors`` + ``config.json`` + ``tokenizer/`` from a training run."""
        from murmur.modeldir import load_model

        model, tokenizer, _ = load_model(run_dir)
        kwargs.setdefault("name", Path(run_dir).resolve().name)
        return cls(model, tokenizer, **kwargs)

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> Engine:
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._loop, name="murmur-engine", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the loop; requests still running or waiting end with finish_reason "cancelled"."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        for req in [*self._waiting, *self._admitted, *(r for r in self.rows if r is not None)]:
            self._finish_quietly(req, "cancelled")
        self._waiting.clear()
        self._admitted.clear()
        self.rows = [None] * self.max_batch
        self.n_decoding = 0

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wake(self) -> None:
        with self._cv:
            self._cv.notify_all()

    # ---------------------------------------------------------------- public API
    @property
    def queue_depth(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return sum(r is not None for r in self.rows)

    def check_prompt(self, prompt: Sequence[int], max_tokens: int | None) -> int:
        """Validate a prompt against the vocabulary and the context; return the effective max_tokens."""
        if not prompt:
            raise InputError("the prompt is empty", field="prompt")
        if min(prompt) < 0 or max(prompt) >= self.vocab_size:
            raise InputError(f"token ids must be in [0, {self.vocab_size})", field="prompt")
        room = self.max_len - len(prompt)
        if room < 1:
            raise ContextLengthError(
                f"this model's maximum context length is {self.max_len} tokens, but the prompt has "
                f"{len(prompt)} tokens, leaving no room for the completion; shorten the prompt", "prompt")
        if max_tokens is not None and max_tokens > room:
            raise ContextLengthError(
                f"this model's maximum context length is {self.max_len} tokens, but {len(prompt) + max_tokens} "
                f"were requested ({len(prompt)} in the prompt, {max_tokens} in the completion); lower "
                f"max_tokens or shorten the prompt", "max_tokens")
        return room if max_tokens is None else max_tokens

    def check_text_size(self, n_bytes: int, field: str = "prompt") -> None:
        """Refuse, before tokenizing it, a text of ``n_bytes`` (UTF-8) too long for the context whatever
        its tokens (more bytes than ``max_len`` of the vocabulary's longest tokens hold)."""
        if self.max_token_bytes is not None and n_bytes > self.max_len * self.max_token_bytes:
            raise ContextLengthError(
                f"this model's maximum context length is {self.max_len} tokens, but the prompt is {n_bytes:,} "
                f"bytes, more than {self.max_len} tokens can hold; shorten the prompt", field)

    def _request(self, prompt: Sequence[int], params: SamplingParams | None) -> Request:
        """A checked request (not yet queued). Raises InputError / ContextLengthError."""
        params = (params or SamplingParams()).validate()
        prompt = [int(t) for t in prompt]
        max_tokens = self.check_prompt(prompt, params.max_tokens)
        if params.stop_token_ids and (min(params.stop_token_ids) < 0 or max(params.stop_token_ids) >= self.vocab_size):
            raise InputError(f"token ids must be in [0, {self.vocab_size})", field="stop_token_ids")
        if params.logit_bias and (min(params.logit_bias) < 0 or max(params.logit_bias) >= self.vocab_size):
            raise InputError(f"token ids must be in [0, {self.vocab_size})", field="logit_bias")
        stop_ids = set(self.default_stop_ids) if params.stop_token_ids is None else set(params.stop_token_ids)
        if params.ignore_eos:
            stop_ids = set(params.stop_token_ids or ())
        generator = None
        if params.seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(params.seed % 2**64)
        return Request(self, prompt, params, max_tokens, stop_ids, generator)

    def submit(self, prompt: Sequence[int], params: SamplingParams | None = None) -> Request:
        """Queue a request (thread-safe). Raises InputError / ContextLengthError / QueueFullError."""
        req = self._request(prompt, params)
        with self._cv:
            if self._stopping or self._thread is None:
                raise EngineClosedError("the engine is not running")
            # Requests about to take a free row do not count against the queue.
            if len(self._waiting) >= self.max_queue + self.max_batch - self.running:
                raise QueueFullError(f"{len(self._waiting)} requests are already waiting; retry later")
            self._waiting.append(req)
            self._cv.notify_all()
        return req

    def generate(self, prompt: Sequence[int], params: SamplingParams | None = None,
                 timeout: float | None = None) -> Completion:
        """Submit and wait: the whole completion."""
        return self.submit(prompt, params).result(timeout)

    async def agenerate(self, prompt: Sequence[int], params: SamplingParams | None = None) -> Completion:
        """Submit and await the whole completion (for async routes; cancelled if the caller is)."""
        return await self.submit(prompt, params).aresult()

    def run(self, prompts: Sequence[Sequence[int]],
            params: SamplingParams | Sequence[SamplingParams] | None = None) -> list[Completion]:
        """Generate every prompt to the end in the calling thread; one ``params`` for all, or one each.

        No background thread: the same steps as the server's loop, run here until every request is
        done. This is how training samples from a model under FSDP (every process runs the same
        steps, so their forward passes stay in step) and how the library call generates. With the
        loop thread running, the requests are submitted to it instead.
        """
        each = list(params) if isinstance(params, Sequence) else [params] * len(prompts)
        if len(each) != len(prompts):
            raise InputError(f"{len(prompts)} prompts but {len(each)} sampling settings")
        if self._thread is not None:
            return [r.result() for r in [self.submit(p, sp) for p, sp in zip(prompts, each, strict=True)]]
        reqs = [self._request(p, sp) for p, sp in zip(prompts, each, strict=True)]
        self._waiting.extend(reqs)
        try:
            with torch.no_grad():
                while self._has_work():
                    self.step()
        except BaseException:
            self._reset("cancelled")
            raise
        return [r.result() for r in reqs]

    # ---------------------------------------------------------------- the step loop
    def _has_work(self) -> bool:
        return bool(self._waiting or self._admitted or self.n_decoding)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._stopping and not self._has_work():
                    self._cv.wait()
                if self._stopping:
                    return
            try:
                with torch.inference_mode():
                    self.step()
            except Exception:  # a bug: fail the requests in flight (no details to clients), keep serving
                log.exception("engine step failed; the requests in flight end with an error")
                self._reset("error", "internal error while generating (details in the server log)")

    def _reset(self, reason: str, error: str | None = None) -> None:
        """End every admitted or running request with ``reason`` and empty the rows."""
        for req in [*self._admitted, *(r for r in self.rows if r is not None)]:
            self._finish_quietly(req, reason, error)
        self._admitted.clear()
        self.rows = [None] * self.max_batch
        self.n_decoding = 0

    def step(self) -> None:
        """One scheduling step (see the module doc). Called by the loop thread."""
        self._drop_cancelled()
        self._admit()
        d = self.n_decoding
        logits_parts: list[torch.Tensor] = []
        sampled: list[Request] = []
        if d:
            decoding = self.rows[:d]
            tokens = torch.tensor([[r.next_token] for r in decoding], device=self.device)
            positions = torch.tensor([[r.pos] for r in decoding], device=self.device)
            logits_parts.append(self._forward(tokens, positions, slice(0, d), None))
            for r in decoding:
                r.pos += 1
            sampled.extend(decoding)
        ready = self._prefill()
        if ready:
            logits_parts.append(ready[1])
            sampled.extend(ready[0])
        if sampled:
            logits = logits_parts[0] if len(logits_parts) == 1 else torch.cat(logits_parts)
            self._sample_and_emit(sampled, logits)
        self.stats.steps += 1

    def _forward(self, tokens: torch.Tensor, positions: torch.Tensor, rows: torch.Tensor | slice,
                 last: torch.Tensor | None) -> torch.Tensor:
        """The model's forward pass, computing logits only where a next token is needed.

        ``last`` [B] picks the position of each row whose logits are wanted (None: the final one).
        This is ``Transformer.forward`` with the output projection applied to B positions, not B*T.
        """
        m = self.model
        if self._whole_forward:
            out = m(tokens, positions=positions, cache=self.cache, rows=rows)
            idx = torch.full((out.shape[0],), out.shape[1] - 1, device=out.device) if last is None else last
            return out[torch.arange(out.shape[0], device=out.device), idx].float()
        cos, sin = m.rope_cos[positions], m.rope_sin[positions]
        h = m.tok_embeddings(tokens)
        for block in m.layers.values():
            h = block(h, cos, sin, self.cache, positions, rows)
        h = h[:, -1] if last is None else h[torch.arange(h.shape[0], device=h.device), last]
        return m.output(m.norm(h)).float()

    def _drop_cancelled(self) -> None:
        with self._cv:
            if any(r._cancelled for r in self._waiting):
                kept = deque()
                for r in self._waiting:
                    if r._cancelled:
                        self._finish_quietly(r, "cancelled")
                    else:
                        kept.append(r)
                self._waiting = kept
        gone = [r for r in self.rows if r is not None and r._cancelled]
        for r in gone:
            self._finish_quietly(r, "cancelled")
        self._release(gone)

    def _admit(self) -> None:
        """Give free rows (all at or after n_decoding) to waiting requests, oldest first."""
        with self._cv:
            if not self._waiting:
                return
            for row in range(self.n_decoding, self.max_batch):
                if not self._waiting:
                    break
                if self.rows[row] is None:
                    req = self._waiting.popleft()
                    req.row, req.pos = row, 0
                    self.rows[row] = req
                    self.counts[row].zero_()
                    self.seen[row].zero_()
                    if req.params.repetition_penalty != 1.0:
                        self.seen[row, torch.tensor(req.prompt, device=self.device)] = True
                    self._admitted.append(req)

    def _prefill(self) -> tuple[list[Request], torch.Tensor] | None:
        """Read the next chunk of the prompts being admitted; return those that finished, with logits."""
        if not self._admitted:
            return None
        # Shortest prompts first (they start generating soonest and pad least), but every other step
        # the oldest request goes first, so a long prompt keeps moving under a stream of short ones.
        order = sorted(self._admitted, key=lambda r: len(r.prompt) - r.pos)
        self._prefill_turn = not self._prefill_turn
        if self._prefill_turn:
            order.remove(self._admitted[0])
            order.insert(0, self._admitted[0])
        batch: list[tuple[Request, int]] = []
        width = 0
        for req in order:
            n = min(len(req.prompt) - req.pos, self.prefill_chunk)
            if batch and (len(batch) + 1) * max(width, n) > self.prefill_budget:
                continue
            batch.append((req, n))
            width = max(width, n)
        # Pad short chunks on the right; pad tokens sit past the sequence's end, where they are masked
        # out and later overwritten, so they never affect a real token.
        tokens = torch.zeros(len(batch), width, dtype=torch.long)
        positions = torch.empty(len(batch), width, dtype=torch.long)
        for i, (req, n) in enumerate(batch):
            tokens[i, :n] = torch.tensor(req.prompt[req.pos:req.pos + n])
            positions[i] = torch.arange(req.pos, req.pos + width).clamp_(max=self.max_len - 1)
        rows = torch.tensor([req.row for req, _ in batch])
        last = torch.tensor([n - 1 for _, n in batch])
        logits = self._forward(tokens.to(self.device), positions.to(self.device), rows.to(self.device),
                               last.to(self.device))
        done = []
        for i, (req, n) in enumerate(batch):
            req.pos += n
            self.stats.prompt_tokens += n
            if req.pos == len(req.prompt):
                done.append(i)
        if not done:
            return None
        finished = [batch[i][0] for i in done]
        finished_set = {id(r) for r in finished}
        self._admitted = [r for r in self._admitted if id(r) not in finished_set]
        return finished, logits[torch.tensor(done, device=self.device)]

    def _sample_and_emit(self, reqs: list[Request], logits: torch.Tensor) -> None:
        rows = torch.tensor([r.row for r in reqs], device=self.device)
        model_logp = torch.log_softmax(logits.float(), dim=-1)  # before processors rewrite the rows
        failed: dict[int, str] = {}
        biased = [(i, t, v) for i, r in enumerate(reqs) if r.params.logit_bias for t, v in r.params.logit_bias.items()]
        if biased:   # one scatter for the whole batch
            at, ids, values = zip(*biased, strict=True)
            logits.index_put_((torch.tensor(at, device=self.device), torch.tensor(ids, device=self.device)),
                              torch.tensor(values, device=self.device, dtype=logits.dtype), accumulate=True)
        for i, r in enumerate(reqs):
            if r.params.logits_processor is not None:
                try:
                    logits[i] = r.params.logits_processor(r.prompt, r.output, logits[i])
                except Exception as e:  # the request's own processor failed: end that request only
                    log.exception("logits processor of request %s failed", r.id)
                    failed[i] = f"logits processor failed: {type(e).__name__}"
        if any(r.params.uses_penalties for r in reqs):
            def col(name: str) -> torch.Tensor:
                return torch.tensor([getattr(r.params, name) for r in reqs], device=self.device)
            logits = apply_penalties(logits, self.counts[rows], self.seen[rows], col("frequency_penalty"),
                                     col("presence_penalty"), col("repetition_penalty"))
        if all(r.params.temperature == 0 for r in reqs):
            tokens = logits.argmax(-1)
        else:
            def col(name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:  # noqa: F811
                return torch.tensor([getattr(r.params, name) for r in reqs], device=self.device, dtype=dtype)
            top_k = torch.tensor([min(r.params.top_k, self.vocab_size) for r in reqs], device=self.device)
            tokens = sample(logits, col("temperature"), top_k, col("top_p"), col("min_p"),
                            [r.generator for r in reqs], self.generator)
        token_logp = model_logp.gather(1, tokens[:, None]).squeeze(1).tolist()
        self.counts.index_put_((rows, tokens), torch.ones(len(reqs), device=self.device), accumulate=True)
        self.seen[rows, tokens] = True
        now = time.perf_counter()
        wakeups: dict[asyncio.AbstractEventLoop, list[Request]] = {}
        finished, promoted = [], []
        n_prev = self.n_decoding
        for i, (req, token, lp) in enumerate(zip(reqs, tokens.tolist(), token_logp, strict=True)):
            if req.first_token_at is None:
                req.first_token_at = now
                self.stats.observe_ttft(now - req.submitted)
            if req._cancelled or i in failed:
                self._finish_quietly(req, "error" if i in failed else "cancelled", failed.get(i))
                finished.append(req)
                continue
            req.output.append(token)
            self.stats.generated_tokens += 1
            reason = None
            if token in req.stop_ids:
                text, reason = req.detok.flush(), "stop"
                out, stopped = req.stopper.feed(text)
                out += "" if stopped else req.stopper.flush()
            else:
                out, stopped = req.stopper.feed(req.detok.push(token))
                if stopped:
                    reason = "stop"
                elif len(req.output) >= req.max_tokens:
                    tail, stopped = req.stopper.feed(req.detok.flush())
                    out += tail + ("" if stopped else req.stopper.flush())
                    reason = "stop" if stopped else "length"
            if reason is None:
                req.next_token = token
                req._push(Event(out, [token], logprobs=[lp]), wakeups)
                if req.row >= n_prev:
                    promoted.append(req)
            else:
                req.finish_reason = reason
                self._record_finish(reason)
                req._push(Event(out, [token], reason, len(req.prompt), len(req.output), logprobs=[lp]), wakeups)
                finished.append(req)
        wake_loops(wakeups)
        self._release(finished)
        for req in promoted:
            self._promote(req)

    # ---------------------------------------------------------------- rows
    def _record_finish(self, reason: str) -> None:
        self.stats.requests_finished[reason] = self.stats.requests_finished.get(reason, 0) + 1

    def _finish_quietly(self, req: Request, reason: str, error: str | None = None) -> None:
        """End a request that is not finishing through sampling (cancelled, engine error or stop)."""
        if req.finish_reason is None:
            req.finish_reason = reason
            self._record_finish(reason)
            text = req.stopper.flush() if reason != "error" else ""
            req._push(Event(text, [], reason, len(req.prompt), len(req.output), error))

    def _release(self, reqs: list[Request]) -> None:
        """Free the rows of finished requests, keeping the generating rows packed at 0..d-1."""
        # Highest rows first, so a row about to be freed is never moved into a hole.
        for req in sorted(reqs, key=lambda r: -1 if r.row is None else r.row, reverse=True):
            row = req.row
            if row is None or self.rows[row] is not req:
                continue
            req.row = None
            self.rows[row] = None
            if req in self._admitted:
                self._admitted.remove(req)
            if row < self.n_decoding:
                last = self.n_decoding - 1
                if row != last:
                    self._move(last, row)
                self.n_decoding -= 1

    def _move(self, src: int, dst: int) -> None:
        req = self.rows[src]
        assert req is not None and self.rows[dst] is None
        self.cache.move(src, dst, req.pos)
        self.counts[dst] = self.counts[src]
        self.seen[dst] = self.seen[src]
        self.rows[dst], self.rows[src] = req, None
        req.row = dst

    def _promote(self, req: Request) -> None:
        """A request that has read its prompt joins the generating rows at row n_decoding."""
        d = self.n_decoding
        if req.row != d:
            other = self.rows[d]
            if other is not None:  # another request still reading its prompt: swap the two rows
                spare = req.row
                k = self.cache.k[:, d, :, :other.pos].clone()
                v = self.cache.v[:, d, :, :other.pos].clone()
                counts, seen = self.counts[d].clone(), self.seen[d].clone()
                self.rows[d] = None
                self._move(spare, d)
                self.cache.k[:, spare, :, :other.pos] = k
                self.cache.v[:, spare, :, :other.pos] = v
                self.counts[spare], self.seen[spare] = counts, seen
                self.rows[spare], other.row = other, spare
            else:
                self._move(req.row, d)
        self.n_decoding += 1
