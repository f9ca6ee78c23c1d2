"""The response shapes :mod:`robutler_server.openapi` documents (OpenAI's names), as pydantic
models for their JSON schemas; imported when the document is first built (``GET /openapi.json``),
not when the server starts.

Source: https://platform.openai.com/docs/api-reference/chat/object and
https://platform.openai.com/docs/api-reference/responses/object.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from robutler_core.wire import FINISH_REASONS

# --- response shapes (OpenAI's names) ---------------------------------------------------------


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorObject(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """OpenAI's error envelope."""

    error: ErrorObject


class FunctionCall(_Open):
    name: str
    arguments: str


class ChatCompletionMessageToolCall(_Open):
    id: str
    type: Literal["function"]
    function: FunctionCall


class ChatCompletionMessage(_Open):
    role: Literal["assistant"]
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ChatCompletionMessageToolCall] | None = None


class CompletionUsage(_Open):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


FinishReason = Literal[FINISH_REASONS]  # type: ignore[valid-type]


class Choice(_Open):
    index: int
    message: ChatCompletionMessage
    finish_reason: FinishReason
    logprobs: dict[str, Any] | None = None


class ChatCompletion(_Open):
    """A ``chat.completion``."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage | None = None


class ChoiceDeltaFunctionCall(_Open):
    name: str | None = None
    arguments: str | None = None


class ChoiceDeltaToolCall(_Open):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: ChoiceDeltaFunctionCall | None = None


class ChoiceDelta(_Open):
    role: Literal["assistant"] | None = None
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ChoiceDeltaToolCall] | None = None


class ChunkChoice(_Open):
    index: int
    delta: ChoiceDelta
    finish_reason: FinishReason | None = None
    logprobs: dict[str, Any] | None = None


class ChatCompletionChunk(_Open):
    """A ``chat.completion.chunk``; the last one of a stream may carry only ``usage``."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None


# --- Responses API shapes (https://platform.openai.com/docs/api-reference/responses/object) ---


class ResponseOutputItem(_Open):
    """An output item: a ``message`` (``output_text`` parts) or a ``function_call``."""

    id: str
    type: Literal["message", "function_call"]
    status: Literal["in_progress", "completed", "incomplete"]


class ResponseInputTokensDetails(_Open):
    cached_tokens: int


class ResponseUsage(_Open):
    input_tokens: int
    input_tokens_details: ResponseInputTokensDetails
    output_tokens: int
    total_tokens: int


class ResponseError(_Open):
    code: str
    message: str


class IncompleteDetails(_Open):
    reason: Literal["max_output_tokens", "content_filter", "max_turns"]


class Response(_Open):
    """A ``response``."""

    id: str
    object: Literal["response"]
    created_at: int
    status: Literal["completed", "incomplete", "failed", "in_progress"]
    model: str
    output: list[ResponseOutputItem]
    error: ResponseError | None
    incomplete_details: IncompleteDetails | None
    usage: ResponseUsage | None


class ResponseStreamEvent(_Open):
    """One event of a Responses stream (``response.created`` ... ``response.completed``)."""

    type: str
    sequence_number: int


class ResponseDeleted(BaseModel):
    id: str
    object: Literal["response.deleted"]
    deleted: bool


class ResponseItemList(BaseModel):
    """A page of a response's input items."""

    object: Literal["list"]
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool
