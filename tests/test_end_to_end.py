"""`robutler serve` as a user runs it, driven by the official openai client over loopback."""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import openai
import pytest

from robutler_core.testing.fake_openai import FakeOpenAIServer
from robutler_server.testing import free_port

ROBUTLER = str(Path(sys.executable).with_name("robutler"))


class Served:
    def __init__(self, args, env=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [ROBUTLER, "serve", *args, "--port", str(self.port)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, **(env or {})},
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"robutler serve did not start:\n{self.stop()}")
            time.sleep(0.1)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
        output, _ = self.process.communicate(timeout=20)
        return output


@pytest.fixture(scope="module")
def upstream():
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture(scope="module")
def server(tmp_path_factory, upstream):
    agents_file = tmp_path_factory.mktemp("agents") / "agents.yaml"
    agents_file.write_text(f"""
agents:
  - name: forecaster
    instructions: You tell the weather.
    model: test
    skills:
      weather: {{default_unit: fahrenheit}}
  - name: router
    instructions: You route through LiteLLM.
    model: litellm/openai/fake-model
    skills:
      weather: {{}}
      litellm: {{api_base: "{upstream.base_url}", api_key: sk-from-config}}
""")
    served = Served([str(agents_file)], env={"OPENAI_API_KEY": ""})
    yield served
    served.stop()


def test_models_list_names_the_agents(server):
    models = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x").models.list()
    assert [m.id for m in models.data] == ["forecaster", "router"]


def test_third_party_skill_found_by_name_and_its_tool_used(server):
    client = openai.OpenAI(base_url=f"{server.url}/forecaster", api_key="x", max_retries=0)
    completion = client.chat.completions.create(model="forecaster", messages=[{"role": "user", "content": "Weather?"}])
    # TestModel takes the city from the parameter's schema examples ("Paris"), which the skill knows.
    assert completion.choices[0].message.content == (
        "Tool results: get_weather returned cloudy, 64.4 degrees fahrenheit in Paris")


async def test_litellm_agent_streams_tool_calls_against_fake_upstream(server, upstream):
    upstream.requests.clear()
    upstream.enqueue_completion({"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_w", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]})
    upstream.enqueue_completion({"role": "assistant", "content": "Snowy in Oslo."})
    client = openai.AsyncOpenAI(base_url=f"{server.url}/router", api_key="x", max_retries=0)
    stream = await client.chat.completions.create(
        model="router", messages=[{"role": "user", "content": "Weather in Oslo?"}], stream=True,
        stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Snowy in Oslo."
    assert chunks[-1].usage.completion_tokens == 10
    second = upstream.requests[1].body
    assert second["messages"][0] == {"role": "system", "content": "You route through LiteLLM."}
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": "call_w", "content": "snow, 4 degrees celsius in Oslo"}
    assert upstream.requests[0].headers["authorization"] == "Bearer sk-from-config"
    await client.close()


def test_litellm_agent_returns_external_tool_calls(server, upstream):
    external = [{"type": "function", "function": {"name": "open_map", "parameters": {"type": "object", "properties": {"place": {"type": "string"}}}}}]
    upstream.enqueue_completion({"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_m", "type": "function", "function": {"name": "open_map", "arguments": '{"place": "Oslo"}'}}]})
    client = openai.OpenAI(base_url=f"{server.url}/router", api_key="x", max_retries=0)
    completion = client.chat.completions.create(model="router", messages=[{"role": "user", "content": "Map?"}], tools=external)
    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.choices[0].message.tool_calls[0].function.arguments == '{"place": "Oslo"}'


