"""AnthropicSkill against the LLM-skill contract, on a fake Anthropic Messages API."""

import pytest

from robutler_core.testing.llm_contract import LLMSkillContract
from robutler_skill_anthropic import AnthropicSkill
from robutler_skill_anthropic.testing import FakeAnthropicServer


class TestAnthropicContract(LLMSkillContract):
    model = "anthropic/claude-sonnet-4-6"

    @pytest.fixture
    def upstream(self):
        with FakeAnthropicServer() as server:
            yield server

    def make_skill(self, upstream):
        return AnthropicSkill({"base_url": upstream.base_url, "api_key": "sk-ant-test", "max_retries": 0})

    def enqueue_text(self, upstream, text, usage):
        upstream.enqueue_message(text, usage={"input_tokens": usage["prompt_tokens"],
                                              "output_tokens": usage["completion_tokens"]})

    def enqueue_tool_calls(self, upstream, calls):
        upstream.enqueue_message([{"type": "tool_use", "id": call_id, "name": name, "input": arguments}
                                  for call_id, name, arguments in calls])

    def enqueue_error(self, upstream, status, message, retry_after):
        upstream.enqueue_error(status, message, headers={"retry-after": str(retry_after)})

    def tool_results_sent(self, upstream):
        return [(block["tool_use_id"], block["content"])
                for message in upstream.requests[-1].body["messages"] if isinstance(message["content"], list)
                for block in message["content"] if block["type"] == "tool_result"]
