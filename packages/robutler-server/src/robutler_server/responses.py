"""The Responses API routes: every agent also at ``POST /v1/responses`` (``model`` = the agent's
name) and ``POST /{agent}/responses``, with stored responses at ``GET``/``DELETE
/v1/responses/{id}``, ``GET /v1/responses/{id}/input_items`` (and the same under
``/{agent}/``).

A request runs on the agent's one tool loop (:meth:`robutler_core.Agent.run` /
``run_streaming``), with the same hooks, scopes, usage records, disconnect cancellation and
one ``finalize_connection`` as chat completions; :mod:`robutler_server.responses_wire`
translates the request and the answer. A stored response belongs to the agent that answered
and the caller who asked (``context.peer_user_id``): anyone else gets 404.

``previous_response_id`` is resolved inside the request's ``on_connection`` dispatch, by a
hook that runs after every other one (so the caller's identity is known): it loads the stored
conversation, checks that the caller owns it (404 otherwise) and puts it before the new input.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from robutler_core import Agent
from robutler_core.context import Context
from robutler_core.errors import BadRequestError, MaxTurnsExceeded, NotFoundError, RobutlerError

from .disconnect import until_disconnected
from .errors import internal_error, logger, redact, sse_event
from .responses_schemas import ResponsesRequest
from .responses_store import ResponseStore, StoredResponse
from .responses_wire import (
    ResponseEvents,
    chat_answer,
    chat_messages,
    chat_params,
    chat_tools,
    finished,
    input_items,
    new_id,
    response_from_completion,
    response_object,
    usage_from_records,
)

PENDING = "robutler_server.responses"
"""The Context key holding a Responses request's :class:`Pending` state."""

LAST = 10**9
"""The priority of the hook that resolves ``previous_response_id``: after every other hook."""

_agents_with_hook: weakref.WeakSet[Agent] = weakref.WeakSet()

FindAgent = Callable[..., Agent]


@dataclass
class Pending:
    """A Responses request's state on its Context: what the ``previous_response_id`` hook
    needs, and the history it loaded."""

    store: ResponseStore
    previous_response_id: str | None
    first_input: dict[str, Any] | None
    history: list[dict[str, Any]] = field(default_factory=list)
    resolved: bool = False


def install_responses(app: FastAPI, find_agent: FindAgent, store: ResponseStore) -> None:
    """Add the Responses routes to ``app``; ``find_agent(name, as_model=...)`` returns a served
    agent or raises NotFoundError. Call before the generic ``/{agent_name}`` routes."""
    agents: dict[str, Agent] = app.state.agents
    for agent in agents.values():
        if agent not in _agents_with_hook:
            agent.register_hook("on_connection", resolve_previous_response, priority=LAST)
            _agents_with_hook.add(agent)

    @app.post("/v1/responses")
    async def v1_responses(body: ResponsesRequest, request: Request) -> Any:
        return await create_response(find_agent(body.model, as_model=True), body, request, store)

    @app.get("/v1/responses/{response_id}")
    async def v1_retrieve(response_id: str, request: Request) -> Any:
        return (await owned(agents, store, response_id, request, None)).response

    @app.delete("/v1/responses/{response_id}")
    async def v1_delete(response_id: str, request: Request) -> Any:
        return await delete_response(agents, store, response_id, request, None)

    @app.get("/v1/responses/{response_id}/input_items")
    async def v1_input_items(
        response_id: str, request: Request, limit: int = Query(20, ge=1, le=100),
        order: Literal["asc", "desc"] = "desc", after: str | None = None,
    ) -> Any:
        record = await owned(agents, store, response_id, request, None)
        return item_page(record.input_items, limit, order, after)

    @app.post("/{agent_name}/responses")
    async def agent_responses(agent_name: str, body: ResponsesRequest, request: Request) -> Any:
        return await create_response(find_agent(agent_name), body, request, store)

    @app.get("/{agent_name}/responses/{response_id}")
    async def agent_retrieve(agent_name: str, response_id: str, request: Request) -> Any:
        return (await owned(agents, store, response_id, request, find_agent(agent_name))).response

    @app.delete("/{agent_name}/responses/{response_id}")
    async def agent_delete(agent_name: str, response_id: str, request: Request) -> Any:
        return await delete_response(agents, store, response_id, request, find_agent(agent_name))

    @app.get("/{agent_name}/responses/{response_id}/input_items")
    async def agent_input_items(
        agent_name: str, response_id: str, request: Request, limit: int = Query(20, ge=1, le=100),
        order: Literal["asc", "desc"] = "desc", after: str | None = None,
    ) -> Any:
        record = await owned(agents, store, response_id, request, find_agent(agent_name))
        return item_page(record.input_items, limit, order, after)


