"""The FastAPI application: routers, error shape, body limits, health and readiness."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, status
from fastapi.responses import JSONResponse
from sqlalchemy import text
from temporalio.client import Client

from infraudit import __version__, event_data, temporal
from infraudit.api import delivery_log, errors, events, webhooks
from infraudit.api.deps import Resources, ResourcesDep, org_id
from infraudit.api.limits import BodyLimit
from infraudit.api.quotas import Quotas
from infraudit.api.schemas import DATA_VALUE_REF, Readiness
from infraudit.config import Settings, get_settings
from infraudit.store.db import Database
from infraudit.store.secret_box import Keyring

#: Limit for bodies other than events (registrations are small).
OTHER_BODY_LIMIT = 64 * 1024


def create_app(settings: Settings | None = None, client: Client | None = None) -> FastAPI:
    """Build the app; pass ``client`` to share an existing Temporal connection (tests do)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.database_url, Keyring.from_settings(settings))
        app.state.resources = Resources(
            settings=settings, db=db, quotas=Quotas(settings), client=client
        )
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
    # Every /v1 route needs an API key and reads the database (the key's org), so the key
    # check and its 401/503 live here, once, for routes present and future.
    for router in (webhooks.router, delivery_log.router, events.router):
        app.include_router(
            router,
            dependencies=[Depends(org_id)],
            responses=errors.error_responses(401, 503),
        )

    _publish_event_data_schema(app)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "A dependency does not answer."}},
    )
    async def readyz(res: ResourcesDep) -> JSONResponse:
        """The database and Temporal both answer; 503 naming the one that does not.

        Both are asked at once and each may take ``temporal_rpc_timeout`` seconds, so a hung
        dependency makes the probe fail in that time instead of hanging it.
        """

        async def database() -> None:
            async with res.db.session() as s:
                await s.execute(text("SELECT 1"))

        async def temporal_frontend() -> None:
            await temporal.check_health(await res.temporal_client(), res.settings)

        async def check(probe: Callable[[], Awaitable[None]]) -> str:
            try:
                async with asyncio.timeout(res.settings.temporal_rpc_timeout):
                    await probe()
            except Exception as err:  # refused, timed out, any driver or RPC error: not ready
                return f"unavailable: {type(err).__name__}"
            return "ok"

        database_state, temporal_state = await asyncio.gather(
            check(database), check(temporal_frontend)
        )
        checks = {"database": database_state, "temporal": temporal_state}
        ready = all(v == "ok" for v in checks.values())
        code = status.HTTP_200_OK if ready else status.HTTP_503_SERVICE_UNAVAILABLE
        return JSONResponse({"status": "ok" if ready else "unavailable", **checks}, code)

    return app


def _publish_event_data_schema(app: FastAPI) -> None:
    """Add the recursive schema of an event's ``data`` values to the OpenAPI components.

    Pydantic describes ``data`` as a plain object; the values it may hold (bounded numbers,
    nested arrays and objects) are one recursive schema, written once in ``event_data``.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        document = generate()
        components = document.setdefault("components", {}).setdefault("schemas", {})
        components.setdefault(event_data.VALUE_SCHEMA_NAME, event_data.value_schema(DATA_VALUE_REF))
        return document

    app.openapi = openapi  # type: ignore[method-assign]
