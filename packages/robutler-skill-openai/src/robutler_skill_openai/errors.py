"""openai SDK exceptions to :mod:`robutler_core.errors`, keeping the provider's message."""

from __future__ import annotations

import json

from robutler_core import errors


def map_openai_error(exc: Exception, model: str) -> errors.RobutlerError | None:
    """The Robutler error for an ``openai`` SDK exception, or ``None`` for anything else.

    ``APITimeoutError`` -> UpstreamTimeoutError (504), ``APIConnectionError`` -> UpstreamError
    (502), ``APIStatusError`` by status as :func:`robutler_core.errors.upstream_error` maps it
    (401, 403, 404 model, 400, 429 with ``retry_after`` from the response headers, 5xx); a
    body (or stream event) that is not valid JSON -> UpstreamError (502,
    ``upstream_invalid_response``).
    """
    import openai

    if isinstance(exc, json.JSONDecodeError):
        return errors.invalid_response(model, f"the body is not valid JSON ({exc})")

    text = errors.provider_message(getattr(exc, "body", None), getattr(exc, "message", None) or str(exc))
    message = f"provider error from {model}: {text}"
    if isinstance(exc, openai.APITimeoutError):
        return errors.UpstreamTimeoutError(message)
    if isinstance(exc, openai.APIConnectionError):
        return errors.upstream_error(None, message)
    if isinstance(exc, openai.APIStatusError):
        return errors.upstream_error(
            exc.status_code, message, retry_after=errors.parse_retry_after(exc.response.headers)
        )
    return None
