"""The context window: which messages of a conversation are sent to the model.

:func:`trim` cuts a conversation to at most ``max_messages`` messages and ``max_tokens``
estimated tokens, oldest first, so that what remains is still a valid chat-completions
conversation for every provider:

- System (and ``developer``) messages are always kept, where they were.
- The current exchange is always kept: the latest ``user`` message and every message after it
  (the tool calls and results of an exchange in progress, e.g. a client's external tool
  results).
- An assistant message with ``tool_calls`` and the ``role: "tool"`` messages that follow it
  form one group, kept or dropped whole: a tool result never loses its call, a call never
  loses its result.
- Older groups are kept newest first while they fit; the first that does not fit ends the
  window (no gaps in the middle of a conversation).
- The kept history starts with a ``user`` message (leading assistant or tool groups are
  dropped too), as Anthropic and Gemini require.

When the system messages and the current exchange alone exceed a limit they are still sent
whole: the window never cuts a message in two and never drops the question being asked.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

Message = dict[str, Any]

MESSAGE_OVERHEAD_TOKENS = 4
"""Tokens counted per message for its role and delimiters (OpenAI's chat format spends 3-4)."""

IMAGE_TOKENS = 765
"""Tokens counted per image part: OpenAI's price for a 1024x1024 image at high detail."""

BYTES_PER_TOKEN = 4
"""UTF-8 bytes per token of the estimate: about 4 characters a token for English text with
OpenAI's and Anthropic's tokenizers; counting bytes rather than characters keeps the estimate
from undercounting non-Latin scripts badly (a CJK character is 3 bytes: 0.75 token, where
tokenizers spend about 1)."""

_SYSTEM_ROLES = frozenset({"system", "developer"})


def estimate_tokens(message: Message) -> int:
    """An estimate of the prompt tokens ``message`` (an OpenAI chat message) costs.

    ``MESSAGE_OVERHEAD_TOKENS`` + ceil(UTF-8 bytes / ``BYTES_PER_TOKEN``) of its text (string
    content, text parts, tool call names and arguments, ``name``, ``tool_call_id``) +
    ``IMAGE_TOKENS`` per image part. Exact counts need the model's own tokenizer (tiktoken's
    encodings are downloaded on first use, and other providers' tokenizers differ), so this is
    a documented heuristic, not a count; pass your own ``count_tokens`` to :func:`trim` for an
    exact one.
    """
    size = 0
    images = 0
    content = message.get("content")
    if isinstance(content, str):
        size += len(content.encode())
    elif isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            if part.get("type") in ("image_url", "input_image", "image"):
                images += 1
            elif isinstance(part.get("text"), str):
                size += len(part["text"].encode())
            else:
                size += len(json.dumps(part).encode())
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        size += len(str(function.get("name") or "").encode()) + len(str(function.get("arguments") or "").encode())
        size += len(str(call.get("id") or "").encode())
    for key in ("name", "tool_call_id"):
        if isinstance(message.get(key), str):
            size += len(message[key].encode())
    return MESSAGE_OVERHEAD_TOKENS + math.ceil(size / BYTES_PER_TOKEN) + IMAGE_TOKENS * images


def trim(
    messages: list[Message],
    *,
    max_messages: int | None = 50,
    max_tokens: int | None = None,
    count_tokens: Callable[[Message], int] = estimate_tokens,
) -> list[Message]:
    """The messages of ``messages`` (OpenAI chat messages, oldest first) that fit the window,
    in their order (the same dicts, not copies); see the module docstring for the rules.

    ``max_messages`` counts messages, system ones included; ``max_tokens`` counts
    ``count_tokens`` of each message (default :func:`estimate_tokens`); ``None`` means no
    limit. Raises ValueError for a limit below 1.
    """
    for name, limit in (("max_messages", max_messages), ("max_tokens", max_tokens)):
        if limit is not None and limit < 1:
            raise ValueError(f"{name} must be at least 1, got {limit}")
    system = [i for i, m in enumerate(messages) if m.get("role") in _SYSTEM_ROLES]
    groups = _groups([i for i, m in enumerate(messages) if m.get("role") not in _SYSTEM_ROLES], messages)
    if not groups:
        return list(messages)

    current = _current_exchange(groups, messages)
    kept_groups = groups[current:]
    mandatory = system + [i for group in kept_groups for i in group]

    def cost(indices: list[int]) -> int:
        return sum(count_tokens(messages[i]) for i in indices) if max_tokens is not None else 0

    used_messages, used_tokens = len(mandatory), cost(mandatory)
    history: list[list[int]] = []
    for group in reversed(groups[:current]):
        group_tokens = cost(group)
        if max_messages is not None and used_messages + len(group) > max_messages:
            break
        if max_tokens is not None and used_tokens + group_tokens > max_tokens:
            break
        history.append(group)
        used_messages += len(group)
        used_tokens += group_tokens
    history.reverse()
    while history and messages[history[0][0]].get("role") != "user":
        history.pop(0)

    kept = set(system)
    for group in history + kept_groups:
        kept.update(group)
    return [m for i, m in enumerate(messages) if i in kept]


def _groups(indices: list[int], messages: list[Message]) -> list[list[int]]:
    """Non-system message indices in groups: an assistant message with its following tool
    results (tool messages also stay with whatever precedes them); any other message alone."""
    groups: list[list[int]] = []
    for i in indices:
        if messages[i].get("role") == "tool" and groups:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _current_exchange(groups: list[list[int]], messages: list[Message]) -> int:
    """The index of the group holding the latest user message (the last group when none)."""
    for position in range(len(groups) - 1, -1, -1):
        if messages[groups[position][0]].get("role") == "user":
            return position
    return len(groups) - 1
