"""Tool calls in model output: parse what the model wrote after ``<|tool_call|>``, check it against
the tools on offer, and build the constrained request that forces a well-formed call."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from murmur.chat.constrain import TokenTable, call_matcher, check_value, logits_processor, min_call_tokens
from murmur.chat.template import END_ID, TOOL_CALL_ID
from murmur.tokenizer import NUM_SPECIAL


@dataclass(frozen=True)
class Call:
    name: str
    arguments: str   # JSON text, as OpenAI returns it


@dataclass(frozen=True)
class Parsed:
    """The model's turn: its text, its calls, and why a call was refused (None: all well-formed)."""

    content: str
    calls: list[Call]
    error: str | None = None


def parse_output(decode: Callable[[list[int]], str], ids: Sequence[int], tools: Mapping[str, Mapping[str, Any]]
                 ) -> Parsed:
    """Split generated ids at ``<|tool_call|>``; each call must be ``{"name", "arguments"}`` JSON naming
    one of ``tools`` (name -> parameters schema) with arguments that fit its schema."""
    ids = [int(t) for t in ids if int(t) != END_ID]
    segments: list[list[int]] = [[]]
    for t in ids:
        if t == TOOL_CALL_ID:
            segments.append([])
        else:
            segments[-1].append(t)
    content, calls = decode(segments[0]), []
    for seg in segments[1:]:
        try:
            obj = json.loads(decode(seg))
        except ValueError:
            return Parsed(content, [], "the tool call is not valid JSON")
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
            return Parsed(content, [], "the tool call has no name")
        if obj["name"] not in tools:
            return Parsed(content, [], f"the model called an unknown tool {obj['name']!r}")
        args = obj.get("arguments", {})
        if not check_value(tools[obj["name"]] or {"type": "object"}, args) or not isinstance(args, dict):
            return Parsed(content, [], f"the arguments do not fit the schema of {obj['name']!r}")
        calls.append(Call(obj["name"], json.dumps(args, ensure_ascii=False)))
    return Parsed(content, calls)


_tables: dict[int, TokenTable] = {}


def token_table(tokenizer: Any) -> TokenTable:
    """The tokenizer's token texts, built once per tokenizer object."""
    key = id(tokenizer)
    if key not in _tables:
        _tables[key] = TokenTable(lambda ids: tokenizer.decode(ids, skip_special=True), len(tokenizer), NUM_SPECIAL)
    return _tables[key]


def call_room(tools: Mapping[str, Mapping[str, Any]]) -> int:
    """The fewest tokens after the prompt that a forced call to one of ``tools`` needs: the opening
    ``<|tool_call|>``, the shortest well-formed call (empty strings, one-digit numbers) and ``<|end|>``."""
    return 1 + min_call_tokens(call_matcher(tools))


def forced_call(tokenizer: Any, prompt: list[int], tools: Mapping[str, Mapping[str, Any]], budget: int | None = None
                ) -> tuple[list[int], Callable[..., Any]]:
    """The prompt that opens a call (``... <|assistant|><|tool_call|>``) and the logits processor that
    keeps the rest a well-formed call to one of ``tools``, finished within ``budget`` generated tokens
    when given (at least ``call_room(tools) - 1``)."""
    return [*prompt, TOOL_CALL_ID], logits_processor(call_matcher(tools), token_table(tokenizer), END_ID, budget)


def answer_only(logit_bias: Mapping[int, float] | None = None) -> dict[int, float]:
    """``logit_bias`` (a request's own, if any) with ``<|tool_call|>`` ruled out: the turn is an answer.
    The engine applies it in one scatter over the batch, with no per-request Python call."""
    return {**(logit_bias or {}), TOOL_CALL_ID: float("-inf")}


def forced_ids(ids: Sequence[int]) -> list[int]:
    """The generated ids of a forced call, with the opening ``<|tool_call|>`` put back for parsing."""
    return [TOOL_CALL_ID, *ids]
