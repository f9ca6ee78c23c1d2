"""LiteLLMSkill against the LLM-skill contract, on a fake OpenAI API (LiteLLM's openai/ route)."""

import json

import pytest

from robutler_core.testing.fake_openai import FakeOpenAIServer
from robutler_core.testing.llm_contract import LLMSkillContract
from robutler_skill_litellm import LiteLLMSkill


class TestLiteLLMContract(LLMSkillContract):
    model = "litellm/openai/fake-model"

    @pytest.fixture
    def upstream(self):
        with FakeOpenAIServer() as server:
            yield server

    def make_skill(self, upstream):
        return LiteLLMSkill({"api_base": upstream.base_url, "api_key": "sk-test"})

    def enqueue_text(self, upstream, text, usage):
        upstream.enqueue_completion({"role": "assistant", "content": text},
                                    usage={**usage, "total_tokens": sum(usage.values())})

    def enqueue_tool_calls(self, upstream, calls):
        upstream.enqueue_completion({"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
            for call_id, name, arguments in calls]})

    def enqueue_error(self, upstream, status, message, retry_after):
        upstream.enqueue_error(status, message, headers={"retry-after": str(retry_after)})

    def tool_results_sent(self, upstream):
        return [(m["tool_call_id"], m["content"]) for m in upstream.requests[-1].body["messages"] if m["role"] == "tool"]
