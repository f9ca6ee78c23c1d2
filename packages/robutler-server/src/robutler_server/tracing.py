"""OpenTelemetry spans, following the GenAI semantic conventions, when the extra
``robutler-server[otel]`` is installed; without it, nothing here imports OpenTelemetry.

Spans (``gen_ai.*`` attributes as the GenAI semantic conventions name them):

- one per agent request: ``invoke_agent {agent}`` (kind SERVER; ``gen_ai.operation.name =
  "invoke_agent"``, ``gen_ai.agent.name``, ``http.request.method``, ``url.path``,
  ``http.response.status_code``), continuing the request's W3C ``traceparent`` (and
  ``tracestate``) and current while the request runs;
- one per model call: ``chat {model}`` (``gen_ai.operation.name = "chat"``,
  ``gen_ai.provider.name``, ``gen_ai.request.model``, ``gen_ai.usage.input_tokens``,
  ``gen_ai.usage.output_tokens``, ``gen_ai.usage.cache_read.input_tokens``), from the end of the
  previous tool calls (or the request's start) to the start of the next ones (or the request's end);
- one per server-side tool call: ``execute_tool {tool}`` (``gen_ai.operation.name =
  "execute_tool"``, ``gen_ai.tool.name``, ``gen_ai.tool.call.id``, ``error.type`` on failure).

Outgoing calls carry the trace on: under ``robutler serve`` with the extra, the HTTP clients
of the process (httpx and httpx2: the ``openai`` and ``anthropic`` SDKs, the platform's and the
MCP skill's clients; aiohttp: LiteLLM's default transport) send the current span's W3C
``traceparent`` and record an HTTP client span (:func:`propagate_to_http_clients`,
OpenTelemetry's instrumentations). An embedding application decides that itself: the call
patches those libraries process-wide.

``robutler serve`` configures the SDK from the standard ``OTEL_*`` variables
(:func:`configure_from_environment`); an embedding application passes its own
``tracer_provider`` to :func:`robutler_server.create_app`.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from importlib.metadata import PackageNotFoundError, distribution
from typing import Any


def extra_installed() -> bool:
    """Whether ``opentelemetry-sdk`` (the ``otel`` extra) is installed and ``OTEL_SDK_DISABLED``
    is not ``true``; imports nothing."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    try:
        distribution("opentelemetry-sdk")
    except PackageNotFoundError:
        return False
    return True


def tracing_for(tracer_provider: Any = None) -> Tracing | None:
    """The server's :class:`Tracing`, or ``None`` when no span would be recorded: the extra is
    not installed (OpenTelemetry is then not imported), or no ``tracer_provider`` is given and
    the global one is still OpenTelemetry's default ``ProxyTracerProvider`` (no SDK provider installed, as
    :func:`configure_from_environment` or an embedding application installs one). Decided once
    when the app is made (:func:`robutler_server.create_app`): without tracing a request makes
    no OpenTelemetry call at all, so install the global provider before making the app."""
    if tracer_provider is None:
        if not extra_installed():
            return None
        from opentelemetry import trace

        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            return None
    return Tracing(tracer_provider)


def propagate_to_http_clients(tracer_provider: Any) -> list[str]:
    """Instrument the HTTP clients that providers and skills use, once per process, with
    OpenTelemetry's instrumentations (part of the ``otel`` extra): httpx
    (``opentelemetry-instrumentation-httpx``), httpx2 (the ``openai`` SDK's client from its
    3.x releases; same package) and aiohttp (LiteLLM's default transport;
    ``opentelemetry-instrumentation-aiohttp-client``). Their requests then carry the current
    span's W3C ``traceparent`` and record a client span with ``tracer_provider``; httpx clients
    made before are covered too, aiohttp sessions only when opened afterwards.

    Returns the names of the libraries instrumented (an instrumentation or library that is not
    installed is skipped)."""
    done = []
    for library, module, name in (
        ("httpx", "opentelemetry.instrumentation.httpx", "HTTPXClientInstrumentor"),
        ("httpx2", "opentelemetry.instrumentation.httpx", "HTTPX2ClientInstrumentor"),
        ("aiohttp", "opentelemetry.instrumentation.aiohttp_client", "AioHttpClientInstrumentor"),
    ):
        if importlib.util.find_spec(library) is None:
            continue
        try:
            instrumentor = getattr(importlib.import_module(module), name)()
        except (ImportError, AttributeError):
            continue
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=tracer_provider)
        done.append(library)
    return done


