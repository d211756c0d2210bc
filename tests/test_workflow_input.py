"""Workflow inputs as other SDKs send them: plain JSON, started by type name.

What the contract refuses fails the workflow at its first task with the validation message
(never a task retried forever, never a workflow that starts and then cannot deliver); what it
accepts runs. Models we write ourselves read fields a newer worker added; inputs stay strict.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic
import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.converter import DataConverter
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from infraudit import contract, deliveries, ids, search_attributes
from infraudit.config import Settings
from infraudit.contract import FanOutRequest, SendRequest
from infraudit.workflows.delivery import DeliverWebhook
from infraudit.workflows.publish import PublishEvent
from tests.conftest import Endpoints
from tests.receiver import Receiver

pytestmark = pytest.mark.usefixtures("worker")

#: A guard, not a measure: a workflow whose task is retried forever ends here instead of hanging.
GUARD = timedelta(seconds=30)


@pytest.fixture
def plain(client: Client) -> Client:
    """A client that sends plain JSON, as a Go or TypeScript service would."""
    return Client(
        client.service_client, namespace=client.namespace, data_converter=DataConverter.default
    )


def nested(depth: int) -> dict[str, Any]:
    """An object ``depth`` levels deep, counting itself."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def publish_input(org_id: str, overrides: dict[str, Any]) -> dict[str, Any]:
    return {"org_id": org_id, "event": "drift.detected", "event_id": "evt_1", **overrides}


def deliver_input(**fields: Any) -> dict[str, Any]:
    return {"webhook_id": "wh_abc", "org_id": "acme", "event": "drift.detected", **fields}


POLICY = {
    "timeout_seconds": 1,
    "window_seconds": 60,
    "initial_interval_seconds": 0.2,
    "backoff_coefficient": 2,
}

#: (name, input overrides, text the failure message must hold)
PUBLISH_REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("timestamp without offset", {"timestamp": "2026-11-29T10:30:00"}, "RFC 3339"),
    ("timestamp as a number", {"timestamp": 1764412200}, "RFC 3339"),
    ("timestamp as a date", {"timestamp": "2026-11-29"}, "RFC 3339"),
    ("leap second", {"timestamp": "2026-12-31T23:59:60Z"}, "timestamp"),
    ("year before 1000", {"timestamp": "0999-01-01T00:00:00Z"}, "years 1000-9999"),
    ("past 9999 in UTC", {"timestamp": "9999-12-31T23:00:00-05:00"}, "years 1000-9999"),
    ("org id with a colon", {"org_id": "acme:evil"}, "org_id"),
    ("org id too long", {"org_id": "a" * 65}, "org_id"),
    ("event id with a space", {"event_id": "evt 1"}, "event_id"),
    ("event id too long", {"event_id": "e" * 129}, "event_id"),
    ("empty event id", {"event_id": ""}, "event_id"),
    ("reserved event type", {"event": "webhook.ping"}, "reserved"),
    ("data 33 levels deep", {"data": nested(33)}, "nested deeper than 32 levels"),
    ("data past the SDK's parser", {"data": nested(300)}, "recursion limit"),
    ("integer past 2^53 - 1", {"data": {"n": 2**53}}, "data.n: integer beyond"),
    ("NaN", {"data": {"x": float("nan")}}, "data.x: nan is not a JSON number"),
    ("lone surrogate", {"data": {"s": "\ud800"}}, "Invalid JSON"),
    ("data over 256 KiB", {"data": {"s": "x" * 256 * 1024}}, "byte limit"),
    ("data not an object", {"data": [1, 2]}, "data"),
    ("unknown field", {"priority": "high"}, "Extra inputs are not permitted"),
]

DELIVER_REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("timeout past timedelta", {"policy": {**POLICY, "timeout_seconds": 1e20}}, "300"),
    ("window past a day", {"policy": {**POLICY, "window_seconds": 1e300}}, "86400"),
    ("window too short", {"policy": {**POLICY, "window_seconds": 1e-7}}, "window_seconds"),
    (
        "schedule that cannot fit 3 attempts",
        {"policy": {**POLICY, "initial_interval_seconds": 40}},
        "retry schedule does not fit",
    ),
    ("more than 3 attempts", {"policy": {**POLICY, "max_attempts": 5}}, "max_attempts"),
    ("unknown policy field", {"policy": {**POLICY, "jitter": 1}}, "Extra inputs"),
    ("webhook id with a header break", {"webhook_id": "wh_x\r\nX-Evil: 1"}, "webhook_id"),
    ("webhook id of another kind", {"webhook_id": "hook-1"}, "webhook_id"),
    ("org id with a colon", {"org_id": "acme:evil"}, "org_id"),
    ("event id with a quote", {"event_id": "evt'1"}, "event_id"),
    ("timestamp without offset", {"timestamp": "2026-11-29T10:30:00"}, "RFC 3339"),
    ("integer past 2^53 - 1", {"data": {"n": -(2**53)}}, "integer beyond"),
    ("unknown field", {"url": "https://example.com"}, "Extra inputs are not permitted"),
]


