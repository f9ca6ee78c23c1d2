"""A request's usage adds up every model turn, the token breakdowns (cache reads) included."""

import pytest

from robutler_core import Agent, Skill, hook, tool
from robutler_core.testing import ScriptedModel, completion_to_chunks
from robutler_core.wire import chat_completion

USER = [{"role": "user", "content": "hello"}]


def turn(message, finish_reason, cached, creation=0):
    usage = {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110,
             "prompt_tokens_details": {"cached_tokens": cached, "cache_creation_tokens": creation},
             "completion_tokens_details": {"reasoning_tokens": 4}}
    return chat_completion(model="scripted", message=message, finish_reason=finish_reason, usage=usage)


def script():
    call = {"id": "call_1", "type": "function", "function": {"name": "ping", "arguments": "{}"}}
    return [
        turn({"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls", cached=0, creation=80),
        turn({"role": "assistant", "content": "pong"}, "stop", cached=80),
    ]


class Records(Skill):
    def __init__(self):
        super().__init__()
        self.records = []

    @tool
    def ping(self) -> str:
        """Answer pong."""
        return "pong"

    @hook("finalize_connection")
    def keep(self, context):
        self.records = [r.metadata for r in context.usage_records if r.kind == "llm"]


EXPECTED = {"prompt_tokens": 200, "completion_tokens": 20, "total_tokens": 220,
            "prompt_tokens_details": {"cached_tokens": 80, "cache_creation_tokens": 80},
            "completion_tokens_details": {"reasoning_tokens": 8}}


@pytest.mark.parametrize("stream", [False, True])
async def test_usage_sums_the_turns_and_their_cached_token_details(stream):
    turns = script() if not stream else [completion_to_chunks(t) for t in script()]
    records = Records()
    agent = Agent("a", model=ScriptedModel(turns), skills={"records": records})
    if stream:
        chunks = [c async for c in agent.run_streaming(USER, stream_options={"include_usage": True})]
        usage = chunks[-1]["usage"]
    else:
        usage = (await agent.run(USER))["usage"]
    assert usage == EXPECTED
    assert [(r["cached_tokens"], r["cache_creation_tokens"]) for r in records.records] == [(0, 80), (80, 0)]
