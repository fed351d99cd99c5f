"""Answers with citations: retrieve posts for a question, then have the model write an answer in the
question's language whose sentences cite the posts as ``[1]``, ``[2]``.

The prompt is the chat format's tool turn, as the fine-tuning data teaches it: the question, a
``search_posts`` call, its numbered results, then the answer. A citation can only name a retrieved
post: any ``[n]`` outside 1..k is removed before the text leaves (streamed text is held back at an
open ``[`` until the bracket closes), and ``citations`` lists exactly the posts the answer cites.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from murmur.chat.grounded import search_answer_messages
from murmur.chat.template import render
from murmur.chat.tools import answer_only
from murmur.engine import Engine, SamplingParams
from murmur.engine.http import current_engine, json_body
from murmur.errors import InputError
from murmur.search.retrieve import RetrieveConfig, make_request

CITE = re.compile(r"\[(\d{1,3})\]")
OPEN_CITE = re.compile(r"\[\d{0,3}$")
FILTERS = ("lang", "author", "hashtag", "since", "until", "min_likes")
MAX_K = 10
POST_CHARS = 280   # each post's text in the prompt is cut here (long notes would crowd out the rest)


@functools.lru_cache(maxsize=1)
def _langid() -> Any:
    from murmur.data.langid import LanguageIdentifier

    return LanguageIdentifier()


def question_lang(question: str) -> str:
    """The question's language code ("und" when unsure)."""
    return _langid().identify_one(question)[0]


def clean_citations(text: str, k: int) -> str:
    """``text`` without any ``[n]`` outside 1..k (and the space before it)."""
    return re.sub(r"\s?\[(\d{1,3})\]", lambda m: m.group(0) if 1 <= int(m.group(1)) <= k else "", text)


class CitationStream:
    """Streamed text with out-of-range citations removed: text after an open ``[`` is held back until
    the bracket closes (or clearly is not a citation)."""

    def __init__(self, k: int):
        self.k, self.held = k, ""

    def feed(self, text: str) -> str:
        buf = self.held + text
        m = OPEN_CITE.search(buf)
        cut = m.start() if m else len(buf)
        if cut > 0 and buf[cut - 1] == " ":   # the space before a citation goes with it
            cut -= 1
        self.held = buf[cut:]
        return clean_citations(buf[:cut], self.k)

    def flush(self) -> str:
        out, self.held = clean_citations(self.held, self.k), ""
        return out


