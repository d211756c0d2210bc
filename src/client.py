"""The Python API for InfraAudit services: publish an event, get its delivery ids.

Example::

    from infraudit.config import get_settings
    from infraudit.temporal import connect
    from infraudit.client import publish_event

    client = await connect(get_settings())
    delivery_ids = await publish_event(
        client, org_id="acme", event="drift.detected", data={"resource": "sg-123"},
        event_id="evt_drift_42",
    )

Services in other languages start the ``PublishEvent`` workflow themselves; docs/workflows.md
gives the contract.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from infraudit import events, ids
from infraudit.activities.fanout import start_delivery
from infraudit.config import Settings, get_settings
from infraudit.contract import (
    DeliverWebhookInput,
    PublishEventInput,
    PublishEventResult,
)
from infraudit.workflows.publish import PublishEvent


class EventIdConflict(Exception):
    """The event id was already used, in this org, for another event (type, data or timestamp).

    An event id is an idempotency key: the same event again is a harmless repeat, but other
    content under a used id would otherwise be dropped without a word. Publish it under a new id.
    """

    def __init__(self, event_id: str) -> None:
        super().__init__(
            f"event id {event_id!r} was already used for another event (a different type, data "
            f"or timestamp); publish this one under a new id"
        )
        self.event_id = event_id


async def start_publish(
    client: Client,
    *,
    org_id: str,
    event: str,
    data: dict[str, Any] | None = None,
    event_id: str | None = None,
    timestamp: datetime | None = None,
    task_queue: str | None = None,
) -> tuple[str, WorkflowHandle[Any, PublishEventResult]]:
    """Start (or find) the PublishEvent workflow; returns the event id and its handle.

    Once this returns, the event is durable in Temporal: it will reach its subscribers even if
    the caller goes away. Raises ``pydantic.ValidationError`` (a ValueError) before starting
    anything for input the workflow contract refuses: an unknown or reserved event type, data
    JSON cannot carry unchanged (see ``infraudit.event_data``), a malformed id, a timestamp
    without an offset. Raises :class:`EventIdConflict` when ``event_id`` already published
    another event; the same event again returns the first one's handle.

    The start refuses any existing run of the workflow id (``REJECT_DUPLICATE`` for a closed
    one, ``FAIL`` for a running one), so that exactly the repeats get compared with what the
    first start carried; the first publish costs no extra call.
    """
    event_id = event_id or ids.new_event_id()
    event_input = PublishEventInput(
        org_id=org_id, event=event, data=data or {}, event_id=event_id, timestamp=timestamp
    )
    workflow_id = ids.publish_workflow_id(org_id, event_id)
    try:
        handle = await client.start_workflow(
            PublishEvent.run,
            event_input,
            id=workflow_id,
            task_queue=task_queue or get_settings().task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            static_summary=f"{event} for {org_id}",
        )
    except WorkflowAlreadyStartedError:
        handle = client.get_workflow_handle_for(PublishEvent.run, workflow_id)
        first = await _published_input(client, handle)
        if first is None or not first.same_event(event_input):
            raise EventIdConflict(event_id) from None
    return event_id, handle


async def _published_input(
    client: Client, handle: WorkflowHandle[Any, PublishEventResult]
) -> PublishEventInput | None:
    """The input the existing run of ``handle`` was started with; None if it never validated.

    Read from the run's first history event, so it works for runs started by any SDK or by an
    earlier version of this client alike.
    """
    async for event in handle.fetch_history_events(page_size=1):
        payloads = event.workflow_execution_started_event_attributes.input.payloads
        try:
            [first] = await client.data_converter.decode(list(payloads), [PublishEventInput])
        except (ValueError, KeyError, RuntimeError):
            # Invalid input (pydantic's ValidationError is a ValueError), not one argument, or
            # an encoding our converter cannot read: that run could never publish an event.
            return None
        return first if isinstance(first, PublishEventInput) else None
    return None


async def publish_event(
    client: Client,
    *,
    org_id: str,
    event: str,
    data: dict[str, Any] | None = None,
    event_id: str | None = None,
    timestamp: datetime | None = None,
    task_queue: str | None = None,
) -> list[str]:
    """Publish an event to the org's subscribed endpoints; returns one delivery id each.

    Publishing the same ``event_id`` again returns the same delivery ids and sends nothing new.
    """
    _, handle = await start_publish(
        client,
        org_id=org_id,
        event=event,
        data=data,
        event_id=event_id,
        timestamp=timestamp,
        task_queue=task_queue,
    )
    result: PublishEventResult = await handle.result()
    return result.delivery_ids


async def deliver_once(
    client: Client,
    settings: Settings,
    *,
    org_id: str,
    webhook_id: str,
    url: str,
    event: str,
    data: dict[str, Any],
) -> str:
    """Start one delivery of a new event to one endpoint, whatever it subscribes to.

    Returns the delivery id; the delivery uses the retry policy of ``settings``.
    """
    event_id = ids.new_event_id()
    return await start_delivery(
        client,
        task_queue=settings.task_queue,
        delivery=DeliverWebhookInput(
            webhook_id=webhook_id,
            org_id=org_id,
            event=event,
            event_id=event_id,
            data=data,
            timestamp=datetime.now(UTC),
            policy=settings.delivery_policy(),
        ),
        url=url,
    )


async def send_test_ping(
    client: Client, settings: Settings, *, org_id: str, webhook_id: str, url: str
) -> str:
    """Start a ``webhook.ping`` delivery to one endpoint (``infraudit webhook test``)."""
    return await deliver_once(
        client,
        settings,
        org_id=org_id,
        webhook_id=webhook_id,
        url=url,
        event=events.PING,
        data={"message": "Test delivery from InfraAudit", "webhook_id": webhook_id},
    )
