"""Handoffs: the model passes a task to another agent of this process or to another model.

A handoff is offered to the model as a tool. When the model calls it, the agent runs the
``before_handoff`` hooks, the handoff itself, then the ``after_handoff`` hooks; the target's
answer (:attr:`HandoffResult.result`) goes back to the model as the call's result, and the
target's usage is recorded on the caller's Context.

Three kinds, all built by :func:`robutler_core.handoff`:

* ``@handoff`` on a function or skill method (:class:`FunctionHandoff`): the function does
  the work and returns a :class:`HandoffResult` (or any value, wrapped in one);
* ``handoff("billing")`` or ``handoff(agent_instance)`` (:class:`LocalAgentHandoff`): another
  agent of the same process answers the conversation plus the task;
* ``handoff("anthropic/claude-3-5-sonnet-20241022")`` or ``handoff(model=...)``
  (:class:`LLMHandoff`): another model, resolved like ``Agent(model=...)``, answers.
"""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import ConfigurationError
from .scopes import Scope, normalize_scope
from .tools import Tool

if TYPE_CHECKING:
    from collections.abc import Callable

    from .agent import Agent
    from .context import Context
    from .skill import LLMSkill

HANDOFF_MARKER = "_robutler_handoff"
"""Attribute ``@handoff`` sets on a function: a dict of its options."""

MAX_HANDOFF_DEPTH = 5
"""Nested local-agent handoffs allowed per client request (A -> B -> C ...)."""

@dataclass
class HandoffResult:
    """What a handoff produced.

    Attributes:
        result: the answer; its text (JSON when not a string) is the tool result the model sees.
        handoff_type: ``"agent"``, ``"llm"``, or a custom kind (``"workflow"``, ...).
        transfer_complete: ``False`` when the handoff could not be carried out.
        metadata: free-form details (target, model, ticket id, ...).
    """

    result: Any
    handoff_type: str = "agent"
    transfer_complete: bool = True
    metadata: dict[str, Any] = field(default_factory=dict)


class Handoff(abc.ABC):
    """Base class: a named handoff the model can call, with its OpenAI tool definition.

    Subclasses set :attr:`handoff_type` and implement :meth:`execute`. The arguments the
    model gives are ``{"task": str}`` unless ``arguments`` (a Tool whose signature is the
    schema) says otherwise.
    """

    handoff_type: ClassVar[str] = "custom"

    def __init__(self, name: str, description: str, scope: Scope = None, arguments: Tool | None = None) -> None:
        self.name = name
        self.description = description
        self.scope = normalize_scope(scope)
        self.kind = self.handoff_type
        """The ``type`` hooks and ``info()`` see: :attr:`handoff_type`, or ``@handoff``'s own."""
        self._arguments = arguments or Tool(_task, name=name)
        self.parameters: dict[str, Any] = self._arguments.parameters

    @property
    def target(self) -> str:
        """A human-readable name of what the handoff goes to."""
        return self.name

    def definition(self) -> dict[str, Any]:
        """The handoff as an OpenAI ``tools`` entry."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def bind(self, agent: Agent) -> None:
        """Called when added to ``agent``; resolves what can be resolved (raises ConfigurationError)."""

    def validate_arguments(self, arguments: str | dict[str, Any] | None) -> dict[str, Any]:
        """The model's arguments as a dict; raises :class:`~robutler_core.tools.ToolArgumentsError`."""
        return self._arguments.validate_arguments(arguments)

    @abc.abstractmethod
    async def execute(self, context: Context, request: dict[str, Any]) -> HandoffResult:
        """Run the handoff described by ``request`` (the ``before_handoff`` payload)."""


class FunctionHandoff(Handoff):
    """A ``@handoff`` function: its signature is the tool schema, its return the result."""

    def __init__(self, func: Callable[..., Any], *, name: str | None = None, description: str | None = None,
                 scope: Scope = None, handoff_type: str = "agent") -> None:
        self.tool = Tool(func, name=name, description=description)
        super().__init__(self.tool.name, self.tool.description, scope, arguments=self.tool)
        self.func = func
        self.kind = handoff_type

    async def execute(self, context: Context, request: dict[str, Any]) -> HandoffResult:
        result = await self.tool.invoke(request["arguments"], context)
        if isinstance(result, HandoffResult):
            return result
        return HandoffResult(result=result, handoff_type=self.kind)


