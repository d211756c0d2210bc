"""The FastAPI application: the ``/v1`` routers, health, the Settings page, one error shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from temporalio.client import Client

from infraudit import __version__, event_data
from infraudit.api import errors, page
from infraudit.api.deps import Resources, org_id
from infraudit.api.limits import BodyLimit
from infraudit.api.quotas import Quotas
from infraudit.api.routes import V1_ROUTERS, health, settings_page
from infraudit.api.schemas import DATA_VALUE_REF
from infraudit.api.signin import SignInKeys
from infraudit.config import Settings, get_settings
from infraudit.store.db import Database
from infraudit.store.secret_box import Keyring

#: Limit for bodies other than events (registrations and the page's forms are small).
OTHER_BODY_LIMIT = 64 * 1024


def create_app(settings: Settings | None = None, client: Client | None = None) -> FastAPI:
    """Build the app; pass ``client`` to share an existing Temporal connection (tests do)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.database_url, Keyring.from_settings(settings))
        app.state.resources = Resources(
            settings=settings,
            db=db,
            quotas=Quotas(settings),
            signin_keys=SignInKeys.from_settings(settings),
            client=client,
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
    errors.install(app, page=page.error_page)

    def limit_for(path: str) -> int:
        return settings.max_event_bytes if path == "/v1/events" else OTHER_BODY_LIMIT

    app.add_middleware(BodyLimit, limit_for=limit_for)
    # Every /v1 route needs an API key and reads the database (the key's org), so the key
    # check and its 401/503 live here, once, for routes present and future.
    for router in V1_ROUTERS:
        app.include_router(
            router,
            dependencies=[Depends(org_id)],
            responses=errors.error_responses(401, 503),
        )
    app.include_router(health.router)
    app.include_router(settings_page.router)
    page.install(app)

    _publish_event_data_schema(app)
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
