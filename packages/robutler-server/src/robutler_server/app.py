"""``create_app``: a FastAPI app serving agents in OpenAI's chat-completions format.

Routes: ``POST /{agent}/chat/completions``, ``GET /{agent}``, ``GET /{agent}/models`` and
``GET /{agent}/models/{id}`` per agent (so ``OpenAI(base_url="http://host:port/{agent}")``
works, ``models.list()`` included), ``POST /v1/chat/completions`` with ``model`` = agent name,
``GET /v1/models``, ``GET /v1/models/{id}``, ``GET /agents``, ``GET /skills``, ``GET /health``,
and each agent's ``@http`` handlers under ``/{agent}/...``. The agents can hand off to each
other by name (:func:`robutler_core.connect_agents`).

What describes an agent (``GET /{agent}``, ``GET /agents``, the model routes) runs the agent's
``on_connection`` hooks and shows only what the caller's ``auth_scope`` admits
(:meth:`robutler_core.Agent.describe`): lists leave out the agents the caller may not use, the
instructions go only to the owner, and a 404 names no other agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any

import pluggy
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from robutler_core import Agent, connect_agents
from robutler_core.errors import BadRequestError, ConfigurationError, NotFoundError, RobutlerError
from robutler_core.plugins import SkillRegistry, installed_skills

from .config import AgentLimits, ServerConfig
from .errors import install_error_handlers, internal_error, logger, sse_event
from .dynamic import install_dynamic_agents
from .guards import install_guards
from .reload import AgentsReloader
from .disconnect import until_disconnected
from .metrics import Metrics
from .observability import Observability
from .http_routes import mount_http_routes
from .openapi import install_openapi
from .plugins import register_routes, server_plugins
from .probes import DEFAULT_RETRY_INTERVAL, Readiness, install_probes
from .responses import install_responses, model_header
from .responses_store import MemoryResponseStore, ResponseStore
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
    plugins: pluggy.PluginManager | None = None,
    response_store: ResponseStore | None = None,
    ready_retry_interval: float = DEFAULT_RETRY_INTERVAL,
    tracer_provider: Any = None,
    shutdown_timeout: float = 30.0,
    server: ServerConfig | None = None,
    limits: Mapping[str, AgentLimits] | None = None,
    reload_agents_file: str | Path | None = None,
) -> FastAPI:
    """A FastAPI app serving ``agents``.

    Installed plugins add their own routes through the ``register_routes`` hook
    (:mod:`robutler_server.plugins`); ``plugins`` replaces the process's installed plugins
    (:func:`robutler_server.plugins.server_plugins`), for tests and embedding.

    Every agent is also served in the Responses API's format (:mod:`robutler_server.responses`);
    ``response_store`` keeps stored responses (:func:`robutler_server.responses_store.response_store`:
    PostgreSQL for a DSN); by default the most recent 1,000 stay in process memory.

    Its lifespan initialises every agent at start-up (:meth:`Agent.initialize`). A failure is
    logged once naming the agent and the skill; that agent answers 503 (``agent_not_ready``) and
    ``GET /ready`` says why until a retry, every ``ready_retry_interval`` seconds, succeeds
    (:mod:`robutler_server.probes`); the other agents serve. At shutdown it waits up to
    ``shutdown_timeout`` seconds for the requests in flight to end (their ``finalize_connection``
    included), then closes every agent (:meth:`Agent.close`). Without a lifespan
    (``httpx.ASGITransport``) an agent initialises at its first request.

    ``GET /metrics`` serves Prometheus metrics (:mod:`robutler_server.metrics`); every request
    gets an ``X-Request-ID`` (:mod:`robutler_server.observability`). With the ``otel`` extra
    installed, requests, model calls and tool calls are traced (:mod:`robutler_server.tracing`)
    with ``tracer_provider``, by default OpenTelemetry's global one.

    ``server`` holds the server's settings (:class:`robutler_server.config.ServerConfig`: body
    size, message and tool counts, rate-limit storage, tool threads, CORS origins, SSE
    keep-alives) and ``limits`` each agent's rate limit and concurrency by name
    (:mod:`robutler_server.guards`). Agents the agents file does not declare are served when an
    installed plugin's ``resolve_agent`` hook finds them (:mod:`robutler_server.dynamic`). With
    ``reload_agents_file`` the served agents are replaced by that file's when it changes or on
    SIGHUP (:mod:`robutler_server.reload`).

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

    plugin_contexts: list[contextlib.AbstractAsyncContextManager[Any]] = []
    readiness = Readiness(list(by_name.values()), ready_retry_interval)
    observability = Observability(Metrics(), _tracing(tracer_provider))
    app = FastAPI(
        title=title,
        lifespan=_lifespan(readiness, observability, shutdown_timeout, plugin_contexts),
    )
    app.state.agents = by_name
    app.state.readiness = readiness
    install_error_handlers(app)
    server = server or ServerConfig()
    plugin_contexts.append(install_guards(app, by_name, server, limits or {}))
    observability.install(app)
    install_probes(app, readiness)
    install_metrics_route(app, observability.metrics)
    for agent in by_name.values():
        observability.instrument(agent)
    install_openapi(app)
    for agent in by_name.values():
        mount_http_routes(app, agent)
    plugin_contexts.extend(register_routes(plugins or server_plugins(), app, by_name))
    dynamic = install_dynamic_agents(
        app, plugins or server_plugins(), by_name, ttl=server.agent_cache_ttl, size=server.agent_cache_size,
        reserved=RESERVED_NAMES, prepare=[app.state.guards.attach, observability.instrument],
    )
    plugin_contexts.append(dynamic)
    if reload_agents_file is not None:
        plugin_contexts.append(AgentsReloader(
            reload_agents_file, by_name, registry=registry, reserved=RESERVED_NAMES, also_update=readiness.agents,
            prepare=[app.state.guards.attach, lambda agent, _limits: observability.instrument(agent)],
        ))

    def find_agent(name: str | None, *, as_model: bool = False) -> Agent:
        if not name:
            raise BadRequestError(
                "model is required: the name of an agent (see GET /v1/models)", param="model"
            )
        agent = by_name.get(name) or dynamic.get(name)
        if agent is None:
            raise _not_found(name, as_model=as_model)
        observability.agent_resolved(agent)
        readiness.check(agent)
        return agent

    def model_object(agent: Agent) -> dict[str, Any]:
        """OpenAI's model object for an agent (``id`` = the agent's name)."""
        return {"id": agent.name, "object": "model", "created": started, "owned_by": "robutler"}

    async def visible_agents(request: Request) -> list[tuple[Agent, dict[str, Any]]]:
        """The agents the caller may use, each with its description for the caller."""
        agents = list(by_name.values())  # a reload may replace them meanwhile
        described = await asyncio.gather(*(_describe_or_none(a, request) for a in agents))
        return [(a, info) for a, info in zip(agents, described) if info is not None]

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "healthy", "agents": len(by_name)}

    @app.get("/agents")
    async def list_agents(request: Request) -> dict[str, Any]:
        return {"object": "list", "data": [info for _, info in await visible_agents(request)]}

    @app.get("/skills")
    async def list_skills() -> list[dict[str, Any]]:
        return (registry or installed_skills()).describe()

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        return {"object": "list", "data": [model_object(a) for a, _ in await visible_agents(request)]}

    @app.get("/v1/models/{model_id:path}")
    async def retrieve_model(model_id: str, request: Request) -> dict[str, Any]:
        agent = find_agent(model_id, as_model=True)
        await describe(agent, request)
        return model_object(agent)

    @app.post("/v1/chat/completions")
    async def v1_chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        return await complete(find_agent(body.model, as_model=True), body, request)

    store = response_store if response_store is not None else MemoryResponseStore()
    plugin_contexts.append(store)
    install_responses(app, find_agent, store)

    @app.get("/{agent_name}")
    async def agent_info(agent_name: str, request: Request) -> dict[str, Any]:
        return await describe(find_agent(agent_name), request)

    @app.get("/{agent_name}/models")
    async def agent_models(agent_name: str, request: Request) -> dict[str, Any]:
        agent = find_agent(agent_name)
        await describe(agent, request)
        return {"object": "list", "data": [model_object(agent)]}

    @app.get("/{agent_name}/models/{model_id:path}")
    async def agent_model(agent_name: str, model_id: str, request: Request) -> dict[str, Any]:
        agent = find_agent(agent_name)
        await describe(agent, request)
        if model_id != agent.name:
            raise _not_found(model_id, as_model=True)
        return model_object(agent)

    @app.post("/{agent_name}/chat/completions")
    async def chat_completions(agent_name: str, body: ChatCompletionRequest, request: Request) -> Any:
        return await complete(find_agent(agent_name), body, request)

    return app


