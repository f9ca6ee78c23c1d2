"""Translation between OpenAI's chat-completions format and Anthropic's Messages API.

Sources: OpenAI's API reference (``POST /v1/chat/completions``, ``chat.completion`` and
``chat.completion.chunk`` objects) and Anthropic's (``POST /v1/messages``, the ``Message``
object, streaming events ``message_start``, ``content_block_start``, ``content_block_delta``
with ``text_delta`` / ``input_json_delta``, ``content_block_stop``, ``message_delta``,
``message_stop``).

Requests (:func:`to_anthropic_request`):

* ``system`` (and ``developer``) messages are joined, in order, into Anthropic's top-level
  ``system``;
* ``user`` content is a string or OpenAI content parts: ``text`` and ``image_url`` (a
  ``data:`` URL becomes a base64 image source, an http(s) URL a url source);
* an ``assistant`` message's ``tool_calls`` become ``tool_use`` blocks (same ids, arguments
  parsed from JSON); ``tool`` messages become ``tool_result`` blocks of a user message;
  consecutive messages of one role are merged, as Anthropic wants roles to alternate;
* ``tools`` become ``{"name", "description", "input_schema"}``; ``tool_choice`` ``auto`` /
  ``none`` / ``required`` / a named function become ``auto`` / ``none`` / ``any`` / ``tool``;
  ``parallel_tool_calls: false`` sets ``disable_parallel_tool_use``;
* ``max_tokens`` / ``max_completion_tokens`` (else the default), ``temperature``, ``top_p``,
  ``stop`` (as ``stop_sequences``), ``user`` (as ``metadata.user_id``) are passed
  (:data:`SUPPORTED_PARAMS`); ``response_format`` ``text`` is the default, one asking for
  JSON is a BadRequestError; other parameters are left out (the agent refuses them first).

Answers: ``text`` blocks are the ``content``, ``tool_use`` blocks the ``tool_calls``;
``stop_reason`` maps to ``finish_reason`` (:data:`FINISH_REASONS`); usage maps to
``prompt_tokens`` (input plus cache creation and cache read tokens), ``completion_tokens``
and ``prompt_tokens_details`` (``cached_tokens``, ``cache_creation_tokens``; see
:func:`usage_from`).
"""

from __future__ import annotations

import json
import time
from typing import Any

from robutler_core.errors import BadRequestError
from robutler_core.wire import chat_completion, chat_completion_chunk

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
"""Anthropic ``stop_reason`` -> OpenAI ``finish_reason``."""

SUPPORTED_PARAMS: frozenset[str] = frozenset({
    "tool_choice", "parallel_tool_calls", "temperature", "top_p", "max_tokens",
    "max_completion_tokens", "stop", "user", "response_format",
})
"""The OpenAI request parameters the Anthropic skill honours (:attr:`LLMSkill.supported_params`),
each as :func:`to_anthropic_request` maps it. Not in it, as Anthropic has no faithful
equivalent: ``seed``, ``presence_penalty``, ``frequency_penalty``, ``logit_bias``, ``n``,
``logprobs``, ``top_logprobs``, ``metadata`` (OpenAI's stored-completion tags; Anthropic's
``metadata`` holds only ``user_id``, filled from ``user``), ``store``, ``service_tier`` (other
tiers), ``modalities``, ``prediction``, and ``reasoning_effort`` (Anthropic's extended thinking
needs its ``thinking`` blocks sent back with tool results, which OpenAI's format cannot carry)."""


