"""Model call prices from LiteLLM's price map, read without importing LiteLLM.

LiteLLM ships its price map (``model_prices_and_context_window_backup.json``, the data behind
``litellm.model_cost`` and ``litellm.cost_per_token``) inside its package. Importing LiteLLM
takes seconds, which would land on the first model call of a process whose LLM skill is not
LiteLLM's; reading the JSON takes milliseconds. The arithmetic is LiteLLM's for token-priced
chat models, cached prompts included (:func:`model_cost`); a test checks the results against
``litellm.cost_per_token``.

Why LiteLLM's map and not ``genai-prices``: the map is already installed with this package,
read offline, names models as Robutler does (``provider/model``), and has cache read and
write prices (``cache_read_input_token_cost``, ``cache_creation_input_token_cost``,
``cache_creation_input_token_cost_above_1hr``). ``genai-prices`` would add a dependency (and
its own HTTP client) for the same data.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger("robutler_skill_litellm.pricing")

PRICE_MAP_FILE = "model_prices_and_context_window_backup.json"
TIER_TOKENS = 200_000


@functools.cache
def price_map() -> dict[str, dict[str, Any]]:
    """LiteLLM's price map (model name -> prices and limits); empty when it cannot be read."""
    spec = importlib.util.find_spec("litellm")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / PRICE_MAP_FILE
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
    logger.warning("LiteLLM's price map (%s) was not found; model calls are not priced", PRICE_MAP_FILE)
    return {}


def price_entry(model: str) -> dict[str, Any] | None:
    """The price map entry of ``model`` (``provider/model`` or ``litellm/provider/model``).

    The map names OpenAI and Anthropic models without a prefix (``gpt-4o-mini``) and most
    others with one (``groq/llama3-8b-8192``); an entry found by the bare name must belong to
    the same provider.
    """
    name = model.removeprefix("litellm/")
    prices = price_map()
    entry = prices.get(name)
    if entry is not None:
        return entry
    provider, _, bare = name.partition("/")
    entry = prices.get(bare) if bare else None
    if entry is not None and entry.get("litellm_provider") in (provider, None):
        return entry
    return None


def model_cost(model: str, usage: dict[str, Any]) -> float | None:
    """The cost in US dollars of one call of ``model`` with OpenAI ``usage``; ``None`` when the
    price map has no token prices for it.

    ``usage`` is OpenAI's shape: ``prompt_tokens`` counts every input token, cached ones
    included; ``prompt_tokens_details.cached_tokens`` of them were read from the provider's
    prompt cache; ``prompt_tokens_details.cache_creation_tokens`` were written to it
    (Anthropic's ``cache_creation_input_tokens``, as robutler-skill-anthropic and LiteLLM
    report them; Anthropic's own top-level names are read too), of which
    ``prompt_tokens_details.cache_creation_token_details.ephemeral_1h_input_tokens`` with a
    one-hour lifetime. Priced: uncached input at ``input_cost_per_token``, cache reads at
    ``cache_read_input_token_cost``, cache writes at ``cache_creation_input_token_cost``
    (one-hour ones at ``cache_creation_input_token_cost_above_1hr``), output at
    ``output_cost_per_token``; a missing cache price is the input price. A prompt over
    200,000 tokens takes the ``*_above_200k_tokens`` rates where the map has them.
    """
    entry = price_entry(model)
    if not entry or "input_cost_per_token" not in entry or "output_cost_per_token" not in entry:
        return None
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    details = usage.get("prompt_tokens_details") or {}
    cache_read = int(details.get("cached_tokens") or usage.get("cache_read_input_tokens") or 0)
    cache_write = int(details.get("cache_creation_tokens") or usage.get("cache_creation_input_tokens") or 0)
    write_details = details.get("cache_creation_token_details") or usage.get("cache_creation") or {}
    write_1h = min(int(write_details.get("ephemeral_1h_input_tokens") or 0), cache_write)
    uncached = max(prompt - cache_read - cache_write, 0)

    def rate(key: str, default: float) -> float:
        tiered = entry.get(f"{key}_above_200k_tokens") if prompt > TIER_TOKENS else None
        value = tiered if tiered is not None else entry.get(key)
        return float(value) if value is not None else default

    input_price = rate("input_cost_per_token", 0.0)
    write_price = rate("cache_creation_input_token_cost", input_price)
    return (
        uncached * input_price
        + cache_read * rate("cache_read_input_token_cost", input_price)
        + (cache_write - write_1h) * write_price
        + write_1h * rate("cache_creation_input_token_cost_above_1hr", write_price)
        + completion * rate("output_cost_per_token", 0.0)
    )
