"""``DeliverWebhook``: one event to one endpoint, until delivered or out of attempts.

The workflow id is the delivery id. The workflow builds the envelope once; the activity signs
and POSTs those bytes, with the retry policy (3 attempts, exponential backoff, schedule-to-close
of the delivery window) on the activity. The outcome is recorded for the delivery log as search
attributes and memo; a delivery out of attempts ends the workflow Failed, red in the Temporal UI.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError, TimeoutType

with workflow.unsafe.imports_passed_through():
    from infraudit import ids, search_attributes, signing
    from infraudit.activities.send import (
        ENDPOINT_GONE,
        NOT_OWNED,
        SendActivities,
        attempts_from_details,
        describe_failure,
        settle_attempts,
    )
    from infraudit.contract import (
        DELIVER_WEBHOOK,
        MEMO_PAYLOAD,
        MEMO_RESULT,
        Attempt,
        DeliverWebhookInput,
        DeliveryOutcome,
        DeliveryPolicy,
        DeliveryStatus,
        MemoResult,
        SendRequest,
    )


def delivery_envelope(
    delivery: DeliverWebhookInput, delivery_id: str, *, started_at: datetime
) -> dict[str, object]:
    """The envelope of ``delivery`` as it is sent and kept in the ``payload`` memo.

    The one place a delivery's envelope is made (from :func:`infraudit.signing.build_envelope`):
    the workflow, the starters and tests call it, so the memo a starter writes is byte for byte
    what the workflow sends. ``started_at`` stands in for an input without ``timestamp``; the
    workflow passes its start time, so a starter must pass the same (or set ``timestamp``).
    """
    return signing.build_envelope(
        event=delivery.event,
        timestamp=delivery.timestamp or started_at,
        webhook_id=delivery.webhook_id,
        delivery_id=delivery_id,
        data=delivery.data,
    )


def delivery_search_attributes(delivery: DeliverWebhookInput) -> TypedSearchAttributes:
    """The four search attributes the delivery log queries and the Temporal UI filters on, as a
    delivery starts (``DeliveryStatus`` pending; the workflow sets the outcome when it ends)."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(search_attributes.WEBHOOK_ID, delivery.webhook_id),
            SearchAttributePair(search_attributes.ORG_ID, delivery.org_id),
            SearchAttributePair(search_attributes.EVENT_TYPE, delivery.event),
            SearchAttributePair(search_attributes.DELIVERY_STATUS, "pending"),
        ]
    )


#: Time the activity may take beyond the HTTP timeout (loading the endpoint, signing).
_ATTEMPT_GRACE = timedelta(seconds=5)


def activity_options(policy: DeliveryPolicy) -> dict[str, object]:
    """Timeouts and retry policy of the POST activity for ``policy``."""
    window = timedelta(seconds=policy.window_seconds)
    return {
        "start_to_close_timeout": timedelta(seconds=policy.timeout_seconds) + _ATTEMPT_GRACE,
        "schedule_to_close_timeout": window,
        "retry_policy": RetryPolicy(
            initial_interval=timedelta(seconds=policy.initial_interval_seconds),
            backoff_coefficient=policy.backoff_coefficient,
            maximum_interval=window,
            maximum_attempts=policy.max_attempts,
        ),
    }


def failure_message(attempts: list[Attempt], cause: BaseException | None) -> str:
    """Why a delivery failed, e.g. ``3 attempts failed; last: HTTP 503``."""
    if isinstance(cause, ApplicationError) and cause.type in (ENDPOINT_GONE, NOT_OWNED):
        return cause.message
    count = len(attempts)
    noun = "attempt" if count == 1 else "attempts"
    message = f"{count} {noun} failed"
    if attempts:
        message += f"; last: {describe_failure(attempts[-1])}"
    if isinstance(cause, TimeoutError) and cause.type == TimeoutType.SCHEDULE_TO_CLOSE:
        message += "; the delivery window ran out"
    return message


@workflow.defn(name=DELIVER_WEBHOOK)
class DeliverWebhook:
    """Deliver one event to one endpoint."""

    @workflow.run
    async def run(self, delivery: DeliverWebhookInput) -> DeliveryOutcome:
        """Send, retry as the policy says, record the outcome; raise when it failed."""
        delivery_id = workflow.info().workflow_id
        problem = ids.delivery_id_problem(
            delivery_id, event_id=delivery.event_id, webhook_id=delivery.webhook_id
        )
        if problem:
            raise ApplicationError(problem, type="ValidationError", non_retryable=True)
        policy = delivery.effective_policy
        envelope = delivery_envelope(
            delivery, delivery_id, started_at=workflow.info().workflow_start_time
        )
        self._record_start(delivery, envelope)
        request = SendRequest(
            delivery_id=delivery_id,
            webhook_id=delivery.webhook_id,
            event=delivery.event,
            body=signing.envelope_body(envelope).decode(),
            timeout_seconds=policy.timeout_seconds,
            org_id=delivery.org_id,
        )
        try:
            attempts = await workflow.execute_activity_method(
                SendActivities.send_webhook,
                request,
                **activity_options(policy),  # type: ignore[arg-type]
            )
        except ActivityError as err:
            attempts = _attempts_of(err.cause)
            message = failure_message(attempts, err.cause)
            self._record_end("failed", attempts, message)
            raise ApplicationError(message, type="DeliveryFailed", non_retryable=True) from err
        self._record_end("delivered", attempts, None)
        return DeliveryOutcome(status="delivered", attempts=attempts)

    @staticmethod
    def _record_start(delivery: DeliverWebhookInput, envelope: dict[str, object]) -> None:
        """Fill in what a starter from another SDK may not have set: the log needs it all.

        Our starters (:func:`infraudit.activities.fanout.start_delivery`) set the memo and the
        search attributes at the start, so for them this issues no command and adds no event.
        """
        if workflow.memo_value(MEMO_PAYLOAD, None) is None:
            workflow.upsert_memo({MEMO_PAYLOAD: envelope})
        present = workflow.info().typed_search_attributes
        missing = [
            pair
            for pair in delivery_search_attributes(delivery).search_attributes
            if present.get(pair.key) is None
        ]
        if missing:
            workflow.upsert_search_attributes(TypedSearchAttributes(missing))

    @staticmethod
    def _record_end(status: DeliveryStatus, attempts: list[Attempt], error: str | None) -> None:
        workflow.upsert_search_attributes([search_attributes.DELIVERY_STATUS.value_set(status)])
        result = MemoResult.from_attempts(status, attempts, error)
        workflow.upsert_memo({MEMO_RESULT: result.model_dump(mode="json")})


def _attempts_of(cause: BaseException | None) -> list[Attempt]:
    """The attempts carried by the activity's final failure (or by its last heartbeat).

    After a timeout the last heartbeat may hold the final attempt in flight: its worker was lost
    (start-to-close) or the window closed on it (schedule-to-close); either way it may have
    reached the receiver, so it is listed, settled as lost.
    """
    if isinstance(cause, ApplicationError):
        return settle_attempts(attempts_from_details(cause.details))
    if isinstance(cause, TimeoutError):
        return settle_attempts(attempts_from_details(cause.last_heartbeat_details))
    return []
