"""Scopes: who may see and run a tool, hook, prompt or handoff.

An item's ``scope`` is ``None``/``"all"`` (everyone), one name, or a list of names. The
caller's scope is ``context.auth_scope``. The built-in scopes nest: ``"admin"`` admits
everything, ``"owner"`` admits ``"owner"`` and ``"all"`` items, ``"all"`` admits only
``"all"`` items. A custom scope (``"premium"``) admits ``"all"`` items and its own.
"""

from __future__ import annotations

from collections.abc import Iterable

Scope = str | Iterable[str] | None

def normalize_scope(scope: Scope) -> frozenset[str] | None:
    """``None`` for "everyone", else the set of scope names; rejects empty names."""
    if scope is None:
        return None
    names = frozenset([scope] if isinstance(scope, str) else scope)
    if not names or any(not isinstance(n, str) or not n for n in names):
        raise ValueError(f"scope must be a non-empty name or list of names, got {scope!r}")
    return None if "all" in names else names


def scope_admits(required: frozenset[str] | None, caller_scope: str) -> bool:
    """Whether a caller with ``caller_scope`` may use an item whose scope is ``required``."""
    if required is None or caller_scope == "admin":
        return True
    return caller_scope in required
