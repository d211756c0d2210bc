"""The delivery log, read from Temporal: there is no deliveries table.

A log page is one visibility query whose rows carry their memo (envelope and final record), so
listing 100 deliveries costs one call. One delivery's detail adds every attempt: from the
workflow's result or failure once it ended; while it is under way from the pending activity
(heartbeat details and next attempt time), from the memo while it waits for its second attempt,
or from its open workflow task while its first (local) attempt runs
(:mod:`infraudit.workflows.delivery`).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from temporalio.api.enums.v1 import EventType, PendingActivityState, PendingWorkflowTaskState
from temporalio.api.failure.v1 import Failure
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
)
from temporalio.service import RPCError, RPCStatusCode

from infraudit import search_attributes
from infraudit.activities.send import IN_PROGRESS, LOST, attempts_from_details, settle_attempts
from infraudit.contract import (
    DELIVER_WEBHOOK,
    MEMO_PAYLOAD,
    MEMO_RESULT,
    Attempt,
    DeliveryOutcome,
    DeliveryStatus,
    MemoResult,
)

MAX_LOG_ROWS = 100


class DeliveryRow(BaseModel):
    """One line of an endpoint's delivery log (also the API's row, field for field)."""

    delivery_id: str
    webhook_id: str
    event: str
    status: DeliveryStatus
    attempt_count: int
    payload: dict[str, Any] | None
    response_status: int | None
    response_body: str | None
    timestamp: datetime | None
    created_at: datetime
    error: str | None = None


class DeliveryDetail(DeliveryRow):
    """A delivery with every attempt, and when the next one is due while it is pending."""

    attempts: list[Attempt]
    next_attempt_at: datetime | None


def _quote(value: str) -> str:
    """A visibility-query string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def log_query(org_id: str, webhook_id: str) -> str:
    """The visibility query for one endpoint's deliveries."""
    return (
        f"WorkflowType = {_quote(DELIVER_WEBHOOK)} AND OrgId = {_quote(org_id)} "
        f"AND WebhookId = {_quote(webhook_id)}"
    )


async def _row(execution: WorkflowExecution, so_far: list[Attempt] | None = None) -> DeliveryRow:
    """A log row from a listed (or described) execution.

    ``so_far``, the attempts of a delivery still retrying, fills the row as its memo cannot yet.
    """
    memo = await execution.memo()
    attrs = execution.typed_search_attributes
    result = MemoResult.model_validate(memo[MEMO_RESULT]) if MEMO_RESULT in memo else None
    status: DeliveryStatus
    if result is not None and result.status != "pending":
        status = result.status
    elif execution.status == WorkflowExecutionStatus.RUNNING:
        status = "pending"
        if so_far:
            result = MemoResult.from_attempts("pending", so_far, None)
    else:
        # Terminated or timed out by an operator before it could record an outcome.
        status = "failed"
    return DeliveryRow(
        delivery_id=execution.id,
        webhook_id=attrs.get(search_attributes.WEBHOOK_ID) or "",
        event=attrs.get(search_attributes.EVENT_TYPE) or "",
        status=status,
        attempt_count=result.attempt_count if result else 0,
        payload=memo.get(MEMO_PAYLOAD),
        response_status=result.response_status if result else None,
        response_body=result.response_body if result else None,
        timestamp=result.timestamp if result else None,
        created_at=execution.start_time,
        error=result.error if result else None,
    )


async def list_deliveries(
    client: Client, *, org_id: str, webhook_id: str, limit: int = MAX_LOG_ROWS
) -> list[DeliveryRow]:
    """The endpoint's newest deliveries (at most 100), newest first.

    One visibility query fills every ended row from its memo. A delivery still retrying has no
    outcome in its memo yet, so its attempts so far come from one describe each (no history).
    """
    limit = max(1, min(limit, MAX_LOG_ROWS))
    executions = [
        execution
        async for execution in client.list_workflows(
            log_query(org_id, webhook_id), page_size=limit, limit=limit
        )
    ]

    async def row(execution: WorkflowExecution) -> DeliveryRow:
        if execution.status != WorkflowExecutionStatus.RUNNING:
            return await _row(execution)
        try:
            described = await client.get_workflow_handle(execution.id).describe()
        except RPCError:
            return await _row(execution)
        return await _row(execution, (await _pending_attempts(client, described))[0])

    rows = list(await asyncio.gather(*(row(e) for e in executions)))
    rows.sort(key=lambda r: r.created_at, reverse=True)
    return rows


