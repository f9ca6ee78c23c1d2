"""The Responses API wire format, translated to and from chat completions (pure functions).

One tool loop serves both wire formats: a Responses request becomes chat messages, tools and
model parameters for :meth:`robutler_core.Agent.run` / ``run_streaming``; their
``chat.completion`` becomes a ``response`` object (:func:`response_from_completion`) and their
``chat.completion.chunk`` stream becomes the Responses stream events (:class:`ResponseEvents`).

Shapes follow OpenAI's API reference (https://platform.openai.com/docs/api-reference/responses)
and the ``openai`` package's ``openai.types.responses`` (``Response``,
``ResponseStreamEvent``...). All values are plain dicts, as they travel as JSON. Nothing here
does I/O.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from robutler_core.errors import BadRequestError

from .responses_schemas import (
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionTool,
    FunctionToolChoice,
    MessageItem,
    ResponsesRequest,
    TextFormatJSONObject,
    TextFormatJSONSchema,
)

INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}
"""A chat ``finish_reason`` that makes a response ``incomplete``, and the reason it gives."""

MAX_TURNS = "max_turns"
"""``incomplete_details.reason`` of a response whose tool loop reached the agent's max_turns."""


def new_id(prefix: str) -> str:
    """A fresh id: ``resp_...``, ``msg_...``, ``fc_...``, ``fco_...``."""
    return f"{prefix}_{secrets.token_hex(16)}"


# --- request -> chat ------------------------------------------------------------------------


def input_items(body: ResponsesRequest) -> list[dict[str, Any]]:
    """The request's ``input`` as the items ``GET /responses/{id}/input_items`` lists: a string
    is one user message; every item gets an ``id`` (its own when it has one) and a ``status``;
    a message's string content becomes one ``input_text`` part (``output_text`` for an
    assistant)."""
    if isinstance(body.input, str):  # the common case, without a model dump
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": body.input}],
                 "id": new_id("msg"), "status": "completed"}]
    items = []
    for item in body.input or []:
        data = item.model_dump(exclude_none=True, by_alias=True)
        if isinstance(item, MessageItem):
            kind = "output_text" if item.role == "assistant" else "input_text"
            if isinstance(item.content, str):
                data["content"] = [{"type": kind, "text": item.content}]
            data.setdefault("id", new_id("msg"))
        elif isinstance(item, FunctionCallItem):
            data.setdefault("id", new_id("fc"))
        else:
            data.setdefault("id", new_id("fco"))
        data.setdefault("status", "completed")
        items.append(data)
    return items


