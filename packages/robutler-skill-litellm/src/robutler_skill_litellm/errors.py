"""LiteLLM exceptions to :mod:`robutler_core.errors`, keeping the provider's message."""

from __future__ import annotations

from typing import Any

from robutler_core import errors


def map_litellm_error(exc: Exception, model: str | None) -> errors.RobutlerError | None:
    """The Robutler error for a LiteLLM exception, or ``None`` when it is not a provider error.

    401 -> AuthenticationError, 403 -> PermissionDeniedError, 404 -> NotFoundError,
    400/422 -> BadRequestError, 429 -> RateLimitError (with ``retry_after``), timeouts ->
    UpstreamTimeoutError (504), 503 -> ServiceUnavailableError, other failures -> UpstreamError (502).
    """
    import litellm

    message = f"provider error from {model}: {getattr(exc, 'message', None) or exc}"
    if isinstance(exc, litellm.Timeout):
        return errors.UpstreamTimeoutError(message)
    status = getattr(exc, "status_code", None)
    if isinstance(exc, litellm.APIConnectionError) or not isinstance(status, int):
        if isinstance(exc, litellm.exceptions.APIError | litellm.APIConnectionError):
            return errors.UpstreamError(message, code="upstream_connection_error")
        return None
    if status == 401:
        return errors.AuthenticationError(message, code="upstream_authentication_error")
    if status == 403:
        return errors.PermissionDeniedError(message)
    if status == 404:
        return errors.NotFoundError(message, code="model_not_found")
    if status in (400, 422):
        return errors.BadRequestError(message)
    if status == 429:
        return errors.RateLimitError(message, retry_after=_retry_after(exc))
    if status == 408:
        return errors.UpstreamTimeoutError(message)
    if status == 503:
        return errors.ServiceUnavailableError(message)
    return errors.UpstreamError(message, code=f"upstream_{status}")


def _retry_after(exc: Exception) -> float | None:
    headers: Any = getattr(exc, "litellm_response_headers", None)
    response = getattr(exc, "response", None)
    if headers is None and response is not None:
        headers = getattr(response, "headers", None)
    value = headers.get("retry-after") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