async def assert_fails_at_once(
    plain: Client, settings: Settings, workflow: str, arg: Any, workflow_id: str
) -> str:
    """Run ``workflow``; it must fail with a validation error at its first workflow task.

    Returns the failure message.
    """
    with pytest.raises(WorkflowFailureError) as failure:
        await plain.execute_workflow(
            workflow, arg, id=workflow_id, task_queue=settings.task_queue, execution_timeout=GUARD
        )
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError), cause
    assert cause.type == "ValidationError", cause
    history = await plain.get_workflow_handle(workflow_id).fetch_history()
    started = [
        e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
    ]
    assert len(started) == 1, "the workflow task was retried"
    return cause.message


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [(o, e) for _, o, e in PUBLISH_REFUSED],
    ids=[name for name, _, _ in PUBLISH_REFUSED],
)
async def test_publish_input_the_contract_refuses_fails_at_once(
    plain: Client, settings: Settings, org_id: str, overrides: dict[str, Any], expected: str
) -> None:
    arg = publish_input(org_id, overrides)
    workflow_id = f"publish-refused-{uuid.uuid4().hex}"
    message = await assert_fails_at_once(plain, settings, "PublishEvent", arg, workflow_id)
    assert expected in message


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [(o, e) for _, o, e in DELIVER_REFUSED],
    ids=[name for name, _, _ in DELIVER_REFUSED],
)
async def test_delivery_input_the_contract_refuses_fails_at_once(
    plain: Client, settings: Settings, overrides: dict[str, Any], expected: str
) -> None:
    arg = deliver_input(**overrides)
    delivery_id = ids.delivery_id(f"evt_{uuid.uuid4().hex}", "wh_abc")
    message = await assert_fails_at_once(plain, settings, "DeliverWebhook", arg, delivery_id)
    assert expected in message
    assert "input_value" not in message, "the refused value (maybe event data) is not repeated"


@pytest.mark.parametrize(
    ("workflow_id", "expected"),
    [
        ("del_ünïcode-id", "is not a delivery id"),
        ("del_abc\r\nx-evil: 1", "is not a delivery id"),
        ("delivery-42", "is not a delivery id"),
        (ids.delivery_id("evt_other", "wh_abc"), "is not the delivery id of event 'evt_1'"),
    ],
    ids=["non-ascii", "header break", "another form", "another event's id"],
)
async def test_delivery_under_a_workflow_id_that_is_not_its_delivery_id_fails_at_once(
    plain: Client, settings: Settings, receiver: Receiver, workflow_id: str, expected: str
) -> None:
    arg = deliver_input(event_id="evt_1")
    message = await assert_fails_at_once(plain, settings, "DeliverWebhook", arg, workflow_id)
    assert expected in message
    assert receiver.requests == []


async def test_inputs_the_contract_accepts_are_delivered_as_documented(
    plain: Client, settings: Settings, endpoints: Endpoints, receiver: Receiver, org_id: str
) -> None:
    webhook_id, _ = await endpoints.add(org_id, receiver.url, ["drift.detected"])
    event_id = f"evt_{uuid.uuid4().hex}"
    data = {
        "deep": nested(31),  # data itself is level 1: 32 levels, the limit
        "largest": 2**53 - 1,
        "smallest": -(2**53 - 1),
        "nul": "a\x00b",
        "astral": "\U0001f980",
        "ratio": 0.1,
    }
    published = await plain.execute_workflow(
        "PublishEvent",
        {
            "org_id": org_id,
            "event": "drift.detected",
            "event_id": event_id,
            "data": data,
            "timestamp": "2026-11-29T12:30:00.123456789+02:00",  # Go's RFC3339Nano
        },
        id=ids.publish_workflow_id(org_id, event_id),
        task_queue=settings.task_queue,
        execution_timeout=GUARD,
    )
    assert published["delivery_ids"] == [ids.delivery_id(event_id, webhook_id)]
    direct = await plain.execute_workflow(
        "DeliverWebhook",
        {
            "webhook_id": webhook_id,
            "org_id": org_id,
            "event": "webhook.ping",  # reserved for publishing, not for one delivery
            "timestamp": "2026-11-29t10:30:00z",
            "policy": {**POLICY, "max_attempts": 1},
        },
        id=ids.delivery_id(f"evt_{uuid.uuid4().hex}", webhook_id),
        task_queue=settings.task_queue,
        execution_timeout=GUARD,
    )
    assert direct["status"] == "delivered"

    envelopes = {
        envelope["event"]: envelope
        for envelope in (json.loads(r.body) for r in await receiver.wait_for(2))
    }
    assert envelopes["drift.detected"]["timestamp"] == "2026-11-29T10:30:00Z"
    assert envelopes["drift.detected"]["data"] == data
    assert envelopes["webhook.ping"]["timestamp"] == "2026-11-29T10:30:00Z"


