"""OpenAI chat-completions wire format: building and assembling completions and chunks.

Shapes follow OpenAI's API reference for ``chat.completion`` and ``chat.completion.chunk``
(https://platform.openai.com/docs/api-reference/chat). All values are plain dicts, as they
travel as JSON.
"""

from __future__ import annotations

import os
import time
from typing import Any

FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter", "function_call")


def new_completion_id() -> str:
    """A fresh ``chatcmpl-...`` id."""
    return f"chatcmpl-{os.urandom(16).hex()}"


def new_tool_call_id() -> str:
    """A fresh ``call_...`` id for a tool call."""
    return f"call_{os.urandom(12).hex()}"


def empty_usage() -> dict[str, int]:
    """``{"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}``."""
    return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


USAGE_DETAILS = ("prompt_tokens_details", "completion_tokens_details")
"""OpenAI ``usage`` fields that break a count down (``cached_tokens``, ``reasoning_tokens``...)."""


def add_usage(total: dict[str, Any], usage: dict[str, Any] | None) -> None:
    """Add a ``usage`` object into ``total`` (in place): the three token counts, and the
    integer counts of ``prompt_tokens_details`` (``cached_tokens``, ``cache_creation_tokens``,
    ``audio_tokens``) and ``completion_tokens_details`` (``reasoning_tokens``...), which
    appear in ``total`` once a call reports them."""
    if not usage:
        return
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        total[key] += int(usage.get(key) or 0)
    for key in USAGE_DETAILS:
        details = usage.get(key)
        if not isinstance(details, dict):
            continue
        summed = total.setdefault(key, {})
        for name, value in details.items():
            if isinstance(value, int) and not isinstance(value, bool):
                summed[name] = summed.get(name, 0) + value


def chat_completion(
    *,
    model: str,
    message: dict[str, Any],
    finish_reason: str,
    usage: dict[str, int] | None = None,
    completion_id: str | None = None,
    created: int | None = None,
) -> dict[str, Any]:
    """A ``chat.completion`` object with one choice."""
    return {
        "id": completion_id or new_completion_id(),
        "object": "chat.completion",
        "created": created if created is not None else int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
        ],
        "usage": usage if usage is not None else empty_usage(),
    }


def chat_completion_chunk(
    *,
    model: str,
    delta: dict[str, Any] | None,
    finish_reason: str | None = None,
    completion_id: str,
    created: int,
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    """A ``chat.completion.chunk``; ``delta=None`` gives the usage-only chunk (no choices)."""
    chunk: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if usage is not None:
        chunk["usage"] = usage
    return chunk


class ChunkAssembler:
    """Rebuilds the assistant message from ``chat.completion.chunk``s of choice 0.

    Content deltas are concatenated; ``tool_calls`` deltas are merged by ``index`` (the first
    delta of a call carries ``id`` and ``function.name``, later ones append to
    ``function.arguments``), as OpenAI streams them. ``usage`` is taken from whichever chunk
    carries it.
    """

    def __init__(self) -> None:
        self._content: list[str] = []
        self._tool_calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.role = "assistant"

    def add(self, chunk: dict[str, Any]) -> None:
        """Merge one chunk (a dict in OpenAI's format)."""
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self._content.append(delta["content"])
            for fragment in delta.get("tool_calls") or []:
                self._merge_tool_call(fragment)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    def _merge_tool_call(self, fragment: dict[str, Any]) -> None:
        index = fragment.get("index", len(self._tool_calls))
        call = self._tool_calls.setdefault(
            index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
        )
        if fragment.get("id"):
            call["id"] = fragment["id"]
        function = fragment.get("function") or {}
        if function.get("name"):
            call["function"]["name"] += function["name"]
        if function.get("arguments"):
            call["function"]["arguments"] += function["arguments"]

    def tool_call_name(self, index: int) -> str | None:
        """The name of the tool call at ``index`` so far, or None when none arrived yet."""
        call = self._tool_calls.get(index)
        return call["function"]["name"] if call else None

    @property
    def content(self) -> str:
        return "".join(self._content)

    def message(self) -> dict[str, Any]:
        """The assembled assistant message (``content`` None when there was no text)."""
        message: dict[str, Any] = {"role": self.role, "content": self.content or None}
        if self._tool_calls:
            calls = [self._tool_calls[i] for i in sorted(self._tool_calls)]
            for call in calls:
                call["id"] = call["id"] or new_tool_call_id()
            message["tool_calls"] = calls
        return message

    def completion(self, *, model: str) -> dict[str, Any]:
        """The equivalent ``chat.completion``."""
        message = self.message()
        finish = self.finish_reason or ("tool_calls" if message.get("tool_calls") else "stop")
        return chat_completion(
            model=model, message=message, finish_reason=finish, usage=self.usage
        )
