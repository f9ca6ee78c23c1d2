"""Plugin discovery: skill packages register skill classes through entry points.

A distribution declares an entry point in the ``robutler`` group pointing at a module that
implements ``@hookimpl def register_skills(register)``. ``ROBUTLER_LOAD_PLUGINS`` (comma-separated
distribution names; empty for none) limits which distributions load, as ``LLM_LOAD_PLUGINS``
does for llm. Built-in plugins (the ``test`` model) always load.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import importlib
import os
import re
from dataclasses import dataclass
from typing import Any

import pluggy

from .errors import ConfigurationError
from .hookspecs import DiscoverySpecs
from .skill import LLMSkill, Skill

logger = logging.getLogger("robutler_core.plugins")

ENTRY_POINT_GROUP = "robutler"
DEFAULT_PLUGINS = ("robutler_core.testing.plugin",)


@dataclass(frozen=True)
class SkillInfo:
    """A registered skill class and the distribution that registered it."""

    name: str
    skill_class: type[Skill]
    distribution: str
    version: str | None

    @property
    def is_llm(self) -> bool:
        return issubclass(self.skill_class, LLMSkill)


def get_plugin_manager(load_entry_points: bool = True) -> pluggy.PluginManager:
    """A new plugin manager with the built-in plugins and (by default) the installed ones."""
    pm = pluggy.PluginManager("robutler")
    pm.add_hookspecs(DiscoverySpecs)
    for module_name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
    if load_entry_points:
        _load_entry_points(pm)
    return pm


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    from importlib import metadata  # here: importing it costs a start-up more than the rest of core

    allowed = os.environ.get("ROBUTLER_LOAD_PLUGINS")
    if allowed is not None:
        allowed_names = {_normalize(n) for n in allowed.split(",") if n.strip()}
        for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist_name = entry_point.dist.name if entry_point.dist else ""
            if _normalize(dist_name) not in allowed_names:
                pm.set_blocked(entry_point.name)
    pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)


def _normalize(distribution: str) -> str:
    """PEP 503 normalized distribution name (``Robutler_Skill.X`` -> ``robutler-skill-x``)."""
    return re.sub(r"[-_.]+", "-", distribution.strip()).lower()


class SkillRegistry:
    """Skill classes by name, collected from ``register_skills`` hooks."""

    def __init__(self) -> None:
        self._skills: dict[str, SkillInfo] = {}
        self._by_prefix: dict[str, SkillInfo] = {}  # llm_for_prefix's answers; cleared by add

    @classmethod
    def from_plugin_manager(cls, pm: pluggy.PluginManager) -> SkillRegistry:
        """Call every ``register_skills`` hookimpl, attributing each skill to its distribution."""
        registry = cls()
        dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
        for impl in reversed(pm.hook.register_skills.get_hookimpls()):  # registration order
            dist = dists.get(id(impl.plugin))
            distribution = dist.project_name if dist else "robutler-core"
            version = dist.version if dist else _own_version()

            def register(
                skill_class: type[Skill],
                name: str | None = None,
                _d: str = distribution,
                _v: str | None = version,
            ) -> None:
                registry.add(skill_class, name=name, distribution=_d, version=_v)

            impl.function(register=register)
        return registry

    def add(
        self,
        skill_class: type[Skill],
        *,
        name: str | None = None,
        distribution: str = "(direct)",
        version: str | None = None,
    ) -> None:
        """Register ``skill_class`` under ``name``; two distributions claiming one name fail."""
        if not (isinstance(skill_class, type) and issubclass(skill_class, Skill)):
            raise ConfigurationError(
                f"{distribution} registered {skill_class!r}, which is not a Skill subclass"
            )
        name = name or skill_class.__name__.lower()
        existing = self._skills.get(name)
        if existing is not None and existing.skill_class is not skill_class:
            raise ConfigurationError(
                f"skill name '{name}' is registered by both {existing.distribution} "
                f"({existing.skill_class.__qualname__}) and {distribution} "
                f"({skill_class.__qualname__})"
            )
        self._skills[name] = SkillInfo(name, skill_class, distribution, version)
        self._by_prefix = {}

    def __contains__(self, name: str) -> bool:
        return name in self._skills

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._skills.values())

    def get(self, name: str) -> SkillInfo:
        """The skill registered as ``name``; raises ConfigurationError listing the installed."""
        try:
            return self._skills[name]
        except KeyError:
            installed = ", ".join(sorted(self._skills)) or "none"
            raise ConfigurationError(
                f"unknown skill '{name}'; installed skills: {installed}"
            ) from None

    def create(self, name: str, config: dict[str, Any] | None = None) -> Skill:
        """An instance of the skill registered as ``name``."""
        info = self.get(name)
        try:
            return info.skill_class(config or {})
        except TypeError as exc:
            raise ConfigurationError(f"cannot create skill '{name}': {exc}") from exc

    def llm_for_prefix(self, prefix: str) -> SkillInfo:
        """The LLM skill serving ``prefix``: a native one first, else one that falls back to it.

        Raises ConfigurationError listing the prefixes the installed LLM skills serve.
        """
        cached = self._by_prefix.get(prefix)
        if cached is not None:
            return cached
        llms = [info for info in self._skills.values() if info.is_llm]
        for attribute in ("model_prefixes", "fallback_prefixes"):
            for info in llms:
                if prefix in getattr(info.skill_class, attribute):
                    self._by_prefix[prefix] = info
                    return info
        served = sorted(
            {p for i in llms for p in (*i.skill_class.model_prefixes, *i.skill_class.fallback_prefixes)}
        )
        raise ConfigurationError(
            f"no installed LLM skill serves models with prefix '{prefix}/'; installed providers: "
            f"{', '.join(served) or 'none'} (install e.g. robutler-skill-litellm)"
        )

    def describe(self) -> list[dict[str, Any]]:
        """Installed skill packages as JSON-ready dicts: distribution, version, skills."""
        packages: dict[str, dict[str, Any]] = {}
        for info in self._skills.values():
            entry = packages.setdefault(
                info.distribution,
                {"distribution": info.distribution, "version": info.version, "skills": []},
            )
            skill: dict[str, Any] = {"name": info.name, "class": _qualified(info.skill_class)}
            if info.is_llm:
                skill["model_prefixes"] = list(info.skill_class.model_prefixes)  # type: ignore[attr-defined]
                skill["fallback_prefixes"] = list(info.skill_class.fallback_prefixes)  # type: ignore[attr-defined]
            entry["skills"].append(skill)
        return sorted(packages.values(), key=lambda p: p["distribution"])


@functools.lru_cache(maxsize=1)
def installed_plugins() -> pluggy.PluginManager:
    """The process's discovery plugin manager (entry points loaded once, then cached)."""
    return get_plugin_manager()