class LocalAgentHandoff(Handoff):
    """Hand the conversation and a task to another agent of this process.

    Args:
        target: an :class:`~robutler_core.Agent`, or the name of one the agent can reach
            through its ``directory`` (set by :func:`robutler_core.connect_agents`, which the
            server calls for the agents it serves).
        name: tool name (default ``transfer_to_<target>``).
        description: shown to the model.
        scope: who may use it.
    """

    handoff_type = "agent"

    def __init__(self, target: Agent | str, *, name: str | None = None, description: str | None = None,
                 scope: Scope = None) -> None:
        self.agent_target = target
        target_name = target if isinstance(target, str) else target.name
        super().__init__(
            name or _tool_name("transfer_to_", target_name),
            description or f"Hand the task to the agent '{target_name}' and get its answer",
            scope,
        )
        self._target_name = target_name

    @property
    def target(self) -> str:
        return self._target_name

    def bind(self, agent: Agent) -> None:
        if isinstance(self.agent_target, str) and agent.directory is not None:
            self.resolve(agent)

    def resolve(self, agent: Agent) -> Agent:
        """The target Agent; raises ConfigurationError when ``agent`` cannot reach it."""
        if not isinstance(self.agent_target, str):
            return self.agent_target
        found = (agent.directory or {}).get(self.agent_target)
        if found is None:
            known = ", ".join(sorted(agent.directory or {})) or "none"
            raise ConfigurationError(
                f"agent '{agent.name}': handoff '{self.name}' names the agent "
                f"'{self.agent_target}', which this process does not serve; agents: {known}"
            )
        return found

    async def execute(self, context: Context, request: dict[str, Any]) -> HandoffResult:
        target = self.resolve(context.agent)
        if context.handoff_depth >= MAX_HANDOFF_DEPTH:
            return HandoffResult(
                result=f"Error: handoffs are nested {MAX_HANDOFF_DEPTH} deep; not handing off to "
                f"'{target.name}'", handoff_type="agent", transfer_complete=False,
            )
        messages = _handed_over(request)
        child = target.new_context(messages, None, False)
        child.auth_scope = context.auth_scope
        child.peer_user_id = context.peer_user_id
        child.payment_token = context.payment_token
        child.headers = dict(context.headers)
        child.handoff_depth = context.handoff_depth + 1
        try:
            completion = await target.run(messages, context=child)
        finally:
            for record in child.usage_records:
                record.metadata = {**record.metadata, "handoff": self.name, "agent": target.name}
                context.usage_records.append(record)
        return HandoffResult(result=_answer(completion), handoff_type="agent", metadata={"agent": target.name})


class LLMHandoff(Handoff):
    """Hand the conversation and a task to another model (``"provider/model"`` or an LLMSkill).

    The model is resolved when the handoff is added to an agent, like ``Agent(model=...)``;
    an unknown provider prefix fails there.
    """

    handoff_type = "llm"

    def __init__(self, model: str | LLMSkill, *, name: str | None = None, description: str | None = None,
                 scope: Scope = None) -> None:
        self.model = model
        label = model if isinstance(model, str) else (model.model or type(model).__name__)
        super().__init__(
            name or _tool_name("switch_to_", label.rsplit("/", 1)[-1]),
            description or f"Hand the task to the model '{label}' and get its answer",
            scope,
        )
        self._label = label
        self.llm: LLMSkill | None = None if isinstance(model, str) else model

    @property
    def target(self) -> str:
        return self._label

    def bind(self, agent: Agent) -> None:
        if self.llm is None:
            from .models import resolve_model

            self.llm = resolve_model(self.model, agent.registry, configured=agent.skills)

    async def execute(self, context: Context, request: dict[str, Any]) -> HandoffResult:
        assert self.llm is not None, "bind() resolves the model when the handoff is registered"
        await context.agent.initialize()  # a handoff registered during this request: its model too
        system = await context.agent.system_prompt(context)
        messages = [*([{"role": "system", "content": system}] if system else []), *_handed_over(request)]
        completion = await self.llm.chat_completion(messages)
        await self.llm.record_usage(context, completion.get("usage"))
        return HandoffResult(result=_answer(completion), handoff_type="llm", metadata={"model": self._label})


def _task(task: str) -> str:
    """Hand off a task.

    Args:
        task: What the target should do, with everything it needs to know
    """
    return task


def _handed_over(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The conversation a target gets: the request's messages, then the task as a user message."""
    return [*request["messages"], {"role": "user", "content": request["arguments"]["task"]}]


def _answer(completion: dict[str, Any]) -> str:
    return completion["choices"][0]["message"].get("content") or ""


def _tool_name(prefix: str, target: str) -> str:
    return prefix + re.sub(r"[^A-Za-z0-9_]", "_", target)
