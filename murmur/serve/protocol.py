"""The request and response bodies of the HTTP API (pydantic), OpenAI's shapes plus vLLM's extras.

Every numeric field carries its range here, so a request out of range is refused at the boundary
(HTTP 400 naming the field) and never reaches the engine.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer

from murmur.engine import SamplingParams

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
TOKEN_ID_MAX = 2**31 - 1   # the engine checks ids against the model's vocabulary
TOP_K_MAX = 2**31 - 1      # anything at or above the vocabulary size means "off"
LOGIT_BIAS_MAX = 300       # as OpenAI: a bias per listed token, each applied on every step


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """Every error: ``{"error": {"message", "type", "param", "code"}}``."""

    error: ErrorBody


class ContentPart(BaseModel):
    type: Literal["text"]
    text: str


class FunctionCall(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    arguments: str = Field(description="The arguments as JSON text.")


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class FunctionDef(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(BaseModel):
    type: Literal["function"] = "function"
    function: FunctionDef


class NamedFunction(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    type: Literal["function"] = "function"
    function: NamedFunction


class StreamOptions(BaseModel):
    include_usage: bool = False


class GenerationFields(BaseModel):
    """Sampling fields shared by chat and text completions (OpenAI's, plus vLLM's extras)."""

    model_config = ConfigDict(extra="ignore")
    model: str | None = Field(None, description="Model id from /v1/models (default: the served model).")
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1, le=TOKEN_ID_MAX,
                                   description="Most tokens to generate (default: what the context has room for).")
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = Field(None, description="Up to 4 non-empty stop strings.")
    n: int = Field(1, ge=1, le=16)
    seed: int | None = Field(None, ge=INT64_MIN, le=INT64_MAX)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    top_k: int = Field(0, ge=-1, le=TOP_K_MAX, description="0 or -1: off.")
    min_p: float = Field(0.0, ge=0.0, le=1.0)
    repetition_penalty: float = Field(1.0, gt=0.0, le=10.0)
    stop_token_ids: list[int] | None = Field(None, max_length=64)
    ignore_eos: bool = False
    logit_bias: dict[str, float] | None = Field(
        None, description="Token id (as a string) to a bias from -100 to 100 added to its logit; -100 bans it, "
                          f"100 all but forces it. At most {LOGIT_BIAS_MAX} entries.")
    logprobs: bool | int | None = Field(None, description="Not supported: must be absent, null, false or 0.")
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _stop(cls, v: str | list[str] | None) -> list[str] | None:
        if v is None:
            return None
        stops = [v] if isinstance(v, str) else v
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop sequences must not be empty")
        return stops

    @field_validator("stop_token_ids")
    @classmethod
    def _stop_ids(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and any(not 0 <= t <= TOKEN_ID_MAX for t in v):
            raise ValueError("token ids must be non-negative")
        return v

    @field_validator("logit_bias")
    @classmethod
    def _logit_bias(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if not v:
            return None
        if len(v) > LOGIT_BIAS_MAX:
            raise ValueError(f"at most {LOGIT_BIAS_MAX} entries")
        for key, bias in v.items():
            if not (key.isascii() and key.isdigit()) or int(key) > TOKEN_ID_MAX:
                raise ValueError(f"keys must be token ids (non-negative integers as strings), got {key[:20]!r}")
            if not -100.0 <= bias <= 100.0:
                raise ValueError(f"biases must be between -100 and 100, got {bias} for token {key}")
        return v

    @field_validator("logprobs")
    @classmethod
    def _logprobs(cls, v: bool | int | None) -> None:
        if v:
            raise ValueError("logprobs are not supported")
        return None

    def sampling(self, max_tokens: int | None) -> SamplingParams:
        return SamplingParams(
            max_tokens=max_tokens, temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p, top_k=self.top_k, min_p=self.min_p, seed=self.seed,
            stop=list(self.stop or []), stop_token_ids=self.stop_token_ids, frequency_penalty=self.frequency_penalty,
            presence_penalty=self.presence_penalty, repetition_penalty=self.repetition_penalty,
            ignore_eos=self.ignore_eos,
            logit_bias={int(k): float(b) for k, b in self.logit_bias.items()} if self.logit_bias else None)


class ChatCompletionRequest(GenerationFields):
    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[Tool] | None = Field(None, max_length=64)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = Field(
        None, description="none, auto (default with tools), required, or a named function: the last two "
                          "always give a well-formed call (constrained decoding).")
    max_completion_tokens: int | None = Field(None, ge=1, le=TOKEN_ID_MAX)


class CompletionRequest(GenerationFields):
    prompt: str | list[str] | list[int] = Field(description="Text, a list of texts, or token ids.")
    echo: bool = False
    max_tokens: int | None = Field(16, ge=1, le=TOKEN_ID_MAX,
                                   description="Most tokens to generate (default 16, or what the context has room for).")


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCall] | None = None

    @model_serializer(mode="wrap")
    def _drop_no_calls(self, handler: Any) -> dict[str, Any]:
        out = handler(self)
        if out.get("tool_calls") is None:
            out.pop("tool_calls", None)
        return out


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length", "tool_calls"] | None
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class DeltaToolCall(ToolCall):
    index: int


class Delta(BaseModel):
    """A streamed change: ``role`` on the first chunk, then ``content``; unset fields are left out."""

    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[DeltaToolCall] | None = None

    @model_serializer(mode="wrap")
    def _drop_none(self, handler: Any) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class ChunkChoice(BaseModel):
    index: int
    delta: Delta
    finish_reason: Literal["stop", "length", "tool_calls"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class TextChoice(BaseModel):
    index: int
    text: str
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class TextCompletion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "murmur"
    max_model_len: int | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(BaseModel):
    status: Literal["ok", "loading", "failed"]
    model: str
    detail: str | None = None
