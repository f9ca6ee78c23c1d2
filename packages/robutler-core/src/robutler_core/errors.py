"""Errors of Robutler, each mapped to an HTTP status and an OpenAI error envelope.

The server turns any :class:`RobutlerError` into OpenAI's error body
``{"error": {"message", "type", "param", "code"}}`` with :attr:`RobutlerError.status_code`
as the HTTP status (see https://platform.openai.com/docs/guides/error-codes). Guarding hooks
(``on_connection``, ``before_*``) raise these to end a request; LLM skills raise the
``Upstream*`` family for provider failures.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any


class RobutlerError(Exception):
    """Base error: ``status_code`` (HTTP), ``type`` and ``code`` (OpenAI's error fields)."""

    status_code: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI error envelope: ``{"error": {"message", "type", "param", "code"}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class ConfigurationError(RobutlerError):
    """An agent, skill or plugin is configured wrongly (raised at start-up, not per request)."""

    type = "configuration_error"


class BadRequestError(RobutlerError):
    """400: the request is malformed or names something that does not exist in it."""

    status_code = 400
    type = "invalid_request_error"


class AuthenticationError(RobutlerError):
    """401: the caller is not authenticated."""

    status_code = 401
    type = "authentication_error"


class PaymentRequiredError(RobutlerError):
    """402: the caller cannot pay for the request."""

    status_code = 402
    type = "payment_required"
    code = "insufficient_funds"


class PermissionDeniedError(RobutlerError):
    """403: the caller's scope does not allow this."""

    status_code = 403
    type = "permission_error"


class NotFoundError(RobutlerError):
    """404: unknown agent, model or route."""

    status_code = 404
    type = "not_found_error"


class RateLimitError(RobutlerError):
    """429: too many requests; ``retry_after`` in seconds when known."""

    status_code = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class UpstreamError(RobutlerError):
    """502: the LLM provider (or another upstream) failed."""

    status_code = 502
    type = "upstream_error"


class ServiceUnavailableError(UpstreamError):
    """503: the upstream is overloaded or down."""

    status_code = 503
    type = "service_unavailable"


class UpstreamTimeoutError(UpstreamError):
    """504: the upstream did not answer in time."""

    status_code = 504
    type = "timeout_error"
    code = "upstream_timeout"


class MaxTurnsExceeded(RobutlerError):
    """500: the tool loop reached the agent's ``max_turns`` without a final answer."""

    code = "max_turns_exceeded"


RETRYABLE_ERRORS: tuple[type[RobutlerError], ...] = (RateLimitError, UpstreamError)
"""Provider failures worth another try, on the same model later or on a fallback model:
429 and the 5xx family (502, 503, 504). 400, 401, 403 and 404 are not: another try gets the
same answer."""


def upstream_error(
    status: int | None,
    message: str,
    *,
    retry_after: float | None = None,
    code: str | None = None,
) -> RobutlerError:
    """The Robutler error for a provider's HTTP ``status`` (``None``: no answer at all).

    401 and 403 -> UpstreamError (502, codes ``upstream_authentication_error`` and
    ``upstream_permission_denied``): the provider refused the *server's* credentials, which
    the client can do nothing about, so the client does not get a 401/403 that would tell it
    to fix its own (and another model of the agent's fallbacks, with other credentials, is
    tried). 404 -> NotFoundError (``model_not_found``), 400/413/422 -> BadRequestError, 429 ->
    RateLimitError with ``retry_after``, 408 and 504 -> UpstreamTimeoutError, 503 and 529
    (overloaded) -> ServiceUnavailableError, anything else -> UpstreamError (502). Provider
    skills keep the provider's message in ``message``.
    """
    if status == 401:
        return UpstreamError(message, code=code or "upstream_authentication_error")
    if status == 403:
        return UpstreamError(message, code=code or "upstream_permission_denied")
    if status == 404:
        return NotFoundError(message, code=code or "model_not_found")
    if status in (400, 413, 422):
        return BadRequestError(message, code=code)
    if status == 429:
        return RateLimitError(message, retry_after=retry_after, code=code)
    if status in (408, 504):
        return UpstreamTimeoutError(message)
    if status in (503, 529):
        return ServiceUnavailableError(message, code=code)
    if status is None:
        return UpstreamError(message, code=code or "upstream_connection_error")
    return UpstreamError(message, code=code or f"upstream_{status}")


def invalid_response(model: str, problem: str) -> UpstreamError:
    """The error for a provider answer that is not what its API promises: a body that is not
    valid JSON, or JSON of the wrong shape. UpstreamError (502, code
    ``upstream_invalid_response``): retryable, so the agent's fallbacks are tried."""
    return UpstreamError(
        f"provider error from {model}: invalid response: {problem}", code="upstream_invalid_response"
    )


def provider_message(body: Any, default: str) -> str:
    """The provider's own error message from an error response ``body``: OpenAI's
    ``{"error": {"message"}}``, Anthropic's ``{"type": "error", "error": {"message"}}``, or an
    SDK's already unwrapped ``{"message"}``; ``default`` otherwise."""
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
        if isinstance(body.get("message"), str):
            return body["message"]
    return default


@contextlib.contextmanager
def mapped_errors(mapper: Callable[[Exception], RobutlerError | None]) -> Iterator[None]:
    """Raise ``mapper(exc)`` (chained to ``exc``) for an exception of the block, or ``exc``
    itself when the mapper returns ``None``. Provider skills wrap SDK calls in it, streaming
    loops included (cancellation and generator exits pass untouched)."""
    try:
        yield
    except Exception as exc:
        mapped = mapper(exc)
        if mapped is None:
            raise
        raise mapped from exc


def parse_retry_after(headers: Any) -> float | None:
    """Seconds from a ``retry-after`` (or ``retry-after-ms``) header of a mapping, else ``None``.

    HTTP dates are not supported (providers send seconds).
    """
    if headers is None:
        return None
    try:
        milliseconds = headers.get("retry-after-ms")
        if milliseconds is not None:
            return float(milliseconds) / 1000
        value = headers.get("retry-after")
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


__all__ = [
    "RETRYABLE_ERRORS",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "MaxTurnsExceeded",
    "NotFoundError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "RateLimitError",
    "RobutlerError",
    "ServiceUnavailableError",
    "UpstreamError",
    "UpstreamTimeoutError",
    "invalid_response",
    "mapped_errors",
    "parse_retry_after",
    "provider_message",
    "upstream_error",
]
