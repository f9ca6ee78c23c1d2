"""The hook reference in docs/hooks.md documents every hookspec with its arguments."""

import inspect
import re
from pathlib import Path

import pytest

from robutler_core.hookspecs import LIFECYCLE_EVENTS, DiscoverySpecs, LifecycleSpecs

REFERENCE = Path(__file__).resolve().parents[3] / "docs" / "hooks.md"


def hookspecs():
    for specs in (LifecycleSpecs, DiscoverySpecs):
        for name, function in inspect.getmembers(specs, inspect.isfunction):
            if hasattr(function, "robutler_spec"):
                yield name, [p for p in inspect.signature(function).parameters if p != "self"]


def sections():
    text = REFERENCE.read_text()
    parts = re.split(r"^### (\w+)\n", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.mark.parametrize(("name", "arguments"), list(hookspecs()))
def test_every_hookspec_has_a_section_with_its_signature(name, arguments):
    documented = sections()
    assert name in documented, f"docs/hooks.md has no '### {name}' section"
    signature = f"`{name}({', '.join(arguments)})`"
    assert signature in documented[name], f"the '{name}' section does not show {signature}"


def test_reference_documents_no_event_that_does_not_exist():
    specs = {name for name, _ in hookspecs()}
    assert set(sections()) == specs
    assert set(LIFECYCLE_EVENTS) <= specs
