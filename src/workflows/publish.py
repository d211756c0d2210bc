"""``PublishEvent``: one event for one org, fanned out to every subscribed endpoint.

The workflow id is derived from (org, event id), and every delivery id from (event id,
endpoint id), so publishing the same event twice delivers nothing twice. Fan-out goes a page of
endpoints per activity; an accepted event is never lost, so that activity retries until the
database and Temporal are back. The page activity is a local one (issue 8): it only reads the
store and makes idempotent starts, so running a page again after a lost worker is harmless, and
an event then costs Temporal 6 history events instead of 11. One endpoint whose own data
cannot be started does not hold up the others: the activity records it, and the result lists
it under ``failed``.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from infraudit.activities.fanout import FanOutActivities
    from infraudit.contract import (
        PUBLISH_EVENT,
        FailedStart,
        FanOutRequest,
        PublishEventInput,
        PublishEventResult,
    )

#: Endpoints per ``fan_out_page`` activity. Fixed here, not an input: tests that need several
#: pages run the real activity under its name with a smaller ``page_size`` in its request.
PAGE_SIZE = 500

_FAN_OUT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)
)


@workflow.defn(name=PUBLISH_EVENT)
class PublishEvent:
    """Start one DeliverWebhook per subscribed endpoint; return the delivery ids (and the
    endpoints whose delivery could not start)."""

    @workflow.run
    async def run(self, event: PublishEventInput) -> PublishEventResult:
        """Page through the subscribers, starting their deliveries."""
        event_id = event.event_id or f"evt_{workflow.uuid4().hex}"
        timestamp = event.timestamp or workflow.info().workflow_start_time
        delivery_ids: list[str] = []
        failed: list[FailedStart] = []
        after: str | None = None
        while True:
            page = await workflow.execute_local_activity_method(
                FanOutActivities.fan_out_page,
                FanOutRequest(
                    org_id=event.org_id,
                    event=event.event,
                    event_id=event_id,
                    data=event.data,
                    timestamp=timestamp,
                    after_webhook_id=after,
                    page_size=PAGE_SIZE,
                ),
                start_to_close_timeout=timedelta(minutes=5),
                schedule_to_close_timeout=timedelta(days=1),
                retry_policy=_FAN_OUT_RETRY,
            )
            delivery_ids.extend(page.delivery_ids)
            failed.extend(page.failed)
            if page.next_after is None:
                return PublishEventResult(
                    event_id=event_id, delivery_ids=delivery_ids, failed=failed
                )
            after = page.next_after
