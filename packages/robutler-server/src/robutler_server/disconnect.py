"""Cancel a request's work when its client goes away.

Once FastAPI has read a request's body, the next ASGI ``receive()`` returns only when the
client disconnects (``{"type": "http.disconnect"}``). :func:`until_disconnected` races the
agent's work against it, so a client that hangs up (a timeout, a closed tab) cancels the
upstream model call; the agent's ``finalize_connection`` hooks still run once, on the way out
of the cancelled run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

from robutler_core.loop import wait_cancelled

T = TypeVar("T")

CLIENT_CLOSED_REQUEST = 499
"""The status logged for a request whose client went away (nginx's convention)."""


class ClientDisconnected(Exception):
    """The client disconnected before the answer was ready; the work was cancelled."""


async def until_disconnected(request: Request, work: Awaitable[T]) -> T:
    """``await work``, unless the client disconnects first: then cancel it, wait for it to
    finish unwinding, and raise :class:`ClientDisconnected`."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # the server cancels the request (shutdown deadline)
        task.cancel()
        await wait_cancelled(task)  # its finalize_connection finishes before the request ends
        raise
    finally:
        if not watcher.done():
            watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    raise ClientDisconnected(f"{request.method} {request.url.path}: the client disconnected")


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
