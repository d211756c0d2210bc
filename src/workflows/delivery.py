"""``DeliverWebhook``: one event to one endpoint, until delivered or out of attempts.

The workflow id is the delivery id. The workflow builds the envelope once; the ``send_webhook``
activity signs and POSTs those bytes. The outcome is recorded for the delivery log as search
attributes and memo; a delivery out of attempts ends the workflow Failed, red in the Temporal UI.

Attempts (issue 8): the first attempt runs as a *local* activity, inside the workflow task that
starts the delivery, and every later one as a regular activity carrying the rest of the retry
policy (exponential backoff within the delivery window). Most deliveries land at the first
attempt, and a local activity costs Temporal 1 history event instead of 5 plus a task queue
round trip: the engine then does less Temporal work per delivery than one workflow with one
regular activity (docs/benchmarks.md). What the log needs stays true:

- a worker lost during the local attempt leaves the workflow task to time out; the next worker
  sees that before anything else (the first workflow task it runs is not the first one of the
  history) and records attempt 1 as lost before going on with attempt 2. The workflow task
  timeout must therefore outlast the local attempt without the SDK extending the task (it
  does so at 80% of the timeout), so our starters set :func:`workflow_task_timeout`; a delivery
  started with a shorter one (another SDK's default 10 s) makes every attempt a regular one;
- the attempts made so far are in the memo while the delivery waits for its second attempt.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import NoReturn, TypedDict

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError, TimeoutType

with workflow.unsafe.imports_passed_through():
    from infraudit import ids, metrics, search_attributes, signing
    from infraudit.activities.send import (
        ENDPOINT_GONE,
        LOST,
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


#: Time an attempt may take beyond the HTTP timeout (loading the endpoint, signing).
_ATTEMPT_GRACE = timedelta(seconds=5)
#: Share of the workflow task timeout a local attempt may use: the SDK extends a workflow task
#: that runs a local activity at 80% of its timeout (with 3 more history events), and a worker
#: lost after that would no longer show in the first workflow task's position (see
#: :meth:`DeliverWebhook._first_attempt_lost`).
_LOCAL_SHARE = 0.75
#: Temporal's longest workflow task timeout.
_MAX_TASK_TIMEOUT = timedelta(seconds=120)
#: Events before a delivery's first workflow task runs: started, task scheduled, task started.
_FIRST_TASK_EVENTS = 3
#: The attempt number of the regular activity's first attempt: attempt 1 is the local one.
FIRST_REGULAR_ATTEMPT = 2


def attempt_timeout(policy: DeliveryPolicy) -> timedelta:
    """How long one attempt may run: the HTTP timeout plus loading and signing."""
    return timedelta(seconds=policy.timeout_seconds) + _ATTEMPT_GRACE


def workflow_task_timeout(policy: DeliveryPolicy) -> timedelta:
    """The workflow task timeout a starter sets so attempt 1 can run locally (10 s policy: 20 s).

    Capped at Temporal's 120 s: a policy whose attempt cannot fit (an HTTP timeout over 85 s)
    gets only regular attempts. A longer task timeout also delays, by as much, the moment
    another worker takes over a delivery whose worker was lost during its first attempt.
    """
    needed = attempt_timeout(policy) / _LOCAL_SHARE
    return min(_MAX_TASK_TIMEOUT, timedelta(seconds=math.ceil(needed.total_seconds())))


class ActivityOptions(TypedDict):
    """The keyword arguments of ``workflow.execute_activity_method`` that
    :func:`retry_options` sets (typed, so the call is checked)."""

    start_to_close_timeout: timedelta
    schedule_to_close_timeout: timedelta
    retry_policy: RetryPolicy


def retry_options(
    policy: DeliveryPolicy, *, after_first: bool, elapsed: timedelta
) -> ActivityOptions:
    """Timeouts and retry policy of the regular POST activity for ``policy``.

    ``after_first``: the activity makes attempts 2 onwards (attempt 1 was the local one), so it
    has one attempt fewer and its first wait is the policy's second. ``elapsed``: how much of the
    delivery window is already used.
    """
    window = timedelta(seconds=policy.window_seconds)
    initial = timedelta(seconds=policy.initial_interval_seconds)
    if after_first:
        initial *= policy.backoff_coefficient
    return {
        "start_to_close_timeout": attempt_timeout(policy),
        "schedule_to_close_timeout": window - elapsed,
        "retry_policy": RetryPolicy(
            initial_interval=initial,
            backoff_coefficient=policy.backoff_coefficient,
            maximum_interval=window,
            maximum_attempts=policy.max_attempts - (1 if after_first else 0),
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
        info = workflow.info()
        delivery_id = info.workflow_id
        problem = ids.delivery_id_problem(
            delivery_id, event_id=delivery.event_id, webhook_id=delivery.webhook_id
        )
        if problem:
            raise ApplicationError(problem, type="ValidationError", non_retryable=True)
        policy = delivery.effective_policy
        envelope = delivery_envelope(delivery, delivery_id, started_at=info.workflow_start_time)
        self._record_start(delivery, envelope)
        request = SendRequest(
            delivery_id=delivery_id,
            webhook_id=delivery.webhook_id,
            event=delivery.event,
            body=signing.envelope_body(envelope).decode(),
            timeout_seconds=policy.timeout_seconds,
            org_id=delivery.org_id,
        )
        if not self._local_first_attempt(policy):
            return await self._regular_attempts(request, policy, [])
        if self._first_attempt_lost():
            first = [Attempt(attempt=1, error=LOST)]
        else:
            try:
                attempts = await workflow.execute_local_activity_method(
                    SendActivities.send_webhook,
                    request,
                    # Waiting for a local activity slot counts too: the attempt must end
                    # inside the first workflow task however long it queued.
                    schedule_to_close_timeout=attempt_timeout(policy),
                    start_to_close_timeout=attempt_timeout(policy),
                    retry_policy=RetryPolicy(maximum_attempts=1),
                )
            except (ActivityError, ApplicationError, TimeoutError) as err:
                # A local activity's failure arrives as the activity's own error (this SDK
                # wraps only regular activities' in an ActivityError).
                cause = err.cause if isinstance(err, ActivityError) else err
                first = _attempts_of(cause)
                if isinstance(cause, TimeoutError):
                    # It ran out of time without saying how far it got: it may have sent.
                    first = settle_attempts(first, through=1)
                if _final(cause):
                    self._fail(first, cause)
            else:
                self._record_end("delivered", attempts, None)
                return DeliveryOutcome(status="delivered", attempts=attempts)
        if policy.max_attempts == 1:
            self._fail(first, None)
        wait = timedelta(seconds=policy.initial_interval_seconds)
        waiting = MemoResult.from_attempts(
            "pending", first, None, next_attempt_at=workflow.now() + wait
        )
        workflow.upsert_memo({MEMO_RESULT: waiting.model_dump(mode="json")})
        await workflow.sleep(wait)
        return await self._regular_attempts(
            request.model_copy(update={"first_attempt": FIRST_REGULAR_ATTEMPT, "earlier": first}),
            policy,
            first,
        )

    async def _regular_attempts(
        self, request: SendRequest, policy: DeliveryPolicy, earlier: list[Attempt]
    ) -> DeliveryOutcome:
        """The attempts after ``earlier`` as one regular activity with the rest of the policy."""
        after_first = request.first_attempt > 1
        # The window runs from the delivery's start; all-regular attempts get all of it.
        elapsed = timedelta(0)
        if after_first:
            elapsed = workflow.now() - workflow.info().workflow_start_time
            if elapsed >= timedelta(seconds=policy.window_seconds):
                self._fail(earlier, None, window_closed=True)
        try:
            attempts = await workflow.execute_activity_method(
                SendActivities.send_webhook,
                request,
                **retry_options(policy, after_first=after_first, elapsed=elapsed),
            )
        except ActivityError as err:
            self._fail(_attempts_of(err.cause) or earlier, err.cause)
        self._record_end("delivered", attempts, None)
        return DeliveryOutcome(status="delivered", attempts=attempts)

    @staticmethod
    def _local_first_attempt(policy: DeliveryPolicy) -> bool:
        """Whether attempt 1 can run locally: it must end well inside the workflow task."""
        task_timeout = workflow.info().task_timeout
        return attempt_timeout(policy) <= task_timeout * _LOCAL_SHARE

    @staticmethod
    def _first_attempt_lost() -> bool:
        """Whether a worker was lost while it ran this delivery's first workflow task.

        A delivery's history starts with 3 events (started, task scheduled, task started) when
        its first workflow task is the one that runs; a task that timed out or failed first
        adds its own. That task ran the local attempt, which may have reached the receiver.
        """
        return workflow.info().get_current_history_length() > _FIRST_TASK_EVENTS

    def _fail(
        self, attempts: list[Attempt], cause: BaseException | None, *, window_closed: bool = False
    ) -> NoReturn:
        """Record the delivery as failed and end the workflow Failed, saying why: ``cause`` is
        the last attempt's error, if any."""
        message = failure_message(attempts, cause)
        if window_closed:
            message += "; the delivery window ran out"
        self._record_end("failed", attempts, message)
        raise ApplicationError(
            message,
            [a.model_dump(mode="json") for a in attempts],
            type="DeliveryFailed",
            non_retryable=True,
        ) from cause

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
            pair.key.value_set(pair.value)
            for pair in delivery_search_attributes(delivery).search_attributes
            if present.get(pair.key) is None
        ]
        if missing:
            workflow.upsert_search_attributes(missing)

    @staticmethod
    def _record_end(status: DeliveryStatus, attempts: list[Attempt], error: str | None) -> None:
        workflow.upsert_search_attributes([search_attributes.DELIVERY_STATUS.value_set(status)])
        result = MemoResult.from_attempts(status, attempts, error)
        workflow.upsert_memo({MEMO_RESULT: result.model_dump(mode="json")})
        metrics.record_delivery_end(status, attempts)


def _final(cause: BaseException | None) -> bool:
    """Whether an attempt's failure ends the delivery whatever attempts are left (endpoint
    deleted, disabled, not the org's, or refused by the SSRF policy)."""
    return isinstance(cause, ApplicationError) and cause.non_retryable


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
