"""The worker process: both workflows and all activities on the engine's task queue."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import pydantic
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from infraudit import egress, reach, tracing, worker_http
from infraudit.activities.fanout import FanOutActivities
from infraudit.activities.send import SendActivities, new_http_client
from infraudit.attempt_metrics import AttemptMetrics
from infraudit.config import Settings, get_settings
from infraudit.metrics import WorkerMetrics
from infraudit.store.db import Database
from infraudit.store.secret_box import Keyring
from infraudit.workflows.delivery import DeliverWebhook
from infraudit.workflows.publish import PublishEvent

log = logging.getLogger(__name__)

#: Time on top of the HTTP timeout that a stopping worker gives attempts under way (loading the
#: endpoint, recording the outcome).
SHUTDOWN_GRACE = timedelta(seconds=5)

#: POSTs one worker keeps under way at once (each mostly waits on a receiver).
_CONCURRENT_POSTS = 1000

#: Modules the workflow sandbox shares instead of re-importing per workflow run: our contract,
#: signing and catalog are deterministic, and pydantic validates every workflow input. Without
#: this the sandbox cost about 40% of the worker's CPU per delivery (bench/).
_SANDBOX = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(
        "pydantic", "pydantic_core", "annotated_types", "infraudit"
    )
)


@asynccontextmanager
async def build_worker(
    client: Client,
    settings: Settings,
    *,
    metrics: WorkerMetrics | None = None,
    db: Database | None = None,
) -> AsyncIterator[Worker]:
    """A worker for ``settings.task_queue`` with the resources its activities share.

    ``db`` is the process's store when the caller already has one (it closes it); else the
    worker opens its own for the block.

    With ``metrics``, an interceptor counts its POST attempts into them
    (:mod:`infraudit.attempt_metrics`).

    Its HTTP client connects through the SSRF guard of :mod:`infraudit.egress` with the policy
    of ``settings`` (lifted only by dev mode or ``INFRAUDIT_ALLOW_PRIVATE_TARGETS``), so every
    worker enforces it, ``python worker.py`` included.


    Invalid workflow input (say, JSON from another service naming an unknown event type) fails
    that workflow with the validation message instead of retrying its task forever.
    """
    own_db = db is None
    db = db or Database(settings.database_url, Keyring.from_settings(settings))
    http = new_http_client(egress.Guard(allow_private=settings.private_targets_allowed))
    sender = SendActivities(db, http, response_body_limit=settings.response_body_limit)
    fan_out = FanOutActivities(db, client, settings)
    try:
        yield Worker(
            client,
            task_queue=settings.task_queue,
            workflows=[DeliverWebhook, PublishEvent],
            activities=[sender.send_webhook, fan_out.fan_out_page],
            workflow_failure_exception_types=[pydantic.ValidationError],
            workflow_runner=_SANDBOX,
            interceptors=[AttemptMetrics(metrics)] if metrics else [],
            # A delivery's first attempt runs as a local activity inside its workflow task, so
            # workflow task and local activity slots bound concurrent first POSTs the way the
            # activity slots bound the later ones: the SDK's 100 would let 100 slow receivers
            # hold every delivery up.
            max_concurrent_activities=_CONCURRENT_POSTS,
            max_concurrent_local_activities=_CONCURRENT_POSTS,
            max_concurrent_workflow_tasks=_CONCURRENT_POSTS,
            # On SIGTERM/Ctrl-C a POST under way finishes (it takes at most the HTTP timeout)
            # instead of being cut off and sent again by the next worker: a restart or deploy
            # must not make a receiver see a delivery twice.
            graceful_shutdown_timeout=timedelta(seconds=settings.http_timeout) + SHUTDOWN_GRACE,
        )
    finally:
        await http.aclose()
        if own_db:
            await db.dispose()


async def run_worker(settings: Settings | None = None) -> None:
    """Wait for the database and Temporal (:mod:`infraudit.reach`: one line per try, no
    traceback), prepare the namespace, then poll until cancelled; traces (when on) are sent
    before it returns.

    Nothing is polled before the database answers: an attempt taken meanwhile could not load
    its endpoint and would spend one of the delivery's tries.
    """
    settings = settings or get_settings()
    # The worker's /healthz, /readyz and /metrics (when configured) come first: they answer
    # while it waits for its dependencies, and its metrics must be in place before it connects.
    # One store (one connection pool) for the process: the start-up wait, /readyz and the
    # activities all use it.
    db = Database(settings.database_url, Keyring.from_settings(settings))
    try:
        with tracing.exporting(settings, tracing.WORKER_SERVICE):
            async with worker_http.serving(settings, db) as state:
                await reach.database(db)
                state.client = client = await reach.temporal_prepared(settings)
                async with build_worker(client, settings, metrics=state.metrics, db=db) as worker:
                    state.worker = worker
                    log.info(
                        "worker polling %s on %s/%s",
                        settings.task_queue,
                        settings.temporal_address,
                        settings.temporal_namespace,
                    )
                    await worker.run()
    finally:
        await db.dispose()
