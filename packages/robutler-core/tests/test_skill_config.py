"""Skill.config_model, Skill.check_configuration, Skill.close, LLMSkill's API-key and
parameter declarations, and the shape checks of upstream answers."""

from typing import Literal

import pydantic
import pytest

from robutler_core import LLMSkill, Skill
from robutler_core.errors import ConfigurationError, UpstreamError
from robutler_core.plugins import SkillRegistry
from robutler_core.skill import STANDARD_PARAMS, LLMConfig, checked_chunk, checked_completion


class WeatherConfig(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    units: Literal["metric", "imperial"] = "metric"
    timeout: float = 10.0
    cities: list[str] = []


class WeatherSkill(Skill):
    config_model = WeatherConfig


class KeyedModel(LLMSkill):
    api_key_env = "ROBUTLER_TEST_PROVIDER_KEY"

    async def chat_completion(self, messages, tools=None, **params):  # pragma: no cover
        raise NotImplementedError

    async def chat_completion_stream(self, messages, tools=None, **params):  # pragma: no cover
        yield {}


def test_config_is_validated_and_coerced_against_the_config_model():
    skill = WeatherSkill({"timeout": "2.5", "units": "imperial"})
    assert skill.config == {"timeout": 2.5, "units": "imperial"}  # coerced; defaults not added
    assert WeatherSkill().config == {}


def test_every_bad_option_is_named_with_the_skill():
    with pytest.raises(ConfigurationError) as info:
        WeatherSkill({"timeout": "abc", "units": "kelvin", "citys": ["Paris"]})
    message = str(info.value)
    assert message.startswith("WeatherSkill: invalid config: ")
    assert "option 'timeout': Input should be a valid number, unable to parse string as a number, got 'abc'" in message
    assert "option 'units': Input should be 'metric' or 'imperial', got 'kelvin'" in message
    assert "option 'citys': unknown option" in message


def test_nested_option_errors_give_their_path_and_a_non_mapping_config_is_refused():
    with pytest.raises(ConfigurationError, match=r"option 'cities\.1': Input should be a valid string, got 3"):
        WeatherSkill({"cities": ["Paris", 3]})
    with pytest.raises(ConfigurationError, match="WeatherSkill: config must be a mapping of options, got list"):
        WeatherSkill(["timeout"])  # type: ignore[arg-type]


def test_the_registry_creates_skills_through_the_same_validation():
    registry = SkillRegistry()
    registry.add(WeatherSkill, name="weather")
    with pytest.raises(ConfigurationError, match="option 'timeout'"):
        registry.create("weather", {"timeout": "soon"})


def test_a_skill_without_a_config_model_takes_any_config():
    assert Skill({"anything": object}).config == {"anything": object}


async def test_default_check_configuration_and_close_do_nothing():
    skill = WeatherSkill()
    assert skill.check_configuration() is None
    assert await skill.close() is None


def test_llm_check_configuration_reports_a_missing_api_key(monkeypatch):
    monkeypatch.delenv("ROBUTLER_TEST_PROVIDER_KEY", raising=False)
    with pytest.raises(ConfigurationError,
                       match=r"KeyedModel needs an API key: set config\['api_key'\] or \$ROBUTLER_TEST_PROVIDER_KEY"):
        KeyedModel({"model": "m"}).check_configuration()
    KeyedModel({"model": "m", "api_key": "k"}).check_configuration()
    monkeypatch.setenv("ROBUTLER_TEST_PROVIDER_KEY", "from-env")
    KeyedModel({"model": "m"}).check_configuration()
    assert KeyedModel({"model": "m"}).api_key() == "from-env"
    assert KeyedModel({"model": "m"}).client_options("NO_SUCH_BASE_URL_ENV")["api_key"] == "from-env"


def test_llm_skills_declare_the_standard_parameters_and_never_the_legacy_ones():
    assert KeyedModel.supported_params == STANDARD_PARAMS
    assert {"temperature", "tool_choice", "response_format", "max_completion_tokens"} <= STANDARD_PARAMS
    assert not {"functions", "function_call"} & STANDARD_PARAMS


def test_llm_config_refuses_unknown_and_out_of_range_options():
    class Configured(KeyedModel):
        config_model = LLMConfig

    with pytest.raises(ConfigurationError) as info:
        Configured({"model": "m", "temprature": 0.2, "max_tokens": 0, "fallbacks": "openai/x"})
    message = str(info.value)
    assert "option 'temprature': unknown option" in message
    assert "option 'max_tokens': Input should be greater than 0, got 0" in message
    assert "option 'fallbacks': Input should be a valid list" in message


@pytest.mark.parametrize("completion", [
    None, [], {"choices": []}, {"choices": ["x"]}, {"choices": [{"message": "hi"}]},
    {"choices": [{"message": {"content": 5}}]},
    {"choices": [{"message": {"content": None, "tool_calls": [{"id": "c", "function": "add"}]}}]},
])
def test_a_completion_of_the_wrong_shape_is_an_upstream_error(completion):
    with pytest.raises(UpstreamError, match="provider error from p/m: invalid response") as info:
        checked_completion(completion, "p/m")
    assert info.value.status_code == 502 and info.value.code == "upstream_invalid_response"


@pytest.mark.parametrize("chunk", [
    None, {"object": "chat.completion.chunk"}, {"choices": [1]}, {"choices": [{"delta": "x"}]},
    {"choices": [{"delta": {"content": 3}}]}, {"choices": [{"delta": {"tool_calls": {"index": 0}}}]},
])
def test_a_chunk_of_the_wrong_shape_is_an_upstream_error(chunk):
    with pytest.raises(UpstreamError, match="invalid response"):
        checked_chunk(chunk, "p/m")


def test_well_formed_completions_and_chunks_pass_unchanged():
    completion = {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "add", "arguments": "{}"}}]}}]}
    assert checked_completion(completion, "p/m") is completion
    for chunk in ({"choices": []}, {"choices": [{"delta": {"content": "x", "tool_calls": None}}]},
                  {"choices": [{"index": 0, "finish_reason": "stop"}]}):
        assert checked_chunk(chunk, "p/m") is chunk


def test_client_options_read_config_over_the_environment(monkeypatch):
    monkeypatch.setenv("ROBUTLER_TEST_BASE_URL", "http://from-env")
    options = KeyedModel({"api_key": "k", "max_retries": None, "timeout": 5}).client_options(
        "ROBUTLER_TEST_BASE_URL", max_retries=3)
    assert options == {"api_key": "k", "max_retries": 3, "base_url": "http://from-env", "timeout": 5.0}
    options = KeyedModel({"api_key": "k", "max_retries": 0, "base_url": "http://config"}).client_options(
        "ROBUTLER_TEST_BASE_URL")
    assert options == {"api_key": "k", "max_retries": 0, "base_url": "http://config"}
