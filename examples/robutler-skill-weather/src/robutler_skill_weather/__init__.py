"""An example third-party Robutler skill package: a weather tool, registered by entry point.

Its forecasts come from a fixed table so that it runs offline; a real package would call a
weather API here (with httpx) instead.
"""

from typing import Annotated, Literal

from pydantic import Field

from robutler_core import Skill, hookimpl, tool

_FORECASTS = {"paris": (18.0, "cloudy"), "tokyo": (24.0, "sunny"), "oslo": (4.0, "snow")}


class WeatherSkill(Skill):
    """Tells the weather. Config: ``default_unit`` ("celsius" or "fahrenheit")."""

    @tool
    def get_weather(
        self,
        city: Annotated[str, Field(examples=["Paris", "Tokyo", "Oslo"])],
        unit: Literal["celsius", "fahrenheit"] | None = None,
    ) -> str:
        """Current weather in a city.

        Args:
            city: City name.
            unit: Temperature unit; the skill's default_unit when left out.
        """
        unit = unit or self.config.get("default_unit", "celsius")
        forecast = _FORECASTS.get(city.strip().lower())
        if forecast is None:
            raise ValueError(f"no forecast for {city!r}; known cities: {', '.join(sorted(_FORECASTS))}")
        celsius, sky = forecast
        degrees = celsius if unit == "celsius" else celsius * 9 / 5 + 32
        return f"{sky}, {degrees:g} degrees {unit} in {city}"


@hookimpl
def register_skills(register):
    register(WeatherSkill, name="weather")
