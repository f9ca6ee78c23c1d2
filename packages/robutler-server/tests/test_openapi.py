"""The OpenAPI document tells the truth: schemathesis generates requests from it (valid and
invalid) and checks every answer's status, content type and body against it."""

import itertools

import pluggy

import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from robutler_core import Agent, Skill, http, tool
from robutler_server import create_app

CHAT_ROUTES = ("/v1/chat/completions", "/{agent_name}/chat/completions")
RESPONSES_ROUTES = ("/v1/responses", "/{agent_name}/responses")
STREAM = itertools.cycle([True, False])
ERRORS = ("400", "401", "402", "403", "404", "413", "429", "499", "500", "502", "503", "504")


class Calculator(Skill):
    @tool
    def add(self, a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @http("/sum")
    def sum_route(self, a: int, b: int) -> dict:
        """Add two integers over HTTP."""
        return {"sum": a + b}


# unsupported_params="ignore": most generated requests set some parameter the test model does
# not honour; ignoring them lets those requests reach the model and check the 200 answers too.
# plugins: none of the installed packages' routes: this checks the server's own document (the
# packages that add routes test theirs).
app = create_app([Agent("helper", "Be helpful.", model="test", skills={"calc": Calculator()},
                        unsupported_params="ignore")], plugins=pluggy.PluginManager("robutler"))
# The coverage phase sends ~900 boundary-value bodies per chat route (~20 s): too slow for the
# suite; the fuzzing phase below (valid and invalid bodies) keeps the run to a few seconds.
config = schemathesis.Config.from_dict({"phases": {"coverage": {"enabled": False}}})
schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    database=None,
    derandomize=True,  # the same examples on every run: a failure here is never flaky
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_responses_conform_to_the_document(case):
    if "agent_name" in (case.path_parameters or {}):
        case.path_parameters["agent_name"] = "helper"  # a served agent, so requests get past the 404
    if case.path in CHAT_ROUTES + RESPONSES_ROUTES and isinstance(case.body, dict):
        if case.path.startswith("/v1/"):
            case.body["model"] = "helper"
        if case.meta is not None and case.meta.generation.mode == GenerationMode.POSITIVE:
            case.body["stream"] = next(STREAM)  # every other valid request streams (SSE)
            if case.path in RESPONSES_ROUTES:
                answerable(case.body)
    case.call_and_validate(checks=[
        not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
    ])


def answerable(body):
    """A generated Responses body made one the agent answers (200), in place: the parameters the
    server refuses (documented 400s) and a previous_response_id it cannot know are left out,
    the input is a valid one unless it is a string, and only function tools stay."""
    for name in ("background", "conversation", "prompt", "include", "truncation", "max_tool_calls",
                 "previous_response_id", "tool_choice", "text"):
        body.pop(name, None)
    if not isinstance(body.get("input"), str):
        body["input"] = [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]
    if isinstance(body.get("tools"), list):
        body["tools"] = [t for t in body["tools"] if isinstance(t, dict) and t.get("type") == "function"]


def test_chat_routes_document_every_error_and_both_answers():
    document = app.openapi()
    for path in CHAT_ROUTES:
        responses = document["paths"][path]["post"]["responses"]
        assert sorted(responses) == sorted(("200", *ERRORS))
        assert set(responses["200"]["content"]) == {"application/json", "text/event-stream"}
        assert responses["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ChatCompletion"}
        for status in ERRORS:
            if status != "499":  # the client has gone: no body
                assert responses[status]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorResponse"}
    error = document["components"]["schemas"]["ErrorObject"]
    assert sorted(error["required"]) == ["code", "message", "param", "type"]


def test_responses_routes_document_every_error_and_both_answers():
    document = app.openapi()
    for path in RESPONSES_ROUTES:
        responses = document["paths"][path]["post"]["responses"]
        assert sorted(responses) == sorted(("200", *ERRORS))
        assert responses["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Response"}
        assert "text/event-stream" in responses["200"]["content"]
    stored = document["paths"]["/v1/responses/{response_id}"]
    assert stored["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Response"}
    assert stored["delete"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ResponseDeleted"}
    assert "404" in stored["get"]["responses"]


def test_no_operation_documents_a_422():
    document = app.openapi()
    assert all("422" not in operation["responses"] for path in document["paths"].values() for operation in path.values())
    assert "HTTPValidationError" not in document["components"]["schemas"]
