"""Constrained decoding of tool calls: a JSON-schema subset as a character automaton, turned into a
per-request logits processor that masks every token which cannot continue a valid call.

The subset is what tool arguments use: an object whose properties are strings, numbers, integers,
booleans, enums (of JSON literals), arrays of those, or nested objects. The call is written in one
fixed layout, ``{"name": "NAME", "arguments": {"key": value, ...}}`` with the required keys (or, if
none are marked required, every property) in the schema's order, so only the values are free: the
model chooses their characters, never the structure. Whitespace inside values is the model's;
between tokens there is none. With several tools the name is a choice among them, and each branch
carries its own arguments schema.

A matcher is immutable and its states are hashable, so the mask of a state is computed once per
request and reused (the state "inside a string" recurs at every character of a string).

The call always ends within its token budget: each state knows the fewest characters that complete
it (``shortest``), and every structural character the completion needs is one token of the
byte-level tokenizer, so a token is allowed only if what it leaves can still be closed (and ``<|end|>``
written) in the tokens left; near the end of the budget a string value is closed early rather than
cut. A budget below ``shortest(start) + 1`` cannot hold a call at all (:func:`min_call_tokens`), and
the server refuses it before generating.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from murmur.errors import InputError

State = Any
STRING_MAX = 120      # characters in one string value before the closing quote is forced
NUMBER_MAX = 24       # characters in one number
ARRAY_MAX = 16        # items in one array


class Matcher:
    """A character automaton: ``start()``, ``step(state, ch)`` (None: refused), ``final(state)``."""

    def start(self) -> State: ...

    def step(self, state: State, ch: str) -> State | None: ...

    def final(self, state: State) -> bool: ...

    def shortest(self, state: State) -> int:
        """The fewest characters that take ``state`` to a final state."""
        ...


class Lit(Matcher):
    def __init__(self, text: str):
        self.text = text

    def start(self) -> State:
        return 0

    def step(self, state: State, ch: str) -> State | None:
        return state + 1 if state < len(self.text) and self.text[state] == ch else None

    def final(self, state: State) -> bool:
        return state == len(self.text)

    def shortest(self, state: State) -> int:
        return len(self.text) - state


class Choice(Matcher):
    """One of a few literal texts (JSON-encoded enum values, true/false)."""

    def __init__(self, options: Sequence[str]):
        self.options = tuple(options)

    def start(self) -> State:
        return ""

    def step(self, state: State, ch: str) -> State | None:
        nxt = state + ch
        return nxt if any(o.startswith(nxt) for o in self.options) else None

    def final(self, state: State) -> bool:
        return state in self.options

    def shortest(self, state: State) -> int:
        return min(len(o) - len(state) for o in self.options if o.startswith(state))


class Str(Matcher):
    """A JSON string: states "open", ("in", n), ("esc", n), "done"; at most STRING_MAX characters."""

    def start(self) -> State:
        return "open"

    def step(self, state: State, ch: str) -> State | None:
        if state == "open":
            return ("in", 0) if ch == '"' else None
        if state == "done":
            return None
        kind, n = state
        if kind == "esc":
            return ("in", n + 1) if ch in '"\\/bfnrt' else None
        if ch == '"':
            return "done"
        if n >= STRING_MAX or ord(ch) < 0x20:
            return None
        return ("esc", n) if ch == "\\" else ("in", min(n + 1, STRING_MAX))

    def final(self, state: State) -> bool:
        return state == "done"

    def shortest(self, state: State) -> int:
        if state in ("open", "done"):
            return 2 if state == "open" else 0
        return 2 if state[0] == "esc" else 1   # an escaped character, then the quote


class Num(Matcher):
    """A JSON number (no exponent); ``integer`` allows no fraction."""

    def __init__(self, integer: bool):
        self.pattern = re.compile(r"-?(0|[1-9][0-9]*)" if integer else r"-?(0|[1-9][0-9]*)(\.[0-9]+)?")
        self.prefix = re.compile(r"-?(0|[1-9][0-9]*)?" if integer else r"-?((0|[1-9][0-9]*)(\.[0-9]*)?)?")

    def start(self) -> State:
        return ""

    def step(self, state: State, ch: str) -> State | None:
        nxt = state + ch
        return nxt if len(nxt) <= NUMBER_MAX and self.prefix.fullmatch(nxt) else None

    def final(self, state: State) -> bool:
        return bool(self.pattern.fullmatch(state))

    def shortest(self, state: State) -> int:
        return 0 if self.final(state) else 1   # "", "-" and "1." each end with one digit


class Seq(Matcher):
    """Parts one after another; a finished part hands the character to the next."""

    def __init__(self, parts: Sequence[Matcher]):
        self.parts = tuple(parts)

    def start(self) -> State:
        return (0, self.parts[0].start()) if self.parts else (0, None)

    def step(self, state: State, ch: str) -> State | None:
        i, sub = state
        while i < len(self.parts):
            nxt = self.parts[i].step(sub, ch)
            if nxt is not None:
                return (i, nxt)
            if not self.parts[i].final(sub):
                return None
            i += 1
            sub = self.parts[i].start() if i < len(self.parts) else None
        return None

    def final(self, state: State) -> bool:
        i, sub = state
        if i >= len(self.parts):
            return True
        return self.parts[i].final(sub) and all(p.final(p.start()) for p in self.parts[i + 1:])

    def shortest(self, state: State) -> int:
        i, sub = state
        if i >= len(self.parts):
            return 0
        return self.parts[i].shortest(sub) + sum(p.shortest(p.start()) for p in self.parts[i + 1:])


class Alt(Matcher):
    """Any of several matchers: the state is the tuple of branches still alive."""

    def __init__(self, options: Sequence[Matcher]):
        self.options = tuple(options)

    def start(self) -> State:
        return tuple((i, m.start()) for i, m in enumerate(self.options))

    def step(self, state: State, ch: str) -> State | None:
        alive = []
        for i, sub in state:
            nxt = self.options[i].step(sub, ch)
            if nxt is not None:
                alive.append((i, nxt))
        return tuple(alive) or None

    def final(self, state: State) -> bool:
        return any(self.options[i].final(sub) for i, sub in state)

    def shortest(self, state: State) -> int:
        return min(self.options[i].shortest(sub) for i, sub in state)


class Arr(Matcher):
    """``[item, item]`` with up to ARRAY_MAX items; states (phase, count, item state)."""

    def __init__(self, item: Matcher):
        self.item = item

    def start(self) -> State:
        return ("open", 0, None)

    def step(self, state: State, ch: str) -> State | None:
        phase, n, sub = state
        if phase == "open":
            return ("first", 0, None) if ch == "[" else None
        if phase == "first" and ch == "]":
            return ("done", 0, None)
        if phase in ("first", "next"):
            nxt = self.item.step(self.item.start(), ch)
            return ("item", n + 1, nxt) if nxt is not None else None
        if phase == "comma":
            return ("next", n, None) if ch == " " else None
        if phase == "item":
            nxt = self.item.step(sub, ch)
            if nxt is not None:
                return ("item", n, nxt)
            if self.item.final(sub):
                if ch == "]":
                    return ("done", n, None)
                if ch == "," and n < ARRAY_MAX:
                    return ("comma", n, None)
        return None

    def final(self, state: State) -> bool:
        return state[0] == "done"

    def shortest(self, state: State) -> int:
        phase, _, sub = state
        if phase == "item":
            return self.item.shortest(sub) + 1   # the item, then "]"
        item = self.item.shortest(self.item.start())
        return {"open": 2, "first": 1, "next": item + 1, "comma": item + 2}.get(phase, 0)


def schema_matcher(schema: Mapping[str, Any], field: str = "parameters") -> Matcher:
    """The matcher of a JSON schema in the subset; anything outside it is an InputError naming ``field``."""
    if not isinstance(schema, Mapping):
        raise InputError("a schema must be an object", field=field)
    if "enum" in schema:
        values = schema["enum"]
        if not isinstance(values, list) or not values:
            raise InputError("enum must be a non-empty list", field=f"{field}.enum")
        return Choice([json.dumps(v, ensure_ascii=False) for v in values])
    kind = schema.get("type", "object" if "properties" in schema else None)
    if kind == "string":
        return Str()
    if kind in ("number", "integer"):
        return Num(kind == "integer")
    if kind == "boolean":
        return Choice(["true", "false"])
    if kind == "array":
        return Arr(schema_matcher(schema.get("items", {"type": "string"}), f"{field}.items"))
    if kind == "object":
        props = schema.get("properties") or {}
        if not isinstance(props, Mapping):
            raise InputError("properties must be an object", field=f"{field}.properties")
        required = [k for k in schema.get("required") or [] if k in props] or list(props)
        parts: list[Matcher] = [Lit("{")]
        for j, key in enumerate(required):
            parts.append(Lit(("" if j == 0 else ", ") + json.dumps(key, ensure_ascii=False) + ": "))
            parts.append(schema_matcher(props[key], f"{field}.properties.{key}"))
        parts.append(Lit("}"))
        return Seq(parts)
    raise InputError(f"type {kind!r} is not supported in tool arguments (string, number, integer, boolean, "
                     "enum, array, object)", field=field)


def call_matcher(tools: Mapping[str, Mapping[str, Any]]) -> Matcher:
    """The text after ``<|tool_call|>`` for one of ``tools`` (name -> parameters schema)."""
    return Alt([Seq([Lit(f'{{"name": "{name}", "arguments": '), schema_matcher(params or {"type": "object"},
                                                                                f"tools[{name}].parameters"),
                     Lit("}")]) for name, params in tools.items()])


class TokenTable:
    """Each token's text (tokens whose bytes are not whole UTF-8 characters, and special tokens, are
    left out), grouped by first character: built once per tokenizer."""

    def __init__(self, decode: Callable[[list[int]], str], vocab_size: int, first_normal: int):
        self.vocab_size = vocab_size
        self.texts: dict[int, str] = {}
        self.by_first: dict[str, list[int]] = {}
        for t in range(first_normal, vocab_size):
            text = decode([t])
            if text and "\ufffd" not in text:
                self.texts[t] = text
                self.by_first.setdefault(text[0], []).append(t)


def advance(m: Matcher, state: State, text: str) -> State | None:
    for ch in text:
        state = m.step(state, ch)
        if state is None:
            return None
    return state


def min_call_tokens(m: Matcher) -> int:
    """The fewest tokens a call of ``m`` can take, ``<|end|>`` included (one token a character at worst)."""
    return m.shortest(m.start()) + 1


def logits_processor(m: Matcher, table: TokenTable, end_id: int, budget: int | None = None
                     ) -> Callable[[Sequence[int], Sequence[int], torch.Tensor], torch.Tensor]:
    """A processor for one request: only tokens that keep the output a prefix of a match; once the
    match is complete, only ``end_id``. With ``budget`` (the tokens the request may generate, at
    least :func:`min_call_tokens`), only tokens after which the match can still be completed and
    ``end_id`` written within it. Raises if the output ever leaves the automaton."""
    if budget is not None and budget < min_call_tokens(m):
        raise ValueError(f"a budget of {budget} tokens cannot hold a call ({min_call_tokens(m)} at least)")
    moves: dict[State, tuple[list[int], list[int]]] = {}   # state -> (tokens allowed, shortest after each)
    masks: dict[tuple[State, int | None], torch.Tensor] = {}
    progress: list[Any] = [0, m.start()]   # tokens consumed, state after them

    def allowed(state: State) -> tuple[list[int], list[int]]:
        ids, rest = [], []
        for first, group in table.by_first.items():
            if m.step(state, first) is None:
                continue
            for t in group:
                nxt = advance(m, state, table.texts[t])
                if nxt is not None:
                    ids.append(t)
                    rest.append(m.shortest(nxt))
        return ids, rest

    def mask_of(state: State, left: int | None) -> torch.Tensor:
        """``left``: tokens that may follow this one (None: no budget)."""
        if state not in moves:
            moves[state] = allowed(state)
        ids, rest = moves[state]
        if left is not None and (not rest or max(rest) + 1 <= left):
            left = None   # the budget does not bind here: the state's unbudgeted mask serves
        key = (state, left)
        if key not in masks:
            keep = [t for t, r in zip(ids, rest, strict=True) if left is None or r + 1 <= left]
            if m.final(state):
                keep.append(end_id)
            mask = torch.full((table.vocab_size,), float("-inf"))
            mask[keep or ids] = 0.0
            masks[key] = mask
        return masks[key]

    def process(prompt: Sequence[int], output: Sequence[int], logits: torch.Tensor) -> torch.Tensor:
        done, state = progress
        for t in output[done:]:
            state = advance(m, state, table.texts[int(t)])
            if state is None:
                raise ValueError("the output left the tool-call grammar")
        progress[:] = [len(output), state]
        mask = mask_of(state, None if budget is None else budget - len(output) - 1)
        if logits.shape[-1] > mask.shape[0]:  # the model's padded vocabulary: the padding never comes
            mask = torch.cat([mask, torch.full((logits.shape[-1] - mask.shape[0],), float("-inf"))])
        return logits + mask[: logits.shape[-1]].to(logits.device, logits.dtype)

    return process


def check_value(schema: Mapping[str, Any], value: Any) -> bool:
    """Whether ``value`` fits ``schema`` (the same subset; required keys present, types right)."""
    if "enum" in schema:
        return value in schema["enum"]
    kind = schema.get("type", "object" if "properties" in schema else None)
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list) and all(check_value(schema.get("items", {}), v) for v in value)
    if kind == "object":
        props = schema.get("properties") or {}
        return (isinstance(value, dict) and all(k in value for k in schema.get("required") or [])
                and all(check_value(props[k], v) for k, v in value.items() if k in props))
    return True
