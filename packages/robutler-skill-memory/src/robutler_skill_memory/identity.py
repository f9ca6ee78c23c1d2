"""Whose memory a request reads and writes."""

from __future__ import annotations

from robutler_core import Context


def partition(context: Context) -> tuple[str, str]:
    """The memory partition of a request: ``(agent name, caller)``.

    The caller is ``context.peer_user_id`` (set by an auth skill's ``on_connection`` hook), or
    ``""`` for a request without an identity (the agent's anonymous partition). Every memory
    tool reads and writes only this partition; no tool takes a user or namespace argument, so
    nothing the model sends can move a request into another caller's memory.
    """
    return (context.agent.name, context.peer_user_id or "")
