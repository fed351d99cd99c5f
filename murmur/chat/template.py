"""The chat format: how a conversation becomes token ids, in exactly one place.

A conversation renders as::

    <|doc|><|system|>You are helpful.<|end|><|user|>Hi!<|end|><|assistant|>Hello.<|end|>

``<|doc|>`` opens it (as every pretraining document starts with it), each message is its role token,
its content encoded as plain text, and ``<|end|>``. With ``add_generation_prompt`` a final
``<|assistant|>`` asks the model for the next turn, which it ends by producing ``<|end|>``.

Tool calls use the tokenizer's reserved tool tokens. The tools on offer open the conversation as a
system turn, ``<|system|>Tools: [...]<|end|>`` (the OpenAI ``tools`` list as JSON); an assistant turn
that calls tools ends its text with one ``<|tool_call|>{"name": "NAME", "arguments": {...}}`` per call;
a tool's result is its own turn, ``<|tool_result|>TEXT<|end|>``::

    <|doc|><|system|>Tools: [...]<|end|><|user|>Cats?<|end|><|assistant|><|tool_call|>{"name":
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
    "{% if tools %}<|system|>Tools: {{ tools | tojson }}<|end|>{% endif %}"
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


def tools_text(tools: Sequence[Mapping[str, Any]]) -> str:
    """The system turn that offers ``tools`` (OpenAI's list of ``{"type": "function", ...}``)."""
    return "Tools: " + json.dumps(list(tools), ensure_ascii=False)


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


def render(tokenizer: Encoder, messages: Iterable[Mapping[str, Any]], add_generation_prompt: bool = True,
           tools: Sequence[Mapping[str, Any]] | None = None) -> list[int]:
    """Token ids of ``messages`` in the chat format (see the module doc), ready for the model."""
    ids = [DOC_ID]
    if tools:
        ids += [SYSTEM_ID, *tokenizer.encode(tools_text(tools)), END_ID]
    for role, text, calls in check_messages(messages):
        ids.append(TOOL_RESULT_ID if role == "tool" else ROLE_IDS[role])
        ids.extend(tokenizer.encode(text))
        for call in calls:
            ids.append(TOOL_CALL_ID)
            ids.extend(tokenizer.encode(call))
        ids.append(END_ID)
    if add_generation_prompt:
        ids.append(ASSISTANT_ID)
    return ids


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
