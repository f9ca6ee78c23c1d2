import pytest

from robutler_core import Agent
from robutler_core.plugins import installed_skills
from robutler_skill_weather import WeatherSkill


def test_registered_by_entry_point():
    info = installed_skills().get("weather")
    assert info.skill_class is WeatherSkill
    assert info.distribution == "robutler-skill-weather"


async def test_agent_uses_the_tool_with_configured_unit():
    agent = Agent("w", model="test", skills={"weather": installed_skills().create("weather", {"default_unit": "fahrenheit"})})
    # TestModel generates "a" for city, which has no forecast: the error goes back to the model.
    completion = await agent.run([{"role": "user", "content": "weather?"}])
    assert "get_weather returned Error: tool 'get_weather' failed: ValueError: no forecast for 'a'" in (
        completion["choices"][0]["message"]["content"]
    )
    assert WeatherSkill({"default_unit": "fahrenheit"}).get_weather("Oslo") == "snow, 39.2 degrees fahrenheit in Oslo"
