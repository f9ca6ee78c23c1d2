"""LiteLLMSkill against the LLM-skill contract, on a fake OpenAI API (LiteLLM's openai/ route)."""

from robutler_core.testing.llm_contract import OpenAIWireContract
from robutler_skill_litellm import LiteLLMSkill


class TestLiteLLMContract(OpenAIWireContract):
    model = "litellm/openai/fake-model"

    def make_skill(self, upstream):
        return LiteLLMSkill({"api_base": upstream.base_url, "api_key": "sk-test"})
