"""``@pricing`` for tools, and :class:`PricingInfo` for prices known only after a call.

A priced tool records what it costs as a usage record of the request (``kind="tool"``,
``credits`` in US dollars: one credit is one dollar, as the Robutler platform counts them), and
the ``payments`` skill charges the request's usage records once, when it ends. Any skill
package can price its tools this way::

    from robutler_core import Skill, tool
    from robutler_skill_platform import PricingInfo, pricing

    class Search(Skill):
        @tool
        @pricing(credits_per_call=0.01, reason="web search")
        def search(self, query: str) -> str:
            ...

        @tool
        @pricing()  # the price comes with the result
        def render(self, pages: int):
            return "done", PricingInfo(credits=0.002 * pages, reason=f"{pages} pages")

A tool that raises records nothing (it is not charged). ``credits_per_call`` is what the
``payments`` skill makes sure the caller's lock covers before the tool runs.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from robutler_core import get_context

from .money import InvalidAmountError, to_micros

F = TypeVar("F", bound=Callable[..., Any])
PRICING_MARKER = "__robutler_pricing__"


@dataclass(frozen=True)
class PricingInfo:
    """The price of one tool call: ``credits`` (US dollars, >= 0, at most six decimals),
    ``reason`` (shown on the ledger) and ``metadata``."""

    credits: float
    reason: str = "tool call"
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        to_micros(self.credits, field="credits")  # InvalidAmountError for a bad price


def pricing(credits_per_call: float | None = None, reason: str | None = None) -> Callable[[F], F]:
    """Price a tool: ``credits_per_call`` dollars per successful call (``None``: the tool returns
    ``(result, PricingInfo)``). Put it under ``@tool``. Raises ValueError for a bad price."""
    if credits_per_call is not None:
        try:
            to_micros(credits_per_call, field="credits_per_call")
        except InvalidAmountError as exc:
            raise ValueError(str(exc)) from None

    def decorate(func: F) -> F:
        name = func.__name__

        def record(result: Any) -> Any:
            if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], PricingInfo):
                result, price = result
            elif credits_per_call is not None:
                price = PricingInfo(credits_per_call, reason or f"tool {name}")
            else:
                return result
            context = get_context()
            if context is not None:
                context.track_usage(
                    price.credits, price.reason, kind="tool", metadata={"tool": name, **price.metadata}
                )
            return result

        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def priced(*args: Any, **kwargs: Any) -> Any:
                return record(await func(*args, **kwargs))
        else:
            @functools.wraps(func)
            def priced(*args: Any, **kwargs: Any) -> Any:
                return record(func(*args, **kwargs))

        setattr(priced, PRICING_MARKER, {"credits_per_call": credits_per_call, "reason": reason})
        return priced  # type: ignore[return-value]

    return decorate


def price_of(func: Any) -> float | None:
    """The ``credits_per_call`` of a tool function (bound or not), ``None`` when unpriced or
    priced by its result."""
    marker = getattr(func, PRICING_MARKER, None)
    return marker["credits_per_call"] if marker else None
