"""Bad input on the chat-completions routes is a 400 naming the field, never a 500 or 502;
request parameters reach the agent (``model_params``) rather than being dropped."""

import httpx
import pytest

from robutler_core import Agent, Skill, hook
from robutler_server import create_app
from robutler_server.schemas import ChatCompletionRequest

USER = [{"role": "user", "content": "hello"}]


class RecordParams(Skill):
    """Keeps the model parameters each request's Context carries."""

    def __init__(self, seen):
        super().__init__()
        self.seen = seen

    @hook("on_connection")
    def record(self, context):
        self.seen.append(dict(context.params))


@pytest.fixture
def seen():
    return []


@pytest.fixture
async def client(seen):
    app = create_app([
        Agent("plain", "Be helpful.", model="test"),
        Agent("recorder", model="test", skills={"rec": RecordParams(seen)}, unsupported_params="ignore"),
    ])
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


def tool(parameters):
    return [{"type": "function", "function": {"name": "f", "parameters": parameters}}]


@pytest.mark.parametrize("body, param, fragment", [
    # content parts: strict types per OpenAI's part types, allowed per role
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": 1}]}]},
     "messages.0.content.1.text", "valid string"),
    ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages.0.content.0.text", "Field required"),
    ({"messages": [{"role": "user", "content": [{"text": "x"}]}]}, "messages.0.content.0.type", "Field required"),
    ({"messages": [{"role": "user", "content": [{"type": "video", "video": "x"}]}]}, "messages.0.content.0.type",
     "Input should be 'text', 'image_url', 'input_audio', 'file'"),
    ({"messages": [{"role": "user", "content": [{"type": "refusal", "refusal": "no"}]}]},
     "messages.0.content.0.type", "Input should be"),
    ({"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "http://x/i.png"}}]}]},
     "messages.0.content.0.type", "Input should be 'text'"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": 5}}]}]},
     "messages.0.content.0.image_url.url", "valid string"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AA", "format": "ogg"}}]}]},
     "messages.0.content.0.input_audio.format", "'wav' or 'mp3'"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content", "a string or a list of content parts"),
    ({"messages": [{"role": "user"}]}, "messages.0.content", "Field required"),
    ({"messages": [{"content": "x"}]}, "messages.0.role", "Field required"),
    ({"messages": [{"role": "assistant", "content": [{"type": "refusal", "refusal": 3}]}]},
     "messages.0.content.0.refusal", "valid string"),
    # tool parameters must be a JSON Schema
    ({"messages": USER, "tools": tool({"type": "nonsense"})}, "tools.0.function.parameters", "not a valid JSON Schema"),
    ({"messages": USER, "tools": tool({"type": "object", "properties": {"a": {"minLength": "x"}}})},
     "tools.0.function.parameters", "not a valid JSON Schema"),
    ({"messages": USER, "tools": tool("not a schema")}, "tools.0.function.parameters", "valid dictionary"),
    ({"messages": USER, "functions": [{"name": "f", "parameters": {"required": "a"}}]},
     "functions.0.parameters", "not a valid JSON Schema"),
    ({"messages": USER, "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": 5}}}},
     "response_format.json_schema.schema", "not a valid JSON Schema"),
    # known parameters are type-checked (OpenAI's API reference)
    ({"messages": USER, "metadata": {"k": 1}}, "metadata.k", "valid string"),
    ({"messages": USER, "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata", "at most 16"),
    ({"messages": USER, "store": "yes"}, "store", "valid boolean"),
    ({"messages": USER, "logprobs": 1}, "logprobs", "valid boolean"),
    ({"messages": USER, "top_logprobs": 21}, "top_logprobs", "less than or equal to 20"),
    ({"messages": USER, "reasoning_effort": 3}, "reasoning_effort", "valid string"),
    ({"messages": USER, "service_tier": ["auto"]}, "service_tier", "valid string"),
    ({"messages": USER, "modalities": ["video"]}, "modalities.0", "'text' or 'audio'"),
    ({"messages": USER, "logit_bias": {"50256": -101}}, "logit_bias.50256", "greater than or equal to -100"),
    ({"messages": USER, "function_call": "sometimes"}, "function_call", "Input should be"),
    ({"messages": USER, "response_format": {"type": "yaml"}}, "response_format.type", "Input should be"),
])
async def test_bad_input_is_400_naming_the_field(client, body, param, fragment):
    response = await client.post("/plain/chat/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert fragment in error["message"]


@pytest.mark.parametrize("raw, param", [
    (rb'{"messages": [{"role": "user", "content": "\ud800"}]}', "messages.0.content"),
    (rb'{"messages": [{"role": "user", "content": "ok \udfff"}], "stream": true}', "messages.0.content"),
    (rb'{"messages": [{"role": "user", "content": [{"type": "text", "text": "x\ud83d"}]}]}', "messages.0.content.0.text"),
    (rb'{"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f", "description": "\udc00"}}]}',
     "tools.0.function.description"),
    (rb'{"messages": [{"role": "user", "content": "x"}], "vendor_option": {"\ud800": 1}}', "vendor_option"),
    # not escaped: the UTF-8-like bytes of a surrogate (json.loads decodes them), and UTF-16 bodies
    ('{"messages": [{"role": "user", "content": "\ud800"}]}'.encode("utf-8", "surrogatepass"), "messages.0.content"),
    ('{"messages": [{"role": "user", "content": "\\ud800"}]}'.encode("utf-16"), "messages.0.content"),
    ('{"messages": [{"role": "user", "content": "\\udc00"}]}'.encode("utf-16-le"), "messages.0.content"),
])
async def test_lone_surrogates_are_400(client, raw, param):
    response = await client.post("/plain/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and "lone UTF-16 surrogate" in error["message"]


async def test_a_schema_too_deep_to_check_is_400_not_500(client):
    deep = '{"type": "object", "properties": {"a": ' * 300 + '{"type": "string"}' + "}}" * 300
    raw = '{"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f", "parameters": %s}}]}'
    response = await client.post("/plain/chat/completions", content=raw % deep, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "tools.0.function.parameters"
    assert "nested too deeply" in response.json()["error"]["message"]


async def test_a_surrogate_pair_is_one_valid_character(client):
    raw = rb'{"messages": [{"role": "user", "content": "\ud83d\ude00"}]}'
    response = await client.post("/plain/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == 'TestModel received: "\U0001f600"'


async def test_every_content_part_type_is_accepted(client):
    content = [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA==", "detail": "low"}},
        {"type": "input_audio", "input_audio": {"data": "AA==", "format": "wav"}},
        {"type": "file", "file": {"file_data": "AA==", "filename": "a.pdf"}},
    ]
    messages = [
        {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": content},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
        {"role": "user", "content": "again"},
    ]
    response = await client.post("/plain/chat/completions", json={"messages": messages})
    assert response.status_code == 200, response.text


def test_model_params_carries_every_parameter_set():
    request = ChatCompletionRequest.model_validate({
        "messages": USER, "model": "a", "stream": True, "tools": tool({"type": "object"}),
        "temperature": 0.5, "metadata": {"k": "v"}, "store": True, "logprobs": True, "top_logprobs": 2,
        "reasoning_effort": "low", "service_tier": "flex", "modalities": ["text"],
        "functions": [{"name": "f"}], "function_call": {"name": "f"},
        "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}},
        "stream_options": {"include_usage": True}, "vendor_option": {"deep": [1, None]}, "unset_option": None,
    })
    assert request.model_params() == {
        "temperature": 0.5, "metadata": {"k": "v"}, "store": True, "logprobs": True, "top_logprobs": 2,
        "reasoning_effort": "low", "service_tier": "flex", "modalities": ["text"],
        "functions": [{"name": "f"}], "function_call": {"name": "f"},
        "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}},
        "stream_options": {"include_usage": True}, "vendor_option": {"deep": [1, None]},
    }


async def test_parameters_reach_the_agent(client, seen):
    body = {"messages": USER, "metadata": {"k": "v"}, "store": False, "reasoning_effort": "high", "vendor_option": 1}
    response = await client.post("/recorder/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert seen[0] == {"metadata": {"k": "v"}, "store": False, "reasoning_effort": "high", "vendor_option": 1}


@pytest.mark.parametrize("name, value", [
    ("vendor_option", 1),  # unknown
    ("metadata", {"k": "v"}),  # known, not honoured by the test model
    ("reasoning_effort", "low"),
    ("functions", [{"name": "f"}]),  # legacy: never honoured
])
@pytest.mark.parametrize("stream", [False, True])
async def test_a_parameter_the_model_cannot_honour_is_400_naming_it(client, name, value, stream):
    response = await client.post("/plain/chat/completions", json={"messages": USER, name: value, "stream": stream})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == name and error["code"] == "unsupported_parameter"


_USER = b'"messages": [{"role": "user", "content": "hi"}]'


@pytest.mark.parametrize("body", [
    b"{%s}" % _USER,
    b'  {%s}\n' % _USER,
    b'{%s, "max_tokens": 2, "temperature": 1, "seed": -5, "stop": ["a"], "logit_bias": {"1": 5}}' % _USER,
    b'{%s, "max_tokens": 1.0}' % _USER, b'{%s, "max_tokens": 1e2}' % _USER, b'{%s, "stream": 1}' % _USER,
    b'{%s, "seed": true}' % _USER, b'{%s, "max_tokens": 100000000000000000000000}' % _USER,
    b'{%s, "x": NaN, "y": Infinity, "z": 1e400, "w": -0.0, "v": 0.1, "u": 1E5}' % _USER,
    b'{%s, "x": 123456789012345678901234567890, "y": [1, 2.5, "s", null, true]}' % _USER,
    b'{%s, "x": {"a": 1, "b": 2, "a": 3}}' % _USER,
    b'{"messages": [{"role": "user", "content": "a"}], "messages": [{"role": "user", "content": "b"}]}',
    b'{"messages": [{"role": "user", "content": "a\nb"}]}', b'{"messages": [{"role": "user", "content": "a\x01"}]}',
    b'{"messages": [{"role": "user", "content": "a\xffb"}]}', b'{"messages": [{"role": "user", "content": "\xc3\xa9"}]}',
    b"\xef\xbb\xbf{%s}" % _USER, b"{%s} x" % _USER, b'{"messages": [{"role": "user", "content": "a"}]',
    b"[]", b"1", b'"x"', b"null", b"{}",
    b'{"messages": [{"role": "user", "content": [{"type": "text", "text": "x"},'
    b' {"type": "image_url", "image_url": {"url": "http://x"}}]}]}',
    b'{"messages": [{"role": "user", "content": 5}]}',
    b'{"messages": [{"role": "assistant", "content": null, "tool_calls": [{"id": "a", "function": {"name": "f",'
    b' "arguments": "{}"}}]}, {"role": "tool", "tool_call_id": "a", "content": "r"}]}',
    b'{%s, "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}' % _USER,
    b'{%s, "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 5}}}]}' % _USER,
    b'{%s, "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {}}}}' % _USER,
    b'{%s, "tool_choice": {"type": "function", "function": {"name": "f"}}, "metadata": {"k": "v"}}' % _USER,
    b'{%s, "tool_choice": {"anything": 1}, "n": 1, "model": "m", "stream": true,'
    b' "stream_options": {"include_usage": true}}' % _USER,
])
def test_a_body_is_read_as_json_loads_and_model_validate_read_it(body):
    """parse_chat_request validates most bodies straight from their bytes: it accepts the
    same bodies, with the same values, and answers the same errors, as json.loads followed
    by model_validate (FastAPI's reading)."""
    import json

    from fastapi.exceptions import RequestValidationError
    from pydantic import ValidationError

    from robutler_server.schemas import parse_chat_request

    def seen(request):
        return repr(request), request.model_fields_set, repr(request.__pydantic_extra__)

    try:
        expected = seen(ChatCompletionRequest.model_validate(json.loads(body), from_attributes=True))
    except (ValueError, ValidationError):  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        expected = None
    try:
        got = seen(parse_chat_request(body, "application/json"))
    except RequestValidationError as exc:
        assert expected is None, exc.errors()
        assert exc.errors()[0]["loc"][0] == "body"
    else:
        assert got == expected
