"""SSE keep-alives: a comment line (``: ping``) on every event stream that has been quiet for
``interval`` seconds, so that proxies and load balancers with an idle timeout (nginx's
``proxy_read_timeout`` is 60 s, AWS ALB's 60 s) do not cut a stream while a model thinks or a
tool runs. SSE clients ignore comment lines (WHATWG HTML, "Server-sent events", 9.2.6).

Our own, not sse-starlette's ``EventSourceResponse``: the server's one ASGI middleware
(:mod:`robutler_server.front`) wraps the ``send`` of every ``text/event-stream`` response of
the server alike (chat completions, the Responses API, plugin routes) in a :class:`KeepAlive`,
without changing how each route builds its stream. A stream costs one timer handle
(``loop.call_later``), re-armed only when it fires; a task exists only while a ping is being
written. A ping goes out only between whole events (the last bytes sent end with a blank line),
never during another write and never after the stream's last write.
"""

from __future__ import annotations

import asyncio
from typing import Any

PING = b": ping\n\n"


class KeepAlive:
    """The ``send`` of one event stream (:meth:`write`), pinging it when quiet for ``interval``
    seconds; :meth:`close` when the response ends."""

    __slots__ = ("_send", "interval", "_loop", "last", "boundary", "open", "writing", "_handle", "_ping")

    def __init__(self, send: Any, interval: float) -> None:
        self._send = send
        self.interval = interval
        self._loop = asyncio.get_running_loop()
        self.last = self._loop.time()
        self.boundary = True
        self.open = True
        self.writing = False
        self._handle: asyncio.TimerHandle | None = self._loop.call_later(interval, self._due)
        self._ping: asyncio.Task[None] | None = None

    def _due(self) -> None:
        self._handle = None
        if not self.open:
            return
        quiet = self._loop.time() - self.last
        if quiet >= self.interval and self.boundary and not self.writing:
            self._ping = self._loop.create_task(self._write_ping())
            return
        wait = self.interval - quiet if quiet < self.interval else self.interval
        self._handle = self._loop.call_later(wait, self._due)

    async def _write_ping(self) -> None:
        self.writing = True
        try:
            await self._send({"type": "http.response.body", "body": PING, "more_body": True})
        except Exception:  # the client went away: the app finds out itself
            self.open = False
            return
        finally:
            self.writing = False
        self.last = self._loop.time()
        if self.open:
            self._handle = self._loop.call_later(self.interval, self._due)

    async def write(self, message: dict[str, Any]) -> None:
        """Send ``message`` (after a ping being written, if one is)."""
        if self._ping is not None and not self._ping.done():
            await self._ping
        if not message.get("more_body", False):
            self.close()
        self.writing = True
        try:
            await self._send(message)
        finally:
            self.writing = False
        body = message.get("body")
        if body:
            self.boundary = body.endswith(b"\n\n")
        self.last = self._loop.time()

    def close(self) -> None:
        """No more pings (the stream ended, or its request did)."""
        self.open = False
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._ping is not None and not self._ping.done():
            self._ping.cancel()


def is_event_stream(content_type: bytes) -> bool:
    """Whether a ``content-type`` header's value is ``text/event-stream`` (parameters aside)."""
    return content_type.split(b";", 1)[0].strip().lower() == b"text/event-stream"
