"""The app's lifespan initialises every agent before the first request and closes it at
shutdown. A failing initialisation does not fail start-up: the agent is not ready (``/ready``
503 naming the agent, the skill and the error; the agent answers 503), the failure is logged
once, and a retry every ``ready_retry_interval`` seconds makes it ready again."""

import logging
import threading
import time

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
    """Fails its first ``failures`` initialisations (every one by default)."""

    def __init__(self, failures=None):
        super().__init__()
        self.failures = failures
        self.attempts = 0

    async def initialize(self, agent):
        self.attempts += 1
        if self.failures is None or self.attempts <= self.failures:
            raise OSError("connection refused by the vector store")


def chat(url, agent):
    return httpx.post(f"{url}/{agent}/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})


def test_agents_are_initialised_at_start_up_and_closed_at_shutdown():
    recorder = Recorder()
    app = create_app([Agent("a", model="test", skills={"recorder": recorder})])
    with serve_in_thread(app) as url:
        assert recorder.initialized.is_set()  # before any request
        assert not recorder.closed.is_set()
        assert httpx.get(f"{url}/health").status_code == 200
        assert httpx.get(f"{url}/live").json() == {"status": "live"}
        ready = httpx.get(f"{url}/ready")
        assert (ready.status_code, ready.json()) == (200, {"status": "ready", "agents": {"a": {"ready": True}}})
    assert recorder.closed.is_set()


def test_a_failing_skill_makes_its_agent_not_ready_and_is_logged_once(caplog):
    recorder, broken = Recorder(), Broken()
    app = create_app([
        Agent("fine", model="test", skills={"recorder": recorder}),
        Agent("store", model="test", skills={"vectors": broken}),
    ])
    with caplog.at_level(logging.DEBUG, logger="robutler_server"), serve_in_thread(app) as url:
        ready = httpx.get(f"{url}/ready")
        assert ready.status_code == 503
        assert ready.json() == {
            "status": "not_ready",
            "agents": {
                "fine": {"ready": True},
                "store": {"ready": False, "skill": "vectors",
                          "error": "OSError: connection refused by the vector store"},
            },
        }
        for _ in range(3):
            answer = chat(url, "store")
            assert answer.status_code == 503
            assert answer.json()["error"]["code"] == "agent_not_ready"
            assert answer.json()["error"]["message"] == (
                "agent 'store' is not ready: skill 'vectors' failed to initialise: "
                "OSError: connection refused by the vector store"
            )
        assert chat(url, "fine").status_code == 200  # the other agent serves
    assert broken.attempts == 1  # not again per request (no retry within the default 10 s)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "agent 'store' is not ready: skill 'vectors' failed to initialise: OSError: connection "
        "refused by the vector store; retrying every 10s"
    ]
    assert all(r.exc_info is None for r in errors)  # no traceback at ERROR
    assert recorder.closed.is_set()


def test_a_retry_that_succeeds_makes_the_agent_ready(caplog):
    broken = Broken(failures=2)
    app = create_app([Agent("store", model="test", skills={"vectors": broken})], ready_retry_interval=0.2)
    with caplog.at_level(logging.INFO, logger="robutler_server"), serve_in_thread(app) as url:
        assert httpx.get(f"{url}/ready").status_code == 503
        assert chat(url, "store").status_code == 503
        deadline = time.monotonic() + 5
        while httpx.get(f"{url}/ready").status_code != 200:
            assert time.monotonic() < deadline, "never became ready"
            time.sleep(0.05)
        assert chat(url, "store").status_code == 200
    assert broken.attempts == 3
    messages = [r.getMessage() for r in caplog.records]
    assert sum("is not ready" in m for m in messages) == 1  # the same failure twice: logged once
    assert "agent 'store' is ready: its skills initialised on a retry" in messages


def test_the_retry_interval_must_be_positive():
    with pytest.raises(ValueError, match="retry_interval must be > 0 seconds, got 0"):
        create_app([Agent("a", model="test")], ready_retry_interval=0)


class Store(Skill):
    """Initialises, then reports its database as down or up (Skill.status)."""

    def __init__(self):
        super().__init__()
        self.down = True

    def status(self, auth_scope):
        return {"ready": False, "error": "database at 127.0.0.1:5433 is down"} if self.down else {"ready": True}


def test_a_skill_reporting_a_dependency_down_makes_ready_503_while_the_agent_serves():
    store = Store()
    app = create_app([Agent("a", model="test", skills={"store": store})])
    with serve_in_thread(app) as url:
        ready = httpx.get(f"{url}/ready")
        assert ready.status_code == 503
        assert ready.json()["agents"] == {
            "a": {"ready": False, "skill": "store", "error": "database at 127.0.0.1:5433 is down"}
        }
        assert chat(url, "a").status_code == 200  # the skill decides what works without it
        store.down = False
        assert httpx.get(f"{url}/ready").status_code == 200
