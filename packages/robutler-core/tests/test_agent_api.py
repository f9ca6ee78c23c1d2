"""The agent's public lifecycle and description API: initialize, close, check_configuration,
unsupported request parameters, info(auth_scope) and describe(context)."""

import pytest

from robutler_core import Agent, Skill, handoff, hook, http, tool
from robutler_core.errors import BadRequestError, ConfigurationError, PermissionDeniedError
from robutler_core.testing import ScriptedModel, TestModel, run_request, text_chunks, tool_call_chunks

USER = [{"role": "user", "content": "hi"}]


class Recording(TestModel):
    """The test model, recording initialize/close calls in a shared log."""

    def __init__(self, name, log, problem=None):
        super().__init__({"model": name})
        self.log = log
        self.problem = problem

    async def initialize(self, agent):
        self.log.append(f"initialize {self.model}")

    async def close(self):
        self.log.append(f"close {self.model}")
        if self.problem:
            raise RuntimeError(self.problem)

    def check_configuration(self):
        if self.problem:
            raise ConfigurationError(f"{self.model}: {self.problem}")


def _agent(log, **problems):
    return Agent(
        "a", model=Recording("main", log), fallbacks=[Recording("backup", log, problems.get("backup"))],
        handoffs=[handoff(Recording("expert", log, problems.get("expert")))],
    )


async def test_skills_reached_through_fallbacks_and_model_handoffs_are_initialised_once():
    log = []
    agent = _agent(log)
    await agent.run(USER)
    await agent.initialize()
    await agent.run(USER)
    assert sorted(log) == ["initialize backup", "initialize expert", "initialize main"]


async def test_close_closes_every_skill_once_even_when_one_fails(caplog):
    log = []
    agent = _agent(log, backup="cannot close")
    await agent.initialize()
    await agent.close()
    assert sorted(e for e in log if e.startswith("close")) == ["close backup", "close expert", "close main"]
    assert "closing skill Recording failed" in caplog.text


def test_check_configuration_lists_every_problem_and_never_raises():
    assert _agent([]).check_configuration() == []
    problems = _agent([], backup="no API key", expert="no API key").check_configuration()
    assert problems == [
        "agent 'a': model 'test/backup': backup: no API key",
        "agent 'a': model 'test/expert': expert: no API key",
    ]


class WithMetadata(ScriptedModel):
    supported_params = ScriptedModel.supported_params | {"metadata"}


@pytest.mark.parametrize("stream", [False, True])
async def test_a_parameter_the_model_skill_does_not_support_is_a_400_naming_it(stream):
    model = ScriptedModel([text_chunks("never")])
    agent = Agent("a", model=model)
    with pytest.raises(BadRequestError) as info:
        await run_request(agent, USER, stream=stream, metadata={"k": "v"}, temperature=0.2)
    assert (info.value.status_code, info.value.param, info.value.code) == (400, "metadata", "unsupported_parameter")
    assert "'metadata' is not supported by the model skill ScriptedModel (scripted) of agent 'a'" in info.value.message
    assert model.calls == []
    with pytest.raises(BadRequestError, match="'metadata' is not supported by the model skill ScriptedModel"):
        await Agent("b", model=WithMetadata([]), fallbacks=[ScriptedModel([])]).run(USER, metadata={"k": "v"})


@pytest.mark.parametrize("stream", [False, True])
async def test_unsupported_params_ignore_drops_what_the_model_skill_lacks(stream):
    plain, rich = ScriptedModel([text_chunks("ok")]), WithMetadata([text_chunks("ok")])
    for model in (plain, rich):
        agent = Agent("a", model=model, unsupported_params="ignore")
        completion = await run_request(agent, USER, stream=stream, metadata={"k": "v"}, temperature=0.2, store=True)
        assert completion["choices"][0]["message"]["content"] == "ok"
    assert {k: v for k, v in plain.calls[0][2].items() if k != "stream_options"} == {"temperature": 0.2}
    assert {k: v for k, v in rich.calls[0][2].items() if k != "stream_options"} == {"temperature": 0.2, "metadata": {"k": "v"}}
    with pytest.raises(ConfigurationError, match="unsupported_params must be 'error' or 'ignore'"):
        Agent("a", model="test", unsupported_params="drop")


