"""The offline examples of the READMEs and docs run as written and print what they say."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def python_block_after(readme: Path, heading: str) -> str:
    text = readme.read_text()
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.parametrize(("readme", "heading", "expected"), [
    ("packages/robutler-skill-anthropic/README.md", "## Try it offline",
     ["2 + 3 = 5", "{'type': 'tool_result', 'tool_use_id':"]),
    ("packages/robutler-skill-openai/README.md", "## Try it offline",
     ["Hello from the fallback.", "['openai/gpt-4o']"]),
    ("packages/robutler-core/README.md", "## Use", ["'object': 'chat.completion'", "get_weather returned sunny in"]),
    ("docs/writing-a-skill.md", "## 2. Write the skill", []),  # the example skill class is valid
])
def test_readme_example_runs(readme, heading, expected):
    code = python_block_after(ROOT / readme, heading)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for fragment in expected:
        assert fragment in result.stdout
