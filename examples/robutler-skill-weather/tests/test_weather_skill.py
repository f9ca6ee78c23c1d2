import logging

import httpx

from robutler_core import Agent
from robutler_core.plugins import installed_skills
from robutler_core.tools import Tool
from robutler_skill_weather import WeatherSkill


def test_registered_by_entry_point():
    info = installed_skills().get("weather")
    assert info.skill_class is WeatherSkill
    assert info.distribution == "robutler-skill-weather"


def test_the_schema_gives_an_example_city():
    schema = Tool.from_function(WeatherSkill().get_weather).definition()["function"]["parameters"]
    assert schema["properties"]["city"]["examples"] == ["Paris", "Tokyo", "Oslo"]


async def test_agent_uses_the_tool_with_configured_unit():
    agent = Agent("w", model="test", skills={"weather": installed_skills().create("weather", {"default_unit": "fahrenheit"})})
    # TestModel takes the first of the schema's examples for city.
    completion = await agent.run([{"role": "user", "content": "weather?"}])
    assert completion["choices"][0]["message"]["content"] == (
        "Tool results: get_weather returned cloudy, 64.4 degrees fahrenheit in Paris"
    )
    assert WeatherSkill({"default_unit": "fahrenheit"}).get_weather("Oslo") == "snow, 39.2 degrees fahrenheit in Oslo"


def test_an_unknown_city_is_a_tool_error_naming_the_known_ones():
    try:
        WeatherSkill().get_weather("Atlantis")
    except ValueError as exc:
        assert str(exc) == "no forecast for 'Atlantis'; known cities: oslo, paris, tokyo"
    else:
        raise AssertionError("no error")


def test_served_on_the_test_model_the_tool_succeeds_and_nothing_is_logged(caplog):
    from robutler_server import create_app
    from robutler_server.testing import serve_in_thread

    agent = Agent("forecaster", model="test", skills={"weather": WeatherSkill()})
    with caplog.at_level(logging.WARNING), serve_in_thread(create_app([agent])) as base_url:
        response = httpx.post(f"{base_url}/forecaster/chat/completions", timeout=30,
                              json={"model": "forecaster", "messages": [{"role": "user", "content": "Paris?"}]})
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == (
        "Tool results: get_weather returned cloudy, 18 degrees celsius in Paris"
    )
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
