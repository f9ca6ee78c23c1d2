"""OpenTelemetry spans (GenAI semantic conventions) of a request served by uvicorn, its
``traceparent`` continued; tool failures logged on one line; no OpenTelemetry import
without the extra."""

import logging
import os
import subprocess
import sys
import time

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from robutler_core import Agent, tool
from robutler_server import create_app
from robutler_server.testing import serve_in_thread

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@tool
def lookup(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


@tool
def explode(reason: str) -> str:
    """Always fails."""
    raise RuntimeError("the backend is down")


@pytest.fixture
def traced():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app([Agent("a", model="test", tools=[lookup, explode])], tracer_provider=provider)
    with serve_in_thread(app) as url:
        yield url, exporter


@pytest.mark.parametrize("stream", [False, True])
def test_a_traceparent_is_continued_into_request_model_and_tool_spans(traced, stream):
    url, exporter = traced
    answer = httpx.post(
        f"{url}/a/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}], "stream": stream},
        headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
    )
    assert answer.status_code == 200
    deadline = time.monotonic() + 5  # the request's span ends just after its last byte is sent
    while len(exporter.get_finished_spans()) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"invoke_agent a", "chat test", "execute_tool lookup", "execute_tool explode"}
    request = spans["invoke_agent a"]
    assert f"{request.context.trace_id:032x}" == TRACE_ID
    assert f"{request.parent.span_id:016x}" == PARENT_ID  # continued, not a new trace
    assert request.kind == SpanKind.SERVER
    assert request.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert request.attributes["gen_ai.agent.name"] == "a"
    assert request.attributes["http.response.status_code"] == 200
    for span in spans.values():
        assert f"{span.context.trace_id:032x}" == TRACE_ID
    for name in ("chat test", "execute_tool lookup", "execute_tool explode"):
        assert spans[name].parent.span_id == request.context.span_id
    chats = [s for s in exporter.get_finished_spans() if s.name == "chat test"]
    assert len(chats) == 2  # the turn that calls the tools, then the answer
    assert chats[0].end_time <= spans["execute_tool lookup"].start_time
    assert chats[1].start_time >= spans["execute_tool lookup"].end_time
    usage = [(c.attributes["gen_ai.usage.input_tokens"], c.attributes["gen_ai.usage.output_tokens"]) for c in chats]
    assert all(i > 0 and o > 0 for i, o in usage)
    assert chats[0].attributes["gen_ai.operation.name"] == "chat"
    assert chats[0].attributes["gen_ai.request.model"] == "test"
    lookup_span, explode_span = spans["execute_tool lookup"], spans["execute_tool explode"]
    assert lookup_span.attributes["gen_ai.tool.name"] == "lookup"
    assert lookup_span.attributes["gen_ai.operation.name"] == "execute_tool"
    assert lookup_span.attributes["gen_ai.tool.call.id"]
    assert lookup_span.status.status_code != StatusCode.ERROR
    assert explode_span.status.status_code == StatusCode.ERROR


def test_a_request_without_traceparent_starts_a_trace(traced):
    url, exporter = traced
    assert httpx.get(f"{url}/a").status_code == 200
    (span,) = exporter.get_finished_spans()
    assert span.parent is None and span.name == "invoke_agent a"


def test_an_expected_tool_failure_is_one_warning_line_without_traceback(caplog):
    app = create_app([Agent("a", model="test", tools=[explode])])
    with caplog.at_level(logging.INFO, logger="robutler_core"), serve_in_thread(app) as url:
        answer = httpx.post(f"{url}/a/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
        assert answer.status_code == 200
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "tool 'explode' of agent 'a' failed: RuntimeError: the backend is down"
    ]
    assert warnings[0].exc_info is None
    caplog.clear()
    app = create_app([Agent("a", model="test", tools=[explode])])
    with caplog.at_level(logging.DEBUG, logger="robutler_core"), serve_in_thread(app) as url:
        httpx.post(f"{url}/a/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    assert any(r.levelno == logging.DEBUG and r.exc_info for r in caplog.records)  # traceback at DEBUG


def test_without_the_extra_opentelemetry_is_not_imported():
    code = """
import importlib.metadata, sys
import robutler_server.tracing as tracing
real = importlib.metadata.distribution
def distribution(name):
    if name.startswith("opentelemetry"):
        raise importlib.metadata.PackageNotFoundError(name)
    return real(name)
tracing.distribution = distribution  # as if robutler-server[otel] were not installed
def no_tracing(*args, **kwargs):
    raise AssertionError("Tracing made without the extra")
tracing.Tracing.__init__ = no_tracing
import httpx
from robutler_core import Agent
from robutler_server import create_app
from robutler_server.testing import serve_in_thread
with serve_in_thread(create_app([Agent("a", model="test")])) as url:
    assert httpx.post(url + "/a/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}).status_code == 200
print(sorted(m for m in sys.modules if m.startswith("opentelemetry.sdk")))
"""
    # No plugins: some of them import opentelemetry-api on their own (and FastAPI does when it is
    # installed, only for its propagators): what is checked is that Robutler starts no tracing
    # and does not import the SDK.
    env = {**os.environ, "ROBUTLER_LOAD_PLUGINS": ""}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
