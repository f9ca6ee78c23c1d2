"""Server-side tools: JSON schema from a function's signature, validated invocation.

A :class:`Tool` wraps a sync or async function. Its ``parameters`` are a JSON schema built with
pydantic from the type hints (``Optional``, ``list[T]``, ``Literal``, ``Enum``, defaults,
nested pydantic models), with descriptions taken from the docstring (Google, reST or numpydoc,
parsed by ``docstring_parser``). A parameter named ``context`` receives the request's
:class:`~robutler_core.Context` and is left out of the schema. The wire format is OpenAI's
``{"type": "function", "function": {"name", "description", "parameters"}}``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import json
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, NamedTuple

from .scopes import Scope, normalize_scope

if TYPE_CHECKING:  # imported where a tool is built, not with robutler_core
    import docstring_parser
    import pydantic

TOOL_MARKER = "_robutler_tool"
"""Attribute ``@tool`` sets on a function: a dict of its options (name, description, scope, timeout)."""


class ToolCallResult(NamedTuple):
    """The outcome of :meth:`robutler_core.Agent.call_tool`."""

    content: str
    """The result text, as the model would get it (``Error: ...`` for a failed call)."""
    is_error: bool
    """Whether the call failed: blocked by a hook, no such tool, bad arguments, the tool raised."""


class ToolArgumentsError(ValueError):
    """The model's arguments for a tool are not valid JSON or do not match its schema."""


class Tool:
    """A callable the model can ask for, with its OpenAI function definition.

    Args:
        func: the function (a bound method for skill tools); sync or async.
        name: the tool's name on the wire; defaults to the function's name.
        description: defaults to the docstring's summary and body.
        scope: who may see and run it (see :mod:`robutler_core.scopes`).
        parameters: an explicit JSON schema (an object schema, e.g. an MCP tool's
            ``inputSchema``), sent to the model unchanged. Then ``func`` is not introspected:
            it is called with the arguments as one dict, ``func(arguments)`` (plus
            ``context=`` when it has a ``context`` parameter), after ``validate``.
        validate: with ``parameters``: checks the arguments dict before the call; a
            ``ValueError`` it raises becomes a :class:`ToolArgumentsError` (the model gets
            ``invalid arguments for tool 'name': <message>`` as the tool's result). Without it
            any JSON object is passed on. Robutler core has no JSON Schema validator: pass
            one (``jsonschema``'s, say).
        timeout: seconds a call may take; ``None``: the agent's ``tool_timeout``.

    Raises:
        TypeError: ``parameters`` is not a JSON object schema (a dict), ``validate`` is
            given without ``parameters``, or ``timeout`` is not a positive number.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        scope: Scope = None,
        parameters: dict[str, Any] | None = None,
        validate: Callable[[dict[str, Any]], None] | None = None,
        timeout: float | None = None,
    ) -> None:
        import docstring_parser

        self.func = func
        self._is_async = inspect.iscoroutinefunction(inspect.unwrap(func))
        self.name = name or func.__name__
        self.timeout = check_timeout(timeout)
        self.scope = normalize_scope(scope)
        doc = docstring_parser.parse(inspect.getdoc(func) or "")
        summary = "\n\n".join(p for p in (doc.short_description, doc.long_description) if p)
        self.description = description or summary or self.name
        self._validate = validate
        if parameters is None:
            if validate is not None:
                raise TypeError(f"tool '{self.name}': validate= needs an explicit parameters= schema")
            self.takes_context, self._arguments_model = _arguments_model(func, self.name, doc)
            self.parameters = _parameters_schema(self._arguments_model)
        else:
            if not isinstance(parameters, dict):
                raise TypeError(
                    f"tool '{self.name}': parameters must be a JSON schema dict, got {type(parameters).__name__}"
                )
            self.takes_context = "context" in inspect.signature(func).parameters
            self._arguments_model = None
            self.parameters = parameters

    @classmethod
    def from_function(cls, func: Callable[..., Any], default_scope: Scope = None) -> Tool:
        """Build a Tool from a function, honouring the options ``@tool`` stored on it.

        ``default_scope`` applies when ``@tool`` set no scope (a skill passes its own).
        """
        options = dict(getattr(func, TOOL_MARKER, {}))
        if options.get("scope") is None:
            options["scope"] = default_scope
        return cls(func, **options)

    def definition(self) -> dict[str, Any]:
        """The tool in OpenAI's ``tools`` format."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    def validate_arguments(self, arguments: str | dict[str, Any] | None) -> dict[str, Any]:
        """Parse and validate the model's arguments (a JSON string or a dict).

        Raises :class:`ToolArgumentsError` naming each bad field.
        """
        if arguments is None or arguments == "":
            arguments = {}
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError as exc:
                raise ToolArgumentsError(
                    f"arguments for tool '{self.name}' are not valid JSON: {exc}"
                ) from None
        if not isinstance(arguments, dict):
            raise ToolArgumentsError(
                f"arguments for tool '{self.name}' must be a JSON object, "
                f"got {type(arguments).__name__}"
            )
        if self._arguments_model is None:
            if self._validate is not None:
                try:
                    self._validate(arguments)
                except ValueError as exc:
                    raise ToolArgumentsError(f"invalid arguments for tool '{self.name}': {exc}") from None
            return arguments
        try:
            validated = self._arguments_model.model_validate(arguments)
        except Exception as exc:
            from pydantic import ValidationError  # here, not per call: an import statement costs ~1 us

            if not isinstance(exc, ValidationError):
                raise
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(arguments)'}: {err['msg']}"
                for err in exc.errors()
            )
            raise ToolArgumentsError(
                f"invalid arguments for tool '{self.name}': {problems}"
            ) from None
        return dict(validated.__dict__)  # the fields' values (extra="forbid": nothing else)

    async def invoke(
        self, arguments: str | dict[str, Any] | None, context: Any = None, executor: Executor | None = None
    ) -> Any:
        """Validate ``arguments`` and call the function.

        Async functions are awaited; sync ones run in a worker thread of ``executor`` (default:
        ``asyncio.to_thread``), with the request's Context, so they neither block the event
        loop nor each other.
        """
        kwargs = self.validate_arguments(arguments)
        if self._arguments_model is None:  # an explicit schema: the arguments as one dict
            extra = {"context": context} if self.takes_context else {}
            return await call_function(functools.partial(self.func, kwargs), extra, executor)
        if self.takes_context:
            kwargs["context"] = context
        if self._is_async:  # what call_function would find, without inspecting on each call
            return await self.func(**kwargs)
        return await call_function(self.func, kwargs, executor)

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"


