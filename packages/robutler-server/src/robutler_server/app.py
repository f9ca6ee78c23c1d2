"""``create_app``: a FastAPI app serving agents in OpenAI's chat-completions format.

Routes: ``POST /{agent}/chat/completions`` and ``GET /{agent}`` per agent (so
``OpenAI(base_url="http://host:port/{agent}")`` works), ``POST /v1/chat/completions`` with
``model`` = agent name, ``GET /v1/models``, ``GET /agents``, ``GET /skills``, ``GET /health``,
and each agent's ``@http`` handlers under ``/{agent}/...``. The agents can hand off to each
other by name (:func:`robutler_core.connect_agents`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from robutler_core import Agent, connect_agents
from robutler_core.errors import BadRequestError, ConfigurationError, NotFoundError, RobutlerError
from robutler_core.plugins import SkillRegistry, installed_skills

from .errors import install_error_handlers, internal_error, logger, sse_event
from .disconnect import until_disconnected
from .http_routes import mount_http_routes
from .schemas import ChatCompletionRequest

RESERVED_NAMES = frozenset(
    {"health", "ready", "live", "metrics", "docs", "redoc", "openapi.json", "v1", "agents", "skills"}
)
"""Agent names that would shadow a server route."""


def create_app(
    agents: Iterable[Agent],
    *,
    title: str = "Robutler",
    registry: SkillRegistry | None = None,
) -> FastAPI:
    """A FastAPI app serving ``agents``.

    Raises ConfigurationError when two agents share a name, a name shadows a server route
    (:data:`RESERVED_NAMES`), or a handoff names an agent that is not served here.
    """
    by_name: dict[str, Agent] = {}
    for agent in agents:
        if agent.name in RESERVED_NAMES:
            raise ConfigurationError(
                f"agent name '{agent.name}' would shadow the server route /{agent.name}; "
                f"reserved names: {', '.join(sorted(RESERVED_NAMES))}"
            )
        if agent.name in by_name:
            raise ConfigurationError(f"two agents are named '{agent.name}'")
        by_name[agent.name] = agent
    connect_agents(list(by_name.values()))
    started = int(time.time())

    app = FastAPI(title=title)
    app.state.agents = by_name
    install_error_handlers(app)
    for agent in by_name.values():
        mount_http_routes(app, agent)

    def find_agent(name: str | None, *, as_model: bool = False) -> Agent:
        if not name:
            raise BadRequestError(
                "model is required: the name of an agent (see GET /v1/models)", param="model"
            )
        agent = by_name.get(name)
        if agent is None:
            known = ", ".join(sorted(by_name)) or "none"
            raise NotFoundError(
                f"{'model' if as_model else 'agent'} '{name}' does not exist on this server; "
                f"agents: {known}",
                param="model" if as_model else None,
                code="model_not_found" if as_model else "agent_not_found",
            )
        return agent

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "healthy", "agents": len(by_name)}

    @app.get("/agents")
    async def list_agents() -> dict[str, Any]:
        return {"object": "list", "data": [a.info() for a in by_name.values()]}

    @app.get("/skills")
    async def list_skills() -> list[dict[str, Any]]:
        return (registry or installed_skills()).describe()

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": started, "owned_by": "robutler"}
                for name in by_name
            ],
        }

    @app.post("/v1/chat/completions")
    async def v1_chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        return await complete(find_agent(body.model, as_model=True), body, request)

    @app.get("/{agent_name}")
    async def agent_info(agent_name: str) -> dict[str, Any]:
        return find_agent(agent_name).info()

    @app.post("/{agent_name}/chat/completions")
    async def chat_completions(agent_name: str, body: ChatCompletionRequest, request: Request) -> Any:
        return await complete(find_agent(agent_name), body, request)

    return app


async def complete(agent: Agent, body: ChatCompletionRequest, request: Request) -> Any:
    """Serve one chat-completions request; streaming answers are server-sent events.

    The Context carries the request's headers, so an ``on_connection`` hook can authenticate.
    """
    messages = body.messages_as_dicts()
    tools = body.tools_as_dicts()
    context = agent.new_context(
        messages, tools, bool(body.stream), headers=dict(request.headers), **body.model_params()
    )
    if not body.stream:
        completion = await until_disconnected(request, agent.run(messages, tools, context=context))
        return JSONResponse(completion, headers=_model_header(context))
    stream = agent.run_streaming(messages, tools, context=context)
    try:
        # Pull the first chunk before answering, so that a failure before any output (auth,
        # payment, a provider's 429) gets its own HTTP status rather than a 200 stream.
        first = await until_disconnected(request, anext(stream))
    except StopAsyncIteration:
        first = None
    except BaseException:
        await stream.aclose()
        raise
    return StreamingResponse(
        _events(stream, first),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no", **_model_header(context)},
    )


def _model_header(context: Any) -> dict[str, str]:
    """``x-robutler-model``: the models that answered (so far, when streaming), in order."""
    models = list(dict.fromkeys(context.answered_by))
    return {"x-robutler-model": ", ".join(models)} if models else {}


async def _events(stream: AsyncIterator[dict[str, Any]], first: dict[str, Any] | None) -> AsyncIterator[str]:
    """SSE lines: each chunk, then ``data: [DONE]``; an error mid-stream is a last error event."""
    async with contextlib.aclosing(stream):  # type: ignore[type-var]
        try:
            if first is not None:
                yield sse_event(first)
            async for chunk in stream:
                yield sse_event(chunk)
        except RobutlerError as exc:
            yield sse_event(exc.to_dict())
            return
        except Exception as exc:
            logger.exception("error while streaming")
            yield sse_event(internal_error(exc).to_dict())
            return
    yield "data: [DONE]\n\n"


logging.getLogger("robutler_server").addHandler(logging.NullHandler())
