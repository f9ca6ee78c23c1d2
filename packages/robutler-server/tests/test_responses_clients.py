"""Agent frameworks that speak only the Responses API, against the server over a real socket:
the OpenAI Agents SDK (its default ``OpenAIResponsesModel``) and pydantic-ai's
``OpenAIResponsesModel``."""

import pytest
from agents import Agent as SDKAgent
from agents import OpenAIResponsesModel as SDKResponsesModel
from agents import Runner, function_tool, set_tracing_disabled
from openai import AsyncOpenAI
from pydantic_ai import Agent as PydanticAgent
from pydantic_ai.models.openai import OpenAIResponsesModel
from pydantic_ai.providers.openai import OpenAIProvider

from pydantic import BaseModel

from robutler_core import Agent, Skill, hook, tool
from robutler_core.testing import ScriptedModel, text_chunks
from robutler_server import create_app
from robutler_server.testing import serve_in_thread


class Calculator(Skill):
    @tool
    def add(self, a: int, b: int) -> int:
        """Add two integers."""
        return a + b


class Requests(Skill):
    """Records each request's finish reason and the external tools it offered."""

    def __init__(self):
        super().__init__()
        self.seen = []
        self.ids = []

    @hook("finalize_connection")
    def done(self, context):
        self.seen.append((context.finish_reason, [t["function"]["name"] for t in context.tools]))
        self.ids.append(context.completion_id)


REQUESTS = Requests()
STRUCTURED = ScriptedModel([])


class City(BaseModel):
    name: str
    population: int


@pytest.fixture(scope="module")
def base_url():
    set_tracing_disabled(True)
    agents = [
        Agent("plain", "Be helpful.", model="test", skills={"requests": REQUESTS}),
        Agent("calc", model="test", skills={"calc": Calculator()}),
        Agent("structured", model=STRUCTURED),
    ]
    with serve_in_thread(create_app(agents)) as url:
        yield url


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def sdk_agent(base_url, name, **options):
    client = AsyncOpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)
    return SDKAgent(name="assistant", instructions="Be brief.", model=SDKResponsesModel(name, client), **options)


async def test_agents_sdk_runs_with_an_sdk_side_function_tool(base_url):
    REQUESTS.seen.clear()
    result = await Runner.run(sdk_agent(base_url, "plain", tools=[get_weather]), "What is the weather?")
    assert result.final_output == "Tool results: get_weather returned sunny in a"
    # the SDK ran the tool between two requests: the first ended with the call, the second answered
    assert REQUESTS.seen == [("tool_calls", ["get_weather"]), ("stop", ["get_weather"])]
    assert REQUESTS.ids[-2:] == [raw.response_id for raw in result.raw_responses]  # hooks see the response id


async def test_agents_sdk_streams(base_url):
    result = Runner.run_streamed(sdk_agent(base_url, "plain", tools=[get_weather]), "What is the weather?")
    kinds = [event.type async for event in result.stream_events()]
    assert result.final_output == "Tool results: get_weather returned sunny in a"
    assert "raw_response_event" in kinds and "run_item_stream_event" in kinds


async def test_agents_sdk_with_a_server_side_tool(base_url):
    result = await Runner.run(sdk_agent(base_url, "calc"), "Add for me")
    assert result.final_output == "Tool results: add returned 2"
    assert [item.type for item in result.new_items] == ["message_output_item"]  # the server's tool turn is not output
    streamed = Runner.run_streamed(sdk_agent(base_url, "calc"), "Add for me")
    [event async for event in streamed.stream_events()]
    assert streamed.final_output == "Tool results: add returned 2"


def pydantic_agent(base_url, name):
    model = OpenAIResponsesModel(name, provider=OpenAIProvider(base_url=f"{base_url}/v1", api_key="unused"))
    agent = PydanticAgent(model)

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    return agent


async def test_pydantic_ai_responses_model(base_url):
    result = await pydantic_agent(base_url, "plain").run("What is the weather?")
    assert result.output == "Tool results: get_weather returned sunny in a"
    assert result.usage.requests == 2 and result.usage.input_tokens > 0


async def test_pydantic_ai_streams(base_url):
    async with pydantic_agent(base_url, "plain").run_stream("What is the weather?") as result:
        assert await result.get_output() == "Tool results: get_weather returned sunny in a"
    plain = PydanticAgent(OpenAIResponsesModel("calc", provider=OpenAIProvider(base_url=f"{base_url}/v1", api_key="x")))
    async with plain.run_stream("Add for me") as result:
        assert [text async for text in result.stream_text(delta=True)] != []
    assert await result.get_output() == "Tool results: add returned 2"


async def test_agents_sdk_with_server_managed_conversation(base_url):
    """``auto_previous_response_id``: the SDK sends only the new items (its tool's output) and
    ``previous_response_id``; the server's stored conversation supplies the rest (without it
    the test model could not name the tool whose result it got: "unknown tool returned ...")."""
    REQUESTS.seen.clear()
    agent = sdk_agent(base_url, "plain", tools=[get_weather])
    first = await Runner.run(agent, "What is the weather?", auto_previous_response_id=True)
    assert first.final_output == "Tool results: get_weather returned sunny in a"
    assert REQUESTS.seen == [("tool_calls", ["get_weather"]), ("stop", ["get_weather"])]
    second = await Runner.run(agent, "And now?", previous_response_id=first.last_response_id)
    assert second.final_output == "Tool results: get_weather returned sunny in a"


async def test_agents_sdk_structured_output_reaches_the_model_as_response_format(base_url):
    STRUCTURED.turns[:] = [text_chunks('{"name": "Paris", "population": 2100000}')]
    result = await Runner.run(sdk_agent(base_url, "structured", output_type=City), "The capital of France?")
    assert result.final_output == City(name="Paris", population=2100000)
    response_format = STRUCTURED.calls[-1][2]["response_format"]
    assert response_format["type"] == "json_schema" and response_format["json_schema"]["strict"] is True
    assert response_format["json_schema"]["schema"]["required"] == ["name", "population"]
