"""``robutler serve`` as an operator runs it, in real processes: probes, metrics with several
workers, request ids in JSON logs, and a graceful SIGTERM during streams."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

SLOW_SKILL = '''
import asyncio, os
from robutler_core import Skill, hook, hookimpl

class SlowStream(Skill):
    """Sends each chunk after a pause; records every finalize_connection with its request id."""

    @hook("on_chunk")
    async def slow(self, context, chunk):
        await asyncio.sleep(float(os.environ["SLOW_CHUNK_SECONDS"]))

    @hook("finalize_connection")
    async def done(self, context):
        await asyncio.sleep(0.05)  # cleanup that takes a moment, awaited even when cancelled
        with open(os.environ["FINALIZE_LOG"], "a") as log:
            log.write(context.headers.get("x-request-id", "?") + "\\n")

class Broken(Skill):
    async def initialize(self, agent):
        raise ConnectionRefusedError("vector store at 127.0.0.1:1 refused the connection")

@hookimpl
def register_skills(register):
    register(SlowStream, name="slowstream")
    register(Broken, name="broken")
'''


@pytest.fixture
def plugin_env(tmp_path):
    """An environment where the fixture distribution ``ops-fixture`` (skills ``slowstream`` and
    ``broken``) is installed, as a third-party package would be."""
    site = tmp_path / "site"
    (site / "ops_fixture-0.1.dist-info").mkdir(parents=True)
    (site / "ops_fixture.py").write_text(SLOW_SKILL)
    (site / "ops_fixture-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: ops-fixture\nVersion: 0.1\n")
    (site / "ops_fixture-0.1.dist-info" / "entry_points.txt").write_text("[robutler]\nops-fixture = ops_fixture\n")
    return {
        **os.environ, "PYTHONPATH": str(site), "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "FINALIZE_LOG": str(tmp_path / "finalized.log"), "SLOW_CHUNK_SECONDS": "0.2",
    }


class Served:
    """A ``robutler serve`` process: its url and the lines of its stderr so far."""

    def __init__(self, agents_file, args, env):
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from robutler_server.cli import main; main()", "serve", str(agents_file),
             "--port", "0", *args],
            stderr=subprocess.PIPE, text=True, env=env,
        )
        self.lines = []
        self.url = None
        deadline = time.monotonic() + 60
        while self.url is None and time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                break
            self.lines.append(line)
            found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
            if found and found.group(1) != "0":
                self.url = found.group(0)
        assert self.url, "robutler serve did not start: " + "".join(self.lines)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        for _ in range(400):
            try:
                if httpx.get(f"{self.url}/live", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)

    def _read(self):
        for line in self.process.stderr:
            self.lines.append(line)

    def stop(self, timeout=30):
        """SIGTERM; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self.reader.join(timeout=5)
        return status


@pytest.fixture
def serve(tmp_path, plugin_env):
    started = []

    def start(agents_yaml, *args):
        path = tmp_path / "agents.yaml"
        path.write_text(agents_yaml)
        served = Served(path, args, plugin_env)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


def chat(url, agent, stream=False, **headers):
    body = {"messages": [{"role": "user", "content": "weather in Paris?"}], "stream": stream}
    return httpx.post(f"{url}/{agent}/chat/completions", json=body, headers=headers, timeout=30)


def metric(text, name, **labels):
    """The value of one sample of the Prometheus text ``text`` (0 when absent)."""
    for line in text.splitlines():
        found = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if found and found.group(1) == name and dict(re.findall(r'(\w+)="([^"]*)"', found.group(2) or "")) == labels:
            return float(found.group(3))
    return 0.0


def test_live_and_ready_with_a_skill_that_cannot_initialise(serve):
    served = serve(
        "agents:\n  - name: fine\n    model: test\n  - name: store\n    model: test\n    skills:\n      broken: {}\n",
        "--ready-retry-interval", "60",
    )
    assert httpx.get(f"{served.url}/live").json() == {"status": "live"}
    ready = httpx.get(f"{served.url}/ready")
    assert ready.status_code == 503
    assert ready.json()["agents"] == {
        "fine": {"ready": True},
        "store": {"ready": False, "skill": "broken",
                  "error": "ConnectionRefusedError: vector store at 127.0.0.1:1 refused the connection"},
    }
    for _ in range(3):
        answer = chat(served.url, "store")
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "agent_not_ready"
    assert chat(served.url, "fine").status_code == 200
    assert served.stop() == 0
    log = "".join(served.lines)
    assert log.count("agent 'store' is not ready") == 1  # once, not per request
    assert "Traceback" not in log


