"""Amounts of money: US dollars on the wire, integer micro-dollars everywhere else.

The Robutler platform API counts credits in US dollars (``lockedAmountDollars``: one credit is
one dollar) and accepts amounts as JSON numbers or decimal strings. Robutler stores and adds
them as integers of micro-dollars (1 dollar = 1,000,000), never as floats, so that sums are
exact.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

MICROS_PER_DOLLAR = 1_000_000


class InvalidAmountError(ValueError):
    """An amount that is not a finite, non-negative number of dollars with at most six decimals."""


def to_micros(dollars: Any, *, field: str = "amount", allow_zero: bool = True) -> int:
    """Micro-dollars for ``dollars`` (a decimal string like ``"0.25"``, an int, or a float as it
    appears in JSON: its shortest decimal representation is used, so ``0.1`` is 100,000).

    Raises InvalidAmountError naming ``field`` for booleans, negative, non-finite or
    non-numeric values, and for more than six decimal places (a fraction of a micro-dollar).
    """
    if isinstance(dollars, bool) or not isinstance(dollars, (str, int, float, Decimal)):
        raise InvalidAmountError(f"{field} must be a number of US dollars, got {type(dollars).__name__}")
    try:
        value = Decimal(repr(dollars) if isinstance(dollars, float) else str(dollars).strip())
    except InvalidOperation:
        raise InvalidAmountError(f"{field} must be a number of US dollars, got {dollars!r}") from None
    if not value.is_finite():
        raise InvalidAmountError(f"{field} must be a finite number of US dollars, got {dollars!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidAmountError(f"{field} must be {'at least' if allow_zero else 'more than'} 0, got {dollars!r}")
    micros = value * MICROS_PER_DOLLAR
    if micros != micros.to_integral_value():
        raise InvalidAmountError(f"{field} has more than six decimal places: {dollars!r}")
    return int(micros)


def to_dollars(micros: int) -> str:
    """``micros`` as a decimal string of dollars with six decimals (``"0.250000"``)."""
    sign = "-" if micros < 0 else ""
    whole, fraction = divmod(abs(micros), MICROS_PER_DOLLAR)
    return f"{sign}{whole}.{fraction:06d}"
