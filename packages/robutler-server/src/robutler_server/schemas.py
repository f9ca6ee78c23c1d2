"""The chat-completions request body, validated strictly (OpenAI's API reference names).

Source: https://platform.openai.com/docs/api-reference/chat/create. Known fields are
type-checked strictly (``"1"`` is not a number), messages by role with OpenAI's content parts,
tool ``parameters`` and ``response_format`` schemas must be valid JSON Schemas, and no string
may hold a lone UTF-16 surrogate (``"\\ud800"`` escaped in JSON) that no UTF-8 encoder can
send on. Unknown top-level fields are kept: :meth:`ChatCompletionRequest.model_params` passes
them to the agent, whose answering LLM skill honours them or refuses them with a 400.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal, Union

from fastapi.exceptions import RequestValidationError
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

LOOP_FIELDS = frozenset({"messages", "model", "stream", "tools"})
"""Request fields the server hands to the agent separately, not as model parameters."""

_SURROGATE = re.compile("[\ud800-\udfff]")


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


def check_json_schema(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """``schema`` unchanged when it is a valid JSON Schema (checked against the metaschema of
    its ``$schema``, the latest draft by default); ValueError naming the problem otherwise
    (also for a schema nested too deeply for the checker, some 90 levels)."""
    if schema is None:
        return None
    from jsonschema import SchemaError  # ~30 ms of import, for requests with tools or schemas
    from jsonschema.validators import validator_for

    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        problem = exc.message if len(exc.message) <= 200 else exc.message[:199] + "…"
        raise ValueError(f"not a valid JSON Schema: {problem}" + (f" (at /{where})" if where else "")) from None
    except RecursionError:
        raise ValueError("a JSON Schema nested too deeply to check") from None
    return schema


def reject_lone_surrogates(title: str, data: Any) -> Any:
    """``data`` unchanged, or a ValidationError (a 400 naming the field) for a string or key
    anywhere in it holding a lone UTF-16 surrogate; ``title`` names the model in the error."""
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), data)]
    while stack:
        loc, value = stack.pop()
        if isinstance(value, str):
            bad = _SURROGATE.search(value) is not None
        elif isinstance(value, dict):
            bad = any(isinstance(k, str) and _SURROGATE.search(k) for k in value)
            stack.extend(((*loc, k), v) for k, v in value.items())
        elif isinstance(value, list):
            bad = False
            stack.extend(((*loc, i), v) for i, v in enumerate(value))
        else:
            bad = False
        if bad:
            error = PydanticCustomError(
                "invalid_unicode", "Input should be valid Unicode: it holds a lone UTF-16 surrogate"
            )
            raise ValidationError.from_exception_data(title, [InitErrorDetails(type=error, loc=loc, input=value)])
    return data


JSONSchema = Annotated[dict[str, Any], Field(description="A JSON Schema (https://json-schema.org)")]


# --- content parts (OpenAI: ChatCompletionContentPart*) ---------------------------------------


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ImageURL(_Strict):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Strict):
    type: Literal["image_url"]
    image_url: ImageURL


class InputAudio(_Strict):
    data: str = Field(description="base64-encoded audio")
    format: Literal["wav", "mp3"]


class InputAudioPart(_Strict):
    type: Literal["input_audio"]
    input_audio: InputAudio


class File(_Strict):
    file_data: str | None = Field(default=None, description="base64-encoded file")
    file_id: str | None = None
    filename: str | None = None


class FilePart(_Strict):
    type: Literal["file"]
    file: File


class RefusalPart(_Strict):
    type: Literal["refusal"]
    refusal: str


def _content_kind(value: Any) -> str | None:
    return "string" if isinstance(value, str) else "parts" if isinstance(value, list) else None


def string_or_list(item: Any, what: str = "content parts", error_type: str = "content_type") -> Any:
    """A field that is a string or a list of ``item``: a validation error says "Input should be
    a string or a list of ``what``" rather than listing both members' errors."""
    return Annotated[
        Union[Annotated[str, Tag("string")], Annotated[list[item], Tag("parts")]],  # type: ignore[valid-type]
        Discriminator(
            _content_kind,
            custom_error_type=error_type,
            custom_error_message=f"Input should be a string or a list of {what}",
        ),
    ]


