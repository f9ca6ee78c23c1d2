"""The app's lifespan initialises every agent before the first request and closes it at
shutdown; a failing initialisation fails start-up, naming the agent and the skill."""

import logging
import threading

import httpx
import pytest

from robutler_core import Agent, Skill
from robutler_server import create_app
from robutler_server.testing import serve_in_thread


class Recorder(Skill):
    """Records, from whichever thread runs the server, when it is initialised and closed."""

    def __init__(self):
        super().__init__()
        self.initialized = threading.Event()
        self.closed = threading.Event()

    async def initialize(self, agent):
        self.initialized.set()

    async def close(self):
        self.closed.set()


class Broken(Skill):
    async def initialize(self, agent):
        raise OSError("connection refused by the vector store")


def test_agents_are_initialised_at_start_up_and_closed_at_shutdown():
    recorder = Recorder()
    app = create_app([Agent("a", model="test", skills={"recorder": recorder})])
    with serve_in_thread(app) as url:
        assert recorder.initialized.is_set()  # before any request
        assert not recorder.closed.is_set()
        assert httpx.get(f"{url}/health").status_code == 200
    assert recorder.closed.is_set()


async def test_a_failing_initialisation_fails_start_up_naming_agent_and_skill(caplog):
    recorder = Recorder()
    app = create_app([
        Agent("fine", model="test", skills={"recorder": recorder}),
        Agent("store", model="test", skills={"vectors": Broken()}),
    ])
    with caplog.at_level(logging.ERROR, logger="robutler_server"), pytest.raises(OSError, match="connection refused"):
        async with app.router.lifespan_context(app):
            pass
    assert "agent 'store' failed to start: skill 'vectors' raised OSError: connection refused by the vector store" in caplog.text
    assert recorder.closed.is_set()  # what started is closed again


def test_the_server_does_not_start_when_an_agent_cannot_initialise():
    with pytest.raises(RuntimeError, match="uvicorn did not start"):
        with serve_in_thread(create_app([Agent("store", model="test", skills={"vectors": Broken()})])):
            pass
