"""``robutler new-skill NAME``: a new skill package from the Jinja2 templates in
``templates/skill`` (file names containing ``__module__`` take the module name; ``.jinja``
files are rendered, others copied)."""

from __future__ import annotations

import re
from importlib import metadata, resources
from pathlib import Path

import jinja2

from robutler_core.errors import ConfigurationError

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


def skill_variables(name: str, description: str | None = None) -> dict[str, str]:
    """Template variables for skill ``name`` (``"weather"`` or ``"my-weather"``)."""
    name = name.removeprefix("robutler-skill-")
    if not NAME_PATTERN.match(name):
        raise ConfigurationError(
            f"skill name {name!r} must be lower-case letters and digits, words joined by '-' "
            "(e.g. 'weather' or 'stock-quotes')"
        )
    words = name.split("-")
    try:
        core_version = metadata.version("robutler-core")
    except metadata.PackageNotFoundError:
        core_version = "0.1.0"
    return {
        "skill_name": name.replace("-", "_"),
        "distribution": f"robutler-skill-{name}",
        "module": f"robutler_skill_{name.replace('-', '_')}",
        "class_name": "".join(w.capitalize() for w in words) + "Skill",
        "tool_name": f"{name.replace('-', '_')}_echo",
        "description": description or f"The {' '.join(words)} skill for Robutler agents",
        "core_version": core_version,
    }


def create_skill_package(name: str, directory: Path, description: str | None = None) -> Path:
    """Write the package for skill ``name`` into ``directory/robutler-skill-NAME``; returns it.

    Raises ConfigurationError for a bad name or when the target exists.
    """
    variables = skill_variables(name, description)
    target = Path(directory) / variables["distribution"]
    if target.exists():
        raise ConfigurationError(f"{target} already exists; choose another name or directory")
    templates = resources.files("robutler_server") / "templates" / "skill"
    environment = jinja2.Environment(
        keep_trailing_newline=True, undefined=jinja2.StrictUndefined, autoescape=False
    )
    for source, relative in _walk(templates, Path()):
        out = target / str(relative).replace("__module__", variables["module"])
        out.parent.mkdir(parents=True, exist_ok=True)
        text = source.read_text(encoding="utf-8")
        if out.suffix == ".jinja":
            out = out.with_suffix("")
            text = environment.from_string(text).render(variables)
        out.write_text(text, encoding="utf-8")
    return target


def _walk(node, relative: Path):  # type: ignore[no-untyped-def]
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.name == "__pycache__":
            continue
        if child.is_dir():
            yield from _walk(child, relative / child.name)
        else:
            yield child, relative / child.name
