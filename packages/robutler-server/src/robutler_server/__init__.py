"""Robutler server: serve Robutler agents over HTTP in OpenAI's chat-completions format."""

from .app import RESERVED_NAMES, create_app
from .config import load_agents

__all__ = ["RESERVED_NAMES", "create_app", "load_agents"]
