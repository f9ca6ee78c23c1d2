"""Scopes from request headers, @http routes, handoffs and disconnects, over a real socket.

What a request goes through (hooks, scopes, usage records, disconnect cancellation, one
``finalize_connection``) is the same in both wire formats, chat completions and the Responses
API: those tests run over both (``wire``)."""

import threading
import logging
import time

import httpx
import openai
import pytest
from fastapi import Request

from robutler_core import Agent, Skill, handoff, hook, http, tool
from robutler_core.errors import AuthenticationError, ConfigurationError
from robutler_core.testing import ScriptedModel, text_chunks, tool_call_chunks
from robutler_server import create_app
from robutler_server.testing import serve_in_thread

TOKENS = {"owner-token": ("alice", "owner"), "user-token": ("bob", "all"), "admin-token": ("root", "admin")}


class BearerAuth(Skill):
    """Maps a bearer token to a caller and a scope; no token at all is 401."""

    @hook("on_connection", priority=1)
    def authenticate(self, context):
        token = context.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if token not in TOKENS:
            raise AuthenticationError("invalid or missing bearer token")
        context.peer_user_id, scope = TOKENS[token]
        context.set("auth_scope", scope)


class Notes(Skill):
    def __init__(self, finalized):
        super().__init__()
        self.notes = {"1": "buy milk"}
        self.finalized = finalized
        self.usage = []

    @tool(scope="owner")
    def delete_notes(self) -> str:
        """Delete all notes."""
        return "deleted"

    @tool
    def count_notes(self) -> int:
        """How many notes there are."""
        return len(self.notes)

    @http("/notes")
    def list_notes(self, prefix: str = "") -> dict:
        """List notes whose text starts with prefix."""
        return {"notes": [n for n in self.notes.values() if n.startswith(prefix)]}

    @http("/notes/{note_id}")
    async def get_note(self, note_id: str, context) -> dict:
        return {"id": note_id, "text": self.notes.get(note_id), "caller": context.peer_user_id}

    @http("/notes", method="post", scope="owner")
    async def add_note(self, note: dict, request: Request) -> dict:
        self.notes[str(len(self.notes) + 1)] = note["text"]
        return {"stored": note["text"], "via": request.method}

    @hook("finalize_connection")
    def done(self, context):
        self.finalized.append(context.request_id)
        self.usage.append([(r.kind, r.metadata.get("total_tokens")) for r in context.usage_records])


class SlowModel(ScriptedModel):
    """Streams one chunk, then hangs until cancelled; records the cancellation."""

    def __init__(self):
        super().__init__([None] * 10)
        self.cancelled = threading.Event()

    async def chat_completion_stream(self, messages, tools=None, **params):
        import asyncio

        yield text_chunks("first", pieces=1)[1]
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


class StuckModel(ScriptedModel):
    """Never answers, streaming or not, until cancelled; records the cancellation."""

    def __init__(self):
        super().__init__([])
        self.cancelled = threading.Event()

    async def _hang(self):
        import asyncio

        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    async def chat_completion(self, messages, tools=None, **params):
        await self._hang()

    async def chat_completion_stream(self, messages, tools=None, **params):
        await self._hang()
        yield {}


STUCK = StuckModel()
NOTES = []


def shout(chunk):
    """An on_chunk hook: the streamed text in capitals."""
    for choice in chunk["choices"]:
        if choice["delta"].get("content"):
            choice["delta"]["content"] = choice["delta"]["content"].upper()
    return chunk


