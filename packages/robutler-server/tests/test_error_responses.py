"""Error responses over a real loopback socket: 405 with ``Allow``, a 500 that closes the
connection and says so, a 404 for an unknown path listing what the server offers (and no agent
names), and no error echoing a secret the request carried."""

import httpx
import pytest
from fastapi import HTTPException

from robutler_core import Agent, Skill, hook, http
from robutler_core.errors import AuthenticationError, UpstreamError
from robutler_core.testing import ScriptedModel, text_chunks
from robutler_server import create_app
from robutler_server.testing import serve_in_thread

USER = [{"role": "user", "content": "hello"}]
SECRET = "sk-live-b1e55ed"
CONFIG_KEY = "sk-config-0a1b2c3d4e"  # an LLM skill's configured API key
ENV_KEY = "sk-env-9f8e7d6c5b"  # the value of $ROBUTLER_TEST_API_KEY


class EchoingUpstream(ScriptedModel):
    """A provider whose error messages echo the key and headers it was sent, mid-stream too."""

    async def chat_completion_stream(self, messages, tools=None, **params):
        for chunk in text_chunks("partial", pieces=1):
            yield chunk
        raise UpstreamError(f"stream broke; key {CONFIG_KEY}")


class Crash(Skill):
    @hook("on_connection")
    def crash(self, context):
        raise RuntimeError(f"bug while reading {context.headers.get('authorization')} and {SECRET}")


class Status(Skill):
    @http("/status")
    def status(self) -> dict:
        """Agent status."""
        return {"ok": True}

    @http("/notes/{note_id}")
    def note(self, note_id: str) -> dict:
        """One note."""
        raise HTTPException(404, f"no note {note_id}")


@pytest.fixture(scope="module")
def base_url():
    mp = pytest.MonkeyPatch()
    mp.setenv("ROBUTLER_TEST_API_KEY", ENV_KEY)
    agents = [
        Agent("zebra-plain", model="test"),
        Agent("zebra-crash", model="test", skills={"crash": Crash()}),
        Agent("zebra-http", model="test", skills={"status": Status()}),
        Agent("zebra-echo", model=EchoingUpstream([
            AuthenticationError(f"Incorrect API key provided: {CONFIG_KEY}"),
            UpstreamError(f"upstream failed; request headers: authorization: Bearer tok-0123456789, x-api-key: {ENV_KEY}"),
            None,
        ], config={"api_key": CONFIG_KEY})),
    ]
    with serve_in_thread(create_app(agents)) as url:
        yield url
    mp.undo()


@pytest.mark.parametrize("method, path, allow", [
    ("GET", "/v1/chat/completions", "POST"),
    ("PUT", "/zebra-plain/chat/completions", "POST"),
    ("DELETE", "/v1/models", "GET"),
])
def test_405_says_which_methods_are_allowed(base_url, method, path, allow):
    response = httpx.request(method, base_url + path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_500_closes_the_connection_and_says_so(base_url, caplog):
    with httpx.Client(base_url=base_url) as client:
        crashed = client.post("/zebra-crash/chat/completions", json={"messages": USER})
        assert crashed.status_code == 500
        assert crashed.headers["connection"] == "close"
        assert crashed.json()["error"]["code"] == "internal_error"
        # the same client goes on working: it did not reuse the connection the server closed
        assert client.post("/zebra-plain/chat/completions", json={"messages": USER}).status_code == 200


def test_404_for_an_unknown_path_lists_what_the_server_offers(base_url):
    response = httpx.get(f"{base_url}/v1/embeddings")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["type"] == "not_found_error" and error["code"] == "unknown_url"
    message = error["message"]
    assert message.startswith("Invalid URL (GET /v1/embeddings): this server offers: ")
    for route in ("POST /v1/chat/completions", "GET /v1/models", "POST /{agent}/chat/completions",
                  "GET /{agent}", "GET /health", "the agents' own routes under /{agent}/", "GET /openapi.json"):
        assert route in message
    assert "GET /v1/models/{model_id}," in message  # path templates as the OpenAPI document writes them
    assert "zebra" not in message


def test_http_handler_routes_keep_their_own_errors(base_url):
    assert httpx.get(f"{base_url}/zebra-http/status").json() == {"ok": True}
    response = httpx.post(f"{base_url}/zebra-http/status")
    assert response.status_code == 405 and response.headers["allow"] == "GET"
    response = httpx.get(f"{base_url}/zebra-http/notes/n1")
    assert response.status_code == 404
    assert response.json()["error"] == {"message": "no note n1", "type": "not_found_error", "param": None, "code": None}


@pytest.mark.parametrize("body", [
    {"messages": [{"role": "user", "content": 5}], "api_key": SECRET},
    {"messages": [{"role": SECRET, "content": "x"}]},
    {"messages": [{"role": "user", "content": [{"type": SECRET}]}]},
    {"messages": USER, "temperature": SECRET},
    {"messages": USER, "metadata": {"api_key": 1, "token": SECRET}},
])
def test_validation_errors_never_echo_secrets(base_url, body):
    response = httpx.post(f"{base_url}/zebra-plain/chat/completions", json=body,
                          headers={"authorization": f"Bearer {SECRET}", "x-api-key": SECRET})
    assert response.status_code == 400
    assert SECRET not in response.text and SECRET not in str(response.headers)


def test_unexpected_errors_never_echo_secrets(base_url):
    response = httpx.post(f"{base_url}/zebra-crash/chat/completions", json={"messages": USER},
                          headers={"authorization": f"Bearer {SECRET}"})
    assert response.status_code == 500
    assert SECRET not in response.text and SECRET not in str(response.headers)
    assert response.json()["error"]["message"] == "internal server error (RuntimeError); see the server log"


def test_provider_errors_that_echo_keys_or_headers_are_redacted(base_url):
    url = f"{base_url}/zebra-echo/chat/completions"
    auth = httpx.post(url, json={"messages": USER})
    assert auth.status_code == 401
    assert auth.json()["error"]["message"] == "Incorrect API key provided: [redacted]"
    upstream = httpx.post(url, json={"messages": USER})
    assert upstream.status_code == 502
    assert upstream.json()["error"]["message"] == (
        "upstream failed; request headers: authorization: Bearer [redacted], x-api-key: [redacted]")
    with httpx.stream("POST", url, json={"messages": USER, "stream": True}) as streamed:
        events = [line for line in streamed.iter_lines() if line]
    assert events[-1] == 'data: {"error":{"message":"stream broke; key [redacted]","type":"upstream_error","param":null,"code":null}}'
