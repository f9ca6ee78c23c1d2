"""A fake OpenAI-compatible API on a loopback port, for testing provider skills over real HTTP.

``FakeOpenAIServer`` speaks the wire format of ``POST /v1/chat/completions`` (JSON, and SSE
``data: {chunk}`` lines ending with ``data: [DONE]`` when ``stream`` is true),
``POST /v1/embeddings`` and ``GET /v1/models``, as documented in OpenAI's API reference. Tests
queue what the next requests get; each received request is recorded::

    with FakeOpenAIServer() as upstream:
        upstream.enqueue_completion({"role": "assistant", "content": "hi"})
        upstream.enqueue_error(429, "Rate limit reached", headers={"retry-after": "1"})
        client = OpenAI(base_url=upstream.base_url, api_key="sk-test")

A queued completion is streamed as chunks (content split, tool-call arguments as deltas,
a usage chunk when ``stream_options.include_usage`` is set) when the request streams. With
nothing queued, it answers ``'fake answer to: LAST USER MESSAGE'``. Standard library only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..wire import chat_completion
from .chunks import completion_to_chunks
from .fake_http import FakeHandler, FakeServer, RecordedRequest
from .models import message_text

__all__ = ["FakeOpenAIServer", "FakeResponse", "RecordedRequest"]


@dataclass
class FakeResponse:
    """What the fake answers one request with: a completion, or an error status and body."""

    message: dict[str, Any] | None = None
    finish_reason: str = "stop"
    usage: dict[str, int] | None = None
    status: int = 200
    error: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    fail_mid_stream: bool = False


class _OpenAIHandler(FakeHandler):
    fake: FakeOpenAIServer

    def _not_found(self) -> None:
        self.send_json(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error",
                                       "param": None, "code": None}})

    def do_GET(self) -> None:  # noqa: N802
        self.fake.record(RecordedRequest("GET", self.path, self.lower_headers(), None))
        if self.path.rstrip("/").endswith("/models"):
            self.send_json(200, {"object": "list", "data": [
                {"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}
            ]})
        else:
            self._not_found()

    def do_POST(self) -> None:  # noqa: N802
        body = self.read_json()
        response = self.fake.next_response()
        if response is not None and response.delay:
            time.sleep(response.delay)
        if response is not None and response.error is not None:
            self.send_json(response.status, {"error": response.error}, response.headers)
        elif self.path.endswith("/embeddings"):
            self._embeddings(body)
        elif self.path.endswith("/chat/completions"):
            self._chat(body, response)
        else:
            self._not_found()

    def _embeddings(self, body: dict[str, Any]) -> None:
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
        data = [
            {"object": "embedding", "index": i, "embedding": _fake_embedding(text)}
            for i, text in enumerate(inputs)
        ]
        tokens = sum(len(str(t).split()) for t in inputs)
        self.send_json(200, {"object": "list", "data": data, "model": body.get("model"),
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    def _chat(self, body: dict[str, Any], response: FakeResponse | None) -> None:
        messages = body.get("messages") or []
        if response is None:
            last = next((m for m in reversed(messages) if m.get("role") == "user"), {})
            response = FakeResponse(message={"role": "assistant", "content": f"fake answer to: {message_text(last)}"})
        prompt_tokens = sum(len(message_text(m).split()) for m in messages)
        usage = response.usage or {"prompt_tokens": prompt_tokens, "completion_tokens": 5,
                                   "total_tokens": prompt_tokens + 5}
        completion = chat_completion(model=body.get("model", "fake-model"),
                                     message=response.message or {}, finish_reason=response.finish_reason, usage=usage)
        if not body.get("stream"):
            self.send_json(200, completion, response.headers)
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunks = completion_to_chunks(completion)
        if not include_usage:
            chunks = [c for c in chunks if c["choices"]]
            for c in chunks:
                c.pop("usage", None)
        self.start_events()
        for i, chunk in enumerate(chunks):
            chunk["id"] = completion["id"]
            if response.fail_mid_stream and i == len(chunks) // 2:
                self.send_event({"error": {"message": "upstream failed mid-stream", "type": "server_error",
                                           "param": None, "code": None}})
                return
            self.send_event(chunk)
        self.send_event("[DONE]")


class FakeOpenAIServer(FakeServer[FakeResponse]):
    """Serves the fake OpenAI API on ``127.0.0.1`` at a free port, in a background thread."""

    handler = _OpenAIHandler

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, as the ``base_url``/``api_base`` of a client."""
        return f"{self.origin}/v1"

    def enqueue_completion(
        self,
        message: dict[str, Any],
        finish_reason: str | None = None,
        usage: dict[str, int] | None = None,
        **options: Any,
    ) -> None:
        """Queue an assistant message (``content`` and/or ``tool_calls``)."""
        finish = finish_reason or ("tool_calls" if message.get("tool_calls") else "stop")
        self.enqueue(FakeResponse(message=message, finish_reason=finish, usage=usage, **options))

    def enqueue_error(
        self, status: int, message: str, *, type: str = "api_error", code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Queue an error answer in OpenAI's envelope."""
        error = {"message": message, "type": type, "param": None, "code": code}
        self.enqueue(FakeResponse(status=status, error=error, headers=headers or {}))


def _fake_embedding(text: Any, dimensions: int = 8) -> list[float]:
    """A deterministic unit-free vector derived from the text's bytes."""
    data = str(text).encode() or b"\0"
    return [round(sum(data[i::dimensions]) % 997 / 997, 6) for i in range(dimensions)]
