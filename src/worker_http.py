"""The worker's HTTP endpoints for operators: ``/healthz``, ``/readyz`` and ``/metrics``.

Served on ``INFRAUDIT_WORKER_HTTP_HOST:INFRAUDIT_WORKER_HTTP_PORT`` (off while the port is
unset) by :mod:`infraudit.ops_http` in the worker's own event loop, from before the worker
connects to Temporal until it has stopped, so a liveness probe answers while it starts:

- ``/healthz``: 200 while the process and its event loop run (they answer this).
- ``/readyz``: 200 once the worker is connected to Temporal (its frontend answers health
  checks), its store answers a query, and it polls its task queue; else 503 naming what is
  missing, in the API's ``/readyz`` shape (:mod:`infraudit.readiness`). During a graceful stop it
  reads ``not polling`` as soon as the worker no longer runs.
- ``/metrics``: the worker's metrics and the Temporal SDK's (:mod:`infraudit.metrics`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from temporalio.client import Client
from temporalio.worker import Worker

from infraudit import ops_http, readiness, temporal
from infraudit.config import Settings
from infraudit.metrics import WorkerMetrics
from infraudit.store.db import Database


@dataclass
class WorkerState:
    """What the endpoints look at; :func:`infraudit.worker.run_worker` fills in ``client`` and
    ``worker`` as the worker comes up. ``metrics`` is None when the worker serves no HTTP (then
    nothing collects metrics)."""

    metrics: WorkerMetrics | None = None
    client: Client | None = None
    worker: Worker | None = None


@asynccontextmanager
async def serving(settings: Settings, db: Database) -> AsyncIterator[WorkerState]:
    """The worker's endpoints for the block, when ``settings.worker_http_port`` is set.

    Then it also makes the worker's metrics and points the process's Temporal SDK runtime at
    them (:meth:`~infraudit.metrics.ProcessMetrics.install_sdk_runtime`), so it must be entered
    before the worker's client connects. Raises :class:`infraudit.ops_http.ListenError` when
    the port cannot be bound. Unset, it yields an empty state and serves nothing. ``/readyz``
    queries ``db``, the worker's own store (its pool is the caller's to close).
    """
    if settings.worker_http_port is None:
        yield WorkerState()
        return
    metrics = WorkerMetrics()
    metrics.install_sdk_runtime()
    state = WorkerState(metrics=metrics)

    async def healthz() -> ops_http.Response:
        return _json(200, {"status": "ok"})

    async def readyz() -> ops_http.Response:
        checks = await readiness.check_all(
            {
                "database": lambda: readiness.database_answers(db),
                "temporal": lambda: _temporal_answers(state, settings),
                "polling": lambda: _polling(state),
            },
            within=settings.temporal_rpc_timeout,
        )
        ready = readiness.all_ok(checks)
        return _json(200 if ready else 503, {"status": "ok" if ready else "unavailable", **checks})

    routes: dict[str, ops_http.Route] = {
        "/healthz": healthz,
        "/readyz": readyz,
        "/metrics": metrics.scrape,
    }
    async with (
        ops_http.serving(
            settings.worker_http_host,
            settings.worker_http_port,
            routes,
            what="the worker's /healthz, /readyz and /metrics (INFRAUDIT_WORKER_HTTP_PORT)",
        ),
        metrics.draining(),
    ):
        yield state


async def _temporal_answers(state: WorkerState, settings: Settings) -> None:
    if state.client is None:
        raise readiness.NotReady("not connected yet")
    await temporal.check_health(state.client, settings)


async def _polling(state: WorkerState) -> None:
    worker = state.worker
    if worker is None or not worker.is_running or worker.is_shutdown:
        raise readiness.NotReady("not polling")


def _json(status: int, body: dict[str, str]) -> ops_http.Response:
    return ops_http.Response(status, json.dumps(body).encode())