def _content(*parts: type[BaseModel]) -> Any:
    """A message's ``content``: a string, or a list of the given content parts (by ``type``)."""
    return string_or_list(Annotated[Union[parts], Field(discriminator="type")] if len(parts) > 1 else parts[0])


TextContent = _content(TextPart)
UserContent = _content(TextPart, ImagePart, InputAudioPart, FilePart)
AssistantContent = _content(TextPart, RefusalPart)


# --- messages (OpenAI: ChatCompletion*MessageParam) -----------------------------------------


class ToolCallFunction(_Strict):
    name: str
    arguments: str = Field(description="the arguments as a JSON string")


class ToolCall(_Strict):
    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


class SystemMessage(_Strict):
    role: Literal["system"]
    content: TextContent
    name: str | None = None


class DeveloperMessage(_Strict):
    role: Literal["developer"]
    content: TextContent
    name: str | None = None


class UserMessage(_Strict):
    role: Literal["user"]
    content: UserContent
    name: str | None = None


class AssistantAudio(_Strict):
    id: str


class AssistantMessage(_Strict):
    role: Literal["assistant"]
    content: AssistantContent | None = None
    refusal: str | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    function_call: ToolCallFunction | None = Field(default=None, description="deprecated: tool_calls")
    audio: AssistantAudio | None = None


class ToolMessage(_Strict):
    role: Literal["tool"]
    content: TextContent
    tool_call_id: str


ChatMessage = Annotated[
    Union[SystemMessage, DeveloperMessage, UserMessage, AssistantMessage, ToolMessage],
    Field(discriminator="role"),
]


# --- tools, response formats, other parameters -----------------------------------------------


class FunctionDefinition(_Strict):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: JSONSchema | None = None
    strict: bool | None = None

    _check_parameters = field_validator("parameters")(check_json_schema)


class ToolDefinition(_Strict):
    type: Literal["function"]
    function: FunctionDefinition


class FunctionName(_Strict):
    name: str


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: FunctionName


class StreamOptions(_Strict):
    include_usage: bool = False


class ResponseFormatText(_Strict):
    type: Literal["text"]


class ResponseFormatJSONObject(_Strict):
    type: Literal["json_object"]


class JSONSchemaFormat(_Strict):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    schema_: JSONSchema | None = Field(default=None, alias="schema")
    strict: bool | None = None

    _check_schema = field_validator("schema_")(check_json_schema)


class ResponseFormatJSONSchema(_Strict):
    type: Literal["json_schema"]
    json_schema: JSONSchemaFormat


ResponseFormat = Annotated[
    Union[ResponseFormatText, ResponseFormatJSONObject, ResponseFormatJSONSchema],
    Field(discriminator="type"),
]


