"""The production retry schedule, proven on the time-skipping test server instead of by waiting."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from infraudit import ids, temporal
from infraudit.cli.binaries import binary
from infraudit.config import Settings
from infraudit.contract import DeliverWebhookInput
from infraudit.worker import build_worker
from infraudit.workflows.delivery import DeliverWebhook
from tests.conftest import Endpoints
from tests.receiver import Answer, Receiver


@pytest.fixture(scope="module")
async def skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    await temporal.ensure_search_attributes(env.client, env.client.namespace)
    try:
        yield env
    finally:
        await env.shutdown()


async def test_default_schedule_makes_3_attempts_within_30_minutes(
    skipping_env: WorkflowEnvironment,
    database_url: str,
    endpoints: Endpoints,
    receiver: Receiver,
    org_id: str,
) -> None:
    # The production schedule; only the SSRF policy is lifted, for the receiver on loopback.
    production = Settings(
        database_url=database_url,
        task_queue=f"ts-{uuid.uuid4().hex[:8]}",
        allow_private_targets=True,
    )
    assert production.delivery_window == 1800 and production.http_timeout == 10
    receiver.script(Answer(503, b"still down"))
    webhook_id, _ = await endpoints.add(org_id, receiver.url)
    client = skipping_env.client
    async with build_worker(client, production) as worker, worker:
        handle = await client.start_workflow(
            DeliverWebhook.run,
            DeliverWebhookInput(
                webhook_id=webhook_id,
                org_id=org_id,
                event="drift.detected",
                policy=production.delivery_policy(),
            ),
            id=ids.delivery_id("evt_schedule", webhook_id),
            task_queue=production.task_queue,
        )
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
        history = await handle.fetch_history()
    first, last = history.events[0], history.events[-1]
    elapsed = last.event_time.ToDatetime() - first.event_time.ToDatetime()

    assert failure.value.cause.message == "3 attempts failed; last: HTTP 503"
    assert len(receiver.requests) == 3
    first_gap = production.retry_initial_interval
    second_gap = first_gap * production.retry_backoff_coefficient
    assert timedelta(seconds=first_gap + second_gap) <= elapsed < timedelta(minutes=30), elapsed
