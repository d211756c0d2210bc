"""The FastAPI application: the ``/v1`` routers, health, the Settings page, one error shape."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from temporalio.client import Client

from infraudit import __version__, event_data, reach, tracing
from infraudit.api import errors, page
from infraudit.api import metrics as api_metrics
from infraudit.api.deps import Resources, org_id
from infraudit.api.limits import BodyLimit
from infraudit.api.quotas import Quotas
from infraudit.api.routes import V1_ROUTERS, health, settings_page
from infraudit.api.schemas import DATA_VALUE_REF
from infraudit.api.signin import SignInKeys
from infraudit.config import Settings, get_settings
from infraudit.metrics import ApiMetrics
from infraudit.store.db import Database
from infraudit.store.secret_box import Keyring

log = logging.getLogger(__name__)

#: Limit for bodies other than events (registrations and the page's forms are small).
OTHER_BODY_LIMIT = 64 * 1024


def create_app(
    settings: Settings | None = None,
    client: Client | None = None,
    metrics: ApiMetrics | None = None,
) -> FastAPI:
    """Build the app; pass ``client`` to share an existing Temporal connection (tests do).

    With ``metrics`` it counts its requests into them and serves them on its metrics listener
    (:mod:`infraudit.api.metrics`); ``infraudit api`` passes them when
    ``INFRAUDIT_API_METRICS_PORT`` is set.
    """
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
        reaching = asyncio.create_task(reach_dependencies(app.state.resources))
        with tracing.exporting(settings, tracing.API_SERVICE):
            try:
                async with api_metrics.serving(settings, metrics):
                    yield
            finally:
                reaching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reaching
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
    if metrics is not None:
        app.add_middleware(api_metrics.RequestMetrics, metrics=metrics)
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
    tracing.instrument(app, settings)

    _publish_event_data_schema(app)
    return app


async def reach_dependencies(res: Resources) -> None:
    """Try the database and Temporal, each until it answers once, saying so in one line per try
    (:mod:`infraudit.reach`); the Temporal client made is the one requests then use.

    It runs beside the app rather than before it: the API serves from its first moment (with 503
    and ``/readyz`` naming what is missing while a dependency is down), so ``/healthz`` answers
    and a supervisor that waits for ``/readyz`` (``infraudit up``, an orchestrator) just waits.
    """
    temporal = f"Temporal at {res.settings.temporal_address}"
    try:
        async with asyncio.TaskGroup() as checks:
            checks.create_task(reach.database(res.db))
            checks.create_task(
                reach.until_answers(temporal, res.temporal_client, reach.temporal_down)
            )
    except Exception:  # not an outage but a bug: requests will meet it too; say it once here
        log.exception("start-up check of the database and Temporal failed")


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
