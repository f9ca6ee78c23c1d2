"""The ``payments`` skill: the caller pays for the request with a Robutler payment token.

- ``on_connection`` (priority 20, after ``auth``): the token from ``X-Payment-Token`` is
  verified with the platform for this agent, and ``per_request_lock`` dollars of it are locked
  (``POST /api/payments/lock``). No token: 402 ``payment_required``; a token that cannot cover
  the lock: 402 ``insufficient_balance``; a bad token: 402 with the platform's code
  (``invalid_payment_token``, ``payment_token_expired``, ``wrong_audience``...). Every 402 body
  carries an x402-style ``accepts`` list beside the OpenAI error envelope.
- ``before_toolcall``: before a tool priced with ``@pricing(credits_per_call=...)`` runs, the lock
  is extended (``PATCH /api/payments/lock/{id}``) when it does not cover what the request has
  used plus the price; when the token cannot cover it, the tool is not run and the model is
  told why.
- ``finalize_connection`` (always: success, error, client disconnect): the request's usage
  records are charged once (``POST /api/payments/settle`` with an ``Idempotency-Key`` derived
  from the request id, so a retry never charges twice): model calls at their cost (the
  ``model_cost`` hook) times ``markup``, priced tools as declared; the rest of the lock goes
  back to the token. The settle runs shielded from the request's cancellation.

Amounts are US dollars (a credit is a dollar), exact to the micro-dollar.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pydantic

from robutler_core import hook
from robutler_core.errors import PaymentRequiredError, RobutlerError
from robutler_core.hookspecs import ToolCallBlocked

from .client import PlatformConfig, PlatformSkill
from .money import MICROS_PER_DOLLAR, to_dollars, to_micros
from .nli import PAID_BY_DELEGATION
from .pricing import price_of

logger = logging.getLogger(__name__)

STATE = "robutler_skill_platform.payments"
"""The key of the request's payment state in ``context`` (``context.get(STATE)``)."""


class PaymentRequired(PaymentRequiredError):
    """402 with an x402-style ``accepts`` list: ``{"error": {...}, "accepts": [{"scheme":
    "token", "network": "robutler", "amount": "<dollars>", "asset": "robutler:credits"}]}``."""

    def __init__(self, message: str, *, amount_micros: int, code: str = "payment_required") -> None:
        super().__init__(message, code=code)
        self.accepts = [
            {"scheme": "token", "network": "robutler", "amount": to_dollars(amount_micros), "asset": "robutler:credits"}
        ]

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "accepts": self.accepts}


class PaymentsConfig(PlatformConfig):
    """``api_key``: the agent owner's key; locks and settles are its calls."""

    per_request_lock: str | float = "0.10"
    """Dollars locked when a request starts (and what a 402's ``accepts`` asks for)."""
    markup: Decimal = pydantic.Field(default=Decimal(1), ge=0, allow_inf_nan=False)
    """Multiplies the cost of model calls (not tool prices)."""

    @pydantic.field_validator("per_request_lock")
    @classmethod
    def _an_amount(cls, value: str | float) -> str | float:
        to_micros(value, field="per_request_lock", allow_zero=False)  # ValueError names the problem
        return value


class _Payment:
    """One request's payment: its token, lock and what is locked (micro-dollars)."""

    def __init__(self, token: str, lock_id: str, locked: int) -> None:
        self.token = token
        self.lock_id = lock_id
        self.locked = locked
        self.extensions = 0
        self.guard = asyncio.Lock()