@pytest.fixture(scope="module")
def served():
    finalized = []
    slow = SlowModel()
    front_model = ScriptedModel([
        tool_call_chunks([("transfer_to_billing", {"task": "refund order 7"})]),
        text_chunks("Billing handled it."),
    ] * 2)
    NOTES[:] = [Notes(finalized)]
    agents = [
        Agent("notes", model="test", skills={"auth": BearerAuth(), "notes": NOTES[0]}),
        Agent("shout", model="test", hooks={"on_chunk": shout}),
        Agent("private", model="test", skills={"auth": BearerAuth()}, scopes=["owner"]),
        Agent("front", model=front_model, handoffs=[handoff("billing")]),
        Agent("billing", instructions="You refund orders.", model="test"),
        Agent("slow", model=slow, hooks={"finalize_connection": lambda context: finalized.append("slow")}),
        Agent("stuck", model=STUCK, hooks={"finalize_connection": lambda context: finalized.append("stuck")}),
    ]
    with serve_in_thread(create_app(agents)) as url:
        yield url, finalized, slow, front_model


def chat(url, agent, token):
    return openai.OpenAI(base_url=f"{url}/{agent}", api_key=token, max_retries=0)


WIRES = ["chat", "responses"]


def ask(url, agent, token, text, wire, stream=False):
    """The answer's text to ``text`` over one wire format, through the openai client."""
    client = chat(url, agent, token)
    if wire == "responses":
        if not stream:
            return client.responses.create(model=agent, input=text).output_text
        with client.responses.stream(model=agent, input=text) as events:
            return events.get_final_response().output_text
    messages = [{"role": "user", "content": text}]
    if not stream:
        return client.chat.completions.create(model=agent, messages=messages).choices[0].message.content
    chunks = client.chat.completions.create(model=agent, messages=messages, stream=True)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def request(wire, text, stream):
    """(path under the agent, JSON body) of a request in ``wire``'s format."""
    if wire == "responses":
        return "responses", {"input": text, "stream": stream}
    return "chat/completions", {"messages": [{"role": "user", "content": text}], "stream": stream}


@pytest.mark.parametrize("wire", WIRES)
def test_caller_scope_from_the_bearer_token_decides_the_tools(served, wire):
    url, *_ = served
    owner = ask(url, "notes", "owner-token", "hi", wire)
    user = ask(url, "notes", "user-token", "hi", wire, stream=True)
    # tools in the order the skill defines them (9a63800)
    assert owner == "Tool results: delete_notes returned deleted; count_notes returned 1"
    assert user == "Tool results: count_notes returned 1"


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("stream", [False, True])
def test_bad_token_is_401_and_agent_scope_is_403(served, wire, stream):
    url, *_ = served
    with pytest.raises(openai.AuthenticationError, match="invalid or missing bearer token"):
        ask(url, "notes", "nope", "x", wire, stream)
    with pytest.raises(openai.PermissionDeniedError, match="caller's scope is 'all'") as error:
        ask(url, "private", "user-token", "x", wire, stream)
    assert error.value.body["code"] == "scope_not_allowed"
    assert ask(url, "private", "owner-token", "x", wire, stream) == 'TestModel received: "x"'


@pytest.mark.parametrize("stream", [False, True])
def test_hooks_and_usage_records_are_the_same_in_both_wire_formats(served, stream):
    url, finalized, *_ = served
    notes = NOTES[0]
    before = len(notes.usage)
    answers = [ask(url, "notes", "owner-token", "hi", wire, stream) for wire in WIRES]
    assert answers[0] == answers[1]
    assert notes.usage[before:] == [[("llm", 5), ("llm", 11)]] * 2  # one record per model call, in both
    assert [ask(url, "shout", "x", "hi", wire, stream=True) for wire in WIRES] == ['TESTMODEL RECEIVED: "HI"'] * 2