def test_demo_agent_without_file_says_so_first():
    served = Served([], env={"OPENAI_API_KEY": ""})
    try:
        client = openai.OpenAI(base_url=f"{served.url}/assistant", api_key="x")
        answer = client.chat.completions.create(model="assistant", messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content == 'TestModel received: "hi"'
    finally:
        output = served.stop()
    assert output.splitlines()[0] == (
        "INFO:     no agents file given and no provider key: serving demo agent 'assistant' on the offline 'test' model")


def test_serve_refuses_a_bad_agents_file(tmp_path):
    bad = tmp_path / "agents.yaml"
    bad.write_text("agents:\n  - name: x\n    model: test\n    skills:\n      nonexistent: {}\n")
    result = subprocess.run([ROBUTLER, "serve", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert (f"{bad}: agent 'x': unknown skill 'nonexistent'; installed skills: anthropic, auth, discovery, "
            "litellm, local, long_term_memory, mcp, nli, openai, payments, short_term_memory, test, vector_memory, "
            "weather, xai") in result.stderr


def test_skills_command_prints_installed_packages_as_json():
    result = subprocess.run([ROBUTLER, "skills"], capture_output=True, text=True, check=True, timeout=60)
    packages = {p["distribution"]: p for p in json.loads(result.stdout)}
    assert packages["robutler-skill-weather"]["skills"] == [{"name": "weather", "class": "robutler_skill_weather.WeatherSkill"}]
    assert packages["robutler-skill-litellm"]["version"] == "0.1.0"
    assert packages["robutler-core"]["skills"][0]["name"] == "test"


def test_demo_agent_with_a_key_uses_the_native_openai_skill(upstream):
    upstream.requests.clear()
    served = Served([], env={"OPENAI_API_KEY": "sk-demo", "OPENAI_BASE_URL": upstream.base_url})
    try:
        client = openai.OpenAI(base_url=f"{served.url}/assistant", api_key="x", max_retries=0)
        answer = client.chat.completions.create(model="assistant", messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content == "fake answer to: hi"
    finally:
        output = served.stop()
    assert output.splitlines()[0] == "INFO:     no agents file given: serving demo agent 'assistant' on openai/gpt-4o-mini"
    assert upstream.requests[0].body["model"] == "gpt-4o-mini"
    assert upstream.requests[0].headers["user-agent"].startswith("AsyncOpenAI/Python")  # the openai SDK, not LiteLLM


# Tracing: `robutler serve` with the otel extra (installed here) passes an incoming W3C
# traceparent on to the model calls it makes (the openai SDK's and LiteLLM's httpx clients).

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def traced_server(tmp_path_factory, upstream):
    agents_file = tmp_path_factory.mktemp("agents") / "agents.yaml"
    agents_file.write_text(textwrap.dedent(f"""
        agents:
          - name: native
            model: openai/gpt-4o-mini
            skills:
              openai: {{base_url: "{upstream.base_url}", api_key: sk-test, max_retries: 0}}
          - name: routed
            model: litellm/openai/fake-model
            skills:
              litellm: {{api_base: "{upstream.base_url}", api_key: sk-test}}
    """))
    server = Served([str(agents_file)], env={"OTEL_TRACES_EXPORTER": "none", "OTEL_SERVICE_NAME": "robutler-test",
                                             "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    yield server
    server.stop()


@pytest.mark.parametrize("agent", ["native", "routed"])
@pytest.mark.parametrize("stream", [False, True])
def test_the_incoming_trace_continues_into_the_model_call(traced_server, upstream, agent, stream):
    upstream.requests.clear()
    upstream.enqueue_completion({"role": "assistant", "content": "hello"})
    answer = httpx.post(
        f"{traced_server.url}/{agent}/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}], "stream": stream},
        headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}, timeout=30,
    )
    assert answer.status_code == 200, answer.text
    (received,) = upstream.requests
    version, trace_id, parent_id, flags = received.headers["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "01")  # the caller's trace, sampled
    assert parent_id != PARENT_ID  # a span of the server's (the HTTP client call), not the caller's


def test_without_an_incoming_trace_the_model_call_starts_from_the_servers_span(traced_server, upstream):
    upstream.requests.clear()
    upstream.enqueue_completion({"role": "assistant", "content": "hello"})
    assert httpx.post(f"{traced_server.url}/native/chat/completions",
                      json={"messages": [{"role": "user", "content": "hi"}]}, timeout=30).status_code == 200
    (received,) = upstream.requests
    _, trace_id, _, _ = received.headers["traceparent"].split("-")
    assert trace_id != TRACE_ID and int(trace_id, 16) != 0


def test_the_otel_extra_declares_the_http_client_instrumentations():
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    otel = {Requirement(r).name for r in requires("robutler-server")
            if Requirement(r).marker and Requirement(r).marker.evaluate({"extra": "otel"})}
    assert {"opentelemetry-instrumentation-httpx", "opentelemetry-instrumentation-aiohttp-client"} <= otel, otel
