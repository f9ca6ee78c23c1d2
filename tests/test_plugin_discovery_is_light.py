"""Finding the installed skills imports the skill packages, not their SDKs: `robutler skills`,
agents files and agents on other providers do not pay for SDKs they do not call."""

import os
import subprocess
import sys


def test_discovery_and_agent_construction_import_no_provider_sdk():
    code = (
        "import sys\n"
        "from robutler_core import Agent\n"
        "from robutler_core.plugins import installed_skills\n"
        "names = sorted(installed_skills()._skills)\n"
        "Agent('a', model='openai/gpt-4o-mini'); Agent('b', model='anthropic/claude-sonnet-4-6')\n"
        # asyncpg (about 50 ms) is imported by the memory package's modules; the SDKs, Milvus's
        # client, the embedded PostgreSQL and the embedding model (seconds each) are not; nor is
        # the MCP SDK, nor the platform skills' HTTP client and JWT library.
        "heavy = ('openai', 'anthropic', 'litellm', 'fastapi', 'pymilvus', 'pgserver', 'torch', 'sentence_transformers', 'mcp',\n"
        "         'httpx', 'jwt')\n"
        "print(names, [m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout
    assert out.strip() == (
        "['anthropic', 'auth', 'discovery', 'litellm', 'local', 'long_term_memory', 'mcp', 'nli', 'openai', "
        "'payments', 'short_term_memory', 'test', 'vector_memory', 'weather', 'xai'] []"
    )


def test_the_app_of_robutler_serve_imports_no_sdk_of_the_installed_plugins(tmp_path):
    """Every installed plugin's register_routes runs (robutler-skill-mcp's /{agent}/mcp among
    them) without importing its SDK: the MCP SDK waits for the first MCP request, the platform's
    HTTP client and JWT library for their first use (the start-up figures of
    benchmarks/README.md depend on it)."""
    agents = tmp_path / "agents.yaml"
    agents.write_text("agents:\n  - name: alpha\n    model: test\n  - name: beta\n    model: test\n")
    code = (
        "import sys\n"
        "from robutler_server import create_app\n"
        "from robutler_server.config import load_agents_file\n"
        f"loaded = load_agents_file({str(agents)!r})\n"
        "create_app(loaded.agents, server=loaded.server, limits=loaded.limits)\n"
        "heavy = ('openai', 'anthropic', 'litellm', 'pymilvus', 'pgserver', 'torch', 'sentence_transformers', 'mcp',\n"
        "         'mcp_types', 'httpx', 'httpx2', 'jwt')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "ROBUTLER_LOAD_PLUGINS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