def _not_found(name: str, *, as_model: bool) -> NotFoundError:
    """404 for an unknown agent or model; it names only what was asked for."""
    if as_model:
        return NotFoundError(
            f"model '{name}' does not exist on this server", param="model", code="model_not_found"
        )
    return NotFoundError(f"agent '{name}' does not exist on this server", code="agent_not_found")


async def describe(agent: Agent, request: Request) -> dict[str, Any]:
    """The agent as the caller may see it: runs its ``on_connection`` hooks with the request's
    headers, raises their errors (401, 402, 403...) or PermissionDeniedError (403) when the
    agent's scope does not admit the caller, and returns ``agent.info(auth_scope)``."""
    context = agent.new_context([], None, False, headers=dict(request.headers))
    return await agent.describe(context)


async def _describe_or_none(agent: Agent, request: Request) -> dict[str, Any] | None:
    """:func:`describe`, or ``None`` when the caller may not use the agent (any error of its
    hooks: the agent is left out of a list rather than failing the list)."""
    try:
        return await describe(agent, request)
    except RobutlerError as exc:
        level = logging.WARNING if exc.status_code >= 500 else logging.DEBUG
        logger.log(level, "agent '%s' left out of a list: %s", agent.name, exc)
    except Exception:
        logger.exception("describing agent '%s' failed; left out of the list", agent.name)
    return None


