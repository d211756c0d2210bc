"""The FastAPI application: routers, error shape, body limits, health and readiness."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, status
from fastapi.responses import JSONResponse
from sqlalchemy import text
from temporalio.client import Client

from infraudit import __version__
from infraudit.api import delivery_log, errors, events, webhooks
from infraudit.api.deps import Resources, ResourcesDep
from infraudit.api.limits import BodyLimit
from infraudit.config import Settings, get_settings
from infraudit.store.db import Database

#: Limit for bodies other than events (registrations are small).
OTHER_BODY_LIMIT = 64 * 1024


def create_app(settings: Settings | None = None, client: Client | None = None) -> FastAPI:
    """Build the app; pass ``client`` to share an existing Temporal connection (tests do)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.database_url)
        app.state.resources = Resources(settings=settings, db=db, client=client)
        try:
            yield
        finally:
            await db.dispose()

    app = FastAPI(
        title="InfraAudit Webhooks",
        version=__version__,
        summary="Register HTTPS endpoints, publish events, inspect every delivery.",
        lifespan=lifespan,
    )
    errors.install(app)

    def limit_for(path: str) -> int:
        return settings.max_event_bytes if path == "/v1/events" else OTHER_BODY_LIMIT

    app.add_middleware(BodyLimit, limit_for=limit_for)
    app.include_router(webhooks.router)
    app.include_router(delivery_log.router)
    app.include_router(events.router)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz(res: ResourcesDep) -> JSONResponse:
        """The database and Temporal both answer; 503 naming the one that does not."""
        checks: dict[str, str] = {}
        try:
            async with res.db.session() as s:
                await s.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as err:  # any driver error means "not ready"
            checks["database"] = f"unavailable: {type(err).__name__}"
        try:
            temporal = await res.temporal_client()
            await temporal.service_client.check_health()
            checks["temporal"] = "ok"
        except Exception as err:  # connection refused, timeouts, RPC errors
            checks["temporal"] = f"unavailable: {type(err).__name__}"
        ready = all(v == "ok" for v in checks.values())
        code = status.HTTP_200_OK if ready else status.HTTP_503_SERVICE_UNAVAILABLE
        return JSONResponse({"status": "ok" if ready else "unavailable", **checks}, code)

    return app
