"""Timers that share one event-loop timer handle: :class:`DelayTimers`.

A request arms timers it rarely needs (its ``request_timeout``; robutler-server's disconnect
watch) and cancels them when it ends, mostly well before they are due. A ``loop.call_later``
handle for each costs some 2 µs a request (arming and cancelling it, uvloop or asyncio's
loop). All timers of one delay on one loop are due in the order they were armed, so they can
wait behind a single handle, set for the first of them: arming one is a dict insert, cancelling
it a dict removal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Any

TOLERANCE = 0.001
"""Seconds: a timer due within this of the one that fires runs with it (uvloop's timers have
millisecond resolution anyway), so that the shared handle is never set again for a fraction
of a millisecond."""


class DelayTimers:
    """Callbacks that run ``delay`` seconds after they are armed, on the event loop ``loop``,
    behind one timer handle (set for the earliest one; set again, for the next, when it fires).

    Use :meth:`for_running_loop` to get one (it reuses the one given when it fits), :meth:`arm`
    to add a callback under a key of your own (any hashable object unique to it, such as the
    object whose method the callback is), :meth:`cancel` to remove it. A callback runs once,
    at most :data:`TOLERANCE` early, in the event loop's thread; one that raises is reported
    to the loop's exception handler, as a ``call_later`` callback's error is. Not thread-safe:
    arm and cancel from the loop's thread only (as ``call_later``).
    """

    __slots__ = ("loop", "delay", "_due", "_handle")

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        self.loop = loop
        self.delay = delay
        self._due: dict[Hashable, tuple[float, Callable[[], Any]]] = {}  # in arming order = due order
        self._handle: asyncio.TimerHandle | None = None

    @classmethod
    def for_running_loop(cls, timers: DelayTimers | None, delay: float) -> DelayTimers:
        """``timers`` when it is for the running loop and ``delay``, else a new one (keep it
        for the next call). Raises RuntimeError outside a running event loop."""
        loop = asyncio.get_running_loop()
        if timers is not None and timers.loop is loop and timers.delay == delay:
            return timers
        return cls(loop, delay)

    def arm(self, key: Hashable, callback: Callable[[], Any]) -> None:
        """Run ``callback()`` ``delay`` seconds from now unless :meth:`cancel` (``key``) comes
        first; a key armed again replaces its earlier callback and moves to the end."""
        when = self.loop.time() + self.delay
        due = self._due
        if key in due:  # a dict keeps a replaced key in its old place: due order needs the end
            del due[key]
        due[key] = (when, callback)
        if self._handle is None:
            self._handle = self.loop.call_at(when, self._fire)

    def cancel(self, key: Hashable) -> None:
        """Forget the callback armed under ``key`` (nothing when it ran or was cancelled)."""
        self._due.pop(key, None)

    def _fire(self) -> None:
        due = self._due
        self._handle = _FIRING  # a callback that arms another timer does not set a handle
        try:
            now = self.loop.time() + TOLERANCE
            while due:
                key = next(iter(due))
                when, callback = due[key]
                if when > now:
                    break
                del due[key]
                try:
                    callback()
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    self.loop.call_exception_handler(
                        {"message": f"Exception in timer callback {callback!r}", "exception": exc}
                    )
        finally:
            self._handle = self.loop.call_at(next(iter(due.values()))[0], self._fire) if due else None


_FIRING: Any = object()
