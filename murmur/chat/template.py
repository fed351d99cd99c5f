"""The chat format: how a conversation becomes token ids, in exactly one place.

A conversation renders as::

    <|doc|><|system|>You are helpful.<|end|><|user|>Hi!<|end|><|assistant|>Hello.<|end|>

``<|doc|>`` opens it (as every pretraining document starts with it), each message is its role token,
its content encoded as plain text, and ``<|end|>``. With ``add_generation_prompt`` a final
``<|assistant|>`` asks the model for the next turn, which it ends by producing ``<|end|>``.

Tool calls use the tokenizer's reserved tool tokens. The tools on offer open the conversation as a
system turn listing one signature a line, its parameters with their types (``?``: optional) and the
tool's description::

    <|system|>Tools:
    search_posts(query: string, k?: integer, lang?: "en"|"es", tags?: string[]): Search posts.<|end|>

(the whole JSON schema would take most of a small model's context; the constrained decoder, not the
prompt, holds a call to its schema). An assistant turn
that calls tools ends its text with one ``<|tool_call|>{"name": "NAME", "arguments": {...}}`` per call;
a tool's result is its own turn, ``<|tool_result|>TEXT<|end|>``::

    <|doc|><|system|>Tools:\nsearch_posts(...)<|end|><|user|>Cats?<|end|><|assistant|><|tool_call|>{"name":
    "search_posts", "arguments": {"query": "cats"}}<|end|><|tool_result|>[1] ...<|end|><|assistant|>...

``render`` works on ids, so text that merely looks like a special token (``"<|end|>"`` typed by a
user) is encoded as ordinary text and cannot forge a turn. ``CHAT_TEMPLATE`` is the same format as a
Jinja template for Hugging Face exports; a test checks that both give the same ids on ordinary text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from murmur.errors import InputError

ROLES = ("system", "user", "assistant", "tool")

# Special token ids fixed by the tokenizer (murmur.tokenizer reserves them in this order).
DOC_ID, PAD_ID, SYSTEM_ID, USER_ID, ASSISTANT_ID, END_ID, TOOL_CALL_ID, TOOL_RESULT_ID = 0, 1, 2, 3, 4, 5, 6, 7
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ROLE_IDS = {"system": SYSTEM_ID, "user": USER_ID, "assistant": ASSISTANT_ID}

CHAT_TEMPLATE = (
    "<|doc|>"
    "{% if tools %}<|system|>Tools:"
    "{% for tool in tools %}"
    "{% set f = tool['function'] if tool['function'] is defined else tool %}"
    "{% set params = f['parameters'] if f['parameters'] is defined and f['parameters'] else {} %}"
    "{% set props = params['properties'] if params['properties'] is defined and params['properties'] else {} %}"
    "{% set req = params['required'] if params['required'] is defined and params['required'] else [] %}"
    "{{ '\\n' }}{{ f['name'] }}("
    "{% for key, p in props.items() %}{% if not loop.first %}, {% endif %}{{ key }}"
    "{% if key not in req %}?{% endif %}: "
    "{% if p['enum'] is defined %}{% for v in p['enum'] %}{% if not loop.first %}|{% endif %}{{ v | tojson }}"
    "{% endfor %}"
    "{% elif p['type'] is defined and p['type'] == 'array' %}"
    "{{ p['items']['type'] if p['items'] is defined and p['items']['type'] is defined else 'any' }}[]"
    "{% else %}{{ p['type'] if p['type'] is defined else 'any' }}{% endif %}"
    "{% endfor %})"
    "{% if f['description'] is defined and f['description'] %}: {{ f['description'] }}{% endif %}"
    "{% endfor %}<|end|>{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'tool' %}<|tool_result|>{{ message['content'] }}<|end|>"
    "{% else %}<|{{ message['role'] }}|>{{ message['content'] or '' }}"
    "{% for call in message['tool_calls'] or [] %}"
    "{% set f = call['function'] if call['function'] is defined else call %}"
    "<|tool_call|>{\"name\": \"{{ f['name'] }}\", \"arguments\": "
    "{% if f['arguments'] is string %}{{ f['arguments'] }}{% else %}{{ f['arguments'] | tojson }}{% endif %}}"
    "{% endfor %}<|end|>{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


class Encoder(Protocol):
    def encode(self, text: str) -> list[int]: ...


def _content(message: Mapping[str, Any], index: int) -> str:
    """A message's text; OpenAI-style lists of ``{"type": "text", "text": ...}`` parts are joined."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, Mapping) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise InputError("only text content parts are supported", field=f"messages[{index}].content")
            parts.append(part["text"])
        return "".join(parts)
    raise InputError("content must be a string or a list of text parts", field=f"messages[{index}].content")


def call_text(name: str, arguments: str | Mapping[str, Any]) -> str:
    """The text after ``<|tool_call|>``: ``{"name": NAME, "arguments": ARGS}`` (ARGS as the JSON given)."""
    args = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return f'{{"name": "{name}", "arguments": {args}}}'


def type_text(schema: Any) -> str:
    """A parameter's type in a signature: its JSON type, ``"a"|"b"`` for an enum, ``string[]`` for an array."""
    if not isinstance(schema, Mapping):
        return "any"
    if "enum" in schema:
        return "|".join(json.dumps(v, ensure_ascii=False) for v in schema["enum"])
    if schema.get("type") == "array":
        items = schema.get("items")
        return f"{items['type'] if isinstance(items, Mapping) and 'type' in items else 'any'}[]"
    return str(schema.get("type", "any"))