def _lifespan(
    readiness: Readiness,
    observability: Observability,
    shutdown_timeout: float,
    plugin_contexts: list[contextlib.AbstractAsyncContextManager[Any]],
) -> Any:
    """Start-up initialises every agent (:class:`Readiness`: failures make the agent not ready,
    retried in the background), so no request pays for it. Then the plugins' ``register_routes``
    context managers are entered. Shutdown waits for the requests in flight (up to
    ``shutdown_timeout`` seconds), exits those context managers, then closes every agent
    (:meth:`Agent.close`)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            async with readiness.running(), contextlib.AsyncExitStack() as plugins:
                for plugin_context in plugin_contexts:
                    await plugins.enter_async_context(plugin_context)
                try:
                    yield
                finally:
                    if not await observability.wait_idle(shutdown_timeout):
                        logger.warning("shutdown: %d request(s) still running after %gs; closing the agents",
                                       observability.in_flight, shutdown_timeout)
        finally:
            for agent in readiness.agents:
                await agent.close()
            observability.metrics.process_ended()

    return lifespan


def _tracing(tracer_provider: Any) -> Any:
    """A :class:`robutler_server.tracing.Tracing` when the ``otel`` extra is installed (or a
    provider is given), else ``None`` (and OpenTelemetry is not imported)."""
    from .tracing import Tracing, extra_installed

    if tracer_provider is None and not extra_installed():
        return None
    return Tracing(tracer_provider)


def install_metrics_route(app: FastAPI, metrics: Metrics) -> None:
    """``GET /metrics``: the Prometheus text format (:mod:`robutler_server.metrics`)."""

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"description": "Prometheus text format 0.0.4.", "content": {"text/plain": {}}}},
    )
    async def prometheus_metrics() -> Response:
        return Response(metrics.exposition(), media_type=metrics.content_type)


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
        return JSONResponse(completion, headers=model_header(context))
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
        headers={"cache-control": "no-cache", "x-accel-buffering": "no", **model_header(context)},
    )


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
