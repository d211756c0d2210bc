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

from infraudit import egress, temporal
from infraudit.activities.fanout import FanOutActivities
from infraudit.activities.send import SendActivities, new_http_client
from infraudit.config import Settings, get_settings
from infraudit.store.db import Database
from infraudit.store.secret_box import Keyring
from infraudit.workflows.delivery import DeliverWebhook
from infraudit.workflows.publish import PublishEvent

log = logging.getLogger(__name__)

#: Time on top of the HTTP timeout that a stopping worker gives attempts under way (loading the
#: endpoint, recording the outcome).
SHUTDOWN_GRACE = timedelta(seconds=5)

#: The HTTP library's loggers: httpx writes every request's full URL at INFO and httpcore traces
#: connections at DEBUG. Endpoint URLs may hold credentials (userinfo) or tokens (query string),
#: so the worker lets through only their warnings; the send activity logs each failed attempt
#: itself, with the URL redacted.
_URL_LOGGERS = ("httpx", "httpcore")

#: Modules the workflow sandbox shares instead of re-importing per workflow run: our contract,
#: signing and catalog are deterministic, and pydantic validates every workflow input. Without
#: this the sandbox cost about 40% of the worker's CPU per delivery (bench/).
_SANDBOX = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(
        "pydantic", "pydantic_core", "annotated_types", "infraudit"
    )
)


@asynccontextmanager
async def build_worker(client: Client, settings: Settings) -> AsyncIterator[Worker]:
    """A worker for ``settings.task_queue`` with the resources its activities share.

    Its HTTP client connects through the SSRF guard of :mod:`infraudit.egress` with the policy
    of ``settings`` (lifted only by dev mode or ``INFRAUDIT_ALLOW_PRIVATE_TARGETS``), so every
    worker enforces it, ``python worker.py`` included.


    Invalid workflow input (say, JSON from another service naming an unknown event type) fails
    that workflow with the validation message instead of retrying its task forever.
    """
    db = Database(settings.database_url, Keyring.from_settings(settings))
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
            max_concurrent_activities=1000,
            # On SIGTERM/Ctrl-C a POST under way finishes (it takes at most the HTTP timeout)
            # instead of being cut off and sent again by the next worker: a restart or deploy
            # must not make a receiver see a delivery twice.
            graceful_shutdown_timeout=timedelta(seconds=settings.http_timeout) + SHUTDOWN_GRACE,
        )
    finally:
        await http.aclose()
        await db.dispose()


async def run_worker(settings: Settings | None = None) -> None:
    """Prepare the namespace, then poll until cancelled."""
    quiet_url_logs()
    settings = settings or get_settings()
    client = await temporal.connect(settings)
    await temporal.prepare(client, settings)
    async with build_worker(client, settings) as worker:
        log.info(
            "worker polling %s on %s/%s",
            settings.task_queue,
            settings.temporal_address,
            settings.temporal_namespace,
        )
        await worker.run()


def quiet_url_logs() -> None:
    """Keep the HTTP library's request lines (full endpoint URLs) out of the worker's log."""
    for name in _URL_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
