"""The Responses API request body (``POST /v1/responses``), validated strictly.

Source: https://platform.openai.com/docs/api-reference/responses/create and the ``openai``
package's ``openai.types.responses`` (``ResponseCreateParams``, ``ResponseInputItemParam``).
Known fields are type-checked strictly (``"1"`` is not a number), input items by ``type`` (an
item without one is a message, as OpenAI's ``EasyInputMessage``), function ``parameters`` and
``text.format`` schemas must be valid JSON Schemas, and no string may hold a lone UTF-16
surrogate. Items may carry the extra fields that a previous response's output items have
(``id``, ``status``...): clients send those back unchanged.

What this server cannot honour is refused with a 400 naming the field
(:meth:`ResponsesRequest.refused`): built-in tools (``web_search``, ``file_search``...),
``background``, ``conversation``, ``prompt``, ``truncation: "auto"``, ``include``,
``item_reference`` input items. Unknown top-level fields are passed to the agent as model
parameters, as on chat completions: the answering LLM skill honours them or refuses them (400).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from .schemas import JSONSchema, _Strict, check_json_schema, reject_lone_surrogates, string_or_list

# --- content parts (OpenAI: ResponseInputText, ResponseInputImage, ResponseInputFile, ...) ---


class InputText(_Strict):
    type: Literal["input_text"]
    text: str


class InputImage(_Strict):
    type: Literal["input_image"]
    image_url: str | None = Field(default=None, description="a URL or a data: URL")
    file_id: str | None = None
    detail: Literal["auto", "low", "high", "original"] | None = None


class InputFile(_Strict):
    type: Literal["input_file"]
    file_data: str | None = Field(default=None, description="base64-encoded file")
    file_id: str | None = None
    file_url: str | None = None
    filename: str | None = None


class OutputText(_Strict):
    """A previous answer's text, sent back as part of an assistant message."""

    type: Literal["output_text"]
    text: str


class Refusal(_Strict):
    type: Literal["refusal"]
    refusal: str


InputContent = Annotated[Union[InputText, InputImage, InputFile, OutputText, Refusal], Field(discriminator="type")]


Content = string_or_list(InputContent)


# --- input items (OpenAI: ResponseInputItemParam) -------------------------------------------


class MessageItem(_Strict):
    """A message: ``EasyInputMessage`` (``type`` optional) or an output message sent back."""

    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: Content


class FunctionCallItem(_Strict):
    """A function call the model made (a previous response's output item)."""

    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str = Field(description="the arguments as a JSON string")


FunctionOutputContent = Annotated[Union[InputText, InputImage, InputFile], Field(discriminator="type")]


class FunctionCallOutputItem(_Strict):
    """The client's result of a function call."""

    type: Literal["function_call_output"]
    call_id: str
    output: str | list[FunctionOutputContent]


class ItemReference(_Strict):
    type: Literal["item_reference"]
    id: str


def _item_kind(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    kind = value.get("type", "message")
    return kind if kind in ("message", "function_call", "function_call_output", "item_reference") else None


InputItem = Annotated[
    Union[
        Annotated[MessageItem, Tag("message")],
        Annotated[FunctionCallItem, Tag("function_call")],
        Annotated[FunctionCallOutputItem, Tag("function_call_output")],
        Annotated[ItemReference, Tag("item_reference")],
    ],
    Discriminator(
        _item_kind,
        custom_error_type="item_type",
        custom_error_message=(
            "Input should be an item of type 'message', 'function_call' or 'function_call_output'"
        ),
    ),
]


Input = string_or_list(InputItem, "input items", "input_type")


# --- tools, tool choice, text format ----------------------------------------------------------


class FunctionTool(_Strict):
    """A client-side function tool: its calls are returned as ``function_call`` output items."""

    type: Literal["function"]
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: JSONSchema | None = None
    strict: bool | None = None

    _check_parameters = field_validator("parameters")(check_json_schema)


class OtherTool(_Strict):
    """A tool of another type (``web_search``, ``file_search``, ``mcp``...): refused (400)."""

    type: str


def _tool_kind(value: Any) -> str:
    return "function" if isinstance(value, dict) and value.get("type") == "function" else "other"


Tool = Annotated[
    Union[Annotated[FunctionTool, Tag("function")], Annotated[OtherTool, Tag("other")]],
    Discriminator(_tool_kind),
]


class FunctionToolChoice(_Strict):
    type: Literal["function"]
    name: str


class TextFormatText(_Strict):
    type: Literal["text"]


class TextFormatJSONObject(_Strict):
    type: Literal["json_object"]


class TextFormatJSONSchema(_Strict):
    type: Literal["json_schema"]
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    schema_: JSONSchema = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None

    _check_schema = field_validator("schema_")(check_json_schema)


TextFormat = Annotated[
    Union[TextFormatText, TextFormatJSONObject, TextFormatJSONSchema], Field(discriminator="type")
]


class TextConfig(_Strict):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class Reasoning(_Strict):
    effort: str | None = Field(default=None, examples=["minimal", "low", "medium", "high"])
    summary: str | None = None


Metadata = dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]]


class ResponsesRequest(_Strict):
    """``POST /responses`` body. ``model`` names the agent on ``/v1/responses``.

    ``input`` is a string (one user message) or a list of items; ``instructions`` are added to
    the agent's own as a system message (and, as OpenAI does, not carried over to a response
    that continues this one with ``previous_response_id``).
    """

    model: str | None = None
    input: Input | None = None
    instructions: str | None = None
    tools: list[Tool] | None = Field(
        default=None, description="only tools of type 'function' (client-side tools) are offered"
    )
    tool_choice: Literal["none", "auto", "required"] | FunctionToolChoice | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_output_tokens: int | None = Field(default=None, ge=1)
    text: TextConfig | None = None
    reasoning: Reasoning | None = None
    metadata: Metadata | None = Field(default=None, max_length=16)
    store: bool | None = None
    previous_response_id: str | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    service_tier: str | None = Field(default=None, examples=["auto", "default", "flex", "priority"])
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    truncation: Literal["auto", "disabled"] | None = None
    include: list[str] | None = None
    background: bool | None = None
    conversation: str | dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None
    max_tool_calls: int | None = Field(default=None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _no_lone_surrogates(cls, data: Any) -> Any:
        return reject_lone_surrogates(cls.__name__, data)

    def refused(self) -> tuple[str, str] | None:
        """``(param, reason)`` for the first parameter this server cannot honour, else None."""
        if self.background:
            return "background", "background responses are not offered by this server"
        if self.conversation is not None:
            return "conversation", "conversations are not offered by this server; use previous_response_id"
        if self.prompt is not None:
            return "prompt", "prompt templates are not offered by this server; send instructions"
        if self.truncation == "auto":
            return "truncation", "truncation 'auto' is not offered by this server"
        if self.include:
            return "include", f"include {self.include[0]!r} is not offered by this server"
        if self.max_tool_calls is not None:
            return "max_tool_calls", "max_tool_calls is not offered by this server (only built-in tools count)"
        for i, item in enumerate(self.input if isinstance(self.input, list) else []):
            if isinstance(item, ItemReference):
                return f"input.{i}", "item_reference input items are not offered by this server; send the item"
        for i, tool in enumerate(self.tools or []):
            if isinstance(tool, OtherTool):
                return f"tools.{i}.type", (
                    f"tools of type {tool.type!r} are not offered by this server; only 'function' tools"
                )
        choice = self.tool_choice
        if isinstance(choice, dict):
            return "tool_choice", f"tool_choice of type {choice.get('type')!r} is not offered by this server"
        return None
