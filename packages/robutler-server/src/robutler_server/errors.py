"""Errors as OpenAI's envelope ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from robutler_core.errors import BadRequestError, RobutlerError

from .disconnect import CLIENT_CLOSED_REQUEST, ClientDisconnected

logger = logging.getLogger("robutler_server")


def error_response(error: RobutlerError) -> JSONResponse:
    headers = {}
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        headers["retry-after"] = str(int(retry_after) if float(retry_after).is_integer() else retry_after)
    return JSONResponse(error.to_dict(), status_code=error.status_code, headers=headers)


def internal_error(exc: BaseException) -> RobutlerError:
    """What a client sees of an unexpected exception (details go to the log, not the client)."""
    return RobutlerError(f"internal server error ({type(exc).__name__}); see the server log", code="internal_error")


def validation_error(exc: RequestValidationError) -> BadRequestError:
    """The first problem of a request validation, naming the field as ``param`` (its path in
    the JSON body, e.g. ``messages.0.content.1.text``). The message never echoes the value."""
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
    @app.exception_handler(RobutlerError)
    async def _robutler(request: Request, exc: RobutlerError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(exc))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        error = RobutlerError(str(exc.detail), status_code=exc.status_code)
        error.type = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return error_response(error)

    @app.exception_handler(ClientDisconnected)
    async def _gone(request: Request, exc: ClientDisconnected) -> Response:
        logger.info("%s; its work was cancelled", exc)
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(internal_error(exc))


def sse_event(payload: Any) -> str:
    """One server-sent event: ``data: {json}\\n\\n``."""
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"
