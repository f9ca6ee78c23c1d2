"""The ``auth`` skill: who is calling, from an API key or an owner assertion, checked with the
Robutler platform.

Its ``on_connection`` hook (priority 10, before the payments and memory skills) reads:

- an API key, as ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``, checked with the
  platform's ``GET /api/user`` (answers cached for ``cache_ttl`` seconds); or
- an owner assertion, ``X-Owner-Assertion: JWT``: an RS256 token signed by the configured
  platform (verified against that platform's ``GET /api/auth/jwks`` only, never a key named by
  the token), whose ``aud`` is this agent and which has not expired;
- without either, a payment token (``X-Payment-Token``) valid for this agent on the configured
  platform (``POST /api/payments/verify``): another agent calling through NLI carries no API
  key; the caller is the token's paying user, with scope ``all``.

It sets ``context.peer_user_id`` (the platform user id) and ``context.auth_scope``:
``"admin"`` for a platform admin, ``"owner"`` for the agent's owner (the user of the skill's
``api_key``, or the subject of a valid owner assertion), else ``"all"``.

Errors: 401 ``missing_api_key`` (no credentials, ``require_auth`` on), 401 ``invalid_api_key``
(unknown or revoked key), 401 ``invalid_owner_assertion``, 503 ``platform_unavailable``.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pydantic

from robutler_core import hook
from robutler_core.errors import AuthenticationError

from .client import PlatformConfig, PlatformSkill, api_key_of

CACHE_SIZE = 10_000
"""API keys whose answers are cached at most (the oldest go first)."""


class AuthConfig(PlatformConfig):
    """``api_key``: the agent owner's key; its user is the owner."""

    require_auth: bool = True
    """Refuse callers without credentials (401); when off they are anonymous (scope ``all``)."""
    cache_ttl: float = pydantic.Field(default=60.0, ge=0)
    """Seconds an API key's user is remembered (0: ask the platform every time)."""


class AuthSkill(PlatformSkill):
    """Authenticates callers against the Robutler platform (see the module docstring)."""

    config_model = AuthConfig

    def __init__(self, config: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._users: dict[str, tuple[float, dict[str, Any]]] = {}
        self._owner_id: str | None = None
        self._jwks: dict[str, Any] = {}
        self._jwks_fetched = 0.0

    async def user_for_key(self, key: str) -> dict[str, Any]:
        """The platform user of API key ``key`` (cached); AuthenticationError when unknown."""
        digest = hashlib.sha256(key.encode()).hexdigest()
        cached = self._users.get(digest)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        try:
            user = (await self.platform().call("GET", "/api/user", api_key=key))["user"]
        except AuthenticationError:
            self._users.pop(digest, None)
            raise AuthenticationError("the API key is unknown or revoked", code="invalid_api_key") from None
        if self.settings.cache_ttl > 0:
            if len(self._users) >= CACHE_SIZE:
                self._users.pop(next(iter(self._users)))
            self._users[digest] = (time.monotonic() + self.settings.cache_ttl, user)
        return user

    async def owner_id(self) -> str | None:
        """The user id of the skill's ``api_key`` (the agent's owner), ``None`` without one."""
        client = self.platform()
        if self._owner_id is None and client.api_key:
            self._owner_id = (await self.user_for_key(client.api_key))["id"]
        return self._owner_id

    async def _signing_key(self, kid: str | None) -> Any:
        """The platform's public key ``kid`` from its JWKS (fetched again, at most every 30 s,
        when the kid is unknown: the platform may have rotated its key)."""
        import jwt  # here: discovering the installed skills at start-up need not import it (~30 ms)

        if kid not in self._jwks and time.monotonic() - self._jwks_fetched > 30:
            jwks = await self.platform().call("GET", "/api/auth/jwks")
            self._jwks = {key.get("kid"): jwt.PyJWK(key).key for key in jwks.get("keys", [])}
            self._jwks_fetched = time.monotonic()
        if kid not in self._jwks:
            raise AuthenticationError(
                "the owner assertion is not signed by this agent's platform", code="invalid_owner_assertion"
            )
        return self._jwks[kid]

    async def verify_owner_assertion(self, assertion: str, agent_name: str) -> dict[str, Any]:
        """The claims of an owner assertion for ``agent_name``; AuthenticationError (401)
        when it is malformed, not signed by the platform's key, expired or for another agent."""
        import jwt

        try:
            kid = jwt.get_unverified_header(assertion).get("kid")
        except jwt.PyJWTError as exc:
            raise AuthenticationError(f"the owner assertion is not valid: {exc}", code="invalid_owner_assertion") from None
        key = await self._signing_key(kid)
        try:
            claims = jwt.decode(
                assertion, key, algorithms=["RS256"], audience=agent_name,
                options={"require": ["exp", "sub", "aud", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("the owner assertion has expired", code="invalid_owner_assertion") from None
        except jwt.InvalidAudienceError:
            raise AuthenticationError(
                f"the owner assertion is for another agent, not '{agent_name}'", code="invalid_owner_assertion"
            ) from None
        except jwt.PyJWTError as exc:
            raise AuthenticationError(f"the owner assertion is not valid: {exc}", code="invalid_owner_assertion") from None
        if claims.get("typ") != "owner":
            raise AuthenticationError("the token is not an owner assertion", code="invalid_owner_assertion")
        return claims

    @hook("on_connection", priority=10)
    async def authenticate(self, context: Any) -> None:
        """Set ``peer_user_id`` and ``auth_scope`` from the request's credentials."""
        headers = context.headers
        assertion = headers.get("x-owner-assertion")
        if assertion:
            claims = await self.verify_owner_assertion(assertion, context.agent.name)
            context.peer_user_id = claims["sub"]
            context.auth_scope = "owner"
            return
        key = api_key_of(headers.get("authorization"), headers.get("x-api-key"))
        if key is None and headers.get("x-payment-token"):
            # Another agent calling through NLI: its delegated payment token, valid for this
            # agent on this platform, identifies the paying user.
            token = await self.platform().call(
                "POST", "/api/payments/verify",
                json={"token": headers["x-payment-token"], "expectedAudience": context.agent.name},
            )
            context.peer_user_id = token["userId"]
            context.auth_scope = "all"
            return
        if key is None:
            if self.settings.require_auth:
                raise AuthenticationError(
                    "this agent needs a Robutler API key: send it as 'Authorization: Bearer KEY' "
                    "(the OpenAI client's api_key) or 'X-API-Key: KEY'",
                    code="missing_api_key",
                )
            return
        user = await self.user_for_key(key)
        context.peer_user_id = user["id"]
        if user.get("role") == "admin":
            context.auth_scope = "admin"
        elif user["id"] == await self.owner_id():
            context.auth_scope = "owner"
        else:
            context.auth_scope = "all"