def test_http_routes_get_query_path_and_body_parameters(served):
    url, finalized, *_ = served
    owner = {"authorization": "Bearer owner-token"}
    with httpx.Client(base_url=url, headers=owner) as client:
        assert client.get("/notes/notes", params={"prefix": "buy"}).json() == {"notes": ["buy milk"]}
        assert client.get("/notes/notes/1").json() == {"id": "1", "text": "buy milk", "caller": "alice"}
        before = len(finalized)
        stored = client.post("/notes/notes", json={"text": "call mum"})
        assert stored.status_code == 200 and stored.json() == {"stored": "call mum", "via": "POST"}
        assert len(finalized) == before + 1  # finalize_connection runs for @http requests too
        assert client.get("/notes/notes", params={"prefix": "call"}).json() == {"notes": ["call mum"]}
    info = httpx.get(f"{url}/notes", headers=owner).json()
    assert {"method": "POST", "path": "/notes/notes"} in info["http"]
    assert httpx.get(f"{url}/notes").status_code == 401  # GET /{agent} runs on_connection too


def test_http_route_errors(served):
    url, *_ = served
    user = {"authorization": "Bearer user-token"}
    forbidden = httpx.post(f"{url}/notes/notes", json={"text": "x"}, headers=user)
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["message"] == (
        "POST /notes/notes needs the scope(s) owner; the caller's scope is 'all'"
    )
    assert httpx.get(f"{url}/notes/notes").status_code == 401  # the auth hook runs for @http too
    assert httpx.delete(f"{url}/notes/notes", headers=user).status_code == 405
    bad_body = httpx.post(f"{url}/notes/notes", content=b"[1,", headers={
        "authorization": "Bearer owner-token", "content-type": "application/json"})
    assert bad_body.status_code == 400 and bad_body.json()["error"]["type"] == "invalid_request_error"


def test_handoff_between_agents_served_together(served):
    url, _, _, front_model = served
    answer = chat(url, "front", "x").chat.completions.create(model="front", messages=[
        {"role": "user", "content": "I want a refund"}])
    assert answer.choices[0].message.content == "Billing handled it."
    assert front_model.calls[-1][0][-1]["content"] == 'TestModel received: "refund order 7"'


def test_handoff_to_an_agent_that_is_not_served_is_refused_at_start_up():
    with pytest.raises(ConfigurationError, match="'billing', which this process does not serve"):
        create_app([Agent("front", model="test", handoffs=[handoff("billing")])])


def finalized_runs(finalized, agent_name, before):
    """How many requests of ``agent_name`` finalized since ``before``: waits for the first,
    then a moment longer, so that a second (a double finalize) would show."""
    deadline = time.monotonic() + 5
    while finalized.count(agent_name) == before and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    return finalized.count(agent_name) - before


@pytest.mark.parametrize("wire", WIRES)
def test_client_disconnect_cancels_the_model_and_finalizes_once(served, wire):
    url, finalized, slow, _ = served
    slow.cancelled.clear()
    before = finalized.count("slow")
    path, body = request(wire, "x", stream=True)
    with httpx.stream("POST", f"{url}/slow/{path}", json=body) as response:
        lines = response.iter_lines()
        assert next(lines).startswith(("data: ", "event: "))  # the first event has arrived; hang up now
    assert slow.cancelled.wait(5)
    assert finalized_runs(finalized, "slow", before) == 1


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("stream", [False, True])
def test_client_hanging_up_before_the_first_chunk_cancels_the_model(served, stream, wire, caplog):
    """The run is cancelled, finalize_connection runs once, the request is logged at INFO with
    status 499 and counted as a client disconnect."""
    url, finalized, *_ = served
    STUCK.cancelled.clear()
    before = finalized.count("stuck")
    disconnects = _disconnects(url)
    path, body = request(wire, "x", stream)
    with caplog.at_level(logging.INFO, logger="robutler_server"):
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/stuck/{path}", json=body, timeout=httpx.Timeout(5, read=0.5))
        assert STUCK.cancelled.wait(5)
        assert finalized_runs(finalized, "stuck", before) == 1
    assert _disconnects(url) == disconnects + 1
    assert any(r.levelno == logging.INFO and "client disconnected" in r.getMessage() for r in caplog.records)


def _disconnects(url):
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith('robutler_client_disconnects_total{agent="stuck"}'):
            return float(line.split()[-1])
    return 0.0
