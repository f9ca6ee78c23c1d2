"""OpenAISkill and XAISkill against the LLM-skill contract, on a fake OpenAI API."""

from robutler_core.testing.llm_contract import OpenAIWireContract
from robutler_skill_openai import OpenAISkill, XAISkill


class TestOpenAIContract(OpenAIWireContract):
    model = "openai/gpt-4o-mini"

    def make_skill(self, upstream):
        return OpenAISkill({"base_url": upstream.base_url, "api_key": "sk-test", "max_retries": 0})


class TestXAIContract(OpenAIWireContract):
    model = "xai/grok-3"

    def make_skill(self, upstream):
        return XAISkill({"base_url": upstream.base_url, "api_key": "xai-test", "max_retries": 0})