def chat_messages(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat messages for input items (as :func:`input_items` gives them): consecutive
    ``function_call`` items join the assistant message before them as its ``tool_calls``;
    a ``function_call_output`` is a ``role: "tool"`` message. BadRequestError (400, ``param``
    the item's path) for content a chat message cannot carry (an image given by ``file_id``,
    a file by URL, an image in a system message or a function output)."""
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        kind = item.get("type", "message")
        if kind == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and last.get("_open", False):
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call], "_open": True})
        elif kind == "function_call_output":
            output = item["output"]
            content = output if isinstance(output, str) else _text_only(output, f"input.{i}.output")
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": content})
        else:
            messages.append(_chat_message(item, f"input.{i}.content"))
    for message in messages:
        message.pop("_open", None)
    return messages


def _chat_message(item: dict[str, Any], param: str) -> dict[str, Any]:
    role, parts = item["role"], item["content"]
    if role == "user":
        return {"role": "user", "content": [_user_part(part, f"{param}.{j}") for j, part in enumerate(parts)]}
    if role == "assistant":
        refusals = [p["refusal"] for p in parts if p["type"] == "refusal"]
        text = "".join(p.get("text", "") for p in parts if p["type"] != "refusal")
        message: dict[str, Any] = {"role": "assistant", "content": text or None, "_open": True}
        if refusals:
            message["refusal"] = "".join(refusals)
        return message
    return {"role": role, "content": _text_only(parts, param)}


def _user_part(part: dict[str, Any], param: str) -> dict[str, Any]:
    kind = part["type"]
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": part["text"]}
    if kind == "input_image":
        if not part.get("image_url"):
            raise BadRequestError(
                "input_image needs image_url (a URL or a data: URL): this server has no file store",
                param=f"{param}.image_url", code="unsupported_parameter",
            )
        image: dict[str, Any] = {"url": part["image_url"]}
        if part.get("detail") in ("auto", "low", "high"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        if part.get("file_url") or not (part.get("file_data") or part.get("file_id")):
            raise BadRequestError(
                "input_file needs file_data (base64) or file_id; file_url is not offered by this server",
                param=f"{param}.file_url", code="unsupported_parameter",
            )
        return {"type": "file", "file": {k: part[k] for k in ("file_data", "file_id", "filename") if k in part}}
    raise BadRequestError(f"a user message cannot hold a {kind} part", param=f"{param}.type", code="invalid_value")


def _text_only(parts: list[dict[str, Any]], param: str) -> str:
    texts = []
    for j, part in enumerate(parts):
        if part["type"] not in ("input_text", "output_text"):
            raise BadRequestError(
                f"only text parts can go here, not {part['type']}", param=f"{param}.{j}.type", code="invalid_value"
            )
        texts.append(part["text"])
    return "".join(texts)


def chat_tools(body: ResponsesRequest) -> list[dict[str, Any]]:
    """The request's function tools as chat ``tools`` entries."""
    tools = []
    for tool in body.tools or []:
        if isinstance(tool, FunctionTool):
            function = tool.model_dump(exclude={"type"}, exclude_none=True, by_alias=True)
            tools.append({"type": "function", "function": function})
    return tools


def chat_params(body: ResponsesRequest) -> dict[str, Any]:
    """The request's model parameters in chat-completions terms: ``max_output_tokens`` ->
    ``max_completion_tokens``, ``text.format`` -> ``response_format``, ``text.verbosity`` ->
    ``verbosity``, ``reasoning.effort`` -> ``reasoning_effort``, ``tool_choice`` by name ->
    ``{"type": "function", "function": {"name"}}``; ``temperature``, ``top_p``,
    ``parallel_tool_calls``, ``user``, ``safety_identifier``, ``prompt_cache_key``,
    ``service_tier``, ``top_logprobs`` (with ``logprobs``) and unknown fields as they are.
    ``metadata`` and ``store`` belong to the response, not the model."""
    params: dict[str, Any] = {
        name: getattr(body, name)
        for name in ("temperature", "top_p", "parallel_tool_calls", "user", "safety_identifier",
                     "prompt_cache_key", "service_tier", "top_logprobs")
        if getattr(body, name) is not None
    }
    if body.top_logprobs is not None:
        params["logprobs"] = True
    if body.max_output_tokens is not None:
        params["max_completion_tokens"] = body.max_output_tokens
    choice = body.tool_choice
    if isinstance(choice, FunctionToolChoice):
        params["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    elif choice is not None:
        params["tool_choice"] = choice
    if body.text is not None:
        fmt = body.text.format
        if isinstance(fmt, TextFormatJSONObject):
            params["response_format"] = {"type": "json_object"}
        elif isinstance(fmt, TextFormatJSONSchema):
            schema = fmt.model_dump(exclude={"type"}, exclude_none=True, by_alias=True)
            params["response_format"] = {"type": "json_schema", "json_schema": schema}
        if body.text.verbosity is not None:
            params["verbosity"] = body.text.verbosity
    if body.reasoning is not None and body.reasoning.effort is not None:
        params["reasoning_effort"] = body.reasoning.effort
    params.update(body.model_extra or {})
    return params


# --- chat -> response -----------------------------------------------------------------------


def response_object(body: ResponsesRequest, response_id: str, model: str, created_at: int | None = None) -> dict[str, Any]:
    """A ``response`` object echoing the request's settings: ``status: "in_progress"``, no
    output yet, ``usage: null``."""
    text = body.text.model_dump(exclude_none=True, by_alias=True) if body.text else {}
    text.setdefault("format", {"type": "text"})
    choice = body.tool_choice
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at if created_at is not None else int(time.time()),
        "status": "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "metadata": body.metadata or {},
        "model": model,
        "output": [],
        "parallel_tool_calls": body.parallel_tool_calls if body.parallel_tool_calls is not None else True,
        "previous_response_id": body.previous_response_id,
        "reasoning": {"effort": None, "summary": None},
        "store": body.store if body.store is not None else True,
        "temperature": body.temperature,
        "text": text,
        "tool_choice": choice.model_dump() if isinstance(choice, FunctionToolChoice) else choice or "auto",
        "tools": [t.model_dump(exclude_none=True, by_alias=True) for t in body.tools or []],
        "top_p": body.top_p,
        "truncation": body.truncation or "disabled",
        "usage": None,
        "user": body.user,
    }


def response_usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    """A chat ``usage`` object as a Responses ``usage``: ``input_tokens``, ``output_tokens``,
    ``total_tokens``, ``input_tokens_details.cached_tokens``,
    ``output_tokens_details.reasoning_tokens`` (0 when not reported)."""
    usage = usage or {}
    prompt = usage.get("prompt_tokens_details") or {}
    completion = usage.get("completion_tokens_details") or {}
    return {
        "input_tokens": int(usage.get("prompt_tokens") or 0),
        "input_tokens_details": {"cached_tokens": int(prompt.get("cached_tokens") or 0)},
        "output_tokens": int(usage.get("completion_tokens") or 0),
        "output_tokens_details": {"reasoning_tokens": int(completion.get("reasoning_tokens") or 0)},
        "total_tokens": int(usage.get("total_tokens") or 0),
    }


def usage_from_records(records: list[Any]) -> dict[str, Any]:
    """The chat ``usage`` summed from a Context's ``kind="llm"`` usage records (for a request
    that ended before its last usage was reported: max turns)."""
    total = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0,
             "prompt_tokens_details": {"cached_tokens": 0}}
    for record in records:
        if record.kind == "llm":
            for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
                total[key] += int(record.metadata.get(key) or 0)
            total["prompt_tokens_details"]["cached_tokens"] += int(record.metadata.get("cached_tokens") or 0)
    return total


