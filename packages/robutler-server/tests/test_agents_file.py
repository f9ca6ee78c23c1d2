"""Agents files: every agent option, and errors that name the file, agent and field."""

import pytest

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
    agents = load_agents(write(tmp_path, "agents:\n  - name: front\n    model: test\n    handoffs: [ghost]\n"))
    with pytest.raises(ConfigurationError, match="'ghost', which this process does not serve; agents: front"):
        create_app(agents)


@pytest.mark.parametrize(("text", "message"), [
    ("agents:\n  - name: a\n    model: test\n    fallbacks: nope\n", "agents.0.fallbacks: Input should be a valid list"),
    ("agents:\n  - name: a\n    model: test\n    colour: blue\n", "agents.0.colour: Extra inputs are not permitted"),
    ("agents:\n  - name: a\n    model: test\n    fallbacks: [nosuch/model]\n", "agent 'a': no installed LLM skill serves models with prefix 'nosuch/'"),
    ("agents: [\n", "is not valid YAML"),
])
def test_errors_name_the_file_and_the_field(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigurationError) as error:
        load_agents(path)
    assert str(path) in error.value.message and message in error.value.message


def test_the_readme_example_loads_and_serves(tmp_path):
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    example = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    agents = load_agents(write(tmp_path, example))
    assert [a.name for a in agents] == ["weather", "billing"]
    create_app(agents)
