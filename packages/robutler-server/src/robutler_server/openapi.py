"""The app's OpenAPI document tells the truth about its responses.

FastAPI documents every operation with a 200 whose schema is whatever the endpoint returns,
plus a 422 that this server never sends (a validation error is a 400). :func:`install_openapi`
rewrites the document FastAPI builds:

- the chat-completions routes (``POST /v1/chat/completions``, ``POST /{agent_name}/chat/completions``)
  answer 200 with a ``chat.completion`` (``application/json``) or, with ``stream: true``, a
  ``text/event-stream`` whose events carry ``chat.completion.chunk`` JSON, an error envelope
  (an error after the stream began), or ``[DONE]``;
- every error status an operation can answer (400, 401, 402, 403, 404, 413, 429, 499, 500,
  502, 503, 504) is documented with OpenAI's error envelope
  ``{"error": {"message", "type", "param", "code"}}`` (499, logged when the client went away,
  has no body);
- the Responses routes (``POST /v1/responses``, ``POST /{agent_name}/responses``) answer 200
  with a ``response`` or, with ``stream: true``, its stream events; the stored-response routes
  with a ``response``, a deletion or a page of input items;
- the 422 and FastAPI's ``HTTPValidationError`` schemas are gone.

Source of the shapes: https://platform.openai.com/docs/api-reference/chat/object and
https://platform.openai.com/docs/guides/error-codes. Event streams follow OpenAPI 3.2's reading,
which schemathesis applies to 3.1 documents too: the ``schema`` of ``text/event-stream``
describes one event (``{"data": ...}``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

if TYPE_CHECKING:
    from pydantic import BaseModel

# --- which operation answers what -------------------------------------------------------------

ERRORS: dict[int, str] = {
    400: "Bad request: invalid JSON, a field of the wrong type or value, or a parameter the "
    "answering model cannot honour; `param` names the field",
    401: "Not authenticated: an `on_connection` hook refused the caller",
    402: "Payment required: the caller cannot pay for the request",
    403: "Forbidden: the caller's scope does not admit this",
    404: "Not found: no such agent, model or route",
    413: "The request body is too large",
    429: "Rate limited, here or by the model provider; `Retry-After` says when to try again",
    499: "The client closed the connection before the answer; the work was cancelled (logged "
    "only: no client reads this response)",
    500: "Internal error (details in the server log only), or the tool loop reached the agent's "
    "max_turns",
    502: "The model provider failed (after the agent's fallbacks)",
    503: "The model provider is overloaded or down",
    504: "The model provider did not answer in time",
}

HOOK_ERRORS = (400, 401, 402, 403, 404, 429, 500)
"""What an operation that runs an agent's hooks can answer (a hook may raise any error)."""

MODEL_ERRORS = (*HOOK_ERRORS, 413, 499, 502, 503, 504)
"""What an operation that may call a model can answer."""

SERVER_ONLY_PATHS = frozenset({"/health", "/skills"})
"""Operations that touch no agent: only an internal error can go wrong."""

_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "string"}}
}
_MODEL_HEADER = {
    "x-robutler-model": {
        "description": "The models that answered, in order (when a model was called)",
        "schema": {"type": "string"},
    }
}


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` (served at ``/openapi.json``) document the real responses.

    Call once, in ``create_app``; the document is built at the first request for it, so
    routes added after this call are documented too.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app, build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document(app: FastAPI, spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` (FastAPI's document of ``app``) with the real responses; changed in place."""
    from . import openapi_shapes as shapes  # here: building their schemas costs ~10 ms

    components = spec.setdefault("components", {}).setdefault("schemas", {})
    for model in (shapes.ErrorResponse, shapes.ChatCompletion, shapes.ChatCompletionChunk, shapes.Response,
                  shapes.ResponseStreamEvent, shapes.ResponseDeleted, shapes.ResponseItemList):
        _add_component(components, model)
    agents = getattr(app.state, "agents", {})
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods - {"HEAD"}:
            operation = spec["paths"].get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            responses = operation["responses"]
            responses.pop("422", None)
            if route.path_format.endswith("/chat/completions") and method == "POST":
                responses["200"] = _chat_completion_200()
                statuses: tuple[int, ...] = MODEL_ERRORS
            elif route.path_format.endswith("/responses") and method == "POST":
                responses["200"] = _response_200()
                statuses = MODEL_ERRORS
            elif "/responses/{response_id}" in route.path_format:
                responses["200"] = _json_200(*_STORED[(route.path_format.endswith("/input_items"), method)])
                statuses = HOOK_ERRORS
            elif route.path_format in SERVER_ONLY_PATHS:
                statuses = (500,)
            elif route.path.lstrip("/").split("/", 1)[0] in agents:  # an agent's @http route
                statuses = MODEL_ERRORS
            else:
                statuses = HOOK_ERRORS
            for status in sorted(statuses):
                responses[str(status)] = _error_response(status)
    if "HTTPValidationError" not in str(spec["paths"]):
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
    return spec


def _add_component(components: dict[str, Any], model: type[BaseModel]) -> None:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in {**schema.pop("$defs", {}), model.__name__: schema}.items():
        if components.setdefault(name, definition) != definition:
            raise RuntimeError(f"two schemas named {name!r} in the OpenAPI document")


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error_response(status: int) -> dict[str, Any]:
    if status == 499:
        return {"description": ERRORS[status]}
    response: dict[str, Any] = {
        "description": ERRORS[status],
        "content": {"application/json": {"schema": _ref("ErrorResponse")}},
    }
    if status in (429, 503):
        response["headers"] = dict(_RETRY_AFTER)
    return response


def _chat_completion_200() -> dict[str, Any]:
    event = {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "anyOf": [
                    {"const": "[DONE]"},
                    {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": {"anyOf": [_ref("ChatCompletionChunk"), _ref("ErrorResponse")]},
                    },
                ]
            }
        },
    }
    return _answer_200(
        "A `chat.completion`; with `stream: true`, server-sent events: one "
        "`data: {chat.completion.chunk}` per chunk (with `stream_options.include_usage`, a last "
        "chunk with only `usage`), then `data: [DONE]`. An error after the first event ends the "
        "stream with `data: {error envelope}` and no `[DONE]`.",
        "ChatCompletion", event,
    )


def _answer_200(description: str, schema: str, event: dict[str, Any]) -> dict[str, Any]:
    """The 200 of a route that answers with ``schema`` (JSON) or, streaming, with ``event``s."""
    return {
        "description": description,
        "headers": dict(_MODEL_HEADER),
        "content": {
            "application/json": {"schema": _ref(schema)},
            "text/event-stream": {"schema": event},
        },
    }


_STORED = {
    (False, "GET"): ("Response", "The stored `response`"),
    (False, "DELETE"): ("ResponseDeleted", "The stored response is deleted"),
    (True, "GET"): ("ResponseItemList", "A page of the response's input items"),
}


def _json_200(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _response_200() -> dict[str, Any]:
    event = {
        "type": "object",
        "required": ["data"],
        "properties": {
            "event": {"type": "string"},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": _ref("ResponseStreamEvent"),
            },
        },
    }
    return _answer_200(
        "A `response`; with `stream: true`, server-sent events `event: TYPE` / "
        "`data: {event}`: `response.created`, `response.in_progress`, the output items' events, "
        "then `response.completed`, `response.incomplete` or `response.failed`.",
        "Response", event,
    )
