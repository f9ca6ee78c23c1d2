"""An HTTP client of the Robutler platform API (the hosted one or ``robutler platform serve``),
on httpx, that turns the platform's answers into Robutler's errors.

The platform's error bodies are ``{"error": {"message", "type", "param", "code"}}``; its 401,
402, 403 and 404 keep their status and code here, and a platform that cannot be reached, times
out or fails (5xx) is a :class:`~robutler_core.errors.ServiceUnavailableError` (503) naming it.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any, ClassVar

import pydantic

from robutler_core import Skill
from robutler_core.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RobutlerError,
    ServiceUnavailableError,
)

if TYPE_CHECKING:
    import httpx

_BY_STATUS: dict[int, type[RobutlerError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: PaymentRequiredError,
    403: PermissionDeniedError,
    404: NotFoundError,
}
RETRIES = 3
"""Attempts of a call that could not reach the platform (mutating calls carry an
``Idempotency-Key``, so a retry never charges twice)."""


def api_key_of(authorization: str | None, x_api_key: str | None) -> str | None:
    """The API key of ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""
    if x_api_key:
        return x_api_key.strip()
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None


def platform_url(configured: str | None) -> str:
    """``configured``, else ``$ROBUTLER_PLATFORM_URL``, without a trailing slash;
    ConfigurationError when neither is set."""
    url = configured or os.environ.get("ROBUTLER_PLATFORM_URL")
    if not url:
        raise ConfigurationError("set platform_url (or $ROBUTLER_PLATFORM_URL): the Robutler platform to use")
    return url.rstrip("/")


class PlatformClient:
    """Calls of the platform API at ``url`` (``http://host:port``; paths start with ``/api``).

    Args:
        url: the platform's base URL.
        api_key: the key sent with calls that do not pass their own (the agent owner's).
        timeout: seconds per call.
    """

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 10.0) -> None:
        self.url = url
        self.api_key = api_key
        import httpx  # here: discovering the installed skills at start-up need not import it (~50 ms)

        self._http: httpx.AsyncClient = httpx.AsyncClient(base_url=url, timeout=timeout)

    async def close(self) -> None:
        await self._http.aclose()

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        api_key: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """One call; its JSON answer, or the mapped error (see the module docstring)."""
        import httpx

        headers = {}
        key = api_key or self.api_key
        if key:
            headers["Authorization"] = f"Bearer {key}"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        retries = RETRIES if idempotency_key or method == "GET" else 1
        for attempt in range(retries):
            try:
                response = await self._http.request(method, path, json=json, headers=headers)
                break
            except httpx.TransportError as exc:
                if attempt + 1 == retries:
                    raise ServiceUnavailableError(
                        f"the Robutler platform at {self.url} cannot be reached ({type(exc).__name__})",
                        code="platform_unavailable",
                    ) from None
                await asyncio.sleep(0.2 * 2**attempt)
        if response.is_success:
            return response.json()
        try:
            error = response.json()["error"]
            message, code, param = error["message"], error.get("code"), error.get("param")
        except Exception:
            message, code, param = response.text[:200], None, None
        error_class = _BY_STATUS.get(response.status_code)
        if error_class is None:
            raise ServiceUnavailableError(
                f"the Robutler platform at {self.url} failed ({response.status_code}): {message}",
                code="platform_error",
            )
        raise error_class(message, code=code, param=param)


class PlatformConfig(pydantic.BaseModel):
    """Options every platform skill takes."""

    model_config = pydantic.ConfigDict(extra="forbid", defer_build=True)

    platform_url: str | None = None
    """The platform (default ``$ROBUTLER_PLATFORM_URL``)."""
    api_key: str | None = None
    """The agent owner's API key (default ``$ROBUTLER_API_KEY``)."""
    timeout: float = pydantic.Field(default=10.0, gt=0)
    """Seconds per platform call."""


class PlatformSkill(Skill):
    """Base of the skills that talk to the platform: :attr:`settings` (the validated
    :attr:`config_model`, a :class:`PlatformConfig`) and :meth:`platform`, the skill's
    :class:`PlatformClient` (made at ``initialize``, or at first use when the agent is served
    without a lifespan; closed with the skill)."""

    config_model: ClassVar[type[PlatformConfig]] = PlatformConfig

    def __init__(self, config: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.settings = self.config_model.model_validate(self.config)
        self.client: PlatformClient | None = None

    @property
    def platform_timeout(self) -> float:
        """Seconds per platform call (``settings.timeout`` unless a skill says otherwise)."""
        return self.settings.timeout

    def check_configuration(self) -> None:
        platform_url(self.settings.platform_url)

    def platform(self) -> PlatformClient:
        """The skill's client of the platform."""
        if self.client is None:
            api_key = self.settings.api_key or os.environ.get("ROBUTLER_API_KEY")
            self.client = PlatformClient(platform_url(self.settings.platform_url), api_key, self.platform_timeout)
        return self.client

    async def initialize(self, agent: Any) -> None:
        self.platform()

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
