"""Starting a delivery (issue 8): the publish answer does not wait for the fan-out, a delivery
records itself in as few history events as it can, and its policy comes from its input.

Real dev server, real worker, real receiver, real API over uvicorn.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.converter import DataConverter

from infraudit import ids
from infraudit.config import Settings
from infraudit.contract import DeliveryPolicy
from infraudit.worker import build_worker
from tests.api_fixtures import caller, running_api
from tests.conftest import Endpoints
from tests.helpers import start_test_delivery
from tests.receiver import Receiver


async def test_publish_answers_with_the_delivery_ids_before_any_fan_out_runs(
    client: Client, settings: Settings, endpoints: Endpoints, receiver: Receiver, org_id: str
) -> None:
    """No worker polls the queue when the API answers, so the answer cannot come from the
    fan-out; the ids it lists are then exactly the deliveries a worker makes."""
    queue = f"no-worker-yet-{uuid.uuid4().hex[:8]}"
    own = settings.model_copy(update={"task_queue": queue})
    a, _ = await endpoints.add(org_id, f"{receiver.url}?to=a", ["drift.detected"])
    b, _ = await endpoints.add(org_id, f"{receiver.url}?to=b", ["drift.detected"])
    await endpoints.add(org_id, f"{receiver.url}?to=off", ["drift.detected"], enabled=False)
    await endpoints.add(org_id, f"{receiver.url}?to=other", ["alert.created"])
    event = {"event": "drift.detected", "data": {"n": 1}, "id": "fast-1"}
    async with running_api(own, client) as base, caller(base, own.database_url, org_id) as c:
        response = await c.http.post("/v1/events", json=event)
        assert response.status_code == 202, response.text
        expected = sorted([ids.delivery_id("fast-1", a), ids.delivery_id("fast-1", b)])
        assert response.json()["event_id"] == "fast-1"
        assert sorted(response.json()["delivery_ids"]) == expected
        assert not receiver.requests

        async with build_worker(client, own) as worker, worker:
            got = await receiver.wait_for(2)
            assert sorted(json.loads(r.body)["delivery_id"] for r in got) == expected
            for delivery_id in expected:
                await client.get_workflow_handle(delivery_id).result()

        again = await c.http.post("/v1/events", json=event)
        assert again.json() == response.json()
    assert len(receiver.requests) == 2


@pytest.mark.usefixtures("worker")
async def test_a_started_delivery_records_its_outcome_in_one_go(
    client: Client, settings: Settings, endpoints: Endpoints, receiver: Receiver, org_id: str
) -> None:
    """The starter wrote the memo and the pending status, so the workflow adds nothing at its
    start; the first attempt is a local activity (one marker); at its end one search-attribute
    and one memo upsert record the outcome: 8 history events in all (issue 8)."""
    webhook_id, _ = await endpoints.add(org_id, receiver.url, ["drift.detected"])
    handle = await start_test_delivery(
        client, settings, org_id=org_id, webhook_id=webhook_id, url=receiver.url
    )
    await handle.result()
    kinds = [e.event_type async for e in handle.fetch_history_events()]
    recorded = [
        k
        for k in kinds
        if k
        in (
            EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
            EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED,
        )
    ]
    assert len(recorded) == 2
    assert kinds.index(recorded[0]) > kinds.index(EventType.EVENT_TYPE_MARKER_RECORDED)
    assert len(kinds) == 8, kinds
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED not in kinds
    [request] = await receiver.wait_for(1)
    assert (await (await handle.describe()).memo())["payload"] == json.loads(request.body)


@pytest.mark.usefixtures("worker")
async def test_a_delivery_without_policy_runs_with_the_contracts_not_the_workers(
    client: Client, settings: Settings, endpoints: Endpoints, receiver: Receiver, org_id: str
) -> None:
    """The session worker's settings say 1 s per attempt and 0.2 s between attempts; a delivery
    started by another SDK without ``policy`` still gets the guide's 10 s, 5 min, x3, 30 min."""
    webhook_id, _ = await endpoints.add(org_id, receiver.url, ["drift.detected"])
    assert settings.http_timeout != DeliveryPolicy().timeout_seconds
    plain = Client(
        client.service_client, namespace=client.namespace, data_converter=DataConverter.default
    )
    delivery_id = ids.delivery_id(f"evt_{uuid.uuid4().hex}", webhook_id)
    await plain.execute_workflow(
        "DeliverWebhook",
        {"webhook_id": webhook_id, "org_id": org_id, "event": "drift.detected", "data": {}},
        id=delivery_id,
        task_queue=settings.task_queue,
    )
    scheduled = [
        e.activity_task_scheduled_event_attributes
        async for e in client.get_workflow_handle(delivery_id).fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    [post] = scheduled
    assert post.schedule_to_close_timeout.ToTimedelta() == timedelta(minutes=30)
    assert post.retry_policy.initial_interval.ToTimedelta() == timedelta(minutes=5)
    assert post.retry_policy.backoff_coefficient == 3
    assert post.retry_policy.maximum_attempts == 3
    assert post.start_to_close_timeout.ToTimedelta() == timedelta(seconds=10 + 5)
    [request] = await receiver.wait_for(1)
    assert json.loads(request.body)["delivery_id"] == delivery_id
