"""Model call prices from LiteLLM's price map, read without importing LiteLLM.

LiteLLM ships its price map (``model_prices_and_context_window_backup.json``, the data behind
``litellm.model_cost`` and ``litellm.cost_per_token``) inside its package. Importing LiteLLM
takes seconds, which would land on the first model call of a process whose LLM skill is not
LiteLLM's; reading the JSON takes milliseconds. The arithmetic is LiteLLM's for token-priced
chat models: ``prompt_tokens * input_cost_per_token + completion_tokens *
output_cost_per_token``, with the ``*_above_200k_tokens`` rates when the prompt is longer than
200,000 tokens. A test checks the results against ``litellm.cost_per_token``.
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
    price map has no token prices for it."""
    entry = price_entry(model)
    if not entry or "input_cost_per_token" not in entry or "output_cost_per_token" not in entry:
        return None
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    tier = "_above_200k_tokens" if prompt > TIER_TOKENS else ""
    input_price = entry.get(f"input_cost_per_token{tier}", entry["input_cost_per_token"])
    output_price = entry.get(f"output_cost_per_token{tier}", entry["output_cost_per_token"])
    return prompt * input_price + completion * output_price