async def resolve_previous_response(context: Context) -> None:
    """The ``on_connection`` hook (priority :data:`LAST`) of every served agent: for a
    Responses request with ``previous_response_id``, put the stored conversation before the
    request's input in ``context.messages``; NotFoundError (404, ``param``
    ``previous_response_id``) when there is no such response for this agent and caller."""
    pending: Pending | None = context.get(PENDING)
    if pending is None or pending.resolved or pending.previous_response_id is None:
        return
    pending.resolved = True
    record = await pending.store.get(pending.previous_response_id)
    if record is None or record.agent != context.agent.name or record.owner != context.peer_user_id:
        raise NotFoundError(
            f"previous response with id '{pending.previous_response_id}' not found",
            param="previous_response_id", code="previous_response_not_found",
        )
    pending.history = [dict(m) for m in record.messages]
    position = next((i for i, m in enumerate(context.messages) if m is pending.first_input), len(context.messages))
    context.messages[position:position] = [dict(m) for m in pending.history]


async def create_response(agent: Agent, body: ResponsesRequest, request: Request, store: ResponseStore) -> Any:
    """Serve one ``POST /responses``: a ``response`` object, or its stream events (SSE)."""
    refused = body.refused()
    if refused is not None:
        raise BadRequestError(refused[1], param=refused[0], code="unsupported_parameter")
    items = input_items(body)
    if not items and body.previous_response_id is None:
        raise BadRequestError("input is required (a string or a list of items)", param="input", code="missing_required_parameter")
    messages = chat_messages(items)
    instructions = [{"role": "system", "content": body.instructions}] if body.instructions else []
    params = chat_params(body)
    if body.stream:
        params["stream_options"] = {"include_usage": True}
    context = agent.new_context(
        instructions + messages, chat_tools(body), body.stream, headers=dict(request.headers), **params
    )
    response_id = new_id("resp")
    context.completion_id = response_id
    pending = Pending(store, body.previous_response_id, context.messages[len(instructions)] if messages else None)
    context.set(PENDING, pending)
    response = response_object(body, response_id, agent.name, context.created)

    def record(finished_response: dict[str, Any]) -> StoredResponse:
        conversation = [*pending.history, *messages, chat_answer(finished_response)]
        return StoredResponse(response_id, agent.name, context.peer_user_id, finished_response, items, conversation)

    async def save(done: dict[str, Any]) -> None:
        """Store the finished response (unless ``store: false``); a store that fails is logged
        and the answer still goes out (a later ``previous_response_id`` then gets 404)."""
        if body.store is False:
            return
        try:
            await store.put(record(done))
        except Exception:
            logger.exception("storing response %s failed", response_id)

    if not body.stream:
        try:
            completion = await until_disconnected(request, agent.run(context.messages, context.tools, context=context))
            done = response_from_completion(response, completion)
        except MaxTurnsExceeded:
            done = finished(response, [], None, usage_from_records(context.usage_records))
        await save(done)
        return JSONResponse(done, headers=model_header(context))

    stream = agent.run_streaming(context.messages, context.tools, context=context)
    try:
        # The first chunk before answering: a failure before any output (auth, a provider's
        # 429) gets its own HTTP status, as on chat completions.
        first: dict[str, Any] | MaxTurnsExceeded | None = await until_disconnected(request, anext(stream))
    except StopAsyncIteration:
        first = None
    except MaxTurnsExceeded as exc:  # answered as an incomplete response, as below
        first = exc
    except BaseException:
        await stream.aclose()
        raise
    translator = ResponseEvents(response)
    return StreamingResponse(
        _events(stream, first, translator, context, save),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no", **model_header(context)},
    )