def to_anthropic_request(
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    params: dict[str, Any],
    *,
    model: str,
    max_tokens: int,
) -> dict[str, Any]:
    """The keyword arguments of ``client.messages.create`` for an OpenAI-format request.

    Raises BadRequestError for what Anthropic cannot express (an unknown role or content part,
    tool-call arguments that are not a JSON object, a JSON ``response_format``).
    """
    system, converted = _messages(messages)
    request: dict[str, Any] = {"model": model, "messages": converted}
    request["max_tokens"] = int(params.get("max_tokens") or params.get("max_completion_tokens") or max_tokens)
    if system:
        request["system"] = system
    for name in ("temperature", "top_p"):
        if params.get(name) is not None:
            request[name] = params[name]
    stop = params.get("stop")
    if stop:
        request["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if params.get("user"):
        request["metadata"] = {"user_id": str(params["user"])}
    response_format = params.get("response_format")
    if response_format and (response_format.get("type") if isinstance(response_format, dict) else None) != "text":
        raise BadRequestError(
            "response_format other than 'text' is not supported by the Anthropic skill; describe the "
            "JSON shape in the instructions or use a tool", param="response_format",
        )
    if tools:
        request["tools"] = [_tool(t, i) for i, t in enumerate(tools)]
    choice = _tool_choice(params.get("tool_choice"), params.get("parallel_tool_calls"))
    if choice is not None and (tools or choice["type"] == "none"):
        request["tool_choice"] = choice
    return request


def _messages(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        role = message.get("role")
        if role in ("system", "developer"):
            text = _text(message.get("content"), i)
            if text:
                system.append(text)
            continue
        if role == "user":
            blocks = _user_blocks(message.get("content"), i)
            anthropic_role = "user"
        elif role == "assistant":
            blocks = _assistant_blocks(message, i)
            anthropic_role = "assistant"
        elif role == "tool":
            blocks = [{
                "type": "tool_result",
                "tool_use_id": message.get("tool_call_id"),
                "content": _text(message.get("content"), i),
            }]
            anthropic_role = "user"
        else:
            raise BadRequestError(f"messages[{i}]: unknown role {role!r}", param=f"messages.{i}.role")
        if not blocks:
            continue
        if out and out[-1]["role"] == anthropic_role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": anthropic_role, "content": blocks})
    return "\n\n".join(system), out


def _text(content: Any, index: int) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    raise BadRequestError(f"messages[{index}].content must be a string or a list of parts",
                          param=f"messages.{index}.content")


def _user_blocks(content: Any, index: int) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise BadRequestError(f"messages[{index}].content must be a string or a list of parts",
                              param=f"messages.{index}.content")
    blocks = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if part.get("text"):
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            blocks.append({"type": "image", "source": _image_source(url, index, j)})
        else:
            raise BadRequestError(
                f"messages[{index}].content[{j}]: part type {kind!r} is not supported by the "
                "Anthropic skill (text and image_url are)", param=f"messages.{index}.content.{j}.type",
            )
    return blocks


def _image_source(url: Any, index: int, part: int) -> dict[str, Any]:
    if isinstance(url, str) and url.startswith("data:") and ";base64," in url:
        header, data = url.split(",", 1)
        return {"type": "base64", "media_type": header[5:].split(";", 1)[0], "data": data}
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        return {"type": "url", "url": url}
    raise BadRequestError(
        f"messages[{index}].content[{part}].image_url.url must be a data: URL (base64) or an "
        "http(s) URL", param=f"messages.{index}.content.{part}.image_url.url",
    )


def _assistant_blocks(message: dict[str, Any], index: int) -> list[dict[str, Any]]:
    text = _text(message.get("content"), index)
    blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    for j, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        arguments = function.get("arguments") or "{}"
        try:
            parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
        except json.JSONDecodeError as exc:
            raise BadRequestError(
                f"messages[{index}].tool_calls[{j}].function.arguments is not valid JSON: {exc}",
                param=f"messages.{index}.tool_calls.{j}.function.arguments",
            ) from None
        if not isinstance(parsed, dict):
            raise BadRequestError(
                f"messages[{index}].tool_calls[{j}].function.arguments must be a JSON object",
                param=f"messages.{index}.tool_calls.{j}.function.arguments",
            )
        blocks.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": parsed})
    return blocks


def _tool(definition: dict[str, Any], index: int) -> dict[str, Any]:
    function = definition.get("function") if isinstance(definition, dict) else None
    if not isinstance(function, dict) or not function.get("name"):
        raise BadRequestError(f"tools[{index}] has no function name", param=f"tools.{index}.function.name")
    tool = {
        "name": function["name"],
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        tool["description"] = function["description"]
    return tool


def _tool_choice(choice: Any, parallel: bool | None) -> dict[str, Any] | None:
    if choice is None:
        result = {"type": "auto"} if parallel is False else None
    elif choice == "auto":
        result = {"type": "auto"}
    elif choice == "none":
        result = {"type": "none"}
    elif choice == "required":
        result = {"type": "any"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        result = {"type": "tool", "name": choice["function"].get("name")}
    else:
        raise BadRequestError(f"unsupported tool_choice {choice!r}", param="tool_choice")
    if result is not None and parallel is False and result["type"] != "none":
        result["disable_parallel_tool_use"] = True
    return result


def usage_from(usage: dict[str, Any] | None) -> dict[str, Any]:
    """Anthropic ``usage`` -> OpenAI ``usage``.

    ``prompt_tokens`` counts every input token, as OpenAI's does: Anthropic's
    ``input_tokens`` (the uncached ones) plus ``cache_creation_input_tokens`` plus
    ``cache_read_input_tokens``. When Anthropic reports cache counts, ``prompt_tokens_details``
    says which: ``cached_tokens`` (OpenAI's name: read from the cache, billed at the cache-read
    price) and ``cache_creation_tokens`` (written to the cache, billed at the cache-write price;
    LiteLLM's name), with Anthropic's ``cache_creation`` split by lifetime
    (``ephemeral_5m_input_tokens``, ``ephemeral_1h_input_tokens``) as
    ``cache_creation_token_details``. Pricing (``model_cost``) reads these.
    """
    usage = usage or {}
    cache_read = int(usage.get("cache_read_input_tokens") or 0)
    cache_write = int(usage.get("cache_creation_input_tokens") or 0)
    prompt = int(usage.get("input_tokens") or 0) + cache_write + cache_read
    completion = int(usage.get("output_tokens") or 0)
    result: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                              "total_tokens": prompt + completion}
    if "cache_read_input_tokens" in usage or "cache_creation_input_tokens" in usage:
        details: dict[str, Any] = {"cached_tokens": cache_read, "cache_creation_tokens": cache_write}
        if isinstance(usage.get("cache_creation"), dict):
            details["cache_creation_token_details"] = {
                k: int(v or 0) for k, v in usage["cache_creation"].items()
            }
        result["prompt_tokens_details"] = details
    return result


def to_openai_completion(message: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic ``Message`` (dict) as a ``chat.completion`` dict."""
    text = "".join(b.get("text", "") for b in message.get("content", []) if b.get("type") == "text")
    calls = [
        {"id": b["id"], "type": "function",
         "function": {"name": b["name"], "arguments": json.dumps(b.get("input") or {})}}
        for b in message.get("content", []) if b.get("type") == "tool_use"
    ]
    answer: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        answer["tool_calls"] = calls
    completion = chat_completion(
        model=message.get("model", ""), message=answer,
        finish_reason=FINISH_REASONS.get(message.get("stop_reason") or "end_turn", "stop"),
        usage=usage_from(message.get("usage")),
    )
    completion["id"] = message.get("id", completion["id"])
    return completion


class StreamTranslator:
    """Anthropic stream events (dicts) to ``chat.completion.chunk`` dicts, one event at a time.

    ``message_start`` gives the role chunk; text deltas give content chunks; a ``tool_use``
    block start gives the tool call's first delta (``id``, ``name``, empty ``arguments``) and
    its ``input_json_delta`` events the argument fragments, with OpenAI's tool-call ``index``
    counting tool calls only; ``message_delta`` gives the finish chunk; ``message_stop`` a
    last chunk with ``usage`` and no choices. ``ping`` and thinking events give nothing.
    """

    def __init__(self) -> None:
        self.id = "chatcmpl-anthropic"
        self.model = ""
        self.created = int(time.time())
        self.usage: dict[str, Any] = {}
        self.finished = False
        """Whether ``message_stop`` arrived (a complete stream)."""
        self._tool_index: dict[int, int] = {}

    def _chunk(self, delta: dict[str, Any] | None, finish_reason: str | None = None, usage: Any = None) -> dict[str, Any]:
        return chat_completion_chunk(
            model=self.model, delta=delta, finish_reason=finish_reason,
            completion_id=self.id, created=self.created, usage=usage,
        )

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """The chunks for one event (often none or one)."""
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self.id = message.get("id", self.id)
            self.model = message.get("model", self.model)
            self.usage.update(message.get("usage") or {})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = self._tool_index.setdefault(event.get("index", 0), len(self._tool_index))
                return [self._chunk({"tool_calls": [{
                    "index": index, "id": block.get("id"), "type": "function",
                    "function": {"name": block.get("name"), "arguments": ""},
                }]})]
            if block.get("type") == "text" and block.get("text"):
                return [self._chunk({"content": block["text"]})]
            return []
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta":
                return [self._chunk({"content": delta.get("text", "")})]
            if delta.get("type") == "input_json_delta":
                index = self._tool_index.get(event.get("index", 0))
                if index is None or not delta.get("partial_json"):
                    return []
                return [self._chunk({"tool_calls": [{"index": index, "function": {"arguments": delta["partial_json"]}}]})]
            return []
        if kind == "message_delta":
            self.usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
            reason = (event.get("delta") or {}).get("stop_reason")
            return [self._chunk({}, FINISH_REASONS.get(reason or "end_turn", "stop"))]
        if kind == "message_stop":
            self.finished = True
            return [self._chunk(None, usage=usage_from(self.usage))]
        return []
