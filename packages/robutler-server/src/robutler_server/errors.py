"""Errors as OpenAI's envelope ``{"error": {"message", "type", "param", "code"}}``.

No error shows a secret: an unexpected exception shows only its type; an error's message
(a provider's message may echo the API key it was sent, or headers) has every known secret and
``Bearer`` token replaced by ``[redacted]`` (:func:`redact`) before it leaves the server,
whether as a response or as the last event of a stream.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from robutler_core.errors import BadRequestError, RobutlerError

from .disconnect import CLIENT_CLOSED_REQUEST, ClientDisconnected

logger = logging.getLogger("robutler_server")

REDACTED = "[redacted]"
_SECRET_NAME = re.compile(r"api_?key|token|secret|password|credential", re.IGNORECASE)
_BEARER = re.compile(r"(\bbearer\s+)(?=[^\s\"',;]*\d)[^\s\"',;]{8,}", re.IGNORECASE)  # a token, not a word
_MIN_SECRET_LENGTH = 8  # shorter values would redact ordinary words
_config_secrets: set[str] = set()


def remember_secrets(agents: Iterable[Any]) -> None:
    """Add the secrets in the served agents' skill configurations (string options whose name
    says key, token, secret, password or credential) to those :func:`redact` hides."""
    for agent in agents:
        for skill in [*agent.skills.values(), *getattr(agent, "fallbacks", [])]:
            config = getattr(skill, "config", None) or {}
            _config_secrets.update(
                value for name, value in config.items()
                if isinstance(value, str) and _SECRET_NAME.search(str(name))
            )


def redact(text: str) -> str:
    """``text`` with ``Bearer`` tokens, the skills' configured secrets (:func:`remember_secrets`)
    and the values of environment variables named like secrets (``OPENAI_API_KEY``...)
    replaced by ``[redacted]``."""
    env = (value for name, value in os.environ.items() if _SECRET_NAME.search(name))
    for secret in sorted({*_config_secrets, *env}, key=len, reverse=True):
        if len(secret) >= _MIN_SECRET_LENGTH and secret in text:
            text = text.replace(secret, REDACTED)
    return _BEARER.sub(rf"\g<1>{REDACTED}", text)


def _redacted(envelope: dict[str, Any]) -> dict[str, Any]:
    error = dict(envelope["error"])
    error["message"] = redact(str(error.get("message", "")))
    return {**envelope, "error": error}


def error_response(error: RobutlerError, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """``error`` as OpenAI's envelope with its status (and ``retry-after`` when it has one)."""
    headers = dict(headers or {})
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        headers["retry-after"] = str(int(retry_after) if float(retry_after).is_integer() else retry_after)
    return JSONResponse(_redacted(error.to_dict()), status_code=error.status_code, headers=headers)


def internal_error(exc: BaseException) -> RobutlerError:
    """What a client sees of an unexpected exception (details go to the log, not the client)."""
    return RobutlerError(f"internal server error ({type(exc).__name__}); see the server log", code="internal_error")


def validation_error(exc: RequestValidationError) -> BadRequestError:
    """The first problem of a request validation, naming the field as ``param`` (its path in
    the JSON body, e.g. ``messages.0.content.1.text``). Pydantic's messages do not echo the
    value; a JSON Schema check quotes (at most 200 characters of) the offending schema part."""
    errors = exc.errors()
    first: dict[str, Any] = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        return BadRequestError(f"the request body is not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}")
    loc = list(first.get("loc", ()))
    if loc[:1] == ["body"]:
        path = _body_path(loc[1:], getattr(exc, "body", None), first.get("type") == "missing")
    else:  # a path, query or header parameter: its name
        path = [str(p) for p in loc[1:] or loc]
    msg = first["msg"]
    ctx = first.get("ctx") or {}
    if first.get("type") in ("union_tag_invalid", "union_tag_not_found"):
        # A tagged union (messages by "role", content parts by "type"): name the tag's field.
        path.append(str(ctx.get("discriminator", "type")).strip("'\"()"))
        expected = ctx.get("expected_tags")
        msg = f"Input should be {expected}" if expected else "Field required"
    elif first.get("type") == "value_error" and "error" in ctx:
        msg = str(ctx["error"])
    param = ".".join(path) or None
    message = f"invalid request: {param}: {msg}" if param else f"invalid request: {msg}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return BadRequestError(message, param=param, code="invalid_value" if param else None)


def _body_path(loc: list[Any], body: Any, missing: bool) -> list[str]:
    """The JSON path of an error location in the request ``body``: pydantic's ``loc`` also
    holds the tags of union members (``user``, ``parts``), which are not in the body."""
    path: list[str] = []
    value = body
    last = len(loc) - 1
    for i, step in enumerate(loc):
        if isinstance(value, dict) and step in value:
            value = value[step]
        elif isinstance(value, list) and isinstance(step, int) and 0 <= step < len(value):
            value = value[step]
        elif missing and i == last:
            pass  # the name of the missing field
        elif body is not None:
            continue  # a union member's tag
        path.append(str(step))
    return path


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error with the envelope; the app's agents' secrets are never shown."""
    remember_secrets(getattr(app.state, "agents", {}).values())

    @app.exception_handler(RobutlerError)
    async def _robutler(request: Request, exc: RobutlerError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(exc))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 404 and "route" not in request.scope:  # no route matched the path
            offered = ", ".join(offered_routes(app))
            error = RobutlerError(
                f"Invalid URL ({request.method} {request.url.path}): this server offers: {offered}",
                status_code=404,
                code="unknown_url",
            )
        else:  # a 405 (its Allow header kept) or an HTTPException raised by an @http handler
            error = RobutlerError(str(exc.detail), status_code=exc.status_code)
        error.type = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return error_response(error, exc.headers)

    @app.exception_handler(ClientDisconnected)
    async def _gone(request: Request, exc: ClientDisconnected) -> Response:
        logger.info("%s; its work was cancelled", exc)
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises the exception after this response and uvicorn then closes the
        # connection: say so, so that a keep-alive client does not reuse it.
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(internal_error(exc), {"connection": "close"})


def offered_routes(app: FastAPI) -> list[str]:
    """``METHOD /path`` of each documented route of ``app``, agent routes as templates
    (``POST /{agent}/chat/completions``); an agent's own ``@http`` routes are summed up in one
    entry, so no agent name is shown."""
    agents = getattr(app.state, "agents", {})
    offered: list[str] = []
    agent_routes = False
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        first, _, rest = route.path_format.lstrip("/").partition("/")
        if first in agents:
            agent_routes = True
            continue
        path = "/{agent}" + (f"/{rest}" if rest else "") if first.startswith("{") else route.path_format
        offered.extend(f"{method} {path}" for method in sorted(route.methods - {"HEAD"}))
    if agent_routes:
        offered.append("the agents' own routes under /{agent}/")
    if app.openapi_url:
        offered.append(f"GET {app.openapi_url} (their description)")
    return list(dict.fromkeys(offered))


def sse_event(payload: Any, event: str | None = None) -> str:
    """One server-sent event: ``data: {json}\\n\\n`` (an error envelope redacted), after
    ``event: {event}`` when an event name is given (the Responses API names each event)."""
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        payload = _redacted(payload)
    name = f"event: {event}\n" if event else ""
    return f"{name}data: {_COMPACT.encode(payload)}\n\n"


_COMPACT = json.JSONEncoder(separators=(",", ":"), check_circular=False)
"""One encoder for every event (``json.dumps`` with options builds one per call); events are
trees of plain values, so the check for cycles (a quarter of the time) is left out."""
