"""Starting deliveries: one DeliverWebhook workflow per (event, endpoint).

Deliveries are started from an activity with the client rather than as child workflows: the
PublishEvent history then grows by one activity per page of 500 endpoints instead of by several
events per endpoint, so one event reaches 10,000 endpoints far inside Temporal's history limits,
and a delivery does not depend on its publisher staying open.
"""

from __future__ import annotations

import asyncio
import contextlib

from pydantic import ValidationError
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from infraudit import ids, urls
from infraudit.config import Settings
from infraudit.contract import (
    DELIVER_WEBHOOK,
    MEMO_PAYLOAD,
    DeliverWebhookInput,
    DeliveryPolicy,
    FailedStart,
    FanOutPage,
    FanOutRequest,
)
from infraudit.store import webhooks
from infraudit.store.db import Database
from infraudit.workflows.delivery import (
    delivery_envelope,
    delivery_search_attributes,
    workflow_task_timeout,
)

_SUMMARY_LIMIT = 200
_CONCURRENT_STARTS = 64
#: Longest ``reason`` recorded for an endpoint whose delivery could not start (characters; the
#: reason is put on one line).
_REASON_LIMIT = 500


def delivery_summary(event: str, url: str) -> str:
    """``drift.detected → https://host/path`` for the Temporal UI, at most 200 bytes.

    The URL is shown redacted (no userinfo, no query string: customers put credentials there),
    and this never raises, whatever an old stored URL holds.
    """
    summary = f"{event} → {urls.redact(url)}"
    encoded = summary.encode()
    if len(encoded) <= _SUMMARY_LIMIT:
        return summary
    return encoded[: _SUMMARY_LIMIT - 3].decode(errors="ignore") + "..."


async def start_delivery(
    client: Client, *, task_queue: str, delivery: DeliverWebhookInput, url: str
) -> str:
    """Start one delivery, or do nothing when that delivery id already ran or is running; the
    delivery id, derived from the event id and the webhook id (the workflow refuses any other).

    The one home of "start a delivery" (the fan-out, :func:`infraudit.client.deliver_once`,
    tests and bench/ call it). The memo gets the envelope as the workflow will send it and the
    search attributes say pending, so the delivery shows in the log from its first moment and
    the workflow itself records nothing until it ends.
    """
    if delivery.timestamp is None or delivery.event_id is None:
        raise ValueError("a delivery started here needs its event id and timestamp")
    delivery_id = ids.delivery_id(delivery.event_id, delivery.webhook_id)
    envelope = delivery_envelope(delivery, delivery_id, started_at=delivery.timestamp)
    with contextlib.suppress(WorkflowAlreadyStartedError):  # it ran or runs: nothing to do
        await client.start_workflow(
            DELIVER_WEBHOOK,
            delivery,
            id=delivery_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            memo={MEMO_PAYLOAD: envelope},
            search_attributes=delivery_search_attributes(delivery),
            static_summary=delivery_summary(delivery.event, url),
            # Long enough for the first attempt to run inside the first workflow task.
            task_timeout=workflow_task_timeout(delivery.effective_policy),
        )
    return delivery_id


class FanOutActivities:
    """The fan-out activity with what it shares across calls."""

    def __init__(self, db: Database, client: Client, settings: Settings) -> None:
        self._db = db
        self._client = client
        self._settings = settings

    @activity.defn(name="fan_out_page")
    async def fan_out_page(self, request: FanOutRequest) -> FanOutPage:
        """Start the deliveries of one page of subscribers; idempotent, so safe to retry.

        Each endpoint is started on its own: one whose data cannot be started (see
        :meth:`_start_one`) is recorded in ``failed`` and the rest of the page goes on. Only an
        error of the store or of Temporal itself fails the page, which Temporal then retries.
        """
        async with self._db.session() as session:
            page = await webhooks.subscribers_page(
                session,
                org_id=request.org_id,
                event_type=request.event,
                after_webhook_id=request.after_webhook_id,
                limit=request.page_size,
            )
        policy = self._settings.delivery_policy()
        gate = asyncio.Semaphore(_CONCURRENT_STARTS)

        async def start(sub: webhooks.Subscriber) -> str | FailedStart:
            async with gate:
                return await self._start_one(request, policy, sub)

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(start(sub)) for sub in page]
        except ExceptionGroup as errors:
            # Only Temporal's own errors get here (see _start_one): raise the first as itself,
            # so the failed attempt that Temporal retries names it.
            raise errors.exceptions[0] from None
        outcomes = [task.result() for task in tasks]
        next_after = page[-1].webhook_id if len(page) == request.page_size else None
        return FanOutPage(
            delivery_ids=[o for o in outcomes if isinstance(o, str)],
            next_after=next_after,
            failed=[o for o in outcomes if isinstance(o, FailedStart)],
        )

    async def _start_one(
        self, request: FanOutRequest, policy: DeliveryPolicy, sub: webhooks.Subscriber
    ) -> str | FailedStart:
        """Start one endpoint's delivery; its delivery id, or why its own data stopped it.

        A refusal that is about this one start (our validation of the endpoint's data, or
        Temporal's ``INVALID_ARGUMENT``, e.g. a search attribute over its size limit) would fail
        again on every retry, so it is recorded instead. Any other Temporal error (unavailable,
        deadline exceeded, ...) is raised: the page is retried, and starts already made are
        no-ops the second time.
        """
        try:
            return await start_delivery(
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
                url=sub.url,
            )
        except RPCError as err:
            if err.status != RPCStatusCode.INVALID_ARGUMENT:
                raise
            return self._failed(sub, err)
        except ValueError as err:  # pydantic's ValidationError and UnicodeError included
            return self._failed(sub, err)

    @staticmethod
    def _failed(sub: webhooks.Subscriber, err: Exception) -> FailedStart:
        """Record and log (with the URL redacted) why ``sub``'s delivery did not start.

        A validation error is told by field and message only: its input values could be event
        data, which stays out of logs.
        """
        if isinstance(err, ValidationError):
            detail = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                for e in err.errors(include_url=False, include_input=False)
            )
        else:
            detail = str(err)
        reason = " ".join(f"{type(err).__name__}: {detail}".split())[:_REASON_LIMIT]
        activity.logger.warning(
            "delivery to webhook %s (%s) not started: %s",
            sub.webhook_id[:64],
            urls.redact(sub.url),
            reason,
        )
        return FailedStart(webhook_id=sub.webhook_id, reason=reason)
