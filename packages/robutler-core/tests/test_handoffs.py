"""Handoffs: to a local agent, to another model, and @handoff functions, with their hooks."""

import pytest

from robutler_core import Agent, HandoffResult, Skill, connect_agents, handoff, hook
from robutler_core.errors import ConfigurationError
from robutler_core.testing import ScriptedModel, text_chunks, tool_call_chunks

USER = [{"role": "user", "content": "my invoice is wrong"}]


def test_handoff_helper_builds_the_right_kind():
    assert handoff("billing").handoff_type == "agent"
    assert handoff("billing").name == "transfer_to_billing"
    assert handoff("test/creative-model").handoff_type == "llm"
    assert handoff("test/creative-model").name == "switch_to_creative_model"
    assert handoff(model="test", name="ask_test").name == "ask_test"
    with pytest.raises(TypeError):
        handoff(42)


async def test_local_agent_handoff_runs_the_target_with_hooks_and_usage_on_the_caller():
    events = []
    specialist = Agent("billing", instructions="You are billing.", model="test")
    coordinator_model = ScriptedModel([
        tool_call_chunks([("transfer_to_billing", {"task": "fix the invoice"})]),
        text_chunks("Billing says it is fixed."),
    ])

    def before(context, handoff):
        events.append(("before", handoff["type"], handoff["target"], handoff["arguments"]))
        return {**handoff, "messages": []}  # a filtering hook: the target sees only the task

    def after(context, handoff, result):
        events.append(("after", result.result, result.metadata))

    coordinator = Agent(
        "front", model=coordinator_model, handoffs=[handoff("billing")],
        hooks={"before_handoff": before, "after_handoff": after},
    )
    connect_agents([coordinator, specialist])
    context = coordinator.new_context(USER, None, False)
    answer = await coordinator.run(USER, context=context)

    assert answer["choices"][0]["message"]["content"] == "Billing says it is fixed."
    tool_result = coordinator_model.calls[1][0][-1]
    assert tool_result == {"role": "tool", "tool_call_id": tool_result["tool_call_id"],
                           "content": 'TestModel received: "fix the invoice"'}
    assert events == [
        ("before", "agent", "billing", {"task": "fix the invoice"}),
        ("after", 'TestModel received: "fix the invoice"', {"agent": "billing"}),
    ]
    target_usage = [r for r in context.usage_records if r.metadata.get("agent") == "billing"]
    assert len(target_usage) == 1 and target_usage[0].metadata["total_tokens"] > 0
    assert target_usage[0].metadata["handoff"] == "transfer_to_billing"


async def test_llm_handoff_answers_with_the_other_model_and_records_its_usage():
    model = ScriptedModel([
        tool_call_chunks([("switch_to_poet", {"task": "a haiku about tea"})]),
        text_chunks("Here it is."),
    ])
    agent = Agent("a", model=model, handoffs=[handoff("test/poet")])
    context = agent.new_context(USER, None, False)
    await agent.run(USER, context=context)
    assert model.calls[1][0][-1]["content"] == 'TestModel received: "a haiku about tea"'
    llm_records = [r for r in context.usage_records if r.metadata.get("model") == "test/poet"]
    assert len(llm_records) == 1


async def test_handoff_function_of_a_skill_is_a_scoped_tool():
    class Escalation(Skill):
        @handoff(scope="owner", handoff_type="human")
        async def escalate_to_human(self, issue: str, context=None) -> HandoffResult:
            """Escalate to a human.

            Args:
                issue: what went wrong
            """
            return HandoffResult(result=f"ticket for {issue} by {context.auth_scope}", handoff_type="human")

    seen = []
    agent = Agent("a", model="test", skills={"esc": Escalation()},
                  hooks={"before_handoff": lambda context, handoff: seen.append(handoff["type"])})
    assert agent.tools_for_scope("owner") == []
    definition = agent.handoffs_for_scope("owner")[0].definition()
    assert definition["function"]["parameters"]["properties"]["issue"]["description"] == "what went wrong"
    assert agent.handoffs_for_scope("all") == []

    everyone = await agent.run(USER)
    assert everyone["choices"][0]["message"]["content"].startswith("TestModel received")
    context = agent.new_context(USER, None, False)
    context.auth_scope = "owner"
    owner = await agent.run(USER, context=context)
    assert owner["choices"][0]["message"]["content"] == (
        "Tool results: escalate_to_human returned ticket for a by owner"
    )
    assert seen == ["human"]


async def test_a_failing_handoff_goes_back_to_the_model_and_bad_arguments_too():
    broken = Agent("broken", model=ScriptedModel([RuntimeError("provider exploded")]))
    model = ScriptedModel([
        tool_call_chunks([("transfer_to_broken", {"task": "x"}), ("transfer_to_broken", {"wrong": 1})]),
        text_chunks("sorry"),
    ])
    agent = Agent("a", model=model, handoffs=[handoff(broken)])
    await agent.run(USER)
    results = [m["content"] for m in model.calls[1][0] if m["role"] == "tool"]
    assert results[0] == "Error: handoff 'transfer_to_broken' failed: RuntimeError: provider exploded"
    assert results[1].startswith("Error: invalid arguments for tool 'transfer_to_broken'")


def test_unknown_targets_fail_at_registration():
    with pytest.raises(ConfigurationError, match="unknown model prefix|installed providers"):
        Agent("a", model="test", handoffs=[handoff("nosuchprovider/model")])
    front = Agent("front", model="test", handoffs=[handoff("nobody")])
    with pytest.raises(ConfigurationError, match="'nobody', which this process does not serve; agents: front"):
        connect_agents([front])


async def test_unknown_local_agent_at_call_is_a_clear_error():
    model = ScriptedModel([tool_call_chunks([("transfer_to_ghost", {"task": "x"})])])
    agent = Agent("a", model=model, handoffs=[handoff("ghost")])
    with pytest.raises(ConfigurationError, match="'ghost', which this process does not serve"):
        await agent.run(USER)


async def test_handoff_loops_stop_at_the_depth_limit():
    ping = Agent("ping", model="test", handoffs=[handoff("pong")])
    pong = Agent("pong", model="test", handoffs=[handoff("ping")])
    connect_agents([ping, pong])
    answer = await ping.run(USER)
    assert "handoffs are nested 5 deep" in answer["choices"][0]["message"]["content"]


async def test_a_skill_registers_a_handoff_at_run_time():
    class Router(Skill):
        @hook("on_connection")
        def add(self, context):
            if not context.agent.handoffs_for_scope("all"):
                self.register_handoff(handoff("test/expert", name="ask_expert"))

    model = ScriptedModel([tool_call_chunks([("ask_expert", {"task": "explain"})]), text_chunks("ok")])
    agent = Agent("a", model=model, skills={"router": Router()})
    await agent.run(USER)
    assert [t["function"]["name"] for t in model.calls[0][1]] == ["ask_expert"]
    assert model.calls[1][0][-1]["content"] == 'TestModel received: "explain"'
