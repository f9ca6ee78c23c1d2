"""Builders of OpenAI ``chat.completion.chunk`` dicts, for scripted models and fake servers."""

from __future__ import annotations

import json
import time
from typing import Any

from ..wire import chat_completion_chunk, new_tool_call_id

_ID = "chatcmpl-scripted"


def _chunk(delta: dict[str, Any] | None, finish_reason: str | None = None, usage: Any = None, model: str = "scripted") -> dict[str, Any]:
    return chat_completion_chunk(
        model=model, delta=delta, finish_reason=finish_reason, completion_id=_ID,
        created=int(time.time()), usage=usage,
    )


def text_chunks(text: str, pieces: int = 3, model: str = "scripted") -> list[dict[str, Any]]:
    """``text`` as a role chunk then up to ``pieces`` content chunks."""
    size = max(1, -(-len(text) // max(1, pieces)))
    parts = [text[i : i + size] for i in range(0, len(text), size)] or [""]
    return [_chunk({"role": "assistant", "content": ""}, model=model)] + [
        _chunk({"content": part}, model=model) for part in parts
    ]


def tool_call_chunks(
    calls: list[tuple[str, dict[str, Any] | str]], pieces: int = 3, model: str = "scripted"
) -> list[dict[str, Any]]:
    """Tool calls as OpenAI streams them: per call a first delta with ``id`` and
    ``function.name``, then its JSON ``arguments`` split into up to ``pieces`` fragments."""
    chunks = []
    for index, (name, arguments) in enumerate(calls):
        text = arguments if isinstance(arguments, str) else json.dumps(arguments)
        chunks.append(_chunk({"tool_calls": [{
            "index": index, "id": new_tool_call_id(), "type": "function",
            "function": {"name": name, "arguments": ""},
        }]}, model=model))
        size = max(1, -(-len(text) // max(1, pieces)))
        for start in range(0, len(text), size):
            chunks.append(_chunk({"tool_calls": [{
                "index": index, "function": {"arguments": text[start : start + size]},
            }]}, model=model))
    return chunks


def finish_chunks(
    finish_reason: str, usage: dict[str, int] | None = None, model: str = "scripted"
) -> list[dict[str, Any]]:
    """The closing chunk with ``finish_reason``, then a usage-only chunk when ``usage`` is given."""
    chunks = [_chunk({}, finish_reason, model=model)]
    if usage is not None:
        chunks.append(_chunk(None, usage=usage, model=model))
    return chunks


def completion_to_chunks(completion: dict[str, Any], pieces: int = 3) -> list[dict[str, Any]]:
    """The chunks a provider would stream for ``completion`` (a ``chat.completion`` dict)."""
    choice = completion["choices"][0]
    message = choice["message"]
    model = completion.get("model", "scripted")
    chunks = text_chunks(message.get("content") or "", pieces, model=model)
    calls = [(c["function"]["name"], c["function"]["arguments"]) for c in message.get("tool_calls") or []]
    tool_chunks = tool_call_chunks(calls, pieces, model=model)
    for chunk, call in zip(
        [c for c in tool_chunks if c["choices"][0]["delta"]["tool_calls"][0].get("id")],
        message.get("tool_calls") or [],
    ):
        chunk["choices"][0]["delta"]["tool_calls"][0]["id"] = call["id"]
    return chunks + tool_chunks + finish_chunks(choice["finish_reason"], completion.get("usage"), model)
