"""The chat format: how a conversation becomes token ids, in exactly one place.

A conversation renders as::

    <|doc|><|system|>You are helpful.<|end|><|user|>Hi!<|end|><|assistant|>Hello.<|end|>

``<|doc|>`` opens it (as every pretraining document starts with it), each message is its role token,
its content encoded as plain text, and ``<|end|>``. With ``add_generation_prompt`` a final
``<|assistant|>`` asks the model for the next turn, which it ends by producing ``<|end|>``.

``render`` works on ids, so text that merely looks like a special token (``"<|end|>"`` typed by a
user) is encoded as ordinary text and cannot forge a turn. ``CHAT_TEMPLATE`` is the same format as a
Jinja template for Hugging Face exports; a test checks that both give the same ids on ordinary text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from murmur.errors import InputError

ROLES = ("system", "user", "assistant")

# Special token ids fixed by the tokenizer (murmur.tokenizer reserves them in this order).
DOC_ID, PAD_ID, SYSTEM_ID, USER_ID, ASSISTANT_ID, END_ID = 0, 1, 2, 3, 4, 5
ROLE_IDS = {"system": SYSTEM_ID, "user": USER_ID, "assistant": ASSISTANT_ID}

CHAT_TEMPLATE = (
    "<|doc|>"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>{{ message['content'] }}<|end|>"
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


def check_messages(messages: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Validate a conversation and return its (role, text) pairs; bad roles or content -> InputError."""
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise InputError("each message must be an object with role and content", field=f"messages[{i}]")
        role = message.get("role")
        if role not in ROLES:
            raise InputError(f"role must be one of {', '.join(ROLES)}, not {role!r}", field=f"messages[{i}].role")
        out.append((role, _content(message, i)))
    if not out:
        raise InputError("a conversation needs at least one message", field="messages")
    return out


def render(tokenizer: Encoder, messages: Iterable[Mapping[str, Any]], add_generation_prompt: bool = True
           ) -> list[int]:
    """Token ids of ``messages`` in the chat format (see the module doc), ready for the model."""
    ids = [DOC_ID]
    for role, text in check_messages(messages):
        ids.append(ROLE_IDS[role])
        ids.extend(tokenizer.encode(text))
        ids.append(END_ID)
    if add_generation_prompt:
        ids.append(ASSISTANT_ID)
    return ids


def render_text(messages: Iterable[Mapping[str, Any]], add_generation_prompt: bool = True) -> str:
    """The conversation as text with special-token markers (for logs and for humans)."""
    parts = ["<|doc|>"]
    for role, text in check_messages(messages):
        parts.append(f"<|{role}|>{text}<|end|>")
    if add_generation_prompt:
        parts.append("<|assistant|>")
    return "".join(parts)
