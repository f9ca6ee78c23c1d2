"""Cancel a request's work when its client goes away.

Once a request's body has been read, the next ASGI ``receive()`` returns only when the client
disconnects (``{"type": "http.disconnect"}``; uvicorn also returns it once the response is
complete). :func:`until_disconnected` races the agent's work against it, so a client that hangs
up (a timeout, a closed tab) cancels the upstream model call; the agent's
``finalize_connection`` hooks still run once, on the way out of the cancelled run.

Most requests end in well under a millisecond of work (a cached answer, the test model), and a
watcher for those would cost more than the request (a task, ``asyncio.wait``, a ``receive``
per request). So the work runs in the request's own task, and a watcher is armed only for work
still running after :data:`WATCH_AFTER` seconds (a timer behind the one timer handle that
the requests on the event loop share, :class:`robutler_core.timers.DelayTimers`, cancelled at
the end of fast work): a disconnect is noticed at most that much later than it happens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from robutler_core.timers import DelayTimers

T = TypeVar("T")

CLIENT_CLOSED_REQUEST = 499
"""The status logged for a request whose client went away (nginx's convention)."""

WATCH_AFTER = 0.02
"""Seconds of work after which a request starts watching for its client's disconnect."""


class ClientDisconnected(Exception):
    """The client disconnected before the answer was ready; the work was cancelled."""


class _Watch:
    """The disconnect watch of one awaited piece of work in ``task``."""

    __slots__ = ("receive", "task", "watcher", "disconnected")

    def __init__(self, receive: Callable[[], Awaitable[dict[str, Any]]], task: asyncio.Task[Any]) -> None:
        self.receive = receive
        self.task = task
        self.watcher: asyncio.Task[None] | None = None
        self.disconnected = False

    def arm(self) -> None:
        self.watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass
        self.disconnected = True
        self.task.cancel()


async def until_disconnected(request: Any, work: Awaitable[T]) -> T:
    """``await work`` (in the calling task), unless the client disconnects first: then cancel
    it, let it unwind (its ``finalize_connection`` included), and raise
    :class:`ClientDisconnected`. ``request`` is anything with the ASGI ``scope`` and
    ``receive`` of the request (a Starlette ``Request``), whose body has been read.

    A cancellation from elsewhere (the server's shutdown deadline) propagates as it is."""
    task = asyncio.current_task()
    assert task is not None
    global _timers
    watch = _Watch(request.receive, task)
    timers = _timers = DelayTimers.for_running_loop(_timers, WATCH_AFTER)
    timers.arm(watch, watch.arm)
    try:
        result = await work
    except asyncio.CancelledError:
        if not watch.disconnected or task.uncancel() > 0:  # also cancelled by someone else
            raise
        raise _disconnected(request) from None
    finally:
        timers.cancel(watch)
        if watch.watcher is not None and not watch.watcher.done():
            watch.watcher.cancel()
    if watch.disconnected:  # the work ended despite the cancellation
        task.uncancel()
        raise _disconnected(request)
    return result


_timers: DelayTimers | None = None
"""The disconnect watches' timers of the loop that last used them (another loop makes its own)."""


def _disconnected(request: Any) -> ClientDisconnected:
    scope = request.scope
    return ClientDisconnected(f"{scope.get('method')} {scope.get('path')}: the client disconnected")