class ChatCompletionRequest(_Strict):
    """``POST /chat/completions`` body. ``model`` names the agent on ``/v1/chat/completions``.

    ``reasoning_effort`` and ``service_tier`` are any string: their values differ between
    providers and grow, so the answering LLM skill (or its provider) judges them.
    """

    messages: list[ChatMessage] = Field(min_length=1)
    model: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[ToolDefinition] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    n: int | None = Field(default=None, ge=1, le=1, description="only 1 is supported")
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, Annotated[int, Field(ge=-100, le=100)]] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    seed: int | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    metadata: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]] | None = Field(
        default=None, max_length=16
    )
    store: bool | None = None
    reasoning_effort: str | None = Field(default=None, examples=["minimal", "low", "medium", "high"])
    verbosity: Literal["low", "medium", "high"] | None = None
    service_tier: str | None = Field(default=None, examples=["auto", "default", "flex", "priority"])
    modalities: list[Literal["text", "audio"]] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    web_search_options: dict[str, Any] | None = None
    response_format: ResponseFormat | None = None
    functions: list[FunctionDefinition] | None = Field(
        default=None, min_length=1, max_length=128, description="deprecated: tools"
    )
    function_call: Literal["none", "auto"] | FunctionName | None = Field(
        default=None, description="deprecated: tool_choice"
    )

    @model_validator(mode="before")
    @classmethod
    def _no_lone_surrogates(cls, data: Any, info: ValidationInfo) -> Any:
        if info.context is not None and info.context.get(_NO_SURROGATES):
            return data  # parse_chat_request saw that the JSON cannot hold one
        return reject_lone_surrogates(cls.__name__, data)

    def split(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
        """``(messages, tools, model params)`` from one dump: :meth:`messages_as_dicts`,
        :meth:`tools_as_dicts` and :meth:`model_params` at once."""
        data = self.model_dump(exclude_none=True, by_alias=True)
        messages = data.pop("messages")
        tools = data.pop("tools", [])
        for name in LOOP_FIELDS:
            data.pop(name, None)
        return messages, tools, data

    def messages_as_dicts(self) -> list[dict[str, Any]]:
        return [m.model_dump(exclude_none=True) for m in self.messages]

    def tools_as_dicts(self) -> list[dict[str, Any]]:
        return [t.model_dump(exclude_none=True) for t in self.tools or []]

    def model_params(self) -> dict[str, Any]:
        """Every parameter for the model that the request sets (not to ``null``): the known
        ones (``stream_options`` included) and unknown top-level fields, as sent. The agent
        passes each to its LLM skill, or refuses one the skill does not support."""
        return self.model_dump(exclude=set(LOOP_FIELDS), exclude_none=True, by_alias=True)


def parse_chat_request(body: bytes, content_type: str | None) -> ChatCompletionRequest:
    """The :class:`ChatCompletionRequest` of a request's ``body``, read as FastAPI reads a JSON
    body: an empty body is a missing one, JSON when ``content_type`` is absent,
    ``application/json`` or ``application/*+json``, else the raw bytes (which are not an
    object). Raises ``fastapi.exceptions.RequestValidationError`` (locations under ``body``),
    which :func:`robutler_server.errors.validation_error` turns into the 400 envelope.

    A UTF-8 JSON body that cannot hold a lone surrogate is validated straight from its bytes
    (pydantic-core's parser: ~3 us less than ``json.loads`` and a validation of its objects);
    when that fails, the body is read again as below, whose errors (and their messages) are
    the request's. Both readings accept the same bodies with the same values: a body that only
    ``json.loads`` reads (a UTF-8 byte order mark, ``NaN``...) fails the first and passes the
    second."""
    data: Any = None
    if body:
        json_body = _is_json(content_type)
        if json_body and _cannot_hold_surrogates(body):
            try:
                return ChatCompletionRequest.model_validate_json(body, context=_SURROGATE_FREE)
            except ValidationError:
                pass  # read again below, for the error FastAPI's reading gives
        if json_body:
            try:
                data = json.loads(body)
            except json.JSONDecodeError as exc:
                raise RequestValidationError(
                    [{"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error",
                      "input": {}, "ctx": {"error": exc.msg}}], body=exc.doc,
                ) from None
            except UnicodeDecodeError as exc:  # not UTF-8 (nor -16, -32)
                raise RequestValidationError(
                    [{"type": "json_invalid", "loc": ("body", exc.start), "msg": "JSON decode error",
                      "input": {}, "ctx": {"error": f"not Unicode text ({exc.reason} at byte {exc.start})"}}],
                ) from None
        else:
            data = body
    if data is None:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    context = _SURROGATE_FREE if isinstance(data, dict) and _cannot_hold_surrogates(body) else None
    try:
        return ChatCompletionRequest.model_validate(data, from_attributes=True, context=context)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        raise RequestValidationError(errors, body=data) from None


_NO_SURROGATES = "robutler_server.no_lone_surrogates"
_SURROGATE_FREE = {_NO_SURROGATES: True}


def _cannot_hold_surrogates(body: bytes) -> bool:
    """Whether the JSON text ``body`` decodes without a lone surrogate for certain: it is
    UTF-8 (what ``json.loads`` detects: no UTF-16/32 byte order mark or NUL among the first 4
    bytes), holds no ``\\u`` escape and no byte 0xED (``json.loads`` decodes with
    'surrogatepass', so ED A0..BF would make one)."""
    return (not body.startswith((b"\xff", b"\xfe")) and b"\x00" not in body[:4]
            and b"\\u" not in body and b"\xed" not in body)


def _is_json(content_type: str | None) -> bool:
    if not content_type or content_type == "application/json":
        return True
    kind = content_type.split(";", 1)[0].strip().lower()
    main, _, sub = kind.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))
