"""SSE keep-alives: a comment line (``: ping``) on every event stream that has been quiet for
``interval`` seconds, so that proxies and load balancers with an idle timeout (nginx's
``proxy_read_timeout`` is 60 s, AWS ALB's 60 s) do not cut a stream while a model thinks or a
tool runs. SSE clients ignore comment lines (WHATWG HTML, "Server-sent events", 9.2.6).

An ASGI middleware, not sse-starlette's ``EventSourceResponse``: it covers every
``text/event-stream`` response of the server alike (chat completions, the Responses API,
plugin routes) without changing how each route builds its stream, and costs a stream one
sleeping task. A ping goes out only between whole events (the last bytes sent end with a blank
line) and never after the stream's last write.
"""

from __future__ import annotations

import asyncio
from typing import Any

PING = b": ping\n\n"


class SSEKeepAlive:
    """ASGI middleware sending :data:`PING` on quiet ``text/event-stream`` responses."""

    def __init__(self, app: Any, interval: float) -> None:
        self.app = app
        self.interval = interval

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        lock: asyncio.Lock = None  # type: ignore[assignment]  # made for event streams only
        state = {"last": 0.0, "boundary": True, "open": False}
        pinger: asyncio.Task[None] | None = None

        async def ping() -> None:
            while True:
                await asyncio.sleep(max(0.0, state["last"] + self.interval - loop.time()))
                async with lock:
                    if not state["open"]:
                        return
                    if loop.time() - state["last"] >= self.interval and state["boundary"]:
                        try:
                            await send({"type": "http.response.body", "body": PING, "more_body": True})
                        except Exception:  # the client went away: the app finds out itself
                            return
                        state["last"] = loop.time()

        async def sending(message: dict[str, Any]) -> None:
            nonlocal pinger, lock
            if pinger is None:
                await send(message)
                if message["type"] == "http.response.start" and _is_event_stream(message):
                    lock = asyncio.Lock()
                    state["open"] = True
                    state["last"] = loop.time()
                    pinger = asyncio.create_task(ping())
                return
            async with lock:
                more = message.get("more_body", False)
                body = message.get("body", b"")
                if not more:
                    state["open"] = False
                await send(message)
                if body:
                    state["boundary"] = body.endswith(b"\n\n")
                state["last"] = loop.time()

        try:
            await self.app(scope, receive, sending)
        finally:
            if pinger is not None:
                pinger.cancel()


def _is_event_stream(message: dict[str, Any]) -> bool:
    for name, value in message.get("headers", ()):
        if name.lower() == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"text/event-stream"
    return False
