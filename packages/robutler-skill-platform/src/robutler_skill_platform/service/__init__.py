"""The self-hosted Robutler platform service: users and API keys, agents and their owners,
RS256 payment tokens and a double-entry payments ledger on PostgreSQL.

``create_service_app()`` is a FastAPI app serving ``/api/...`` (:mod:`.api`); ``robutler platform
serve`` runs it, and ``robutler serve --with-platform`` mounts the same routes beside the agents.
State lives in PostgreSQL through asyncpg: ``dsn`` (or ``$ROBUTLER_POSTGRES_DSN``), else an
embedded PostgreSQL under ``$ROBUTLER_DATA_DIR``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request

from robutler_core.errors import ServiceUnavailableError

from .api import build_router
from .discovery import Discovery
from .store import PlatformStore

DEFAULT_ISSUER = "robutler-platform"


def embedding_model_from_env() -> str | None:
    """The model that embeds intents: ``$ROBUTLER_PLATFORM_EMBEDDING_MODEL`` or ``None``
    (text search)."""
    return os.environ.get("ROBUTLER_PLATFORM_EMBEDDING_MODEL") or None


def issuer_from_env() -> str:
    """The ``iss`` of the tokens this platform signs: ``$ROBUTLER_PLATFORM_ISSUER``, else
    ``$ROBUTLER_PLATFORM_URL``, else ``robutler-platform``."""
    return os.environ.get("ROBUTLER_PLATFORM_ISSUER") or os.environ.get("ROBUTLER_PLATFORM_URL") or DEFAULT_ISSUER


async def open_store(dsn: str | None = None, issuer: str | None = None) -> PlatformStore:
    """Connect (``dsn``, ``$ROBUTLER_POSTGRES_DSN`` or the embedded PostgreSQL), migrate and
    load the signing key. Close it with ``await store.database.close()``."""
    from robutler_core.postgres import connect

    database = await connect(dsn, name="platform")
    try:
        return await PlatformStore.open(database, issuer or issuer_from_env())
    except BaseException:
        await database.close()
        raise


class PlatformService:
    """The service's routes and its store's lifetime, to serve alone or beside agents.

    Args:
        dsn: PostgreSQL URL (default ``$ROBUTLER_POSTGRES_DSN``, else embedded).
        issuer: the tokens' ``iss`` (default :func:`issuer_from_env`).
        embedding_model: ``"provider/model"`` embedding intents (default
            :func:`embedding_model_from_env`; ``None``: text search).
    """

    def __init__(self, dsn: str | None = None, issuer: str | None = None, embedding_model: str | None = None) -> None:
        self.dsn = dsn
        self.issuer = issuer
        self.embedding_model = embedding_model or embedding_model_from_env()
        self.store: PlatformStore | None = None
        self.discovery: Discovery | None = None
        self.router = build_router(self._store_of, self._discovery_of)

    def _store_of(self, request: Request) -> PlatformStore:
        if self.store is None:
            raise ServiceUnavailableError("the platform service is starting or stopped", code="platform_unavailable")
        return self.store

    def _discovery_of(self, request: Request) -> Discovery:
        if self.discovery is None:
            raise ServiceUnavailableError("the platform service is starting or stopped", code="platform_unavailable")
        return self.discovery

    @contextlib.asynccontextmanager
    async def lifetime(self) -> AsyncIterator[PlatformService]:
        """Open the store and discovery for the app's lifetime and close them after."""
        store = await open_store(self.dsn, self.issuer)
        discovery = Discovery(store.database, self.embedding_model)
        try:
            await discovery.open()
            self.store, self.discovery = store, discovery
            yield self
        finally:
            self.store = self.discovery = None
            await discovery.close()
            await store.database.close()


def create_service_app(
    dsn: str | None = None, issuer: str | None = None, embedding_model: str | None = None
) -> FastAPI:
    """The platform service as its own FastAPI app (``robutler platform serve``)."""
    from robutler_server.errors import install_error_handlers

    service = PlatformService(dsn, issuer, embedding_model)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service.lifetime():
            yield

    app = FastAPI(title="Robutler platform", lifespan=lifespan)
    app.state.platform = service
    install_error_handlers(app)
    app.include_router(service.router)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "healthy" if service.store is not None else "starting"}

    return app
