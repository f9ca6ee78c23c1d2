"""`robutler new-skill NAME` generates a package that installs and passes its own tests."""

import os
import subprocess
import sys

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

    # Install it as a user would (a wheel built by its own build backend), into a separate
    # directory so that this test environment does not gain a plugin.
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(site), str(package)],
        check=True, capture_output=True, text=True, timeout=300,
    )
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