def model_cost(model: str, usage: dict[str, Any]) -> float | None:
    """Cost in US dollars of one call of ``model`` with ``usage``, as the installed plugins'
    ``model_cost`` hook says; ``None`` when none knows (a failing plugin is logged)."""
    try:
        return installed_plugins().hook.model_cost(model=model, usage=usage)
    except Exception:
        logger.warning("pricing %s failed", model, exc_info=True)
        return None


_PRICED_MODELS: set[str] = set()


async def price(model: str, usage: dict[str, Any]) -> float | None:
    """:func:`model_cost` without blocking the event loop: in a worker thread the first time
    this process prices ``model`` (a pricing plugin may load its price data then), on the
    event loop afterwards, where pricing is a lookup and some arithmetic (microseconds; a
    worker-thread hop costs 0.1-0.2 ms a call). ``LLMSkill.initialize`` makes that first
    call at start-up, so requests price inline."""
    if model in _PRICED_MODELS:
        return model_cost(model, usage)
    cost = await asyncio.to_thread(model_cost, model, usage)
    _PRICED_MODELS.add(model)
    return cost


@functools.lru_cache(maxsize=1)
def installed_skills() -> SkillRegistry:
    """The registry of this process's installed plugins, loaded once (cached)."""
    return SkillRegistry.from_plugin_manager(installed_plugins())


def _own_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("robutler-core")
    except metadata.PackageNotFoundError:
        return None


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
