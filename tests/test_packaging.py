"""What goes to PyPI: every distribution ships its LICENSE and py.typed, declares its license
(PEP 639) and repository, and its README has no link that only works inside this repository."""

import re
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTIONS = sorted(p.parent for p in [*ROOT.glob("packages/*/pyproject.toml"), *ROOT.glob("examples/*/pyproject.toml")])
REPOSITORY = "https://github.com/robutler/robutler"


def ids(paths):
    return [p.name for p in paths]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """{package dir: (wheel path, sdist path)}, built by hatchling in-process."""
    from hatchling.builders.sdist import SdistBuilder
    from hatchling.builders.wheel import WheelBuilder

    out = tmp_path_factory.mktemp("dist")
    artifacts = {}
    for package in DISTRIBUTIONS:
        wheel = next(WheelBuilder(str(package)).build(directory=str(out), versions=["standard"]))
        sdist = next(SdistBuilder(str(package)).build(directory=str(out), versions=["standard"]))
        artifacts[package] = (Path(wheel), Path(sdist))
    return artifacts


def test_the_root_has_the_mit_license():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


@pytest.mark.parametrize("package", DISTRIBUTIONS, ids=ids(DISTRIBUTIONS))
def test_the_wheel_has_license_and_py_typed(built, package):
    wheel, _ = built[package]
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(metadata_name).decode()
        assert archive.read(metadata_name.replace("METADATA", "licenses/LICENSE")) == (ROOT / "LICENSE").read_bytes()
    module = tomllib.loads((package / "pyproject.toml").read_text())["project"]["name"].replace("-", "_")
    assert f"{module}/py.typed" in names
    assert "License-Expression: MIT" in metadata
    assert "License-File: LICENSE" in metadata
    assert f"Project-URL: Repository, {REPOSITORY}" in metadata


@pytest.mark.parametrize("package", DISTRIBUTIONS, ids=ids(DISTRIBUTIONS))
def test_the_sdist_has_license_and_py_typed(built, package):
    _, sdist = built[package]
    with tarfile.open(sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    assert "LICENSE" in names
    assert any(n.endswith("/py.typed") for n in names)


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)|^\[[^\]]+\]:\s*(\S+)", re.M)


@pytest.mark.parametrize("package", DISTRIBUTIONS, ids=ids(DISTRIBUTIONS))
def test_the_readme_has_only_absolute_links(package):
    text = (package / "README.md").read_text()
    links = [a or b for a, b in LINK.findall(text)]
    relative = [link for link in links if not re.match(r"^(https?://|mailto:)", link)]
    assert relative == [], f"{package.name}/README.md: PyPI cannot resolve {relative}"
    for link in links:
        if link.startswith(REPOSITORY + "/blob/main/") or link.startswith(REPOSITORY + "/tree/main/"):
            target = link.split("/main/", 1)[1].split("#")[0]
            assert (ROOT / target).exists(), f"{link} names no file of this repository"


def test_link_finder_sees_relative_links():
    assert [a or b for a, b in LINK.findall("see [hooks](../../docs/hooks.md) and ![x](y.png)\n[r]: docs/a.md")] == [
        "../../docs/hooks.md", "y.png", "docs/a.md"]


def requirement_name(requirement):
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()


def test_hatch_environments_have_the_test_tools_of_requirements_dev():
    """`hatch test` and `hatch run test` get what `pip install -r requirements-dev.txt` gives."""
    config = tomllib.loads((ROOT / "hatch.toml").read_text())
    tools = sorted(
        line.strip() for line in (ROOT / "requirements-dev.txt").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "-e"))
    )
    editable = sorted(
        line.split(maxsplit=1)[1] for line in (ROOT / "requirements-dev.txt").read_text().splitlines()
        if line.startswith("-e ")
    )
    assert sorted(config["envs"]["default"]["dependencies"]) == tools
    # hatch-test brings its own pytest; everything else must be there.
    hatch_test = config["envs"]["hatch-test"]
    assert sorted(hatch_test["extra-dependencies"]) == [t for t in tools if requirement_name(t) != "pytest"]
    for env in (config["envs"]["default"], hatch_test):
        members = sorted(str(p.relative_to(ROOT)) for pattern in env["workspace"]["members"] for p in ROOT.glob(pattern))
        assert members == editable
    assert hatch_test["default-args"] == []  # pytest.ini's testpaths, not hatch's default "tests"
