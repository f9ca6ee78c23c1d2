"""The documentation is tested: every ```python block of every README and doc runs as written,
offline, and the hook reference documents every hookspec.

Markers, an HTML comment on the line just before a ```python fence (invisible once rendered):

- ``<!-- snippet: no-run (REASON) -->``: the block is not run; REASON (required) says why,
  e.g. it calls a paid provider. Use it sparingly: prefer the offline ``test`` model and the
  fake servers of ``robutler_core.testing``.
- ``<!-- snippet: with-server -->``: the block runs while ``robutler serve`` (the demo agent on
  the ``test`` model) listens; the block's ``http://127.0.0.1:8000`` is replaced by the
  server's address (a free port).

Each block runs alone, in its own interpreter, offline: the provider environment variables
point at the fake servers of the test kit (``OPENAI_BASE_URL`` and ``XAI_BASE_URL`` at
``robutler_core.testing.fake_openai.FakeOpenAIServer``, ``ANTHROPIC_BASE_URL`` at
``robutler_skill_anthropic.testing.FakeAnthropicServer``, each with a key), so a block written
for a real provider runs as written and gets the fake's default answer ("fake answer to: ...").
"""

import inspect
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from robutler_core.hookspecs import LIFECYCLE_EVENTS, DiscoverySpecs, LifecycleSpecs

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = sorted(
    {*ROOT.glob("README.md"), *ROOT.glob("packages/*/README.md"), *ROOT.glob("examples/*/README.md"),
     *ROOT.glob("docs/*.md")}
)
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
MARKER = re.compile(r"<!--\s*snippet:\s*(no-run|with-server)\s*(?:\((.*)\))?\s*-->\s*$")
DEMO_URL = "http://127.0.0.1:8000"
PROVIDER_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "XAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL",
                 "XAI_BASE_URL", "OPENAI_ORG_ID")

# What a block prints, by (document, heading above it, its position under that heading from 0):
# fragments that must appear.
EXPECTED_OUTPUT = {
    ("README.md", "# Robutler", 0): ['TestModel received: "hi"'],
    ("README.md", "## An agent in code", 0): ["Tool results: add returned 2"],
    ("packages/robutler-skill-anthropic/README.md", "## Try it offline", 0):
        ["2 + 3 = 5", "{'type': 'tool_result', 'tool_use_id':"],
    ("packages/robutler-skill-anthropic/README.md", "## Use", 0): ["Hello"],
    ("packages/robutler-skill-openai/README.md", "## Try it offline", 0):
        ["Hello from the fallback.", "['openai/gpt-4o']"],
    ("packages/robutler-skill-openai/README.md", "## Use", 0): ["fake answer to: Hello"],
    ("packages/robutler-core/README.md", "## Use", 0): ["'object': 'chat.completion'", "get_weather returned sunny in"],
    ("docs/writing-a-skill.md", "### Configuration, start-up and shutdown", 0):
        ["{'max_symbols': 3}", "option 'max_symbol'", "option 'api_key'"],
    ("docs/writing-a-skill.md", "## 3. Test it offline", 1):
        ['Tool results: get_quote returned {"symbol":"AAPL","price":123.4}'],
}


@dataclass(frozen=True)
class Snippet:
    document: str  # relative to the repository root
    line: int  # of the opening fence, 1-based
    heading: str  # the nearest heading above the block
    position: int  # 0 for the first block under that heading, 1 for the next...
    code: str
    marker: str | None  # "no-run" or "with-server"
    reason: str | None

    @property
    def id(self) -> str:
        return f"{self.document}:{self.line}"


def snippets(path: Path, root: Path = ROOT) -> list[Snippet]:
    text = path.read_text(encoding="utf-8")
    found: list[Snippet] = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].splitlines()
        line = len(before) + 1
        heading = next((b for b in reversed(before) if re.match(r"^#{1,6} ", b)), "")
        marker = MARKER.search(before[-1]) if before else None
        found.append(Snippet(
            document=path.relative_to(root).as_posix(), line=line, heading=heading,
            position=found[-1].position + 1 if found and found[-1].heading == heading else 0, code=match.group(1),
            marker=marker.group(1) if marker else None, reason=(marker.group(2) or "").strip() or None if marker else None,
        ))
    return found


ALL_SNIPPETS = [s for path in DOCUMENTS for s in snippets(path)]


def test_snippets_are_found_in_every_kind_of_document():
    documents = {s.document for s in ALL_SNIPPETS}
    assert {"README.md", "packages/robutler-core/README.md", "docs/writing-a-skill.md"} <= documents
    assert any(d.startswith("examples/") for d in documents)
    for key in EXPECTED_OUTPUT:
        assert any((s.document, s.heading, s.position) == key for s in ALL_SNIPPETS), key