class PaymentSkill(PlatformSkill):
    """Charges callers for the request (see the module docstring). Depends on ``auth``."""

    config_model = PaymentsConfig

    def __init__(self, config: dict[str, Any] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("dependencies", ["auth"])
        super().__init__(config, **kwargs)
        self.lock_micros = to_micros(self.settings.per_request_lock, field="per_request_lock", allow_zero=False)
        self.markup = self.settings.markup

    # --- what a request costs ----------------------------------------------------------------

    def usage_micros(self, context: Any) -> int:
        """What the request's usage records cost so far, in micro-dollars: each model call's
        ``credits`` times ``markup``, each other record's ``credits``, each rounded to the
        micro-dollar (half up). Records paid through a delegated token (the ``nli`` skill's)
        are left out: the callee was paid from that token already."""
        total = 0
        for record in context.usage_records:
            if record.metadata.get(PAID_BY_DELEGATION):  # paid already, from a delegated token
                continue
            dollars = Decimal(repr(float(record.credits)))
            if record.kind == "llm":
                dollars *= self.markup
            total += int((dollars * MICROS_PER_DOLLAR).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        return total

    # --- hooks ---------------------------------------------------------------------------------

    @hook("on_connection", priority=20)
    async def lock_payment(self, context: Any) -> None:
        """Verify the caller's payment token and lock ``per_request_lock`` of it."""
        token = context.headers.get("x-payment-token") or context.payment_token
        if not token:
            raise PaymentRequired(
                f"agent '{context.agent.name}' charges for its work: send a Robutler payment token "
                "as 'X-Payment-Token'",
                amount_micros=self.lock_micros,
            )
        client = self.platform()
        try:
            await client.call("POST", "/api/payments/verify", json={"token": token, "expectedAudience": context.agent.name})
            lock = await client.call(
                "POST", "/api/payments/lock", json={"token": token, "amount": to_dollars(self.lock_micros)},
                idempotency_key=f"{context.request_id}:lock",
            )
        except PaymentRequiredError as exc:
            raise PaymentRequired(exc.message, amount_micros=self.lock_micros, code=exc.code or "payment_required") from None
        context.payment_token = token
        context.set(STATE, _Payment(token, lock["lockId"], to_micros(lock["lockedAmountDollars"])))

    @hook("before_toolcall", priority=20)
    async def cover_priced_tool(self, context: Any, tool_call: dict[str, Any]) -> None:
        """Extend the lock to cover a priced tool before it runs; block it when it cannot."""
        payment: _Payment | None = context.get(STATE)
        name = tool_call.get("function", {}).get("name")
        tool = next((t for t in context.agent_tools if getattr(t, "name", None) == name), None)
        price = price_of(getattr(tool, "func", None))
        if payment is None or not price:
            return
        async with payment.guard:
            needed = self.usage_micros(context) + to_micros(price)
            if needed <= payment.locked:
                return
            payment.extensions += 1
            try:
                extended = await self.platform().call(
                    "PATCH", f"/api/payments/lock/{payment.lock_id}",
                    json={"additionalAmount": to_dollars(needed - payment.locked)},
                    idempotency_key=f"{context.request_id}:extend:{payment.extensions}",
                )
            except PaymentRequiredError:
                raise ToolCallBlocked(
                    f"Not run: the caller's payment token cannot cover tool '{name}' "
                    f"({to_dollars(to_micros(price))} dollars). Tell the user their balance is too low."
                ) from None
            payment.locked = to_micros(extended["lockedAmountDollars"])

    @hook("finalize_connection", priority=20)
    async def settle(self, context: Any) -> None:
        """Charge the request's usage once and release the rest of the lock."""
        payment: _Payment | None = context.get(STATE)
        if payment is None:
            return
        context.set(STATE, None)  # one settle per request, whatever calls this again
        task = asyncio.ensure_future(self._settle(context, payment))
        try:
            await asyncio.shield(task)  # a client that hangs up cancels us, not the settle
        except asyncio.CancelledError:
            await asyncio.wait([task])
            raise

    async def _settle(self, context: Any, payment: _Payment) -> dict[str, Any] | None:
        total = self.usage_micros(context)
        client = self.platform()
        if total > payment.locked:
            try:
                extended = await client.call(
                    "PATCH", f"/api/payments/lock/{payment.lock_id}",
                    json={"additionalAmount": to_dollars(total - payment.locked)},
                    idempotency_key=f"{context.request_id}:extend:final",
                )
                payment.locked = to_micros(extended["lockedAmountDollars"])
            except PaymentRequiredError:
                logger.warning(
                    "request %s used %s dollars but only %s could be locked; charging that",
                    context.request_id, to_dollars(total), to_dollars(payment.locked),
                )
                total = payment.locked
        try:
            return await client.call(
                "POST", "/api/payments/settle",
                json={
                    "lockId": payment.lock_id,
                    "amount": to_dollars(total),
                    "description": f"agent {context.agent.name}, request {context.request_id}",
                    "chargeType": "usage",
                    "release": True,
                },
                idempotency_key=f"{context.request_id}:settle",
            )
        except RobutlerError:
            logger.exception("settling request %s (lock %s) failed", context.request_id, payment.lock_id)
            raise
