"""anthropic SDK exceptions to :mod:`robutler_core.errors`, keeping the provider's message."""

from __future__ import annotations

import json

from robutler_core import errors

ERROR_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
"""Anthropic error ``type`` -> HTTP status, for errors sent inside a stream (as an ``error``
event of a 200 response), which have no status of their own."""


def map_anthropic_error(exc: Exception, model: str) -> errors.RobutlerError | None:
    """The Robutler error for an ``anthropic`` SDK exception, or ``None`` for anything else.

    ``APITimeoutError`` -> UpstreamTimeoutError (504), ``APIConnectionError`` -> UpstreamError
    (502), ``APIStatusError`` by status as :func:`robutler_core.errors.upstream_error` maps it
    (401, 403, 404 model, 400, 413, 429 with ``retry_after``, 529 overloaded -> 503, 5xx); an
    error event mid-stream by its error ``type``; a body (or stream event) that is not valid
    JSON -> UpstreamError (502, ``upstream_invalid_response``).
    """
    import anthropic

    if isinstance(exc, json.JSONDecodeError):
        return errors.invalid_response(model, f"the body is not valid JSON ({exc})")

    body = getattr(exc, "body", None)
    text = errors.provider_message(body, getattr(exc, "message", None) or str(exc))
    message = f"provider error from {model}: {text}"
    if isinstance(exc, anthropic.APITimeoutError):
        return errors.UpstreamTimeoutError(message)
    if isinstance(exc, anthropic.APIConnectionError):
        return errors.upstream_error(None, message)
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        if status < 400:  # an error event inside a 200 stream
            error_type = (body.get("error") or {}).get("type") if isinstance(body, dict) else None
            status = ERROR_TYPE_STATUS.get(error_type or "", 500)
        if status == 402:
            return errors.PaymentRequiredError(message, code="upstream_billing_error")
        return errors.upstream_error(status, message, retry_after=errors.parse_retry_after(exc.response.headers))
    return None
