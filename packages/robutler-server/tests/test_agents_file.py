"""Agents files: every agent option, and errors that name the file, agent and field."""

import pytest

from robutler_core import Agent, handoff
from robutler_core.errors import ConfigurationError
from robutler_server import create_app
from robutler_server.config import load_agents


def write(tmp_path, text):
    path = tmp_path / "agents.yaml"
    path.write_text(text)
    return path


def test_agents_with_fallbacks_scopes_and_handoffs(tmp_path):
    path = write(tmp_path, """
agents:
  - name: front
    model: test/front
    fallbacks: [test/backup]
    handoffs: [billing, test/poet]
    skills:
      weather: {default_unit: celsius}
  - name: billing
    model: test
    scopes: [owner]
""")
    front, billing = load_agents(path)
    assert front.info()["fallbacks"] == ["test/backup"]
    assert [h["name"] for h in front.info()["handoffs"]] == ["transfer_to_billing", "switch_to_poet"]
    assert billing.scope == frozenset({"owner"})
    create_app([front, billing])  # the handoff to billing resolves


def test_a_handoff_to_an_agent_not_in_the_file_fails_at_start_up(tmp_path):
    path = write(tmp_path, "agents:\n  - name: front\n    model: test\n    handoffs: [ghost]\n")
    with pytest.raises(ConfigurationError) as error:
        load_agents(path)
    assert error.value.message == (
        f"{path}: agent 'front': handoff 'transfer_to_ghost' names the agent 'ghost', which this file does not declare")
    with pytest.raises(ConfigurationError, match="'ghost', which this process does not serve; agents: front"):
        create_app([Agent("front", model="test", handoffs=[handoff("ghost")])])


@pytest.mark.parametrize(("text", "message"), [
    ("agents:\n  - name: a\n    model: test\n    fallbacks: nope\n", "agent 'a': fallbacks: Input should be a valid list"),
    ("agents:\n  - name: a\n    model: test\n    colour: blue\n", "agent 'a': colour: Extra inputs are not permitted"),
    ("agents:\n  - name: a\n    model: test\n    fallbacks: [nosuch/model]\n", "agent 'a': no installed LLM skill serves models with prefix 'nosuch/'"),
    ("agents: [\n", "is not valid YAML"),
])
def test_errors_name_the_file_and_the_field(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigurationError) as error:
        load_agents(path)
    assert str(path) in error.value.message and message in error.value.message


def test_the_readme_example_loads_and_serves(tmp_path, monkeypatch):
    from pathlib import Path

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")  # the example's billing agent and fallback need keys
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # checking the litellm agent imports LiteLLM

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    example = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    agents = load_agents(write(tmp_path, example))
    assert [a.name for a in agents] == ["weather", "billing"]
    create_app(agents)


async def test_unsupported_params_key_decides_between_400_and_dropping(tmp_path):
    import httpx

    strict, lenient = load_agents(write(tmp_path, """
agents:
  - name: strict
    model: test
  - name: lenient
    model: test
    unsupported_params: ignore
"""))
    assert (strict.unsupported_params, lenient.unsupported_params) == ("error", "ignore")
    body = {"messages": [{"role": "user", "content": "hi"}], "logprobs": True}
    transport = httpx.ASGITransport(app=create_app([strict, lenient]))
    async with httpx.AsyncClient(transport=transport, base_url="http://server") as client:
        refused = await client.post("/strict/chat/completions", json=body)
        answered = await client.post("/lenient/chat/completions", json=body)
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "logprobs" and refused.json()["error"]["code"] == "unsupported_parameter"
    assert answered.status_code == 200 and answered.json()["choices"][0]["message"]["content"] == 'TestModel received: "hi"'


def test_unsupported_params_takes_only_error_or_ignore(tmp_path):
    path = write(tmp_path, "agents:\n  - name: a\n    model: test\n    unsupported_params: drop\n")
    with pytest.raises(ConfigurationError, match="agent 'a': unsupported_params: Input should be 'error' or 'ignore'"):
        load_agents(path)
