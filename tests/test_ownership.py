"""A delivery is sent only for the org that owns its webhook (issue 7).

Other services start ``DeliverWebhook`` directly with their own JSON. One that names another
org's webhook used to have that org's endpoint receive the event, signed with its secret, while
the delivery showed in neither org's log. Now the first attempt finds the mismatch and the
delivery fails at once, nothing sent. Everything here runs through the real dev server, the
engine's worker, the real API over uvicorn and a real receiver.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import Worker

from infraudit import ids, search_attributes
from infraudit.config import Settings
from infraudit.contract import DELIVER_WEBHOOK, MEMO_RESULT, Attempt, DeliveryOutcome
from tests.api_fixtures import Caller, caller, running_api
from tests.helpers import eventually
from tests.receiver import Receiver

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
async def api(settings: Settings, client: Client) -> AsyncIterator[str]:
    async with running_api(settings.model_copy(update={"dev": True}), client) as base:
        yield base


@pytest.fixture
async def owner(api: str, settings: Settings) -> AsyncIterator[Caller]:
    """The org that registers the webhook."""
    async with caller(api, settings.database_url, f"owner-{uuid.uuid4().hex[:8]}") as c:
        yield c


@pytest.fixture
async def other(api: str, settings: Settings) -> AsyncIterator[Caller]:
    """Another org, whose service starts a delivery naming the owner's webhook."""
    async with caller(api, settings.database_url, f"other-{uuid.uuid4().hex[:8]}") as c:
        yield c


async def register(c: Caller, url: str) -> str:
    response = await c.http.post(
        "/v1/webhooks", json={"url": url, "event_types": ["alert.created"]}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def start_directly(
    client: Client, settings: Settings, *, org_id: str, webhook_id: str
) -> str:
    """Start ``DeliverWebhook`` as another SDK would: plain JSON, no memo, no search attributes."""
    event_id = ids.new_event_id()
    delivery_id = ids.delivery_id(event_id, webhook_id)
    await client.start_workflow(
        DELIVER_WEBHOOK,
        {
            "webhook_id": webhook_id,
            "org_id": org_id,
            "event": "alert.created",
            "data": {"alert": "a-1"},
            "event_id": event_id,
        },
        id=delivery_id,
        task_queue=settings.task_queue,
    )
    return delivery_id


async def test_a_delivery_started_for_another_orgs_webhook_fails_and_sends_nothing(
    client: Client, settings: Settings, owner: Caller, other: Caller, receiver: Receiver
) -> None:
    """Org ``other`` names ``owner``'s webhook: failed at once, nothing sent, in neither log.

    The same start naming the owner is delivered (so the receiver and the start are sound).
    """
    webhook_id = await register(owner, receiver.url)
    await register(other, receiver.url)  # the other org exists and has webhooks of its own
    foreign = await start_directly(client, settings, org_id=other.org_id, webhook_id=webhook_id)
    own = await start_directly(client, settings, org_id=owner.org_id, webhook_id=webhook_id)

    with pytest.raises(WorkflowFailureError) as failure:
        await client.get_workflow_handle(foreign).result()
    outcome = await client.get_workflow_handle(own, result_type=DeliveryOutcome).result()
    message = (
        f"webhook {webhook_id} does not belong to org {other.org_id}; "
        "nothing sent, no further attempts"
    )
    assert failure.value.cause.message == message
    assert owner.org_id not in message, "the owner is not revealed to the starter"
    assert [a.response_status for a in outcome.attempts] == [200]
    assert [r.headers["X-InfraAudit-Delivery"] for r in receiver.requests] == [own]

    # Not retried: one activity attempt, no attempt recorded, the outcome in Temporal.
    described = await client.get_workflow_handle(foreign).describe()
    assert described.typed_search_attributes.get(search_attributes.DELIVERY_STATUS) == "failed"
    memo = await described.memo()
    assert memo[MEMO_RESULT]["attempt_count"] == 0
    assert memo[MEMO_RESULT]["error"] == message
    started = [
        e.activity_task_started_event_attributes.attempt
        async for e in client.get_workflow_handle(foreign).fetch_history_events()
        if e.HasField("activity_task_started_event_attributes")
    ]
    assert started == [1]

    # The owner's log shows its own delivery only, once visibility has both as closed.
    await eventually(
        lambda: client.count_workflows(f"WorkflowId = '{foreign}' AND DeliveryStatus = 'failed'"),
        lambda count: count.count == 1,
    )

    async def owner_log() -> list[dict[str, Any]]:
        answer = await owner.http.get(f"/v1/webhooks/{webhook_id}/deliveries")
        assert answer.status_code == 200, answer.text
        return list(answer.json()["data"])

    rows = await eventually(owner_log, lambda rows: any(r["status"] == "delivered" for r in rows))
    assert [r["delivery_id"] for r in rows] == [own]
    detail = await owner.http.get(f"/v1/webhooks/{webhook_id}/deliveries/{foreign}")
    assert detail.status_code == 404
    # The starting org has no such webhook: its API knows neither it nor the delivery.
    for path in (f"/v1/webhooks/{webhook_id}/deliveries", f"/v1/webhooks/{webhook_id}"):
        assert (await other.http.get(path)).status_code == 404


@workflow.defn(name="EarlierDeliverWebhook", sandboxed=False)
class EarlierDeliverWebhook:
    """What a ``DeliverWebhook`` of the release before issue 7 scheduled: no ``org_id``. The
    activity runs on the engine's worker (the session's), as after a deploy."""

    @workflow.run
    async def run(self, task_queue: str, request: dict[str, Any]) -> list[Attempt]:
        return await workflow.execute_activity(
            "send_webhook",
            request,
            task_queue=task_queue,
            start_to_close_timeout=timedelta(seconds=10),
            result_type=list[Attempt],
        )


async def test_an_attempt_scheduled_by_the_earlier_release_still_sends(
    client: Client, settings: Settings, owner: Caller, receiver: Receiver
) -> None:
    """During a rolling deploy, retries of requests without ``org_id`` are still delivered by
    new workers (the request model tolerates the missing field instead of failing them)."""
    webhook_id = await register(owner, receiver.url)
    queue = f"earlier-{uuid.uuid4().hex[:8]}"
    request = {
        "delivery_id": "del_earlier",
        "webhook_id": webhook_id,
        "event": "alert.created",
        "body": "{}",
        "timeout_seconds": 5,
    }
    async with Worker(
        client,
        task_queue=queue,
        workflows=[EarlierDeliverWebhook],
    ):
        attempts = await client.execute_workflow(
            EarlierDeliverWebhook.run,
            args=[settings.task_queue, request],
            id=f"earlier-{uuid.uuid4().hex}",
            task_queue=queue,
        )
    assert [a.response_status for a in attempts] == [200]
    assert len(receiver.requests) == 1