async def call_function(
    func: Callable[..., Any], kwargs: dict[str, Any], executor: Executor | None = None
) -> Any:
    """Call ``func(**kwargs)``: awaited when async; when sync, in a worker thread of
    ``executor`` (default: ``asyncio.to_thread``'s, the loop's default executor), with the
    caller's context variables (the request's Context)."""
    if inspect.iscoroutinefunction(inspect.unwrap(func)):
        return await func(**kwargs)
    if executor is None:
        return await await_me_maybe(await asyncio.to_thread(func, **kwargs))
    call = functools.partial(contextvars.copy_context().run, func, **kwargs)
    return await await_me_maybe(await asyncio.get_running_loop().run_in_executor(executor, call))


def check_timeout(timeout: float | None) -> float | None:
    """``timeout`` (seconds) as a float, ``None`` kept; TypeError unless a positive number."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise TypeError(f"a tool timeout must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


async def await_me_maybe(value: Any) -> Any:
    """``value`` awaited when it is awaitable, else ``value`` (as datasette's helper): how hooks,
    prompts and handlers that may be sync or async are called."""
    if inspect.isawaitable(value):
        return await value
    return value


def tool_result_text(result: Any) -> str:
    """A tool's return value as the ``content`` of a ``role: "tool"`` message (JSON if not str)."""
    if isinstance(result, str):
        return result
    from pydantic_core import to_json

    return to_json(result, fallback=str).decode()


def _arguments_model(
    func: Callable[..., Any], name: str, doc: docstring_parser.Docstring
) -> tuple[bool, type[pydantic.BaseModel]]:
    import pydantic

    descriptions = {p.arg_name: p.description for p in doc.params if p.description}
    fields: dict[str, Any] = {}
    takes_context = False
    for param in inspect.signature(func).parameters.values():
        if param.name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.name == "context":
            takes_context = True
            continue
        annotation = _resolve_annotation(func, name, param)
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (
            annotation,
            pydantic.Field(default, description=descriptions.get(param.name)),
        )
    model = pydantic.create_model(  # type: ignore[call-overload]
        f"{name}_arguments",
        __config__=pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=False),
        **fields,
    )
    return takes_context, model


def _resolve_annotation(func: Callable[..., Any], name: str, param: inspect.Parameter) -> Any:
    """A parameter's type hint, evaluating string hints (``from __future__ import annotations``)."""
    annotation = param.annotation
    if annotation is param.empty:
        return Any
    if isinstance(annotation, str):
        namespace = getattr(inspect.unwrap(func), "__globals__", {})
        try:
            annotation = eval(annotation, namespace)  # noqa: S307 - a type hint, as typing does
        except Exception as exc:
            raise TypeError(
                f"tool '{name}': cannot resolve the type hint of '{param.name}': {exc}"
            ) from None
    return annotation


def _parameters_schema(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    schema.setdefault("properties", {})
    return schema