async def get_delivery(
    client: Client, *, org_id: str, webhook_id: str, delivery_id: str
) -> DeliveryDetail | None:
    """One delivery with its attempts; None when it is not this org's endpoint's delivery."""
    handle = client.get_workflow_handle(delivery_id)
    try:
        description = await handle.describe()
    except RPCError as err:
        if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            return None
        raise
    attrs = description.typed_search_attributes
    if (
        description.workflow_type != DELIVER_WEBHOOK
        or attrs.get(search_attributes.ORG_ID) != org_id
        or attrs.get(search_attributes.WEBHOOK_ID) != webhook_id
    ):
        return None
    next_attempt_at = None
    if description.status == WorkflowExecutionStatus.RUNNING:
        attempts, next_attempt_at = await _pending_attempts(client, description)
        row = await _row(description, attempts)
    else:
        row = await _row(description)
        memo = await description.memo()
        waited = (
            MemoResult.model_validate(memo[MEMO_RESULT]).attempts if MEMO_RESULT in memo else None
        )
        attempts = await _finished_attempts(client, delivery_id) or waited or []
    return DeliveryDetail(**row.model_dump(), attempts=attempts, next_attempt_at=next_attempt_at)


def _decode_attempts(client: Client, payloads: Any) -> list[Attempt]:
    if not payloads:
        return []
    return attempts_from_details(
        client.data_converter.payload_converter.from_payloads(list(payloads))
    )


async def _pending_attempts(
    client: Client, description: WorkflowExecutionDescription
) -> tuple[list[Attempt], datetime | None]:
    """Attempts so far of a delivery under way, and when the next one is due.

    With a pending POST activity: its heartbeat details. Its ``attempt`` counts from the first
    attempt after those listed in the memo (attempt 1, when it ran locally) and is the one
    running (state STARTED) or due next: every number before it has started, so a missing or
    unfinished record among them is a lost one. Without one, the memo lists the attempts while
    the delivery waits for its second; before that, an open workflow task is the first attempt
    running, and a workflow task on its second try or later one whose worker was lost.
    """
    memo = await description.memo()
    waiting = MemoResult.model_validate(memo[MEMO_RESULT]) if MEMO_RESULT in memo else None
    before = waiting.attempts or [] if waiting else []
    raw = description.raw_description
    for pending in raw.pending_activities:
        running = pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
        number = len(before) + pending.attempt
        attempts = settle_attempts(
            _decode_attempts(client, pending.heartbeat_details.payloads) or before,
            through=number - 1,
            running=number if running else None,
        )
        next_at = None
        if pending.HasField("next_attempt_schedule_time"):
            next_at = pending.next_attempt_schedule_time.ToDatetime(tzinfo=UTC)
        return attempts, next_at
    if waiting is not None:
        return before, waiting.next_attempt_at
    task = raw.pending_workflow_task
    if task.attempt > 1:
        # The first workflow task, which ran attempt 1, timed out or failed: its worker was lost
        # (the next worker records it so when it takes the delivery over).
        return [Attempt(attempt=1, error=LOST)], None
    if task.state == PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_STARTED:
        started = task.started_time.ToDatetime(tzinfo=UTC)
        return [Attempt(attempt=1, started_at=started, note=IN_PROGRESS)], None
    return [], None


def _failure_attempts(client: Client, failure: Failure) -> list[Attempt]:
    if failure.HasField("application_failure_info"):
        return _decode_attempts(client, failure.application_failure_info.details.payloads)
    if failure.HasField("timeout_failure_info"):
        info = failure.timeout_failure_info
        return _decode_attempts(client, info.last_heartbeat_details.payloads)
    return []


async def _finished_attempts(client: Client, delivery_id: str) -> list[Attempt]:
    """Every attempt of an ended delivery, from the workflow's result or failure.

    ``DeliverWebhook`` ends with every attempt in its result (delivered) or in its failure's
    details (failed). A delivery an operator terminated or timed out has neither: its last POST
    activity's events tell what they can (a timeout carries only the last heartbeat, so the
    started event's attempt number adds any attempt the heartbeats do not show, as lost). Empty
    when they tell nothing: the caller then falls back on the memo of a delivery that was
    waiting for its second attempt.
    """
    history = await client.get_workflow_handle(delivery_id).fetch_history()
    end = history.events[-1] if history.events else None
    if end is not None and end.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
        payloads = end.workflow_execution_completed_event_attributes.result.payloads
        outcome = client.data_converter.payload_converter.from_payloads(
            list(payloads), [DeliveryOutcome]
        )[0]
        return settle_attempts(outcome.attempts)
    if end is not None and end.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
        failure = end.workflow_execution_failed_event_attributes.failure
        # Empty for a delivery that failed validation (no attempt made), or one an earlier
        # release failed without listing its attempts: those are found in the events below.
        if recorded := _failure_attempts(client, failure):
            return settle_attempts(recorded)
    timed_out: list[Attempt] | None = None
    for event in reversed(history.events):
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            attrs = event.activity_task_completed_event_attributes
            return settle_attempts(_decode_attempts(client, attrs.result.payloads))
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
            failure = event.activity_task_failed_event_attributes.failure
            return settle_attempts(_failure_attempts(client, failure))
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
            failure = event.activity_task_timed_out_event_attributes.failure
            timed_out = _failure_attempts(client, failure)
        elif (
            event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED and timed_out is not None
        ):
            started = event.activity_task_started_event_attributes.attempt
            return settle_attempts(timed_out, through=started)
    return settle_attempts(timed_out or [])
