"""PublishEvent: fan-out to the right endpoints, once per event id, from any SDK's plain JSON."""

from __future__ import annotations

import json
import uuid

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.converter import DataConverter
from temporalio.worker import Worker

from infraudit import ids, search_attributes
from infraudit.activities.fanout import FanOutActivities
from infraudit.client import publish_event
from infraudit.config import Settings
from infraudit.store import orgs, webhooks
from infraudit.store.db import Database
from infraudit.workflows.publish import PAGE_SIZE, PublishEvent
from tests.conftest import Endpoints
from tests.helpers import eventually
from tests.receiver import Receiver

pytestmark = pytest.mark.usefixtures("worker")


def plain_json_client(client: Client) -> Client:
    """A client that sends plain JSON, as a Go or TypeScript service would."""
    return Client(
        client.service_client, namespace=client.namespace, data_converter=DataConverter.default
    )


async def test_fan_out_reaches_only_the_orgs_enabled_subscribers_once_per_event_id(
    client: Client,
    settings: Settings,
    endpoints: Endpoints,
    receiver: Receiver,
    org_id: str,
) -> None:
    subscribed_a, _ = await endpoints.add(org_id, f"{receiver.url}?to=a", ["drift.detected"])
    subscribed_b, _ = await endpoints.add(
        org_id, f"{receiver.url}?to=b", ["alert.created", "drift.detected"]
    )
    await endpoints.add(org_id, f"{receiver.url}?to=disabled", ["drift.detected"], enabled=False)
    await endpoints.add(org_id, f"{receiver.url}?to=other-type", ["alert.created"])
    await endpoints.add(f"{org_id}-other", f"{receiver.url}?to=other-org", ["drift.detected"])
    event_id = f"evt_{uuid.uuid4().hex}"

    first, second = [
        await publish_event(
            client,
            org_id=org_id,
            event="drift.detected",
            data={"resource": "sg-1"},
            event_id=event_id,
            task_queue=settings.task_queue,
        )
        for _ in range(2)
    ]

    assert sorted(first) == sorted(
        [ids.delivery_id(event_id, subscribed_a), ids.delivery_id(event_id, subscribed_b)]
    )
    assert second == first
    for delivery_id in first:
        await client.get_workflow_handle(delivery_id).result()
    await receiver.wait_for(2)
    assert sorted(r.path for r in receiver.requests) == ["/hook?to=a", "/hook?to=b"]
    webhook_ids = sorted(json.loads(r.body)["webhook_id"] for r in receiver.requests)
    assert webhook_ids == sorted([subscribed_a, subscribed_b])


async def test_unknown_event_type_is_refused_by_the_client(client: Client, org_id: str) -> None:
    with pytest.raises(ValueError, match=r"unknown event type 'drift\.detectd'"):
        await publish_event(client, org_id=org_id, event="drift.detectd")


async def test_workflows_started_by_type_name_with_plain_json(
    client: Client, settings: Settings, endpoints: Endpoints, receiver: Receiver, org_id: str
) -> None:
    webhook_id, _ = await endpoints.add(org_id, receiver.url, ["cost.anomaly"])
    plain = plain_json_client(client)
    event_id = f"evt_{uuid.uuid4().hex}"

    published = await plain.execute_workflow(
        "PublishEvent",
        {
            "org_id": org_id,
            "event": "cost.anomaly",
            "data": {"amount": 1234.5, "currency": "USD"},
            "event_id": event_id,
        },
        id=ids.publish_workflow_id(org_id, event_id),
        task_queue=settings.task_queue,
    )
    assert published == {
        "event_id": event_id,
        "delivery_ids": [ids.delivery_id(event_id, webhook_id)],
        "failed": [],
    }

    direct_id = ids.delivery_id(f"evt_{uuid.uuid4().hex}", webhook_id)
    outcome = await plain.execute_workflow(
        "DeliverWebhook",
        {"webhook_id": webhook_id, "org_id": org_id, "event": "cost.anomaly", "data": {"n": 1}},
        id=direct_id,
        task_queue=settings.task_queue,
    )
    assert outcome["status"] == "delivered"
    assert outcome["attempts"][0]["response_status"] == 200

    await client.get_workflow_handle(published["delivery_ids"][0]).result()
    await receiver.wait_for(2)
    direct = next(r for r in receiver.requests if json.loads(r.body)["delivery_id"] == direct_id)
    assert json.loads(direct.body)["data"] == {"n": 1}
    description = await client.get_workflow_handle(direct_id).describe()
    attrs = description.typed_search_attributes
    assert attrs.get(search_attributes.WEBHOOK_ID) == webhook_id
    assert attrs.get(search_attributes.ORG_ID) == org_id
    assert attrs.get(search_attributes.EVENT_TYPE) == "cost.anomaly"
    assert attrs.get(search_attributes.DELIVERY_STATUS) == "delivered"
    assert (await description.memo())["payload"] == json.loads(direct.body)


async def test_invalid_plain_json_input_fails_the_workflow_instead_of_retrying(
    client: Client, settings: Settings, org_id: str
) -> None:
    plain = plain_json_client(client)
    with pytest.raises(WorkflowFailureError) as failure:
        await plain.execute_workflow(
            "PublishEvent",
            {"org_id": org_id, "event": "drift.detectd"},
            id=f"publish:{org_id}:bad",
            task_queue=settings.task_queue,
        )
    assert "unknown event type 'drift.detectd'" in str(failure.value.cause)


async def test_fan_out_pages_through_more_endpoints_than_one_page(
    client: Client, settings: Settings, db: Database, org_id: str
) -> None:
    count = PAGE_SIZE * 2 + 7
    async with db.session() as session, session.begin():
        await orgs.ensure_org(session, org_id)
        for n in range(count):
            await webhooks.create_webhook(
                session,
                org_id=org_id,
                url=f"https://example.invalid/{n}",
                event_types=["job.completed"],
            )
    publish_queue = f"{settings.task_queue}-publish"
    # Deliveries go to a queue no worker polls: this test is about fan-out, not POSTs.
    idle = settings.model_copy(update={"task_queue": f"{settings.task_queue}-idle"})
    fan_out = FanOutActivities(db, client, idle)
    async with Worker(
        client,
        task_queue=publish_queue,
        workflows=[PublishEvent],
        activities=[fan_out.fan_out_page],
    ):
        delivery_ids = await publish_event(
            client, org_id=org_id, event="job.completed", task_queue=publish_queue
        )
    assert len(delivery_ids) == count == len(set(delivery_ids))
    total = await eventually(
        lambda: client.count_workflows(f"OrgId = '{org_id}' AND EventType = 'job.completed'"),
        lambda counted: counted.count == count,
        within=60,
    )
    assert total.count == count
