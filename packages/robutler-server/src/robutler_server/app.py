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
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pluggy
from fastapi import FastAPI, Request
from pydantic_core import to_json
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from robutler_core import Agent, connect_agents
from robutler_core.errors import BadRequestError, ConfigurationError, NotFoundError, RobutlerError
from robutler_core.plugins import SkillRegistry, installed_skills

from .config import AgentLimits, ServerConfig
from .errors import error_response, install_error_handlers, internal_error, logger, sse_event, validation_error
from .dynamic import install_dynamic_agents
from .front import Front
from .guards import install_guards, too_large, with_cors
from .disconnect import CLIENT_CLOSED_REQUEST, ClientDisconnected, until_disconnected
from .metrics import Metrics
from .observability import Observability
from .http_routes import mount_http_routes
from .openapi import install_openapi
from .plugins import register_routes, served_agents, server_plugins
from .probes import DEFAULT_RETRY_INTERVAL, Readiness, install_probes
from .schemas import ChatCompletionRequest, parse_chat_request

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
    response_store: Any = None,
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

    The chat-completions requests (``POST /{agent}/chat/completions``, ``POST
    /v1/chat/completions``) are answered by the server's ASGI middleware
    (:mod:`robutler_server.front`) before FastAPI's routing; their FastAPI routes document them
    (``/openapi.json``).

    Raises ConfigurationError when two agents share a name, a name shadows a server route
    (:data:`RESERVED_NAMES`), or a handoff names an agent that is not served here.
    """
    from .reload import AgentsReloader
    from .responses import install_responses, model_header
    from .responses_store import MemoryResponseStore

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
    app = RobutlerApp(
        title=title,
        lifespan=_lifespan(readiness, observability, shutdown_timeout, plugin_contexts),
    )
    app.state.agents = by_name
    app.state.readiness = readiness
    install_error_handlers(app)
    server = server or ServerConfig()
    plugin_contexts.append(install_guards(app, by_name, server, limits or {}))
    install_probes(app, readiness)
    install_metrics_route(app, observability.metrics)
    for agent in by_name.values():
        observability.instrument(agent)
    install_openapi(app)
    mount_http_routes(app, by_name, served_agents(app, by_name).get)
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

    async def resolve_agent(name: str | None, *, as_model: bool = False) -> Agent:
        """:func:`find_agent`, asking the ``resolve_agent`` hooks for a name not served yet."""
        if name and name not in by_name and dynamic.impls and name not in RESERVED_NAMES and dynamic.get(name) is None:
            await dynamic.resolve(name)
        return find_agent(name, as_model=as_model)

    chat = ChatEndpoint(resolve_agent, model_header, server.max_body_bytes)
    app.front = lambda inner: Front(
        inner, observability, max_body_bytes=server.max_body_bytes, sse_ping=server.sse_ping,
        chat=with_cors(chat, server),
    )

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
    async def v1_chat_completions(body: ChatCompletionRequest) -> Any:
        return _Answer(chat, body)  # reached only without the front: see ChatEndpoint

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
    async def chat_completions(agent_name: str, body: ChatCompletionRequest) -> Any:
        return _Answer(chat, body)  # reached only without the front: see ChatEndpoint

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
                _freeze_startup_objects()
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


_frozen = False


def _freeze_startup_objects() -> None:
    """What start-up made (modules, schemas, agents) lives as long as the server: ``gc.freeze()``
    takes it out of the garbage collector's generations, so that the collections during requests
    do not walk it (some 80,000 objects, ~10 us of every request's CPU otherwise). Once per
    process: a process that starts many apps (tests, embedding) does not keep each one's garbage."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.freeze()


def _tracing(tracer_provider: Any) -> Any:
    """:func:`robutler_server.tracing.tracing_for`: a ``Tracing``, or ``None`` when no span
    would be recorded."""
    from .tracing import tracing_for

    return tracing_for(tracer_provider)


def install_metrics_route(app: FastAPI, metrics: Metrics) -> None:
    """``GET /metrics``: the Prometheus text format (:mod:`robutler_server.metrics`)."""

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"description": "Prometheus text format 0.0.4.", "content": {"text/plain": {}}}},
    )
    async def prometheus_metrics() -> Response:
        return Response(metrics.exposition(), media_type=metrics.content_type)


class RobutlerApp(FastAPI):
    """A FastAPI app whose middleware stack sits behind the server's ASGI middleware
    (``front``: the inner stack -> :class:`robutler_server.front.Front`), outermost."""

    front: Callable[[Any], Any] | None = None

    def build_middleware_stack(self) -> Any:
        stack = super().build_middleware_stack()
        return self.front(stack) if self.front is not None else stack

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """HTTP requests go straight to the middleware stack (Starlette's ``__call__``), past
        FastAPI's own OpenTelemetry instrumentation, which would check the tracer and meter
        providers per request and add a second span to the request's own
        (:mod:`robutler_server.tracing`); the rest (lifespan, websockets) goes through FastAPI."""
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        if self.root_path:
            scope["root_path"] = self.root_path
        scope["app"] = self
        if self.middleware_stack is None:
            self.middleware_stack = self.build_middleware_stack()
        await self.middleware_stack(scope, receive, send)


