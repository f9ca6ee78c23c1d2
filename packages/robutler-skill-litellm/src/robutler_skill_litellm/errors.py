"""LiteLLM exceptions to :mod:`robutler_core.errors`, keeping the provider's message."""

from __future__ import annotations

from typing import Any

from robutler_core import errors


def map_litellm_error(exc: Exception, model: str | None) -> errors.RobutlerError | None:
    """The Robutler error for a LiteLLM exception, or ``None`` when it is not a provider error.

    Timeouts -> UpstreamTimeoutError (504), connection failures -> UpstreamError (502), HTTP
    statuses as :func:`robutler_core.errors.upstream_error` maps them (429 with
    ``retry_after``).
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
    return errors.upstream_error(status, message, retry_after=_retry_after(exc) if status == 429 else None)


def _retry_after(exc: Exception) -> float | None:
    headers: Any = getattr(exc, "litellm_response_headers", None)
    response = getattr(exc, "response", None)
    if headers is None and response is not None:
        headers = getattr(response, "headers", None)
    return errors.parse_retry_after(headers)