def test_skipped_snippets_say_why_and_are_few():
    skipped = [s for s in ALL_SNIPPETS if s.marker == "no-run"]
    assert all(s.reason for s in skipped), [s.id for s in skipped if not s.reason]
    assert len(skipped) <= len(ALL_SNIPPETS) // 4


@pytest.fixture(scope="module")
def demo_server():
    """``robutler serve`` with no agents file and no key (the demo agent on the test model)."""
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_KEYS}
    process = subprocess.Popen(
        [sys.executable, "-c", "from robutler_server.cli import main; main()", "serve", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
            if found and found.group(1) != "0":
                url = found.group(0)
        assert url, "robutler serve did not say where it listens"
        # Keep reading its log so that a full pipe never blocks it.
        threading.Thread(target=process.stdout.read, daemon=True).start()
        for _ in range(100):
            try:
                httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def fake_providers():
    """The environment that sends the provider skills to local fakes."""
    from robutler_core.testing.fake_openai import FakeOpenAIServer
    from robutler_skill_anthropic.testing import FakeAnthropicServer

    with FakeOpenAIServer() as openai, FakeAnthropicServer() as anthropic:
        yield {
            "OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": openai.base_url,
            "XAI_API_KEY": "test-key", "XAI_BASE_URL": openai.base_url,
            "ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": anthropic.base_url,
        }


@pytest.fixture(scope="module")
def running_snippets(request, tmp_path_factory, fake_providers):
    """{snippet id: its process}: every runnable block started at once (they mostly wait on
    imports, so running them side by side keeps the suite fast)."""
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_KEYS}
    env.update(fake_providers, LITELLM_LOCAL_MODEL_COST_MAP="True")
    processes = {}
    for snippet in ALL_SNIPPETS:
        if snippet.marker == "no-run":
            continue
        code = snippet.code
        if snippet.marker == "with-server":
            code = code.replace(DEMO_URL, request.getfixturevalue("demo_server"))
        processes[snippet.id] = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env, cwd=tmp_path_factory.mktemp("snippet"),
        )
    yield processes
    for process in processes.values():
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("snippet", ALL_SNIPPETS, ids=[s.id for s in ALL_SNIPPETS])
def test_snippet_runs(snippet, running_snippets):
    if snippet.marker == "no-run":
        pytest.skip(f"marked no-run: {snippet.reason}")
    process = running_snippets[snippet.id]
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, f"{snippet.id} failed:\n{stderr}"
    for fragment in EXPECTED_OUTPUT.get((snippet.document, snippet.heading, snippet.position), []):
        assert fragment in stdout, f"{snippet.id} did not print {fragment!r}:\n{stdout}"


def test_the_harness_reads_markers_and_headings(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text(
        "# T\n\n```python\nprint(1)\n```\n\n## S\n<!-- snippet: no-run (needs a key) -->\n```python\nboom\n```\n"
        "<!-- snippet: with-server -->\n```python\nprint(2)\n```\n```bash\nnot python\n```\n"
    )
    found = snippets(doc, root=tmp_path)
    assert [(s.line, s.heading, s.position, s.code, s.marker, s.reason) for s in found] == [
        (3, "# T", 0, "print(1)\n", None, None),
        (9, "## S", 0, "boom\n", "no-run", "needs a key"),
        (13, "## S", 1, "print(2)\n", "with-server", None),
    ]


# The hook reference, docs/hooks.md: one "### name" section per hookspec, showing its signature.

HOOKS_REFERENCE = ROOT / "docs" / "hooks.md"


def hookspecs():
    for specs in (LifecycleSpecs, DiscoverySpecs):
        for name, function in inspect.getmembers(specs, inspect.isfunction):
            if hasattr(function, "robutler_spec"):
                yield name, [p for p in inspect.signature(function).parameters if p != "self"]


def hook_sections():
    parts = re.split(r"^### (\w+)\n", HOOKS_REFERENCE.read_text(), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.mark.parametrize(("name", "arguments"), list(hookspecs()))
def test_every_hookspec_has_a_section_with_its_signature(name, arguments):
    documented = hook_sections()
    assert name in documented, f"docs/hooks.md has no '### {name}' section"
    signature = f"`{name}({', '.join(arguments)})`"
    assert signature in documented[name], f"the '{name}' section does not show {signature}"


def test_the_hook_reference_documents_no_event_that_does_not_exist():
    specs = {name for name, _ in hookspecs()}
    assert set(hook_sections()) == specs
    assert set(LIFECYCLE_EVENTS) <= specs