@pytest.mark.parametrize("workers", [1, 2])
def test_metrics_move_after_requests(serve, workers):
    served = serve("agents:\n  - name: w\n    model: test\n    skills:\n      weather: {}\n",
                   "--workers", str(workers))
    before = httpx.get(f"{served.url}/metrics")
    assert before.status_code == 200 and before.headers["content-type"].startswith("text/plain")
    assert metric(before.text, "robutler_requests_total", agent="w", status="200", stream="false") == 0
    for _ in range(6):
        assert chat(served.url, "w").status_code == 200
    assert chat(served.url, "w", stream=True).status_code == 200
    assert chat(served.url, "ghost").status_code == 404  # unknown agents are not labels
    text = httpx.get(f"{served.url}/metrics").text
    assert metric(text, "robutler_requests_total", agent="w", status="200", stream="false") == 6
    assert metric(text, "robutler_requests_total", agent="w", status="200", stream="true") == 1
    assert metric(text, "robutler_request_duration_seconds_count", agent="w", stream="false") == 6
    assert metric(text, "robutler_time_to_first_token_seconds_count", agent="w") == 1
    assert metric(text, "robutler_model_calls_total", agent="w", model="test") == 14  # tool turn + answer
    assert metric(text, "robutler_model_tokens_total", agent="w", model="test", type="input") > 0
    assert metric(text, "robutler_tool_calls_total", agent="w", tool="get_weather", outcome="ok") == 7
    assert metric(text, "robutler_tool_duration_seconds_count", agent="w", tool="get_weather") == 7
    assert metric(text, "robutler_requests_in_flight", agent="w") == 0
    assert "ghost" not in text
    assert served.stop() == 0


def test_request_id_is_echoed_and_in_every_json_log_line(serve):
    served = serve("agents:\n  - name: a\n    model: test\n", "--log-format", "json", "--access-log")
    answer = chat(served.url, "a", **{"X-Request-ID": "req-42.abc"})
    assert answer.headers["x-request-id"] == "req-42.abc"
    generated = chat(served.url, "a", **{"X-Request-ID": "has spaces"}).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)  # an invalid id is replaced
    assert re.fullmatch(r"[0-9a-f]{32}", chat(served.url, "a").headers["x-request-id"])
    assert served.stop() == 0
    records = [json.loads(line) for line in served.lines if line.startswith("{")]
    assert len(records) == len([line for line in served.lines if line.strip()])  # every line is JSON
    mine = [r for r in records if r["request_id"] == "req-42.abc"]
    assert mine and all(set(r) >= {"time", "level", "logger", "message"} for r in mine)
    assert any(r["logger"] == "uvicorn.access" and "/a/chat/completions" in r["message"] for r in mine)


def test_the_access_log_is_off_by_default(serve):
    served = serve("agents:\n  - name: a\n    model: test\n")
    assert chat(served.url, "a").status_code == 200
    assert served.stop() == 0
    assert not any("POST /a/chat/completions" in line for line in served.lines)


def _stream(url, request_id, started):
    with httpx.stream("POST", f"{url}/s/chat/completions", timeout=60, headers={"X-Request-ID": request_id},
                      json={"messages": [{"role": "user", "content": "hi"}], "stream": True}) as response:
        assert response.status_code == 200
        started.release()
        return "".join(response.iter_text())


@pytest.mark.parametrize("graceful, complete", [("30", True), ("0.3", False)])
def test_sigterm_during_20_streams(serve, plugin_env, graceful, complete):
    """SIGTERM while 20 streams run: with time enough they all finish ([DONE]); past the
    deadline they are cut off. Either way every finalize_connection runs exactly once, and the
    exit status is 0."""
    served = serve("agents:\n  - name: s\n    model: test\n    skills:\n      slowstream: {}\n",
                   "--graceful-timeout", graceful)
    started = threading.Semaphore(0)
    ids = [f"stream-{i}" for i in range(20)]
    with ThreadPoolExecutor(20) as pool:
        futures = [pool.submit(_stream, served.url, i, started) for i in ids]
        for _ in ids:
            assert started.acquire(timeout=30)
        assert served.stop(timeout=60) == 0
        bodies = [f.result(timeout=60) for f in futures] if complete else None
    if complete:
        assert all(body.endswith("data: [DONE]\n\n") for body in bodies)
    finalized = open(plugin_env["FINALIZE_LOG"]).read().split()
    log = "".join(served.lines)
    assert sorted(finalized) == sorted(ids), log  # each exactly once
    assert "Traceback" not in log
    if not complete:
        assert "timeout graceful shutdown exceeded" in log
