"""The server's one ASGI middleware, outermost (outside FastAPI's own layers), with one ``send``
wrapper for everything it does per request:

- ``X-Request-ID``: taken from the request when valid
  (:func:`robutler_server.observability.valid_request_id`), else generated (32 hex digits; an
  invalid one is logged at WARNING), put in the request's headers, echoed on the response and
  on every log line of the request (asgi-correlation-id's ``correlation_id``, which
  :mod:`robutler_server.logs` reads);
- the body size limit (:mod:`robutler_server.guards`): 413 at once when ``Content-Length``
  passes it, else as soon as the bytes read do; and what the limits' ``on_connection`` hook
  reads of the request (the client's address, whether it asks a model);
- metrics, traces and the 499 log of each request (:mod:`robutler_server.observability`);
- SSE keep-alives (:mod:`robutler_server.keepalive`) on ``text/event-stream`` responses only;
- ``POST /{agent}/chat/completions`` and ``POST /v1/chat/completions`` answered here by the
  chat endpoint (:func:`robutler_server.app.create_app`), without FastAPI's routing,
  dependency solving and response layers (behind Starlette's CORS middleware when CORS is
  configured); every other request goes on to the FastAPI app.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from asgi_correlation_id.context import correlation_id

from .disconnect import CLIENT_CLOSED_REQUEST
from .errors import error_response
from .guards import admitted, admitting, counting, too_large
from .keepalive import KeepAlive, is_event_stream
from .observability import Observability, RequestState, valid_request_id, _current

logger = logging.getLogger("robutler_server")
_ids_logger = logging.getLogger("asgi_correlation_id")

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class Front:
    """See the module. ``chat`` (an ASGI app) answers the chat-completions requests; it reads
    the body itself, within the limit."""

    def __init__(
        self, app: ASGIApp, observability: Observability, *, max_body_bytes: int, sse_ping: float,
        chat: Callable[..., Awaitable[None]] | None = None,
    ) -> None:
        self.app = app
        self.obs = observability
        self.max_body_bytes = max_body_bytes
        self.sse_ping = sse_ping
        self.chat = chat

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "websocket":
                _request_id(scope)
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        length: bytes | None = None
        given: bytes | None = None
        for name, value in headers:
            if name == b"content-length":
                length = value
            elif name == b"x-request-id":
                given = value
        request_id = _request_id(scope, given)
        rid = request_id.encode("latin-1")

        obs = self.obs
        start = time.perf_counter()
        state = RequestState(start)
        if obs.tracing is not None:
            state.start_ns = state.mark_ns = time.time_ns()
            state.span, state.token = obs.tracing.start_request(scope, state.start_ns)
        reset = _current.set(state)
        status, stream, finished = 500, False, False
        keepalive: KeepAlive | None = None
        ping = self.sse_ping

        async def sending(message: dict[str, Any]) -> None:
            nonlocal status, stream, finished, keepalive
            if message["type"] == "http.response.start":
                status = message["status"]
                out = message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid)]
                for name, value in out:
                    if name == b"content-type":
                        stream = is_event_stream(value)
                        break
                await send(message)
                if stream and ping > 0:
                    keepalive = KeepAlive(send, ping)
                return
            if message["type"] == "http.response.body":
                if stream and not state.first_chunk and message.get("body") and state.metrics is not None:
                    state.first_chunk = True
                    state.metrics.first_token.observe(time.perf_counter() - start)
                if not message.get("more_body", False):
                    finished = True
                if keepalive is not None:
                    await keepalive.write(message)
                    return
            await send(message)

        method = scope["method"]
        path: str = scope["path"]
        limit = self.max_body_bytes
        client = scope.get("client")
        guard = admitting(
            client[0] if client else "unknown",
            method == "POST" and path.endswith(("/chat/completions", "/responses")),
        )
        obs.in_flight += 1
        cancelled = False
        try:
            size = _int(length) if length is not None else None
            if size is not None and size > limit:
                await error_response(too_large(size, limit), {"connection": "close"})(scope, receive, sending)
            elif self.chat is not None and method == "POST" and _is_chat(path):
                await self.chat(scope, receive, sending)
            else:
                if size is None and method in _BODY_METHODS:
                    receive = counting(receive, limit)
                await self.app(scope, receive, sending)
        except asyncio.CancelledError:
            # The server cut the request off (uvicorn, at the graceful-shutdown deadline): it has
            # unwound (finalize_connection included); end it here rather than as a traceback.
            cancelled = True
        finally:
            if keepalive is not None:
                keepalive.close()
            admitted(guard)
            _current.reset(reset)
            obs._leave()
            if not finished and status < 400:  # the answer did not end
                status = CLIENT_CLOSED_REQUEST
                why = "cut off at the server's shutdown deadline" if cancelled else "the client disconnected"
                logger.info("%s %s: %s before the answer ended (%d)", method, path, why, CLIENT_CLOSED_REQUEST)
            metrics = state.metrics
            if metrics is not None:
                metrics.ended(status, stream, time.perf_counter() - start)
                if status == CLIENT_CLOSED_REQUEST:
                    metrics.disconnects.inc()
            if state.span is not None:
                obs.tracing.end_request(state.span, state.token, status, time.time_ns())


def _is_chat(path: str) -> bool:
    """``/v1/chat/completions`` or ``/{one segment}/chat/completions``."""
    return path.endswith("/chat/completions") and path.count("/") == 3 and len(path) > 18


def _int(value: bytes) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def _request_id(scope: dict[str, Any], given: bytes | None = None, *, search: bool = True) -> str:
    """The request's id (see the module), set as the current ``correlation_id``."""
    if given is None and search and scope["type"] == "websocket":
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
    if given:
        value = given.decode("latin-1")
        if valid_request_id(value):
            correlation_id.set(value)
            return value
        request_id = os.urandom(16).hex()
        _ids_logger.warning("Generated new request ID (%s), since request header value failed validation", request_id)
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"x-request-id"]
    else:
        request_id = os.urandom(16).hex()
    scope["headers"] = [*scope["headers"], (b"x-request-id", request_id.encode())]
    correlation_id.set(request_id)
    return request_id
