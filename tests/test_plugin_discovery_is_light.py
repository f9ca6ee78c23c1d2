"""Finding the installed skills imports the skill packages, not their SDKs: `robutler skills`,
agents files and agents on other providers do not pay for SDKs they do not call."""

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
