"""Starting deliveries: one DeliverWebhook workflow per (event, endpoint).

Deliveries are started from an activity with the client rather than as child workflows: the
PublishEvent history then grows by one activity per page of 500 endpoints instead of by several
events per endpoint, so one event reaches 10,000 endpoints far inside Temporal's history limits,
and a delivery does not depend on its publisher staying open.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from temporalio import activity
from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from infraudit import ids, search_attributes, signing
from infraudit.config import Settings
from infraudit.contract import (
    DELIVER_WEBHOOK,
    MEMO_PAYLOAD,
    DeliverWebhookInput,
    DeliveryPolicy,
    FanOutPage,
    FanOutRequest,
)
from infraudit.store import webhooks
from infraudit.store.db import Database

_SUMMARY_LIMIT = 200
_CONCURRENT_STARTS = 64


def delivery_summary(event: str, url: str) -> str:
    """``drift.detected → https://host/path`` for the Temporal UI (no query string, no userinfo:
    customers sometimes put tokens there)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    summary = f"{event} → {parts.scheme}://{host}{parts.path}"
    encoded = summary.encode()
    if len(encoded) <= _SUMMARY_LIMIT:
        return summary
    return encoded[: _SUMMARY_LIMIT - 3].decode(errors="ignore") + "..."


async def start_delivery(
    client: Client, *, task_queue: str, delivery: DeliverWebhookInput, delivery_id: str, url: str
) -> None:
    """Start one delivery, or do nothing when that delivery id already ran or is running.

    The memo gets the envelope as the workflow will send it and the search attributes say
    pending, so the delivery shows in the log from its first moment.
    """
    if delivery.timestamp is None:
        raise ValueError("a delivery started here needs its event timestamp")
    envelope = signing.build_envelope(
        event=delivery.event,
        timestamp=delivery.timestamp,
        webhook_id=delivery.webhook_id,
        delivery_id=delivery_id,
        data=delivery.data,
    )
    try:
        await client.start_workflow(
            DELIVER_WEBHOOK,
            delivery,
            id=delivery_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            memo={MEMO_PAYLOAD: envelope},
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(search_attributes.WEBHOOK_ID, delivery.webhook_id),
                    SearchAttributePair(search_attributes.ORG_ID, delivery.org_id),
                    SearchAttributePair(search_attributes.EVENT_TYPE, delivery.event),
                    SearchAttributePair(search_attributes.DELIVERY_STATUS, "pending"),
                ]
            ),
            static_summary=delivery_summary(delivery.event, url),
        )
    except WorkflowAlreadyStartedError:
        return


class FanOutActivities:
    """The fan-out activity with what it shares across calls."""

    def __init__(self, db: Database, client: Client, settings: Settings) -> None:
        self._db = db
        self._client = client
        self._settings = settings

    @activity.defn(name="fan_out_page")
    async def fan_out_page(self, request: FanOutRequest) -> FanOutPage:
        """Start the deliveries of one page of subscribers; idempotent, so safe to retry."""
        async with self._db.session() as session:
            page = await webhooks.subscribers_page(
                session,
                org_id=request.org_id,
                event_type=request.event,
                after_webhook_id=request.after_webhook_id,
                limit=request.page_size,
            )
        policy = DeliveryPolicy.from_settings(self._settings)
        gate = asyncio.Semaphore(_CONCURRENT_STARTS)
        delivery_ids = [ids.delivery_id(request.event_id, sub.webhook_id) for sub in page]

        async def start(sub: webhooks.Subscriber, delivery_id: str) -> None:
            async with gate:
                await start_delivery(
                    self._client,
                    task_queue=self._settings.task_queue,
                    delivery=DeliverWebhookInput(
                        webhook_id=sub.webhook_id,
                        org_id=request.org_id,
                        event=request.event,
                        event_id=request.event_id,
                        data=request.data,
                        timestamp=request.timestamp,
                        policy=policy,
                    ),
                    delivery_id=delivery_id,
                    url=sub.url,
                )

        async with asyncio.TaskGroup() as group:
            for sub, delivery_id in zip(page, delivery_ids, strict=True):
                group.create_task(start(sub, delivery_id))
        next_after = page[-1].webhook_id if len(page) == request.page_size else None
        return FanOutPage(delivery_ids=delivery_ids, next_after=next_after)
