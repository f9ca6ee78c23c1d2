"""``robutler serve`` fails before serving, with one line per problem (issue 14, "start-up fails
early and clearly"): every agent of the file is checked, not only the first bad one."""

import os
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner

from robutler_core.plugins import SkillRegistry, get_plugin_manager
from robutler_server.cli import cli
from robutler_server.config import AgentsFileError, load_agents

PLUGIN = '''
from robutler_core import Skill, hookimpl


class ExplodingSkill(Skill):
    def __init__(self, config=None):
        super().__init__(config)
        raise RuntimeError("cannot reach the weather station")


@hookimpl
def register_skills(register):
    register(ExplodingSkill, name="exploding")
'''

AGENTS = """
agents:
  - name: good
    model: test
  - name: boom
    model: test
    skills:
      exploding: {}
  - name: typed
    model: openai/gpt-4o-mini
    skills:
      openai: {api_key: sk-test, timeout: soon}
  - name: keyless
    model: openai/gpt-4o-mini
  - name: nowhere
    model: nosuch/model
  - name: misspelt
    model: test
    max_turn: 3
  - name: ghostly
    model: test
    skills:
      nonexistent: {}
  - name: lost
    model: test
    handoffs: [ghost, boom]   # boom is declared (if broken): only ghost is a problem
"""


@pytest.fixture
def plugin_path(tmp_path):
    """A real installed plugin (a distribution on sys.path with an entry point), whose skill's
    ``__init__`` raises."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "exploding_skill.py").write_text(PLUGIN)
    info = site / "robutler_skill_exploding-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: robutler-skill-exploding\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[robutler]\nexploding = exploding_skill\n")
    return site


def test_serve_lists_every_problem_of_every_agent_and_exits_1(tmp_path, plugin_path):
    agents_file = tmp_path / "agents.yaml"
    agents_file.write_text(AGENTS)
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "ROBUTLER_LOAD_PLUGINS")}
    env["PYTHONPATH"] = os.pathsep.join([str(plugin_path), env.get("PYTHONPATH", "")])
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    result = subprocess.run(
        [sys.executable, "-c", "from robutler_server.cli import main; main()", "serve", str(agents_file), "--port", "0"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert result.returncode == 1, result.stderr
    problems = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert "Traceback" not in result.stderr
    assert len(problems) == 7, result.stderr
    boom, typed, keyless, nowhere, misspelt, ghostly, lost = problems
    prefix = f"Error: {agents_file}: agent"
    assert boom == f"{prefix} 'boom': skill 'exploding': RuntimeError: cannot reach the weather station"
    assert typed.startswith(f"{prefix} 'typed': skill 'openai': ") and "option 'timeout'" in typed and "'soon'" in typed
    assert keyless.startswith(f"{prefix} 'keyless': ") and "OPENAI_API_KEY" in keyless
    assert nowhere.startswith(f"{prefix} 'nowhere': no installed LLM skill serves models with prefix 'nosuch/'")
    assert misspelt == f"{prefix} 'misspelt': max_turn: Extra inputs are not permitted"
    assert ghostly.startswith(f"{prefix} 'ghostly': unknown skill 'nonexistent'; installed skills: ")
    assert lost == f"{prefix} 'lost': handoff 'transfer_to_ghost' names the agent 'ghost', which this file does not declare"


def test_a_skill_that_raises_in_init_is_one_problem_line(tmp_path):
    from robutler_core import Skill

    class Exploding(Skill):
        def __init__(self, config=None):
            raise ValueError("bad station id")

    registry = SkillRegistry.from_plugin_manager(get_plugin_manager(load_entry_points=False))
    registry.add(Exploding, name="exploding")
    path = tmp_path / "agents.yaml"
    path.write_text("agents:\n  - name: a\n    model: test\n    skills: {exploding: {}}\n  - name: b\n    model: test\n")
    with pytest.raises(AgentsFileError) as error:
        load_agents(path, registry)
    assert error.value.problems == [f"{path}: agent 'a': skill 'exploding': ValueError: bad station id"]


def test_a_port_in_use_is_one_line_and_exit_1(tmp_path):
    path = tmp_path / "agents.yaml"
    path.write_text("agents:\n  - name: a\n    model: test\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["serve", str(path), "--port", str(port)])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == f"Error: cannot listen on 127.0.0.1:{port}: Address already in use"


@pytest.mark.parametrize(("host", "message"), [
    ("no-such-host.invalid", "Error: cannot serve on host 'no-such-host.invalid': "),
    ("192.0.2.1", "Error: cannot listen on 192.0.2.1:8000: "),  # TEST-NET-1: never a local address
])
def test_a_bad_host_is_one_line_and_exit_1(tmp_path, host, message):
    path = tmp_path / "agents.yaml"
    path.write_text("agents:\n  - name: a\n    model: test\n")
    result = CliRunner().invoke(cli, ["serve", str(path), "--host", host])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith(message)
    assert "Traceback" not in result.output
