"""A fake Anthropic Messages API on a loopback port, for tests without network or key.

``FakeAnthropicServer`` speaks ``POST /v1/messages`` as Anthropic's API reference documents
it: a ``Message`` JSON object, or with ``"stream": true`` server-sent events
(``message_start``, ``content_block_start``, ``ping``, ``content_block_delta`` with
``text_delta`` / ``input_json_delta``, ``content_block_stop``, ``message_delta``,
``message_stop``), and errors as ``{"type": "error", "error": {"type", "message"}}`` with
their status (or as an ``error`` event inside a stream). It checks what the real API checks
and a translation could get wrong: the key (``x-api-key`` or ``authorization: Bearer``) and
``anthropic-version`` headers,
``model``/``max_tokens``/``messages``, roles, and that every ``tool_result`` answers a
``tool_use`` of the message before it. Standard library and robutler-core only::

    with FakeAnthropicServer() as upstream:
        upstream.enqueue_message([{"type": "tool_use", "name": "add", "input": {"a": 1, "b": 2}}])
        upstream.enqueue_error(429, "rate limited", headers={"retry-after": "2"})
        skill = AnthropicSkill({"base_url": upstream.base_url, "api_key": "sk-ant-test"})
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from robutler_core.testing.fake_http import FakeHandler, FakeServer

__all__ = ["AnthropicResponse", "FakeAnthropicServer"]

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                500: "api_error", 529: "overloaded_error"}


@dataclass
class AnthropicResponse:
    """One scripted answer: content blocks, or an error (status and Anthropic error type)."""

    content: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str | None = None
    usage: dict[str, int] | None = None
    status: int = 200
    error: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    error_mid_stream: dict[str, Any] | None = None


class _AnthropicHandler(FakeHandler):
    fake: FakeAnthropicServer

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None,
               error_type: str | None = None) -> None:
        self.send_json(status, {"type": "error", "error": {
            "type": error_type or _ERROR_TYPES.get(status, "api_error"), "message": message}}, headers)

    def do_POST(self) -> None:  # noqa: N802
        body = self.read_json()
        if not self.path.startswith("/v1/messages"):
            self._error(404, f"no route {self.path}")
            return
        if not self.headers.get("x-api-key") and not self.headers.get("authorization", "").startswith("Bearer "):
            self._error(401, "an x-api-key or authorization header is required")
            return
        if not self.headers.get("anthropic-version"):
            self._error(400, "anthropic-version header is required")
            return
        problem = _check_request(body)
        if problem:
            self._error(400, problem)
            return
        response = self.fake.next_response() or _echo(body)
        if response.delay:
            time.sleep(response.delay)
        if response.error is not None:
            self._error(response.status, response.error["message"], response.headers, response.error.get("type"))
            return
        message = _message(body, response)
        if body.get("stream"):
            self._stream(message, response)
        else:
            self.send_json(200, message, response.headers)

    def _stream(self, message: dict[str, Any], response: AnthropicResponse) -> None:
        self.start_events(response.headers)
        start = {**message, "content": [], "stop_reason": None,
                 "usage": {**message["usage"], "output_tokens": 1}}
        self.send_event({"type": "message_start", "message": start}, "message_start")
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                first = {"type": "text", "text": ""}
                pieces = [("text_delta", "text", p) for p in _pieces(block["text"])]
            else:
                first = {**block, "input": {}}
                pieces = [("input_json_delta", "partial_json", p) for p in _pieces(json.dumps(block["input"]))]
            self.send_event({"type": "content_block_start", "index": index, "content_block": first},
                            "content_block_start")
            if index == 0:
                self.send_event({"type": "ping"}, "ping")
                if response.error_mid_stream is not None:
                    self.send_event({"type": "error", "error": response.error_mid_stream}, "error")
                    return
            for kind, key, piece in pieces:
                self.send_event({"type": "content_block_delta", "index": index,
                                 "delta": {"type": kind, key: piece}}, "content_block_delta")
            self.send_event({"type": "content_block_stop", "index": index}, "content_block_stop")
        self.send_event({"type": "message_delta",
                         "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                         "usage": {"output_tokens": message["usage"]["output_tokens"]}}, "message_delta")
        self.send_event({"type": "message_stop"}, "message_stop")


class FakeAnthropicServer(FakeServer[AnthropicResponse]):
    """Serves the fake Messages API on ``127.0.0.1`` at a free port, in a background thread."""

    handler = _AnthropicHandler

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``, the ``base_url`` of an Anthropic client."""
        return self.origin

    def enqueue_message(
        self,
        content: str | list[dict[str, Any]],
        stop_reason: str | None = None,
        usage: dict[str, int] | None = None,
        **options: Any,
    ) -> None:
        """Queue an answer: a text, or content blocks (``tool_use`` blocks get ids when they
        have none). ``stop_reason`` defaults to ``tool_use`` when a tool is used, else
        ``end_turn``."""
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
        self.enqueue(AnthropicResponse(content=blocks, stop_reason=stop_reason, usage=usage, **options))

    def enqueue_error(
        self, status: int, message: str, *, type: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        """Queue an error answer in Anthropic's envelope (``type`` from the status by default)."""
        self.enqueue(AnthropicResponse(status=status, headers=headers or {},
                                       error={"type": type or _ERROR_TYPES.get(status, "api_error"), "message": message}))


def _check_request(body: dict[str, Any]) -> str | None:
    for key in ("model", "max_tokens", "messages"):
        if key not in body:
            return f"{key}: Field required"
    previous_tool_uses: set[str] = set()
    for i, message in enumerate(body["messages"]):
        if message.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        if not blocks:
            return f"messages.{i}: content must not be empty"
        results = {b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"}
        if results - previous_tool_uses:
            return f"messages.{i}: unexpected `tool_use_id` found in `tool_result` blocks: {sorted(results - previous_tool_uses)}"
        if previous_tool_uses - results:
            return (f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately "
                    f"after: {sorted(previous_tool_uses - results)}")
        previous_tool_uses = {b.get("id") for b in blocks if b.get("type") == "tool_use"}
    for tool in body.get("tools") or []:
        if "input_schema" not in tool or "name" not in tool:
            return "tools: each tool needs name and input_schema"
    return None


def _echo(body: dict[str, Any]) -> AnthropicResponse:
    last = body["messages"][-1]["content"] if body["messages"] else ""
    text = last if isinstance(last, str) else " ".join(
        b.get("text", "") for b in last if b.get("type") == "text")
    return AnthropicResponse(content=[{"type": "text", "text": f"fake answer to: {text}"}])


def _message(body: dict[str, Any], response: AnthropicResponse) -> dict[str, Any]:
    content = [
        {**b, "id": b.get("id") or f"toolu_{uuid.uuid4().hex[:24]}"} if b["type"] == "tool_use" else b
        for b in response.content
    ]
    uses_tool = any(b["type"] == "tool_use" for b in content)
    prompt_words = len(json.dumps(body["messages"]).split())
    usage = response.usage or {"input_tokens": prompt_words, "output_tokens": 7}
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
        "model": body["model"], "content": content,
        "stop_reason": response.stop_reason or ("tool_use" if uses_tool else "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": usage.get("input_tokens", 0), "output_tokens": usage.get("output_tokens", 0),
                  "cache_creation_input_tokens": usage.get("cache_creation_input_tokens", 0),
                  "cache_read_input_tokens": usage.get("cache_read_input_tokens", 0)},
    }


def _pieces(text: str, count: int = 3) -> list[str]:
    size = max(1, -(-len(text) // count))
    return [text[i : i + size] for i in range(0, len(text), size)]
