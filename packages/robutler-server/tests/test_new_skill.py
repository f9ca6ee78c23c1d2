"""`robutler new-skill NAME` generates a package that installs and passes its own tests."""

import os
import subprocess
import sys
import zipfile

import pytest
from click.testing import CliRunner

from robutler_server.cli import cli


def test_generated_package_installs_and_its_tests_pass(tmp_path):
    result = CliRunner().invoke(cli, ["new-skill", "stock-quotes", "-d", str(tmp_path)])
    assert result.exit_code == 0, result.output
    package = tmp_path / "robutler-skill-stock-quotes"
    assert f"created {package}" in result.output
    pyproject = (package / "pyproject.toml").read_text()
    assert 'stock_quotes = "robutler_skill_stock_quotes"' in pyproject

    # Install it as an installer would: a wheel built by its own build backend (hatchling),
    # unpacked into a separate directory (a pure-Python wheel's install is its unpacking) so
    # that this test environment does not gain a plugin. No pip needed: hatch's and uv's
    # environments have none.
    from hatchling.builders.wheel import WheelBuilder

    wheel = next(WheelBuilder(str(package)).build(directory=str(tmp_path / "dist"), versions=["standard"]))
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    assert (site / "robutler_skill_stock_quotes" / "__init__.py").exists()
    env = {**os.environ, "PYTHONPATH": str(site), "ROBUTLER_LOAD_PLUGINS": "robutler-skill-stock-quotes"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=package, env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "4 passed" in run.stdout


@pytest.mark.parametrize(("name", "message"), [
    ("Stock Quotes", "must be lower-case letters and digits"),
    ("9lives", "must be lower-case letters and digits"),
])
def test_bad_names_are_refused(tmp_path, name, message):
    result = CliRunner().invoke(cli, ["new-skill", name, "-d", str(tmp_path)])
    assert result.exit_code == 1 and message in result.output
    assert list(tmp_path.iterdir()) == []


def test_an_existing_directory_is_not_overwritten(tmp_path):
    (tmp_path / "robutler-skill-weather").mkdir()
    result = CliRunner().invoke(cli, ["new-skill", "weather", "-d", str(tmp_path)])
    assert result.exit_code == 1 and "already exists" in result.output


HOSTILE_DESCRIPTION = 'Say "hi" \\ to C:\\new\\x41\n"""\nend""" \'quoted\' <b>bold</b> *star* [link](x) `tick`\x00\x7f "'


def test_a_description_with_quotes_backslashes_and_newlines_is_escaped_for_each_file(tmp_path):
    import importlib.util
    import tomllib

    result = CliRunner().invoke(cli, ["new-skill", "odd-text", "-d", str(tmp_path), "--description", HOSTILE_DESCRIPTION])
    assert result.exit_code == 0, result.output
    package = tmp_path / "robutler-skill-odd-text"
    # The summary is one line (core metadata's Summary is; hatchling joins lines too).
    one_line = " ".join(HOSTILE_DESCRIPTION.split())
    pyproject = tomllib.loads((package / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["description"] == one_line
    assert pyproject["project"]["entry-points"]["robutler"] == {"odd_text": "robutler_skill_odd_text"}

    module_path = package / "src" / "robutler_skill_odd_text" / "__init__.py"
    compile(module_path.read_text(encoding="utf-8"), str(module_path), "exec")
    spec = importlib.util.spec_from_file_location("robutler_skill_odd_text", module_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert one_line in module.__doc__
    assert module.OddTextSkill.__doc__.startswith(one_line)

    readme = (package / "README.md").read_text(encoding="utf-8")
    first_paragraph = readme.split("\n\n")[1]
    assert "<b>" not in first_paragraph and "\x00" not in readme
    assert "&lt;b&gt;bold&lt;/b&gt;" in first_paragraph and r"\*star\*" in first_paragraph


def test_a_description_that_is_not_text_is_refused(tmp_path):
    result = CliRunner().invoke(cli, ["new-skill", "odd", "-d", str(tmp_path), "--description", "bad \udc80"])
    assert result.exit_code == 1 and "description" in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("text", "markdown"), [
    ("# Not a heading", r"\# Not a heading"),
    ("12. not a list", r"12\. not a list"),
    ("- not a list", r"\- not a list"),
    ("v1.2 of stock-quotes", "v1.2 of stock-quotes"),
    ("a_b & <i>", r"a\_b &amp; &lt;i&gt;"),
])
def test_markdown_escaping_keeps_plain_text_plain(text, markdown):
    from robutler_server.scaffold import md_text

    assert md_text(text) == markdown