def signature(tool: Mapping[str, Any]) -> str:
    """One tool as a line: ``name(param: type, optional?: type): description``."""
    f = tool.get("function", tool)
    params = f.get("parameters") or {}
    required = params.get("required") or []
    args = ", ".join(f"{key}{'' if key in required else '?'}: {type_text(p)}"
                     for key, p in (params.get("properties") or {}).items())
    return f"{f['name']}({args})" + (f": {f['description']}" if f.get("description") else "")


def tools_text(tools: Sequence[Mapping[str, Any]]) -> str:
    """The system turn that offers ``tools`` (OpenAI's list of ``{"type": "function", ...}``): one
    signature a line under ``Tools:``."""
    return "Tools:" + "".join("\n" + signature(t) for t in tools)


def _calls(message: Mapping[str, Any], index: int) -> list[str]:
    calls = message.get("tool_calls") or []
    if calls and message.get("role") != "assistant":
        raise InputError("only assistant messages carry tool_calls", field=f"messages[{index}].tool_calls")
    out = []
    for j, call in enumerate(calls):
        f = call.get("function", call) if isinstance(call, Mapping) else None
        field = f"messages[{index}].tool_calls[{j}]"
        if not isinstance(f, Mapping) or not isinstance(f.get("name"), str) or not TOOL_NAME.match(f["name"]):
            raise InputError("a tool call needs a function name of letters, digits, _ or -", field=field)
        args = f.get("arguments", "{}")
        if isinstance(args, str):
            try:
                json.loads(args)
            except ValueError:
                raise InputError("the arguments must be JSON text", field=f"{field}.function.arguments") from None
        out.append(call_text(f["name"], args))
    return out


def check_messages(messages: Iterable[Mapping[str, Any]]) -> list[tuple[str, str, list[str]]]:
    """Validate a conversation: (role, text, tool call texts) each; bad roles or content -> InputError."""
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise InputError("each message must be an object with role and content", field=f"messages[{i}]")
        role = message.get("role")
        if role not in ROLES:
            raise InputError(f"role must be one of {', '.join(ROLES)}, not {role!r}", field=f"messages[{i}].role")
        out.append((role, _content(message, i), _calls(message, i)))
    if not out:
        raise InputError("a conversation needs at least one message", field="messages")
    return out


def _message_ids(tokenizer: Encoder, role: str, text: str, calls: Sequence[str]) -> list[int]:
    ids = [TOOL_RESULT_ID if role == "tool" else ROLE_IDS[role], *tokenizer.encode(text)]
    for call in calls:
        ids.append(TOOL_CALL_ID)
        ids.extend(tokenizer.encode(call))
    ids.append(END_ID)
    return ids


def render(tokenizer: Encoder, messages: Iterable[Mapping[str, Any]], add_generation_prompt: bool = True,
           tools: Sequence[Mapping[str, Any]] | None = None) -> list[int]:
    """Token ids of ``messages`` in the chat format (see the module doc), ready for the model."""
    ids = [DOC_ID]
    if tools:
        ids += [SYSTEM_ID, *tokenizer.encode(tools_text(tools)), END_ID]
    for role, text, calls in check_messages(messages):
        ids.extend(_message_ids(tokenizer, role, text, calls))
    if add_generation_prompt:
        ids.append(ASSISTANT_ID)
    return ids


def recent_turns(tokenizer: Encoder, messages: Sequence[Mapping[str, Any]], limit: int,
                 tools: Sequence[Mapping[str, Any]] | None = None) -> list[int]:
    """The prompt of ``messages`` (with the generation prompt) keeping the
    leading system messages and the most recent turns (a turn: a user message and what follows it)
    whose prompt is at most ``limit`` tokens. The last turn is always kept, so the prompt may still be
    longer than ``limit``: the caller decides what to do then."""
    checked = check_messages(messages)
    head = 0
    while head < len(checked) and checked[head][0] == "system":
        head += 1
    starts = [i for i in range(head + 1, len(checked)) if checked[i][0] == "user"]
    per = [_message_ids(tokenizer, *m) for m in checked]
    opening = [DOC_ID, *([SYSTEM_ID, *tokenizer.encode(tools_text(tools)), END_ID] if tools else [])]
    first = head
    total = len(opening) + sum(len(p) for p in per) + 1
    for start in starts:   # drop the oldest turn while the prompt is too long
        if total <= limit:
            break
        total -= sum(len(p) for p in per[first:start])
        first = start
    return [*opening, *(t for p in per[:head] + per[first:] for t in p), ASSISTANT_ID]


def render_text(messages: Iterable[Mapping[str, Any]], add_generation_prompt: bool = True,
                tools: Sequence[Mapping[str, Any]] | None = None) -> str:
    """The conversation as text with special-token markers (for logs and for humans)."""
    parts = ["<|doc|>"]
    if tools:
        parts.append(f"<|system|>{tools_text(tools)}<|end|>")
    for role, text, calls in check_messages(messages):
        head = "<|tool_result|>" if role == "tool" else f"<|{role}|>"
        parts.append(head + text + "".join("<|tool_call|>" + c for c in calls) + "<|end|>")
    if add_generation_prompt:
        parts.append("<|assistant|>")
    return "".join(parts)