async def _events(
    stream: AsyncIterator[dict[str, Any]], first: dict[str, Any] | MaxTurnsExceeded | None,
    translator: ResponseEvents,
    context: Context, save: Callable[[dict[str, Any]], Any],
) -> AsyncIterator[str]:
    """SSE ``event:``/``data:`` pairs of the Responses stream, the events of one chunk in one
    write; the stored response is saved before ``response.completed`` goes out, so that a
    client may retrieve it at once."""
    events = translator.start()  # sent with the first chunk's events, or with the end
    async with contextlib.aclosing(stream):  # type: ignore[type-var]
        try:
            if isinstance(first, MaxTurnsExceeded):
                raise first
            if first is not None:
                events += translator.chunk(first)
            yield _sse(events)
            events = []
            async for chunk in stream:
                translated = translator.chunk(chunk)
                if translated:
                    yield _sse(translated)
            end = translator.finish(translator.finish_reason or "stop")
        except MaxTurnsExceeded:
            end = translator.finish(None, usage_from_records(context.usage_records))
        except RobutlerError as exc:
            end = translator.fail(exc.code or exc.type, redact(exc.message))
        except Exception as exc:
            logger.exception("error while streaming a response")
            error = internal_error(exc)
            end = translator.fail("server_error", error.message)
    if translator.response["status"] != "failed":
        await save(translator.response)
    yield _sse(events + end)


def _sse(events: list[dict[str, Any]]) -> str:
    """SSE events as OpenAI sends them: ``event: {type}`` then ``data: {json}``, each."""
    return "".join(sse_event(event, event["type"]) for event in events)


def model_header(context: Context) -> dict[str, str]:
    """``x-robutler-model``: the models that answered (so far, when streaming), in order."""
    models = list(dict.fromkeys(context.answered_by))
    return {"x-robutler-model": ", ".join(models)} if models else {}


async def owned(
    agents: dict[str, Agent], store: ResponseStore, response_id: str, request: Request, agent: Agent | None
) -> StoredResponse:
    """The stored response ``response_id`` when the caller owns it: the answering agent's
    ``on_connection`` hooks identify the caller (their errors are raised: 401, 403...), and
    it must be the one who created it. NotFoundError (404) otherwise, the same for a response
    that does not exist, belongs to someone else, or (``agent`` given) to another agent."""
    record = await store.get(response_id)
    owner_agent = agents.get(record.agent) if record is not None else None
    if record is not None and owner_agent is not None and (agent is None or agent is owner_agent):
        context = owner_agent.new_context([], None, False, headers=dict(request.headers))
        async with owner_agent.connection(context):
            if context.peer_user_id == record.owner:
                return record
    raise NotFoundError(f"response with id '{response_id}' not found", param="response_id", code="response_not_found")


async def delete_response(
    agents: dict[str, Agent], store: ResponseStore, response_id: str, request: Request, agent: Agent | None
) -> dict[str, Any]:
    """Delete a stored response the caller owns (see :func:`owned`)."""
    await owned(agents, store, response_id, request, agent)
    await store.delete(response_id)
    return {"id": response_id, "object": "response.deleted", "deleted": True}


def item_page(items: list[dict[str, Any]], limit: int, order: str, after: str | None) -> dict[str, Any]:
    """OpenAI's list object of input items: ``data`` (``limit`` items after the one with id
    ``after``, in ``order``), ``first_id``, ``last_id``, ``has_more``. NotFoundError (404)
    for an ``after`` that is not among them."""
    ordered = list(items) if order == "asc" else list(reversed(items))
    if after is not None:
        ids = [item["id"] for item in ordered]
        if after not in ids:
            raise NotFoundError(f"input item with id '{after}' not found", param="after")
        ordered = ordered[ids.index(after) + 1:]
    data = ordered[:limit]
    return {
        "object": "list", "data": data, "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None, "has_more": len(ordered) > limit,
    }