# --- rolling deploys: what a newer worker writes, this one reads ------------------------------


@activity.defn(name="send_webhook")
async def newer_send_webhook(request: SendRequest) -> list[dict[str, Any]]:
    """The send activity of a newer worker: its attempt record has a field we do not know."""
    return [
        {
            "attempt": 1,
            "started_at": datetime.now(UTC).isoformat(),
            "duration_ms": 3,
            "response_status": 200,
            "response_body": "ok",
            "error": None,
            "retry_after": 7,
        }
    ]


@activity.defn(name="fan_out_page")
async def newer_fan_out_page(request: FanOutRequest) -> dict[str, Any]:
    """The fan-out activity of a newer worker: its page has a field we do not know."""
    return {"delivery_ids": [f"del_{request.event_id}"], "next_after": None, "skipped": 0}


async def test_results_and_memo_from_a_newer_worker_are_read(
    client: Client, settings: Settings, org_id: str
) -> None:
    queue = f"{settings.task_queue}-newer"
    webhook_id = "wh_newer"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[DeliverWebhook, PublishEvent],
        activities=[newer_send_webhook, newer_fan_out_page],
        workflow_failure_exception_types=[pydantic.ValidationError],
    ):
        outcome = await client.execute_workflow(
            DeliverWebhook.run,
            contract.DeliverWebhookInput(
                webhook_id=webhook_id,
                org_id=org_id,
                event="drift.detected",
                policy=contract.DeliveryPolicy(**POLICY),
            ),
            id=ids.delivery_id(f"evt_{uuid.uuid4().hex}", webhook_id),
            task_queue=queue,
            execution_timeout=GUARD,
        )
        published = await client.execute_workflow(
            PublishEvent.run,
            contract.PublishEventInput(org_id=org_id, event="drift.detected", event_id="evt_new"),
            id=ids.publish_workflow_id(org_id, f"evt_{uuid.uuid4().hex}"),
            task_queue=queue,
            execution_timeout=GUARD,
        )
    assert outcome.status == "delivered"
    assert outcome.attempts[0].response_status == 200
    assert published.delivery_ids == ["del_evt_new"]

    # A delivery whose result memo a newer worker wrote, read by this version's delivery log.
    delivery_id = ids.delivery_id(f"evt_{uuid.uuid4().hex}", webhook_id)
    newer_memo = {"status": "delivered", "attempt_count": 1, "response_status": 204, "region": "eu"}
    handle = await client.start_workflow(
        DeliverWebhook.run,
        contract.DeliverWebhookInput(webhook_id=webhook_id, org_id=org_id, event="drift.detected"),
        id=delivery_id,
        task_queue=f"{settings.task_queue}-nobody",
        memo={contract.MEMO_RESULT: newer_memo},
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(search_attributes.WEBHOOK_ID, webhook_id),
                SearchAttributePair(search_attributes.ORG_ID, org_id),
            ]
        ),
    )
    try:
        row = await deliveries.get_delivery(
            client, org_id=org_id, webhook_id=webhook_id, delivery_id=delivery_id
        )
    finally:
        await handle.terminate()
    assert row is not None
    assert (row.status, row.response_status) == ("delivered", 204)


def test_models_we_write_ignore_unknown_fields_and_inputs_refuse_them() -> None:
    now = datetime.now(UTC).isoformat()
    ours: list[tuple[type[pydantic.BaseModel], dict[str, Any]]] = [
        (contract.Attempt, {"attempt": 1, "started_at": now, "duration_ms": 1}),
        (contract.DeliveryOutcome, {"status": "delivered", "attempts": []}),
        (contract.MemoResult, {"status": "failed", "attempt_count": 3}),
        (contract.PublishEventResult, {"event_id": "evt_1", "delivery_ids": []}),
        (contract.FanOutPage, {"delivery_ids": []}),
        (
            contract.SendRequest,
            {
                "delivery_id": "del_1",
                "webhook_id": "wh_1",
                "event": "drift.detected",
                "body": "{}",
                "timeout_seconds": 1,
            },
        ),
        (
            contract.FanOutRequest,
            {
                "org_id": "acme",
                "event": "drift.detected",
                "event_id": "evt_1",
                "data": {},
                "timestamp": now,
            },
        ),
    ]
    for model, fields in ours:
        assert model.model_validate({**fields, "added_later": True}) == model.model_validate(
            fields
        ), model

    theirs: list[tuple[type[pydantic.BaseModel], dict[str, Any]]] = [
        (contract.PublishEventInput, {"org_id": "acme", "event": "drift.detected"}),
        (contract.DeliverWebhookInput, deliver_input()),
        (contract.DeliveryPolicy, POLICY),
    ]
    for model, fields in theirs:
        model.model_validate(fields)
        with pytest.raises(pydantic.ValidationError, match="Extra inputs are not permitted"):
            model.model_validate({**fields, "added_later": True})
