"""OpenAISkill and XAISkill against the LLM-skill contract, on a fake OpenAI API."""

import pytest

from robutler_core.testing.fake_openai import FakeOpenAIServer
from robutler_core.testing.llm_contract import LLMSkillContract
from robutler_skill_openai import OpenAISkill, XAISkill


class OpenAIWire(LLMSkillContract):
    @pytest.fixture
    def upstream(self):
        with FakeOpenAIServer() as server:
            yield server

    def enqueue_text(self, upstream, text, usage):
        upstream.enqueue_completion({"role": "assistant", "content": text},
                                    usage={**usage, "total_tokens": sum(usage.values())})

    def enqueue_tool_calls(self, upstream, calls):
        import json

        upstream.enqueue_completion({"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
            for call_id, name, arguments in calls]})

    def enqueue_error(self, upstream, status, message, retry_after):
        upstream.enqueue_error(status, message, headers={"retry-after": str(retry_after)})

    def tool_results_sent(self, upstream):
        return [(m["tool_call_id"], m["content"]) for m in upstream.requests[-1].body["messages"] if m["role"] == "tool"]


class TestOpenAIContract(OpenAIWire):
    model = "openai/gpt-4o-mini"

    def make_skill(self, upstream):
        return OpenAISkill({"base_url": upstream.base_url, "api_key": "sk-test", "max_retries": 0})


class TestXAIContract(OpenAIWire):
    model = "xai/grok-3"

    def make_skill(self, upstream):
        return XAISkill({"base_url": upstream.base_url, "api_key": "xai-test", "max_retries": 0})
