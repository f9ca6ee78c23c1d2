"""The platform's HTTP API: the subset of the Robutler platform API that the skills use, with
its paths and field names (camelCase in payment bodies, as the hosted platform has them).

Every route but ``GET /api/auth/jwks`` needs an API key, as ``Authorization: Bearer KEY`` or
``X-API-Key: KEY`` (401 without one, or with an unknown or revoked one). Mutating payment calls
take an ``Idempotency-Key`` header: a repeat with the same key returns the first answer and
moves no money again. Errors use the envelope ``{"error": {"message", "type", "param",
"code"}}``; amounts are US dollars as decimal strings (numbers are accepted on input).
"""


from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, ConfigDict, model_validator

from robutler_core.errors import AuthenticationError, BadRequestError

from ..client import api_key_of
from ..money import InvalidAmountError, to_micros
from .discovery import Discovery
from .store import PlatformStore

Dollars = Any  # checked by money.to_micros: a decimal string or a number, not a boolean


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class VerifyRequest(_Body):
    token: str
    expectedAudience: str | None = None


class LockRequest(_Body):
    token: str
    amount: Dollars


class ExtendRequest(_Body):
    additionalAmount: Dollars


class UsageItem(_Body):
    amount: Dollars
    description: str | None = None
    chargeType: str | None = None


class SettleRequest(_Body):
    lockId: str
    amount: Dollars | None = None
    usage: list[UsageItem] | None = None
    description: str | None = None
    chargeType: str = "usage"
    release: bool = True

    @model_validator(mode="after")
    def _amount_or_usage(self) -> "SettleRequest":
        if (self.amount is None) == (self.usage is None):
            raise ValueError("give either amount or usage")
        return self


class ReleaseRequest(_Body):
    lockId: str | None = None
    token: str | None = None

    @model_validator(mode="after")
    def _lock_or_token(self) -> "ReleaseRequest":
        if (self.lockId is None) == (self.token is None):
            raise ValueError("give either lockId or token")
        return self


class DelegateRequest(_Body):
    parentToken: str
    delegateTo: str
    amount: Dollars


class OwnerAssertionRequest(_Body):
    agent: str


class IntentItem(_Body):
    intent: str
    agent_id: str
    description: str | None = None
    url: str | None = None


class IntentsRequest(_Body):
    intents: list[IntentItem]
    replace: bool = False


class DiscoveryRequest(_Body):
    query: str
    limit: int = 10
    types: list[str] = ["agents", "intents"]


def micros(value: Any, field: str, *, allow_zero: bool = False) -> int:
    """``value`` dollars as micro-dollars; 400 naming ``field`` when it is not an amount."""
    try:
        return to_micros(value, field=field, allow_zero=allow_zero)
    except InvalidAmountError as exc:
        raise BadRequestError(str(exc), param=field) from None


def build_router(store_of: Any, discovery_of: Any) -> APIRouter:
    """The ``/api`` routes; ``store_of(request)`` gives the :class:`PlatformStore` and
    ``discovery_of(request)`` the :class:`Discovery` (set up by the app's lifespan)."""
    router = APIRouter(prefix="/api", tags=["platform"])

    async def store(request: Request) -> PlatformStore:
        return store_of(request)

    async def discovery(request: Request) -> Discovery:
        return discovery_of(request)

    Store = Annotated[PlatformStore, Depends(store)]
    Search = Annotated[Discovery, Depends(discovery)]

    async def caller(
        platform: Store,
        authorization: Annotated[str | None, Header()] = None,
        x_api_key: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        key = api_key_of(authorization, x_api_key)
        if key is None:
            raise AuthenticationError(
                "an API key is required: send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                code="missing_api_key",
            )
        user = await platform.user_for_key(key)
        if user is None:
            raise AuthenticationError("the API key is unknown or revoked", code="invalid_api_key")
        return user

    Caller = Annotated[dict[str, Any], Depends(caller)]
    IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]

    @router.get("/user")
    async def current_user(user: Caller) -> dict[str, Any]:
        return {"user": user}

    @router.get("/auth/jwks")
    async def jwks(platform: Store) -> dict[str, Any]:
        return platform.signer.jwks()

    @router.post("/auth/owner-assertion")
    async def owner_assertion(body: OwnerAssertionRequest, user: Caller, platform: Store) -> dict[str, Any]:
        agent = await platform.agent(body.agent)
        return {"assertion": platform.owner_assertion(user, agent)}

    @router.post("/intents/create")
    async def create_intents(body: IntentsRequest, user: Caller, search: Search) -> dict[str, Any]:
        return await search.publish(user, [i.model_dump() for i in body.intents], body.replace)

    @router.post("/discovery")
    async def discover(body: DiscoveryRequest, user: Caller, search: Search) -> dict[str, Any]:
        return await search.search(body.query, body.limit, body.types)

    @router.post("/payments/verify")
    async def verify(body: VerifyRequest, user: Caller, platform: Store) -> dict[str, Any]:
        return await platform.verify(body.token, body.expectedAudience)

    @router.post("/payments/lock")
    async def lock(body: LockRequest, user: Caller, platform: Store, key: IdempotencyKey = None) -> dict[str, Any]:
        return await platform.lock(user, body.token, micros(body.amount, "amount"), key)

    @router.patch("/payments/lock/{lock_id}")
    async def extend(
        lock_id: str, body: ExtendRequest, user: Caller, platform: Store, key: IdempotencyKey = None
    ) -> dict[str, Any]:
        return await platform.extend_lock(user, lock_id, micros(body.additionalAmount, "additionalAmount"), key)

    @router.post("/payments/settle")
    async def settle(body: SettleRequest, user: Caller, platform: Store, key: IdempotencyKey = None) -> dict[str, Any]:
        if body.usage is not None:
            charges = [
                (micros(item.amount, f"usage.{i}.amount", allow_zero=True), item.description or body.description,
                 item.chargeType or body.chargeType)
                for i, item in enumerate(body.usage)
            ]
        else:
            charges = [(micros(body.amount, "amount", allow_zero=True), body.description, body.chargeType)]
        return await platform.settle(user, body.lockId, charges, release=body.release, key=key)

    @router.post("/payments/release")
    async def release(body: ReleaseRequest, user: Caller, platform: Store, key: IdempotencyKey = None) -> dict[str, Any]:
        return await platform.release(user, lock_id=body.lockId, token=body.token, key=key)

    @router.post("/payments/delegate")
    async def delegate(body: DelegateRequest, user: Caller, platform: Store, key: IdempotencyKey = None) -> dict[str, Any]:
        return await platform.delegate(user, body.parentToken, body.delegateTo, micros(body.amount, "amount"), key)

    return router