class ChatEndpoint:
    """``POST /{agent}/chat/completions`` and ``POST /v1/chat/completions`` as a plain ASGI
    app (:mod:`robutler_server.front` calls it before FastAPI's routing): reads the body (413
    past ``max_body_bytes``), parses and validates it once (:func:`parse_chat_request`: the
    400 envelope of :func:`robutler_server.errors.validation_error`), finds the agent
    (``resolve(name, as_model=...)``: 404, 503...) and answers (:meth:`complete`). Errors are
    answered as the app's error handlers answer them (:mod:`robutler_server.errors`)."""

    def __init__(self, resolve: Callable[..., Awaitable[Agent]], model_header: Callable[[Any], dict[str, str]],
                 max_body_bytes: int) -> None:
        self.resolve = resolve
        self.model_header = model_header
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any,
                       body: ChatCompletionRequest | None = None) -> None:
        path: str = scope["path"]
        v1 = path == "/v1/chat/completions"
        try:
            if body is None:
                content = await _read_body(receive, self.max_body_bytes, scope)
                try:
                    body = parse_chat_request(content, _header(scope, b"content-type"))
                except RequestValidationError as exc:
                    raise validation_error(exc) from None
            agent = await self.resolve(body.model if v1 else path[1:-17], as_model=v1)
            await self.complete(agent, body, _Incoming(scope, receive), send)
            return
        except RobutlerError as exc:
            response = error_response(exc)
        except ClientDisconnected as exc:
            logger.info("%s; its work was cancelled", exc)
            response = Response(status_code=CLIENT_CLOSED_REQUEST)
        except Exception as exc:
            logger.exception("unhandled error on %s %s", scope["method"], path)
            response = error_response(internal_error(exc), {"connection": "close"})
        await response(scope, receive, send)

    async def complete(self, agent: Agent, body: ChatCompletionRequest, request: Any, send: Any) -> None:
        """Answer one chat-completions request; streaming answers are server-sent events.
        Raises (before anything is sent) the request's errors.

        The Context carries the request's headers, so an ``on_connection`` hook can authenticate.
        """
        messages, tools, params = body.split()
        # the first of repeated headers, as Starlette's Headers give it
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(request.scope["headers"])}
        context = agent.new_context(messages, tools, body.stream, headers=headers, **params)
        if not body.stream:
            completion = await until_disconnected(request, agent.run(messages, tools, context=context))
            # pydantic-core's encoder: the bytes Starlette's JSONResponse writes (compact, UTF-8),
            # some 8x faster than json.dumps; a NaN would be null rather than a 500
            content = to_json(completion)
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-length", str(len(content)).encode()), (b"content-type", b"application/json"),
                *_encoded(self.model_header(context)),
            ]})
            await send({"type": "http.response.body", "body": content})
            return
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
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"), *_encoded(self.model_header(context)),
        ]})
        await _send_events(stream, first, request, send)


async def _send_events(stream: AsyncIterator[dict[str, Any]], first: dict[str, Any] | None, request: Any,
                       send: Any) -> None:
    """SSE events, one write each: each chunk, then ``data: [DONE]``; an error mid-stream is a
    last error event. A client that disconnects ends the stream (the agent's run is
    cancelled, :func:`until_disconnected`): the response then just stops."""
    try:
        await until_disconnected(request, _write_events(stream, first, send))
    except ClientDisconnected:
        return


async def _write_events(stream: AsyncIterator[dict[str, Any]], first: dict[str, Any] | None, send: Any) -> None:
    async with contextlib.aclosing(stream):  # type: ignore[type-var]
        try:
            if first is not None:
                await send({"type": "http.response.body", "body": sse_event(first).encode(), "more_body": True})
            async for chunk in stream:
                await send({"type": "http.response.body", "body": sse_event(chunk).encode(), "more_body": True})
        except RobutlerError as exc:
            await send({"type": "http.response.body", "body": sse_event(exc.to_dict()).encode()})
            return
        except Exception as exc:
            logger.exception("error while streaming")
            await send({"type": "http.response.body", "body": sse_event(internal_error(exc).to_dict()).encode()})
            return
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


class _Incoming:
    """A request's ``scope`` and ``receive``, as :func:`until_disconnected` needs them."""

    __slots__ = ("scope", "receive")

    def __init__(self, scope: dict[str, Any], receive: Any) -> None:
        self.scope = scope
        self.receive = receive


class _Answer(Response):
    """The chat endpoint's answer to a body FastAPI has already validated (the routes that
    document the endpoint, reached only when the front does not answer first)."""

    def __init__(self, endpoint: ChatEndpoint, body: ChatCompletionRequest) -> None:
        self.endpoint = endpoint
        self.body_model = body
        self.background = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.endpoint(scope, receive, send, self.body_model)


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _encoded(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


async def _read_body(receive: Any, limit: int, scope: dict[str, Any]) -> bytes:
    """The request's body; RequestTooLargeError (413) once it passes ``limit`` bytes,
    ClientDisconnected when the client goes away first."""
    parts: list[bytes] = []
    read = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnected(f"{scope['method']} {scope['path']}: the client disconnected")
        chunk = message.get("body", b"")
        read += len(chunk)
        if read > limit:
            raise too_large(None, limit)
        if not message.get("more_body", False):
            if not parts:
                return chunk
            parts.append(chunk)
            return b"".join(parts)
        parts.append(chunk)


logging.getLogger("robutler_server").addHandler(logging.NullHandler())