def message_item(text: str, item_id: str | None = None, status: str = "completed") -> dict[str, Any]:
    """An output ``message`` item with one ``output_text`` part."""
    return {
        "id": item_id or new_id("msg"), "type": "message", "role": "assistant", "status": status,
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def function_call_item(call: dict[str, Any], item_id: str | None = None, status: str = "completed") -> dict[str, Any]:
    """An output ``function_call`` item for a chat tool call (``call_id`` = the call's ``id``)."""
    return {
        "id": item_id or new_id("fc"), "type": "function_call", "status": status,
        "call_id": call["id"], "name": call["function"]["name"], "arguments": call["function"]["arguments"],
    }


def output_items(message: dict[str, Any], status: str = "completed") -> list[dict[str, Any]]:
    """A chat assistant message as output items with ``status``: a ``message`` for its text
    (also for an empty answer without tool calls), then one ``function_call`` per tool call."""
    calls = message.get("tool_calls") or []
    items = [message_item(message["content"] or "", status=status)] if message.get("content") or not calls else []
    return items + [function_call_item(call, status=status) for call in calls]


def finished(response: dict[str, Any], output: list[dict[str, Any]], finish_reason: str | None,
             usage: dict[str, Any] | None) -> dict[str, Any]:
    """``response`` completed with ``output``: ``status`` ``completed``, or ``incomplete``
    with ``incomplete_details.reason`` (``max_output_tokens``, ``content_filter``, or
    :data:`MAX_TURNS` when ``finish_reason`` is ``None``); ``usage`` converted."""
    reason = MAX_TURNS if finish_reason is None else INCOMPLETE_REASONS.get(finish_reason)
    return {
        **response,
        "status": "incomplete" if reason else "completed",
        "incomplete_details": {"reason": reason} if reason else None,
        "output": output,
        "usage": response_usage(usage),
        "completed_at": int(time.time()),
    }


def response_from_completion(response: dict[str, Any], completion: dict[str, Any]) -> dict[str, Any]:
    """The finished ``response`` for a ``chat.completion`` (see :func:`finished`)."""
    choice = completion["choices"][0]
    status = "incomplete" if choice["finish_reason"] in INCOMPLETE_REASONS else "completed"
    return finished(response, output_items(choice["message"], status), choice["finish_reason"], completion.get("usage"))


def failed(response: dict[str, Any], output: list[dict[str, Any]], code: str, message: str) -> dict[str, Any]:
    """``response`` failed: ``status: "failed"``, ``error: {"code", "message"}``."""
    return {**response, "status": "failed", "output": output, "error": {"code": code, "message": message}}


def chat_answer(response: dict[str, Any]) -> dict[str, Any]:
    """A response's output as one chat assistant message (the history a continuation sees)."""
    text = "".join(
        part.get("text", "") for item in response["output"] if item["type"] == "message" for part in item["content"]
    )
    calls = [
        {"id": item["call_id"], "type": "function", "function": {"name": item["name"], "arguments": item["arguments"]}}
        for item in response["output"] if item["type"] == "function_call"
    ]
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
    return message


# --- chat chunks -> stream events -------------------------------------------------------------


class ResponseEvents:
    """Turns the loop's ``chat.completion.chunk`` stream into Responses stream events.

    :meth:`start` gives ``response.created`` and ``response.in_progress``; each
    :meth:`chunk` gives the events for its text (``response.output_item.added`` and
    ``response.content_part.added`` for the first, then ``response.output_text.delta``) and
    its tool-call fragments (``response.output_item.added`` of a ``function_call``, then
    ``response.function_call_arguments.delta``); :meth:`finish` closes every open item in
    output order (``...output_text.done``, ``...content_part.done``,
    ``...function_call_arguments.done``, ``...output_item.done``) and ends with
    ``response.completed`` or ``response.incomplete``, carrying ``usage``; :meth:`fail` ends
    with ``response.failed``. Every event has a ``sequence_number``, from 0, increasing by one.
    Only what the client sees is in the chunks: server-side tool turns never appear.
    """

    def __init__(self, response: dict[str, Any]) -> None:
        self.response = response
        self.sequence = 0
        self.items: list[dict[str, Any]] = []  # in output order; open until finish
        self.text: dict[str, Any] | None = None  # the open message item
        self.calls: dict[int, dict[str, Any]] = {}  # chunk tool-call index -> open function_call
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event

    def start(self) -> list[dict[str, Any]]:
        return [self.event("response.created", response=self.response),
                self.event("response.in_progress", response=self.response)]

    def chunk(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                events += self._text(delta["content"])
            for fragment in delta.get("tool_calls") or []:
                events += self._call(fragment)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return events

    def _open_message(self) -> list[dict[str, Any]]:
        self.text = message_item("", status="in_progress")
        part = self.text["content"][0]
        self.text["content"] = []
        events = self._add(self.text)
        self.text["content"].append(part)
        events.append(self.event("response.content_part.added", item_id=self.text["id"],
                                 output_index=self._index(self.text), content_index=0, part=dict(part)))
        return events

    def _text(self, text: str) -> list[dict[str, Any]]:
        events = self._open_message() if self.text is None else []
        assert self.text is not None
        self.text["content"][0]["text"] += text
        events.append(self.event("response.output_text.delta", item_id=self.text["id"],
                                 output_index=self._index(self.text), content_index=0, delta=text, logprobs=[]))
        return events

    def _call(self, fragment: dict[str, Any]) -> list[dict[str, Any]]:
        events = []
        index = fragment.get("index", 0)
        function = fragment.get("function") or {}
        item = self.calls.get(index)
        if item is None:
            call = {"id": fragment.get("id") or new_id("call"), "function": {"name": function.get("name") or "", "arguments": ""}}
            item = self.calls[index] = function_call_item(call, status="in_progress")
            events += self._add(item)
        elif function.get("name"):
            item["name"] += function["name"]
        if function.get("arguments"):
            item["arguments"] += function["arguments"]
            events.append(self.event("response.function_call_arguments.delta", item_id=item["id"],
                                     output_index=self._index(item), delta=function["arguments"]))
        return events

    def _add(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        self.items.append(item)
        return [self.event("response.output_item.added", output_index=len(self.items) - 1, item=_copy(item))]

    def _index(self, item: dict[str, Any]) -> int:
        return next(i for i, it in enumerate(self.items) if it is item)

    def _close(self, status: str) -> list[dict[str, Any]]:
        events = []
        for index, item in enumerate(self.items):
            if item["status"] != "in_progress":
                continue
            item["status"] = status
            if item["type"] == "message":
                part = item["content"][0]
                events.append(self.event("response.output_text.done", item_id=item["id"], output_index=index,
                                         content_index=0, text=part["text"], logprobs=[]))
                events.append(self.event("response.content_part.done", item_id=item["id"], output_index=index,
                                         content_index=0, part=dict(part)))
            else:
                events.append(self.event("response.function_call_arguments.done", item_id=item["id"],
                                         output_index=index, name=item["name"], arguments=item["arguments"]))
            events.append(self.event("response.output_item.done", output_index=index, item=_copy(item)))
        return events

    def finish(self, finish_reason: str | None = "stop", usage: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Close the items; ``response.completed``, or ``response.incomplete`` (a ``length``
        or ``content_filter`` finish, or ``finish_reason=None``: max turns). ``usage``
        overrides the one the chunks carried."""
        events = []
        if not self.items and finish_reason is not None:  # an empty answer is an empty message, as without streaming
            events += self._open_message()
        incomplete = finish_reason is None or finish_reason in INCOMPLETE_REASONS
        events += self._close("incomplete" if incomplete else "completed")
        self.response = finished(self.response, self.items, finish_reason, usage or self.usage)
        kind = "response.completed" if self.response["status"] == "completed" else "response.incomplete"
        return events + [self.event(kind, response=self.response)]

    def fail(self, code: str, message: str) -> list[dict[str, Any]]:
        """Close the open items as ``incomplete``; ``response.failed`` with ``error``."""
        events = self._close("incomplete")
        self.response = failed(self.response, self.items, code, message)
        return events + [self.event("response.failed", response=self.response)]


def _copy(item: dict[str, Any]) -> dict[str, Any]:
    copied = dict(item)
    if "content" in copied:
        copied["content"] = [dict(part) for part in copied["content"]]
    return copied
