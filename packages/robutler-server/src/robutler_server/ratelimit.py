"""Rate limits with the ``limits`` library: counters in process memory or in Redis.

A limit is written in ``limits``' notation (``"60/minute"``, ``"10/second;1000/day"``) and
counted with its moving-window strategy per (agent, caller). The counters live where
``storage`` says: ``memory://`` (one process) or ``redis://host:port[/db]`` (``rediss://`` for
TLS), shared by every worker and server that uses the same Redis.
"""

from __future__ import annotations

import math
import time

from typing import TYPE_CHECKING

from robutler_core.errors import ConfigurationError, RateLimitError

if TYPE_CHECKING:
    from limits import RateLimitItem
    from limits.aio.storage import Storage

# ``limits`` (~17 ms of import) is imported when the app makes its storage, not with the server.


def rate_limit_storage(url: str) -> Storage:
    """The ``limits`` async storage for ``url`` (``memory://``, ``redis://...``,
    ``rediss://...``; ``async+...`` URLs are taken as they are). Redis is reached through the
    ``redis`` package. Raises ConfigurationError for another scheme or a bad URL."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("memory", "redis", "rediss") and not scheme.startswith("async+"):
        raise ConfigurationError(
            f"rate limit storage '{url}' is not supported: use memory:// or redis://host:port"
        )
    from limits.storage import storage_from_string

    target = url if scheme.startswith("async+") else f"async+{url}"
    options = {"implementation": "redispy"} if "redis" in scheme else {}
    try:
        return storage_from_string(target, **options)  # type: ignore[return-value]
    except Exception as exc:  # limits raises ConfigurationError/ValueError of its own
        raise ConfigurationError(f"rate limit storage '{url}': {exc}") from None


class RateLimiter:
    """Counts requests against limits in ``storage`` (:func:`rate_limit_storage`)."""

    def __init__(self, storage: Storage) -> None:
        from limits.aio.strategies import MovingWindowRateLimiter

        self.storage = storage
        self._strategy = MovingWindowRateLimiter(storage)
        self._parsed: dict[str, list[RateLimitItem]] = {}

    def items(self, limit: str) -> list[RateLimitItem]:
        """The limits of ``limit`` (``"60/minute;1000/day"``), parsed once."""
        parsed = self._parsed.get(limit)
        if parsed is None:
            from limits import parse_many

            parsed = self._parsed[limit] = parse_many(limit)
        return parsed

    async def hit(self, limit: str, *key: str, message: str = "rate limit of {item} exceeded for this caller") -> None:
        """Count one request of ``key`` (e.g. agent name, caller) against each part of
        ``limit``, in order. Raises RateLimitError (429, ``retry_after``: whole seconds until
        the window lets the next request in) at the first part that is exhausted; its message
        is ``message`` (``{item}``: the exhausted limit) and the time to wait."""
        for item in self.items(limit):
            if not await self._strategy.hit(item, *key):
                stats = await self._strategy.get_window_stats(item, *key)
                retry_after = max(1, math.ceil(stats.reset_time - time.time()))
                raise RateLimitError(
                    f"{message.format(item=item)}; retry after {retry_after} s",
                    retry_after=retry_after,
                )

    async def close(self) -> None:
        """Release the storage's connections (Redis: the client's pool)."""
        client = getattr(getattr(self.storage, "bridge", None), "storage", None)
        if hasattr(client, "aclose"):
            await client.aclose()

