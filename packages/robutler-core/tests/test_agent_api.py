"""The agent's public lifecycle and description API: initialize, close, check_configuration,
unsupported request parameters, info(auth_scope) and describe(context)."""

import pytest

from robutler_core import Agent, Skill, handoff
from robutler_core.errors import ConfigurationError
from robutler_core.testing import TestModel

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