def configure_from_environment() -> None:
    """Install the SDK's tracer provider, its resource from ``OTEL_SERVICE_NAME`` /
    ``OTEL_RESOURCE_ATTRIBUTES`` (service name ``robutler`` by default), exporting as
    ``OTEL_TRACES_EXPORTER`` says: ``otlp`` (the default; endpoint and headers from
    ``OTEL_EXPORTER_OTLP_*``, needs ``opentelemetry-exporter-otlp-proto-http``, part of the extra),
    ``console`` or ``none``; keeps a provider already installed. Then the HTTP clients pass the
    trace on (:func:`propagate_to_http_clients`).

    Raises ValueError for another exporter name."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(_provider_from_environment())
    propagate_to_http_clients(trace.get_tracer_provider())


def _provider_from_environment() -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "robutler"}
    provider = TracerProvider(resource=Resource.create(attributes))
    for name in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(","):
        name = name.strip()
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        elif name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        elif name not in ("none", ""):
            raise ValueError(f"OTEL_TRACES_EXPORTER '{name}' is not supported; use otlp, console or none")
    return provider


class Tracing:
    """Starts the spans of the module's docstring with ``tracer_provider`` (default: the global one)."""

    def __init__(self, tracer_provider: Any = None) -> None:
        from opentelemetry import context, propagate, trace

        self._trace, self._context, self._propagate = trace, context, propagate
        provider = tracer_provider or trace.get_tracer_provider()
        self.tracer = provider.get_tracer("robutler_server")

    def start_request(self, scope: dict[str, Any], start_ns: int) -> tuple[Any, Any]:
        """The request's span (named once the agent is known) continuing the incoming
        ``traceparent``, made current; returns ``(span, token)`` for :meth:`end_request`."""
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        parent = self._propagate.extract(carrier)
        span = self.tracer.start_span(
            f"{scope.get('method', 'GET')} {scope.get('path', '')}", context=parent,
            kind=self._trace.SpanKind.SERVER, start_time=start_ns,
            attributes={"http.request.method": scope.get("method", ""), "url.path": scope.get("path", "")},
        )
        token = self._context.attach(self._trace.set_span_in_context(span, parent))
        return span, token

    def name_request(self, span: Any, agent: str) -> None:
        span.update_name(f"invoke_agent {agent}")
        span.set_attributes({"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": agent})

    def end_request(self, span: Any, token: Any, status: int, end_ns: int) -> None:
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR))
            span.set_attribute("error.type", str(status))
        span.end(end_time=end_ns)
        try:
            self._context.detach(token)
        except ValueError:  # ended in another context (a cancelled stream): nothing to restore
            pass

    def model_call(self, parent: Any, record: dict[str, Any], start_ns: int, end_ns: int) -> None:
        """A finished model call's span from a ``kind="llm"`` usage record's ``metadata``."""
        model = str(record.get("model"))
        provider, _, name = model.partition("/")
        span = self.tracer.start_span(
            f"chat {name or model}", context=self._trace.set_span_in_context(parent),
            kind=self._trace.SpanKind.CLIENT, start_time=start_ns,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": provider if name else "unknown",
                "gen_ai.request.model": name or model,
                "gen_ai.usage.input_tokens": int(record.get("prompt_tokens") or 0),
                "gen_ai.usage.output_tokens": int(record.get("completion_tokens") or 0),
                "gen_ai.usage.cache_read.input_tokens": int(record.get("cached_tokens") or 0),
            },
        )
        span.end(end_time=end_ns)

    def start_tool(self, parent: Any, tool: str, call_id: str) -> Any:
        return self.tracer.start_span(
            f"execute_tool {tool}", context=self._trace.set_span_in_context(parent),
            kind=self._trace.SpanKind.INTERNAL,
            attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool,
                        "gen_ai.tool.call.id": call_id},
        )

    def end_tool(self, span: Any, failed: bool) -> None:
        if failed:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR))
            span.set_attribute("error.type", "tool_error")
        span.end()
