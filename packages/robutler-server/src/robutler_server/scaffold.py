"""``robutler new-skill NAME``: a new skill package from the Jinja2 templates in
``templates/skill`` (file names containing ``__module__`` take the module name; ``.jinja``
files are rendered, others copied).

The only free text, the description, is made one line (core metadata's ``Summary`` is one
line) and escaped for each place it lands, by the filters the templates apply: ``toml_str``
(inside a TOML basic string), ``py_str`` (inside a Python ``\"\"\"`` string) and ``md_text``
(Markdown text). Names are safe by :data:`NAME_PATTERN`.
"""

from __future__ import annotations

import re
from importlib import metadata, resources
from pathlib import Path

import jinja2

from robutler_core.errors import ConfigurationError

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


def skill_variables(name: str, description: str | None = None) -> dict[str, str]:
    """Template variables for skill ``name`` (``"weather"`` or ``"my-weather"``).

    ``description`` has its whitespace runs (newlines included) joined into single spaces.
    Raises ConfigurationError for a bad name or a description that is not valid Unicode text
    (a lone surrogate, as a badly encoded command line gives).
    """
    name = name.removeprefix("robutler-skill-")
    if not NAME_PATTERN.match(name):
        raise ConfigurationError(
            f"skill name {name!r} must be lower-case letters and digits, words joined by '-' "
            "(e.g. 'weather' or 'stock-quotes')"
        )
    words = name.split("-")
    if description is not None:
        description = " ".join(description.split())
        try:
            description.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ConfigurationError(
                f"the description is not valid text: {exc.reason} at position {exc.start}"
            ) from None
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
    environment.filters.update(toml_str=toml_str, py_str=py_str, md_text=md_text)
    for source, relative in _walk(templates, Path()):
        out = target / str(relative).replace("__module__", variables["module"])
        out.parent.mkdir(parents=True, exist_ok=True)
        text = source.read_text(encoding="utf-8")
        if out.suffix == ".jinja":
            out = out.with_suffix("")
            text = environment.from_string(text).render(variables)
        out.write_text(text, encoding="utf-8")
    return target


def toml_str(text: str) -> str:
    """``text`` escaped for the inside of a TOML basic string (``"..."``)."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return "".join(out)


def py_str(text: str) -> str:
    """``text`` escaped for the inside of a Python string literal (docstrings included)."""
    out = []
    for char in text:
        if char in "\"'\\":
            out.append("\\" + char)
        elif not char.isprintable() and char != " ":
            out.append(repr(char)[1:-1])
        else:
            out.append(char)
    return "".join(out)


_MARKDOWN_INLINE = frozenset("\\`*_[]!")
_HTML = {"<": "&lt;", ">": "&gt;", "&": "&amp;"}
_BLOCK_START = re.compile(r"^(\d*)([#+=>.)-])")


def md_text(text: str) -> str:
    """``text`` as a literal Markdown paragraph: emphasis, code, link and escape characters
    backslash-escaped, HTML as entities, a heading/list/quote marker at the start escaped,
    control characters left out."""
    out = []
    for char in text:
        if char in _HTML:
            out.append(_HTML[char])
        elif char in _MARKDOWN_INLINE:
            out.append("\\" + char)
        elif char.isprintable() or char == " ":
            out.append(char)
    escaped = "".join(out)
    return _BLOCK_START.sub(r"\1\\\2", escaped, count=1)


def _walk(node, relative: Path):  # type: ignore[no-untyped-def]
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.name == "__pycache__":
            continue
        if child.is_dir():
            yield from _walk(child, relative / child.name)
        else:
            yield child, relative / child.name
