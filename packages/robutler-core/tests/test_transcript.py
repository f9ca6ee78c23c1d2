"""context.transcript and context.finish_reason, as finalize_connection hooks see them."""

import pytest

from robutler_core import Agent, Skill, hook, tool
from robutler_core.errors import UpstreamError
from robutler_core.testing import ScriptedModel, finish_chunks, text_chunks, tool_call_chunks

EXTERNAL = [{"type": "function", "function": {"name": "ask_user", "parameters": {"type": "object", "properties": {}}}}]


class Recorder(Skill):
    """Adds a message in on_connection, rewrites incoming messages, records the transcript."""

    def __init__(self):
        super().__init__()
        self.seen = []

    @hook("on_connection")
    def add_history(self, context):
        context.messages.insert(0, {"role": "user", "content": "earlier"})

    @hook("on_message")
    def shout(self, context, message):
        if message.get("role") == "user":
            return {**message, "content": message["content"].upper()}
        return {**message, "content": (message.get("content") or "") + "!"}  # the answer

    @tool
    def add(self, a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @hook("finalize_connection")
    def record(self, context):
        self.seen.append((list(context.transcript), context.finish_reason))


def script():
    return [
        text_chunks("Let me add.") + tool_call_chunks([("add", {"a": 2, "b": 3})]) + finish_chunks("tool_calls"),
        text_chunks("It is 5.") + finish_chunks("stop"),
    ]


def strip_ids(messages):
    return [{k: v for k, v in m.items() if k not in ("tool_calls", "tool_call_id")} for m in messages]


@pytest.mark.parametrize("streaming", [False, True])
async def test_transcript_holds_incoming_tool_turns_and_answer(streaming):
    recorder = Recorder()
    model = ScriptedModel(script())
    agent = Agent("a", instructions="Be brief.", model=model, skills={"r": recorder})
    if streaming:
        [c async for c in agent.run_streaming([{"role": "user", "content": "add 2 and 3"}])]
    else:
        await agent.run([{"role": "user", "content": "add 2 and 3"}])
    [(transcript, finish_reason)] = recorder.seen
    assert finish_reason == "stop"
    assert strip_ids(transcript) == [
        {"role": "user", "content": "EARLIER"},
        {"role": "user", "content": "ADD 2 AND 3"},
        {"role": "assistant", "content": "Let me add."},
        {"role": "tool", "content": "5"},
        {"role": "assistant", "content": "Let me add.It is 5.!"},
    ]
    call = transcript[2]["tool_calls"][0]
    assert call["function"] == {"name": "add", "arguments": '{"a": 2, "b": 3}'}
    assert transcript[3]["tool_call_id"] == call["id"]
    # The model's second turn saw the same conversation (plus the system prompt).
    second_turn_messages = model.calls[1][0]
    assert second_turn_messages[0] == {"role": "system", "content": "Be brief."}
    assert second_turn_messages[1:] == transcript[:4]


async def test_transcript_of_a_mixed_turn_ends_with_the_external_calls_only():
    recorder = Recorder()
    turn = tool_call_chunks([("add", {"a": 1, "b": 1}), ("ask_user", {})]) + finish_chunks("tool_calls")
    agent = Agent("a", model=ScriptedModel([turn]), skills={"r": recorder})
    completion = await agent.run([{"role": "user", "content": "hi"}], tools=EXTERNAL)
    [(transcript, finish_reason)] = recorder.seen
    assert finish_reason == "tool_calls"
    assert transcript[-1] == completion["choices"][0]["message"]
    assert [c["function"]["name"] for c in transcript[-1]["tool_calls"]] == ["ask_user"]
    assert not any(m["role"] == "tool" for m in transcript)  # the server-side call did not run


@pytest.mark.parametrize("streaming", [False, True])
async def test_failed_request_has_no_finish_reason_and_a_partial_transcript(streaming):
    recorder = Recorder()
    turns = [script()[0], UpstreamError("down")]
    agent = Agent("a", model=ScriptedModel(turns), skills={"r": recorder})
    with pytest.raises(UpstreamError):
        if streaming:
            [c async for c in agent.run_streaming([{"role": "user", "content": "x"}])]
        else:
            await agent.run([{"role": "user", "content": "x"}])
    [(transcript, finish_reason)] = recorder.seen
    assert finish_reason is None
    assert [m["role"] for m in transcript] == ["user", "user", "assistant", "tool"]
