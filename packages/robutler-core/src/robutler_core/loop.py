"""The tool loop behind ``Agent.run`` and ``Agent.run_streaming``, and its streaming side.

Per request: ``on_connection``, ``on_message`` for each incoming message, then model turns.
A turn's server-side tool calls run concurrently, their results go back to the model, and the
next turn starts. The loop ends when a turn asks for no tool (the answer), when a turn asks
for an external tool (its calls go back to the client with ``finish_reason: "tool_calls"``), or
at ``max_turns``. Then ``on_message`` for the assistant message, and ``finalize_connection``
always.

``context.transcript`` records the request for ``finalize_connection`` hooks (memory): the
incoming messages as the model saw them (after ``on_connection`` and ``on_message``, without
the agent's system prompt), then each server-side tool turn's assistant message (its text and
``tool_calls``) and tool results, as the next model turn saw them, then the answer as the
client received it (after ``on_message``). ``context.finish_reason`` is set once the answer is
complete (``None`` after an error or a disconnect: the transcript then stops where the
request stopped).

Mixed turns: when one turn asks for server-side and external tools, its server-side calls do
not run. The response carries the external calls (``finish_reason: "tool_calls"``) and nothing
else, so the client's history stays a valid OpenAI conversation (every ``tool_call_id`` it holds
is one the client answers) and records truthfully what ran. On the follow-up request (the
history plus the client's tool results) the model, which sees that only the external calls
were answered, asks again for the server-side calls it still needs; they run then, once, and
the model sees their results. Running them in the first request instead would lose their
results (a chat completion carries one assistant message, and the follow-up does not hold the
results), so the model would call them again and the tools would run twice; returning them to
the client would make clients that run every ``tool_calls`` entry meet tools they do not have.
(The Responses API keeps such results in its stateful output items; chat completions are
stateless.) The text of every turn of a request is concatenated into the answer, streamed or
not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from .context import Context
from .errors import (
    RETRYABLE_ERRORS, BadRequestError, ConfigurationError, MaxTurnsExceeded, UpstreamError, UpstreamTimeoutError,
)
from .handoffs import Handoff, HandoffResult
from .hookspecs import DROP, ToolCallBlocked
from .timers import DelayTimers
from .tools import Tool, ToolArgumentsError, tool_result_text
from .wire import ChunkAssembler, add_usage, chat_completion, chat_completion_chunk, empty_usage

if TYPE_CHECKING:
    from .agent import Agent
    from .skill import LLMSkill

logger = logging.getLogger("robutler_core.loop")

Emit = Callable[[dict[str, Any]], None]

# Request parameters the loop handles itself rather than passing to the model.
_LOOP_PARAMS = frozenset({"stream", "stream_options", "model", "messages", "tools"})

# OpenAI's default values of parameters some clients send always (LangChain's ``n: 1``): a
# model skill without the parameter honours them anyway, so they are left out, never refused.
_DEFAULT_VALUES: dict[str, Any] = {"n": 1, "logprobs": False, "store": False}


class ToolLoop:
    """Runs requests for one agent; ``emit`` set means streaming."""

    def __init__(self, agent: Agent) -> None:
        from .agent import Agent

        self.agent = agent
        # Whether the agent's class overrides initialize() or system_prompt(): when not, a
        # request skips the coroutine of a call whose result is known (ready; no @prompt).
        self.own_initialize = type(agent).initialize is not Agent.initialize
        self.own_system_prompt = type(agent).system_prompt is not Agent.system_prompt
        self._timers: DelayTimers | None = None  # the request timeouts' (see serve)

    async def serve(self, context: Context, emit: Emit | None = None) -> dict[str, Any]:
        """Run the whole request lifecycle with ``context`` as the current Context; returns
        the final ``chat.completion``. ``emit`` receives each chunk when streaming."""
        agent = self.agent
        token = await agent.open_connection(context)
        try:
            # The request_timeout: a timer that cancels this task (what asyncio.timeout does,
            # without its context manager's cost), behind the timer handle the agent's requests
            # on this loop share.
            task = asyncio.current_task()
            assert task is not None
            cancelling = task.cancelling()
            deadline = _Deadline(task)
            timers = self._timers = DelayTimers.for_running_loop(self._timers, agent.request_timeout)
            timers.arm(deadline, deadline.expire)
            try:
                if agent.has_hooks("on_message"):
                    for i, message in enumerate(context.messages):
                        context.messages[i] = await agent.dispatch("on_message", context, message=message)
                context.transcript = list(context.messages)
                return await self._run_turns(context, emit)
            except asyncio.CancelledError:
                if not deadline.expired or task.uncancel() > cancelling:
                    raise
                raise UpstreamTimeoutError(
                    f"agent '{agent.name}' did not answer within its request_timeout of "
                    f"{agent.request_timeout:g} s", code="request_timeout",
                ) from None
            finally:
                timers.cancel(deadline)
        finally:
            await agent.close_connection(context, token)

    async def stream(self, context: Context) -> AsyncIterator[dict[str, Any]]:
        """Serve a request as ``chat.completion.chunk`` dicts.

        A producer task runs :meth:`serve` and puts each chunk on a queue; this generator
        yields them. The producer always ends with a sentinel, whatever ends it (an error is
        re-raised here where it happened; a cancellation or a BaseException of the producer
        ends the stream with ``asyncio.CancelledError`` or that exception). Closing this
        generator early (a client disconnect) cancels the producer and awaits it.
        """
        queue: asyncio.Queue[Any] = asyncio.Queue()

        async def produce() -> None:
            outcome: BaseException | None = None
            try:
                await self.serve(context, emit=queue.put_nowait)
            except BaseException as exc:
                outcome = exc
                raise
            finally:
                queue.put_nowait(_End(outcome))

        task = asyncio.create_task(produce(), name=f"robutler:{self.agent.name}:{context.request_id}")
        try:
            while True:
                item = await queue.get()
                if isinstance(item, _End):
                    if item.error is not None:
                        raise item.error
                    return
                yield item
        finally:
            if not task.done():
                task.cancel()
            await wait_cancelled(task)

    async def _run_turns(self, context: Context, emit: Emit | None) -> dict[str, Any]:
        agent = self.agent
        if agent.llm is None:
            raise ConfigurationError(f"agent '{agent.name}' has no model: set model= or add an LLM skill")
        params = {k: v for k, v in context.params.items() if k not in _LOOP_PARAMS and v is not None}
        if params:
            chain = [(llm, _model_params(agent, llm, params)) for llm in [agent.llm, *agent.fallbacks]]
        else:  # what _model_params gives every model for no parameters
            chain = [(agent.llm, {}), *[(llm, {}) for llm in agent.fallbacks]]
        server_tools = agent.callables_for_scope(context.auth_scope)
        external = _external_tool_names(context.tools, server_tools) if context.tools else set()
        tool_defs = [t.definition() for t in server_tools.values()] + context.tools
        if agent._prompts or self.own_system_prompt:
            system = await agent.system_prompt(context)
        else:  # what system_prompt() returns without @prompt methods
            system = agent.instructions
        messages = ([{"role": "system", "content": system}] if system else []) + context.messages

        stream = _Stream(context, emit) if emit is not None else None
        usage = empty_usage()
        texts: list[str] = []
        client_calls: list[dict[str, Any]] = []
        for _turn in range(agent.max_turns):
            if stream is not None:
                message, finish_reason, turn_usage, llm = await stream.model_turn(
                    chain, messages, tool_defs, external
                )
            else:
                message, finish_reason, turn_usage, llm = await _model_turn(context, chain, messages, tool_defs)
            add_usage(usage, turn_usage)
            await llm.record_usage(context, turn_usage)
            if message.get("content"):
                texts.append(message["content"])
            calls = message.get("tool_calls") or []
            if not calls:
                break
            client_calls = [c for c in calls if c["function"]["name"] in external]
            if client_calls:  # a mixed turn's server-side calls do not run: see the module docstring
                finish_reason = "tool_calls"
                break
            turn_messages = [{"role": "assistant", "content": message.get("content"), "tool_calls": calls}]
            turn_messages += await self._run_tool_calls(context, calls, server_tools)
            messages.extend(turn_messages)
            context.transcript.extend(turn_messages)
            chain = _reset_tool_choice(chain)
        else:
            raise MaxTurnsExceeded(
                f"agent '{agent.name}' made {agent.max_turns} model calls without a final answer "
                "(max_turns); the tools may be looping"
            )

        answer: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
        if client_calls:
            answer["tool_calls"] = client_calls
        else:
            finish_reason = finish_reason if finish_reason != "tool_calls" else "stop"
            if answer["content"] is None:
                answer["content"] = ""
        if agent.has_hooks("on_message"):
            answer = await agent.dispatch("on_message", context, message=answer)
        context.transcript.append(answer)
        if stream is not None:
            await stream.finish(finish_reason, usage)
        context.finish_reason = finish_reason
        return chat_completion(
            model=agent.name, message=answer, finish_reason=finish_reason, usage=usage,
            completion_id=context.completion_id, created=context.created,
        )

    async def _run_tool_calls(
        self, context: Context, calls: list[dict[str, Any]], server_tools: dict[str, Tool | Handoff]
    ) -> list[dict[str, Any]]:
        """Run a turn's server-side calls concurrently; returns their ``role: "tool"`` messages
        in call order. A call that ends the request (a guarding hook's error, a cancellation)
        cancels its siblings, which are awaited before its error is raised (a TaskGroup)."""
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._run_tool_call(context, call, server_tools)) for call in calls]
        except BaseExceptionGroup as failed:
            raise _first_error(failed) from None
        return [task.result() for task in tasks]

    async def _run_tool_call(
        self, context: Context, call: dict[str, Any], server_tools: dict[str, Tool | Handoff]
    ) -> dict[str, Any]:
        """Run one server-side call (a tool or a handoff); a failure becomes its result."""
        target = server_tools.get(call["function"]["name"])
        if isinstance(target, Handoff):
            result = await self._run_handoff(context, call, target)
        else:
            result = await self._run_tool(context, call, server_tools)
        return {"role": "tool", "tool_call_id": call["id"], "content": tool_result_text(result)}

    async def _run_tool(
        self, context: Context, call: dict[str, Any], server_tools: dict[str, Tool | Handoff]
    ) -> Any:
        return (await self.run_tool(context, call, server_tools))[0]

    async def run_tool(
        self, context: Context, call: dict[str, Any], server_tools: dict[str, Tool | Handoff]
    ) -> tuple[Any, bool]:
        """One server-side tool call (an OpenAI ``tool_calls`` entry): ``before_toolcall``, the
        tool, ``after_toolcall``. Returns the result as the hooks left it and whether the call
        failed (blocked by a hook, no such tool among ``server_tools``, bad arguments, the tool
        raised, or ran past its timeout: ``tool.timeout``, else the agent's ``tool_timeout``);
        a failure's result is its ``Error: ...`` text. A synchronous tool runs on the agent's
        ``tool_executor``."""
        agent = self.agent
        failed = True
        try:
            call = await agent.dispatch("before_toolcall", context, tool_call=call)
        except ToolCallBlocked as blocked:
            result = blocked.result
        else:
            name = call["function"]["name"]
            tool = server_tools.get(name)
            if not isinstance(tool, Tool):
                result = f"Error: there is no tool named '{name}'; available tools: " + (
                    ", ".join(sorted(server_tools)) or "none"
                )
            else:
                timeout = tool.timeout if tool.timeout is not None else agent.tool_timeout
                deadline = asyncio.timeout(timeout)
                try:
                    async with deadline:
                        value = await tool.invoke(call["function"].get("arguments"), context, agent.tool_executor)
                    result = tool_result_text(value)
                    failed = False
                except ToolArgumentsError as exc:
                    result = f"Error: {exc}"
                except Exception as exc:
                    if isinstance(exc, TimeoutError) and deadline.expired():
                        logger.warning("tool '%s' of agent '%s' timed out after %g s", name, agent.name, timeout)
                        result = f"Error: tool '{name}' timed out after {timeout:g} s"
                    else:
                        # An expected failure (the model sees it): one line; the traceback at DEBUG.
                        logger.warning("tool '%s' of agent '%s' failed: %s: %s", name, agent.name, type(exc).__name__, exc)
                        logger.debug("tool '%s' of agent '%s' failed", name, agent.name, exc_info=True)
                        result = f"Error: tool '{name}' failed: {type(exc).__name__}: {exc}"
        return await agent.dispatch("after_toolcall", context, tool_call=call, result=result), failed

    async def _run_handoff(self, context: Context, call: dict[str, Any], handoff: Handoff) -> Any:
        """``before_handoff``, the handoff, ``after_handoff``; the result's text is returned.

        Bad arguments and a failing target become an error result for the model; a
        ConfigurationError (an unreachable agent) ends the request.
        """
        agent = self.agent
        try:
            arguments = handoff.validate_arguments(call["function"].get("arguments"))
        except ToolArgumentsError as exc:
            return f"Error: {exc}"
        request = await agent.dispatch(
            "before_handoff", context,
            handoff={
                "name": handoff.name, "type": handoff.kind,
                "target": handoff.target, "arguments": arguments, "messages": list(context.messages),
            },
        )
        try:
            result = await handoff.execute(context, request)
        except ConfigurationError:
            raise
        except Exception as exc:
            logger.warning("handoff '%s' of agent '%s' failed", handoff.name, agent.name, exc_info=True)
            result = HandoffResult(
                result=f"Error: handoff '{handoff.name}' failed: {type(exc).__name__}: {exc}",
                handoff_type=request["type"], transfer_complete=False,
            )
        result = await agent.dispatch("after_handoff", context, handoff=request, result=result)
        return result.result if isinstance(result, HandoffResult) else result


async def wait_cancelled(task: asyncio.Task[Any]) -> None:
    """Wait until ``task`` has finished (a cancelled one, its cleanup: ``finalize_connection``)
    without cancelling it: a caller cancelled meanwhile, even repeatedly (anyio's cancel scopes,
    as in Starlette's streaming responses, re-deliver a cancellation at every ``await``), still
    waits, then raises ``asyncio.CancelledError``. The task's own result or error is left in it
    (marked retrieved: the caller reports it, or not)."""
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            cancelled = True
    if not task.cancelled():
        task.exception()
    if cancelled:
        raise asyncio.CancelledError


def _first_error(group: BaseExceptionGroup) -> BaseException:
    """The first exception of a (nested) exception group: the one the request ends with."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


class _Deadline:
    """Cancels ``task`` when the request's time is up (a ``loop.call_later`` callback)."""

    __slots__ = ("task", "expired")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.expired = False

    def expire(self) -> None:
        self.expired = True
        self.task.cancel()


class _End:
    """The producer's last queue item: ``error`` is what ended it (``None``: success)."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


Turn = tuple[dict[str, Any], str, dict[str, Any] | None, "LLMSkill"]
"""A model turn's assistant message, finish reason, usage, and the LLM skill that answered."""


Chain = list[tuple["LLMSkill", dict[str, Any]]]
"""The models of a request in the order they are tried, each with the parameters it is sent."""


def _model_params(agent: Agent, llm: LLMSkill, params: dict[str, Any]) -> dict[str, Any]:
    """The request parameters ``llm`` is sent: those of its ``supported_params``; another one
    raises BadRequestError (400, ``unsupported_parameter``) or, when the agent's
    ``unsupported_params`` is ``"ignore"``, is left out. One set to OpenAI's default value
    (``n=1``, ``logprobs=false``, ``store=false``) is honoured by any model: left out."""
    supported = type(llm).supported_params
    params = {k: v for k, v in params.items() if k in supported or not _is_default(k, v)}
    unsupported = [name for name in params if name not in supported]
    if unsupported and agent.unsupported_params == "error":
        name = unsupported[0]
        raise BadRequestError(
            f"the parameter '{name}' is not supported by the model skill {type(llm).__name__} "
            f"({llm.full_model_name}) of agent '{agent.name}'; it supports: {', '.join(sorted(supported))}",
            param=name, code="unsupported_parameter",
        )
    return {k: v for k, v in params.items() if k in supported}


def _is_default(name: str, value: Any) -> bool:
    """Whether ``value`` is OpenAI's default for the parameter ``name`` (``n=1``, ...)."""
    default = _DEFAULT_VALUES.get(name, _NO_DEFAULT)
    return type(value) is type(default) and value == default


_NO_DEFAULT = object()


async def _model_turn(
    context: Context,
    chain: Chain,
    messages: list[dict[str, Any]],
    tool_defs: list[dict[str, Any]],
) -> Turn:
    for position, (llm, params) in enumerate(chain):
        try:
            completion = await llm.chat_completion(messages, tools=tool_defs or None, **params)
        except RETRYABLE_ERRORS as exc:
            _fall_back_or_raise(chain, position, exc)
            continue
        choices = completion.get("choices") or [{}]
        message, finish_reason = choices[0].get("message") or {}, choices[0].get("finish_reason") or "stop"
        empty = _empty_answer(llm, message, finish_reason)
        if empty is not None:
            await llm.record_usage(context, completion.get("usage"))
            _fall_back_or_raise(chain, position, empty)
            continue
        context.answered_by.append(llm.full_model_name)
        return message, finish_reason, completion.get("usage"), llm
    raise AssertionError("unreachable: the last model's error is raised")


def _reset_tool_choice(chain: Chain) -> Chain:
    """After a turn that ran server-side tools, a ``tool_choice`` that forces a call
    (``"required"``, a named function) becomes ``"auto"``, so that a model that obeys it can
    answer rather than call tools until ``max_turns`` (as the Agents SDK's
    ``reset_tool_choice``); ``"auto"`` and ``"none"`` stay."""
    return [
        (llm, {**params, "tool_choice": "auto"} if params.get("tool_choice") not in (None, "auto", "none") else params)
        for llm, params in chain
    ]


def _empty_answer(llm: LLMSkill, message: dict[str, Any], finish_reason: str) -> UpstreamError | None:
    """The error for a model answer with neither content nor tool calls (an empty stream, a
    completion without choices), else ``None``. An empty answer that says why (finish reason
    ``length`` or ``content_filter``) is an answer, as OpenAI sends it."""
    if message.get("content") or message.get("tool_calls") or finish_reason in ("length", "content_filter"):
        return None
    return UpstreamError(
        f"model {llm.full_model_name} answered with no content and no tool calls",
        code="empty_upstream_response",
    )


def _fall_back_or_raise(chain: Chain, position: int, error: Exception) -> None:
    """Go on to the next model of ``chain`` after a retryable ``error``; raise it after the last."""
    if position + 1 >= len(chain):
        raise error
    logger.warning(
        "model %s failed (%s: %s); falling back to %s", chain[position][0].full_model_name,
        type(error).__name__, error, chain[position + 1][0].full_model_name,
    )


class _Stream:
    """Streaming side of the loop: forwards content and external tool-call deltas."""

    def __init__(self, context: Context, emit: Emit) -> None:
        self.context = context
        self.emit = emit
        options = context.params.get("stream_options") or {}
        self.include_usage = bool(options.get("include_usage"))
        self.external_index: dict[int, int] = {}
        self.started = False

    def _chunk(self, delta: dict[str, Any] | None, finish_reason: str | None = None, usage: Any = None) -> dict[str, Any]:
        ctx = self.context
        return chat_completion_chunk(
            model=ctx.agent.name, delta=delta, finish_reason=finish_reason,
            completion_id=ctx.completion_id, created=ctx.created, usage=usage,
        )

    async def send(self, delta: dict[str, Any] | None, finish_reason: str | None = None, usage: Any = None) -> None:
        """Pass a chunk (``delta=None``: the usage-only chunk) through the ``on_chunk`` hooks,
        then to the client unless a hook dropped it."""
        chunk = self._chunk(delta, finish_reason, usage)
        agent = self.context.agent
        if agent.has_hooks("on_chunk"):
            chunk = await agent.dispatch("on_chunk", self.context, chunk=chunk)
        if chunk is not DROP:
            self.emit(chunk)

    async def model_turn(
        self,
        chain: Chain,
        messages: list[dict[str, Any]],
        tool_defs: list[dict[str, Any]],
        external: set[str],
    ) -> Turn:
        """One streamed model call. A model that fails (retryably) before its first chunk,
        or whose stream ends empty (see :func:`_empty_answer`), gives way to the next of
        ``chain``; a failure after its first chunk ends the request."""
        for position, (llm, params) in enumerate(chain):
            assembler = ChunkAssembler()
            self.external_index = {}
            stream_params = {**params, "stream_options": {"include_usage": True}}
            chunks = aiter(llm.chat_completion_stream(messages, tools=tool_defs or None, **stream_params))
            try:
                first = [await anext(chunks)]
            except StopAsyncIteration:
                first = []
            except RETRYABLE_ERRORS as exc:
                _fall_back_or_raise(chain, position, exc)
                continue
            self.context.answered_by.append(llm.full_model_name)  # before the first chunk goes out
            async for chunk in _chain(first, chunks):
                await self.start()
                assembler.add(chunk)
                for choice in chunk.get("choices") or []:
                    if choice.get("index", 0) == 0:
                        delta = self._forwarded_delta(choice.get("delta") or {}, assembler, external)
                        if delta:
                            await self.send(delta)
            message, finish_reason = assembler.message(), assembler.finish_reason or "stop"
            empty = _empty_answer(llm, message, finish_reason)
            if empty is None:
                return message, finish_reason, assembler.usage, llm
            # Nothing of this model's answer went out (at most the role chunk): the next may answer.
            await llm.record_usage(self.context, assembler.usage)
            self.context.answered_by.pop()
            _fall_back_or_raise(chain, position, empty)
        raise AssertionError("unreachable: the last model's error is raised")

    def _forwarded_delta(
        self, delta: dict[str, Any], assembler: ChunkAssembler, external: set[str]
    ) -> dict[str, Any]:
        """The part of a model delta the client sees: text, and external tool-call fragments."""
        out: dict[str, Any] = {}
        if delta.get("content"):
            out["content"] = delta["content"]
        fragments = []
        for fragment in delta.get("tool_calls") or []:
            index = fragment.get("index", 0)
            if assembler.tool_call_name(index) not in external:
                continue
            position = self.external_index.setdefault(index, len(self.external_index))
            fragments.append({**fragment, "index": position})
        if fragments:
            out["tool_calls"] = fragments
        return out

    async def start(self) -> None:
        """Send the role chunk, once. It goes out when the model first answers, so that a
        failure before that (a provider's 429) can still get its own HTTP status."""
        if not self.started:
            self.started = True
            await self.send({"role": "assistant", "content": ""})

    async def finish(self, finish_reason: str, usage: dict[str, int]) -> None:
        await self.start()
        await self.send({}, finish_reason)
        if self.include_usage:
            await self.send(None, usage=usage)


async def _chain(first: list[dict[str, Any]], rest: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for chunk in first:
        yield chunk
    async for chunk in rest:
        yield chunk


def _external_tool_names(tools: list[dict[str, Any]], server_tools: dict[str, Tool]) -> set[str]:
    names = set()
    for i, definition in enumerate(tools):
        function = definition.get("function") if isinstance(definition, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not name:
            raise BadRequestError(f"tools[{i}] has no function name", param=f"tools.{i}.function.name")
        if name in server_tools:
            raise BadRequestError(
                f"tools[{i}]: '{name}' is the name of one of the agent's own tools; rename it",
                param=f"tools.{i}.function.name",
            )
        names.add(name)
    return names
