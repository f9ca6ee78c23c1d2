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

    names = {r.split(">")[0].split("=")[0].split("<")[0].strip() for r in requires("robutler-core")}
    assert names == {"pluggy", "pydantic", "docstring-parser"}