def cited(answer: str, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The citations of ``answer``: each cited post once, in order of its number."""
    ns = sorted({int(n) for n in CITE.findall(answer) if 1 <= int(n) <= len(results)})
    return [{"n": n, **{f: results[n - 1][f] for f in ("post_id", "text", "author_id", "created_at")}} for n in ns]


@dataclass(frozen=True)
class AnswerRequest:
    question: str
    k: int = 5
    filters: Mapping[str, Any] = field(default_factory=dict)
    max_tokens: int = 160
    temperature: float = 0.7
    seed: int | None = None


def check_request(body: Mapping[str, Any]) -> AnswerRequest:
    """A checked request from a JSON body; bad values raise InputError naming the field."""
    if not isinstance(body, Mapping):
        raise InputError("the body must be a JSON object", field="body")
    known = {"question", "k", "stream", "max_tokens", "temperature", "seed", *FILTERS}
    unknown = sorted(set(body) - known)
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(unknown)}", field=unknown[0])
    q = body.get("question")
    if not isinstance(q, str) or not q.strip():
        raise InputError("the question is empty", field="question")
    k = body.get("k", 5)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise InputError(f"must be an integer from 1 to {MAX_K}", field="k")
    mt = body.get("max_tokens", 160)
    if isinstance(mt, bool) or not isinstance(mt, int) or not 1 <= mt <= 4096:
        raise InputError("must be an integer from 1 to 4096", field="max_tokens")
    t = body.get("temperature", 0.7)
    if isinstance(t, bool) or not isinstance(t, int | float) or not 0 <= t <= 2:
        raise InputError("must be a number from 0 to 2", field="temperature")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InputError("must be an integer", field="seed")
    return AnswerRequest(q, k, {f: body[f] for f in FILTERS if body.get(f) is not None}, mt, float(t), seed)


def fit_prompt(engine: Engine, req: AnswerRequest, results: list[dict[str, Any]], lang: str,
               query: str | None = None) -> tuple[list[int], SamplingParams, list[dict[str, Any]]]:
    """(prompt ids, sampling, the posts kept) for an answer in ``lang`` to ``req.question`` from
    ``results`` (as the search returns them); the last posts are dropped until the prompt fits."""
    while True:
        texts = [r["text"][:POST_CHARS] for r in results]
        prompt = render(engine.tokenizer, search_answer_messages(req.question, query or req.question, texts, lang))
        if len(prompt) + min(req.max_tokens, 32) <= engine.max_len or len(results) <= 1:
            break
        results = results[:-1]
    room = max(1, engine.max_len - len(prompt))
    # the answer is text: the turn after the results may not open another tool call
    params = SamplingParams(max_tokens=min(req.max_tokens, room), temperature=req.temperature, seed=req.seed,
                            logit_bias=answer_only())
    return prompt, params, results


def answer_from(engine: Engine, req: AnswerRequest, results: list[dict[str, Any]], lang: str,
                query: str | None = None) -> dict[str, Any]:
    """``{"answer", "citations", "lang", "usage"}`` written from exactly these posts (no retrieval): a
    citation can only name one of them."""
    prompt, params, results = fit_prompt(engine, req, results, lang, query)
    done = engine.generate(prompt, params)
    return Answerer._result(done.text, results, len(prompt), done.completion_tokens)


class Answerer:
    """Retrieval plus generation over one index and one engine."""

    def __init__(self, index: Any, cfg: RetrieveConfig | None = None):
        self.index, self.cfg = index, cfg or RetrieveConfig()

    def retrieve(self, req: AnswerRequest) -> list[dict[str, Any]]:
        mode = "hybrid" if getattr(self.index, "dense", None) is not None else "lexical"
        return self.index.search(make_request(req.question, mode=mode, k=req.k, cfg=self.cfg, **req.filters),
                                 self.cfg)

    def prepare(self, engine: Engine, req: AnswerRequest) -> tuple[list[int], SamplingParams, list[dict[str, Any]]]:
        """(prompt ids, sampling, retrieved posts); the last results are dropped until the prompt fits."""
        return fit_prompt(engine, req, self.retrieve(req), question_lang(req.question))

    def answer(self, engine: Engine, req: AnswerRequest) -> dict[str, Any]:
        """``{"answer", "citations", "usage"}`` (blocking: the CLI, or a worker thread)."""
        prompt, params, results = self.prepare(engine, req)
        done = engine.generate(prompt, params)
        return self._result(done.text, results, len(prompt), done.completion_tokens)

    @staticmethod
    def _result(text: str, results: list[dict[str, Any]], prompt_tokens: int, completion: int) -> dict[str, Any]:
        answer = clean_citations(text, len(results)).strip()
        return {"answer": answer, "citations": cited(answer, results), "lang": question_lang(answer) if answer else "und",
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                          "total_tokens": prompt_tokens + completion}}

    async def stream(self, engine: Engine, prompt: list[int], params: SamplingParams,
                     results: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        """``{"delta": text}`` events, then ``{"citations", "usage", ...}`` last."""
        req = engine.submit(prompt, params)
        filt, parts, completion = CitationStream(len(results)), [], 0
        try:
            async for batch in req.abatches():
                for event in batch:
                    out = filt.feed(event.text)
                    parts.append(event.text)
                    completion = event.completion_tokens or completion
                    if out:
                        yield {"delta": out}
        finally:
            req.cancel()
        tail = filt.flush()
        if tail:
            yield {"delta": tail}
        final = self._result("".join(parts), results, len(prompt), completion)
        yield {"citations": final["citations"], "lang": final["lang"], "usage": final["usage"]}


def build_router(answerer: Answerer) -> APIRouter:
    """``POST /v1/answers``: ``{"question", "k", <search filters>, "stream"}`` -> ``{"answer",
    "citations", "usage"}``, or server-sent events ``{"delta"}`` ... ``{"citations", "usage"}``, [DONE]."""
    router = APIRouter()

    @router.post("/v1/answers")
    async def answers(request: Request, engine: Annotated[Engine, Depends(current_engine)]) -> Any:
        body = await json_body(request)
        req = check_request(body)
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise InputError("must be true or false", field="stream")
        if not stream:
            return await run_in_threadpool(answerer.answer, engine, req)
        prompt, params, results = await run_in_threadpool(answerer.prepare, engine, req)

        async def events() -> AsyncIterator[str]:
            async for event in answerer.stream(engine, prompt, params, results):
                yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return router