class Mixed(Skill):
    @tool
    def public(self) -> str:
        return "p"

    @tool(scope="owner")
    def private(self) -> str:
        return "o"

    @http("/public")
    def page(self) -> str:
        return "p"

    @http("/admin", scope="admin")
    def admin_page(self) -> str:
        return "a"


def _described(info):
    return (
        info.get("instructions"), sorted(t["function"]["name"] for t in info["tools"]),
        [h["name"] for h in info["handoffs"]], sorted(r["path"] for r in info["http"]),
    )


def test_info_shows_only_what_the_scope_admits_and_the_instructions_only_to_owners():
    agent = Agent("a", "Secret system prompt.", model="test", skills={"m": Mixed()},
                  handoffs=[handoff("test/expert", name="ask_expert", scope="owner")])
    assert _described(agent.info()) == (None, ["public"], [], ["/a/public"])
    assert "instructions" not in agent.info("all") and "instructions" not in agent.info("premium")
    assert _described(agent.info("owner")) == ("Secret system prompt.", ["private", "public"], ["ask_expert"], ["/a/public"])
    assert _described(agent.info("admin")) == (
        "Secret system prompt.", ["private", "public"], ["ask_expert"], ["/a/admin", "/a/public"])


async def test_describe_runs_the_connection_hooks_and_checks_the_agents_scope():
    log = []

    class Auth(Skill):
        @hook("on_connection")
        def authenticate(self, context):
            context.auth_scope = context.headers.get("x-scope", "all")
            log.append("on_connection")

        @hook("finalize_connection")
        def finalize(self, context):
            log.append("finalize_connection")

    agent = Agent("a", "Secret.", model="test", skills={"auth": Auth(), "m": Mixed()}, scope="owner")
    owner = agent.new_context([], None, False, headers={"X-Scope": "owner"})
    assert (await agent.describe(owner))["instructions"] == "Secret."
    with pytest.raises(PermissionDeniedError):
        await agent.describe(agent.new_context([], None, False))
    assert log == ["on_connection", "finalize_connection"] * 2


async def test_a_parameter_at_openais_default_value_is_honoured_by_any_model():
    model = ScriptedModel([text_chunks("ok")])
    await Agent("a", model=model).run(USER, n=1, logprobs=False, store=False)
    assert model.calls[0][2] == {}
    for name, value in (("n", 2), ("logprobs", True), ("n", True)):
        with pytest.raises(BadRequestError) as info:
            await Agent("a", model=ScriptedModel([])).run(USER, **{name: value})
        assert info.value.param == name


async def test_a_model_handoff_registered_during_a_request_is_initialised_before_it_runs():
    log = []

    class Registrar(Skill):
        @hook("on_connection")
        def offer(self, context):
            if "switch_to_late" not in self.agent.callables_for_scope("admin"):
                self.register_handoff(handoff(Recording("late", log)))

    model = ScriptedModel([tool_call_chunks([("switch_to_late", {"task": "t"})]), text_chunks("done")])
    agent = Agent("a", model=model, skills={"r": Registrar()})
    await agent.run(USER)
    assert "initialize late" in log
    assert model.calls[1][0][-1]["content"] == 'TestModel received: "t"'


def test_a_contexts_request_id_is_its_own_and_stays_the_same():
    from dataclasses import fields

    agent = Agent("a", model="test")
    first, second = agent.new_context(USER, None, False), agent.new_context(USER, None, False)
    assert first.request_id.startswith("req_") and len(first.request_id) == 36
    assert first.request_id == first.request_id != second.request_id
    assert "request_id" in {f.name for f in fields(first)} and first.request_id in repr(first)
    given = agent.new_context(USER, None, False)
    given.request_id = "req_given"
    assert given.request_id == "req_given"
    from robutler_core import Context

    assert Context(agent=agent, messages=[], request_id="req_x").request_id == "req_x"


async def test_an_agent_subclass_overriding_initialize_or_system_prompt_is_called_every_request():
    calls = []

    class Custom(Agent):
        async def initialize(self):
            calls.append("initialize")
            await super().initialize()

        async def system_prompt(self, context):
            calls.append("system_prompt")
            return "custom system prompt"

    agent = Custom("a", instructions="ignored", model="test")
    await agent.initialize()
    calls.clear()
    for _ in range(2):
        completion = await agent.run(USER)
        assert completion["choices"][0]["message"]["content"] == 'TestModel received: "hi"'
    assert calls == ["initialize", "system_prompt"] * 2
