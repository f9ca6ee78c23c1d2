"""Test kit for Robutler and skill authors: offline models, chunk builders, a fake upstream.

- :class:`TestModel` (``model="test"``) calls every offered tool once, then answers with the
  results; :class:`ScriptedModel` replays given chunks or completions.
- :func:`text_chunks`, :func:`tool_call_chunks`, :func:`finish_chunks` build OpenAI chunks.
- :func:`run_request` runs one request, streamed or not, and returns the completion.
- :mod:`robutler_core.testing.fake_openai` serves an OpenAI-compatible API on a loopback port,
  for testing provider skills through their real SDK and HTTP stack.
"""

from .chunks import completion_to_chunks, finish_chunks, text_chunks, tool_call_chunks
from .models import ScriptedModel, TestModel, message_text
from .runner import run_request
from .schema_values import example_value

__all__ = [
    "ScriptedModel",
    "TestModel",
    "completion_to_chunks",
    "example_value",
    "finish_chunks",
    "message_text",
    "run_request",
    "text_chunks",
    "tool_call_chunks",
]
