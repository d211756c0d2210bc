"""A delivery's first attempt runs as a local activity, the rest as one regular activity (issue 8).

``DeliverWebhook`` makes attempt 1 inside its first workflow task, then, if it failed, records
it in the ``result`` memo with the time of attempt 2 and sleeps a durable timer before one
regular activity makes attempts 2 onwards. These tests hold that split to what the log and the
guide promise: the log shows a delivery waiting for attempt 2, the waits are the policy's, an
operator's terminate reads failed, another SDK's plain start still delivers (all attempts
regular), the delivery window still ends a delivery, an endpoint gone before attempt 1 ends it
with nothing sent, and a worker lost during attempt 2 leaves it in the log between attempts 1
and 3. Real dev server, real workers, real receivers on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.converter import DataConverter
from temporalio.exceptions import ApplicationError

from infraudit import deliveries, ids
from infraudit.activities.send import IN_PROGRESS, LOST
from infraudit.config import Settings
from infraudit.contract import DeliveryOutcome, DeliveryPolicy
from infraudit.store import webhooks
from infraudit.worker import build_worker
from tests.conftest import Endpoints
from tests.helpers import eventually, start_test_delivery
from tests.receiver import Answer, Receiver
from tests.test_attempts import OK, QUICK, Raw, raw_receiver, start_with_policy
from tests.worker_process import worker_env, worker_process

#: Long enough between attempts 1 and 2 for a test to read the log while the delivery waits.
WAITING = DeliveryPolicy(
    timeout_seconds=1, window_seconds=120, initial_interval_seconds=30, backoff_coefficient=2
)


async def start_to_receiver(
    client: Client,
    settings: Settings,
    endpoints: Endpoints,
    receiver: Receiver,
    org_id: str,
    policy: DeliveryPolicy,
) -> tuple[str, str]:
    """Register an endpoint at ``receiver`` and start one delivery to it with ``policy``, as our
    starters do (attempt 1 local); returns (webhook id, delivery id)."""
    webhook_id, _ = await endpoints.add(org_id, receiver.url)
    delivery_id = await start_with_policy(
        client, settings.task_queue, org_id=org_id, webhook_id=webhook_id, url=receiver.url,
        policy=policy,
    )  # fmt: skip
    return webhook_id, delivery_id


async def history_kinds(handle: WorkflowHandle) -> list[EventType.ValueType]:
    """The event types of a workflow's history, in order."""
    return [e.event_type async for e in handle.fetch_history_events()]


async def failure_of(handle: WorkflowHandle, within: float = 30.0) -> str:
    """The message a delivery failed with (it must fail, within ``within`` seconds)."""
    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(handle.result(), within)
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError), cause
    return cause.message


async def waiting_detail(
    client: Client, *, org_id: str, webhook_id: str, delivery_id: str
) -> deliveries.DeliveryDetail:
    """The delivery's detail once its memo says when attempt 2 is due."""

    async def probe() -> deliveries.DeliveryDetail | None:
        return await deliveries.get_delivery(
            client, org_id=org_id, webhook_id=webhook_id, delivery_id=delivery_id
        )

    detail = await eventually(probe, lambda d: d is not None and d.next_attempt_at is not None)
    assert detail is not None
    return detail


async def listed_row(
    client: Client, *, org_id: str, webhook_id: str, status: str
) -> deliveries.DeliveryRow:
    """The endpoint's one log row, once visibility shows it with ``status``."""
    rows = await eventually(
        lambda: deliveries.list_deliveries(client, org_id=org_id, webhook_id=webhook_id),
        lambda rows: len(rows) == 1 and rows[0].status == status,
    )
    return rows[0]


def row_of(detail: deliveries.DeliveryDetail) -> deliveries.DeliveryRow:
    """What the log's row of this delivery must say: the detail without its attempts."""
    return deliveries.DeliveryRow(**detail.model_dump(exclude={"attempts", "next_attempt_at"}))


# --- between attempt 1 (local) and attempt 2 ------------------------------------------------


@pytest.mark.usefixtures("worker")
async def test_a_delivery_waiting_for_attempt_2_shows_attempt_1_and_when_the_next_is_due(
    client: Client, settings: Settings, endpoints: Endpoints, receiver: Receiver, org_id: str
) -> None:
    """Attempt 1 ran locally, so no pending activity holds it: the memo does, with the time of
    attempt 2, and the detail and the listed row both read it."""
    receiver.script(Answer(500, b"boom"))
    webhook_id, delivery_id = await start_to_receiver(
        client, settings, endpoints, receiver, org_id, WAITING
    )
    try:
        detail = await waiting_detail(
            client, org_id=org_id, webhook_id=webhook_id, delivery_id=delivery_id
        )
        row = await listed_row(client, org_id=org_id, webhook_id=webhook_id, status="pending")
        kinds = await history_kinds(client.get_workflow_handle(delivery_id))
    finally:
        await client.get_workflow_handle(delivery_id).terminate("test over")

    assert detail.status == "pending"
    assert [(a.attempt, a.response_status, a.response_body) for a in detail.attempts] == [
        (1, 500, "boom")
    ]
    [first] = detail.attempts
    assert first.started_at is not None and first.duration_ms is not None
    assert (detail.attempt_count, detail.response_status, detail.response_body) == (1, 500, "boom")
    assert detail.timestamp == first.started_at
    assert detail.next_attempt_at is not None
    until_next = (detail.next_attempt_at - datetime.now(UTC)).total_seconds()
    assert 0 < until_next <= WAITING.initial_interval_seconds
    # next_attempt_at counts from the workflow task's time, a little before attempt 1 started.
    assert (detail.next_attempt_at - first.started_at).total_seconds() >= (
        WAITING.initial_interval_seconds / 2
    ), "attempt 2 is due the policy's first wait after attempt 1"
    assert row == row_of(detail)
    assert len(receiver.requests) == 1
    assert EventType.EVENT_TYPE_TIMER_STARTED in kinds, "the wait is a durable timer"
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED not in kinds


async def terminated_while_waiting(
    client: Client, settings: Settings, endpoints: Endpoints, receiver: Receiver, org_id: str
) -> tuple[deliveries.DeliveryRow, deliveries.DeliveryDetail]:
    """A delivery an operator terminated while it waited for attempt 2 (attempt 1 got a 500):
    its log row and its detail once visibility shows it ended."""
    receiver.script(Answer(500, b"boom"))
    webhook_id, delivery_id = await start_to_receiver(
        client, settings, endpoints, receiver, org_id, WAITING
    )
    await waiting_detail(client, org_id=org_id, webhook_id=webhook_id, delivery_id=delivery_id)
    await client.get_workflow_handle(delivery_id).terminate("operator gave up")
    row = await listed_row(client, org_id=org_id, webhook_id=webhook_id, status="failed")
    detail = await deliveries.get_delivery(
        client, org_id=org_id, webhook_id=webhook_id, delivery_id=delivery_id
    )
    assert detail is not None
    return row, detail


@pytest.mark.usefixtures("worker")
async def test_a_delivery_terminated_while_waiting_for_attempt_2_reads_failed(
    client: Client, settings: Settings, endpoints: Endpoints, receiver: Receiver, org_id: str
) -> None:
    """Its memo still says pending (the workflow never ran again to record an end): the log
    must not show it pending forever."""
    row, detail = await terminated_while_waiting(client, settings, endpoints, receiver, org_id)
    assert detail.status == "failed" and detail.next_attempt_at is None
    assert (row.attempt_count, row.response_status) == (1, 500)
    assert row == row_of(detail)


@pytest.mark.usefixtures("worker")
async def test_a_delivery_terminated_while_waiting_for_attempt_2_still_lists_attempt_1(
    client: Client, settings: Settings, endpoints: Endpoints, receiver: Receiver, org_id: str
) -> None:
    """Its row counts attempt 1 (from the memo); its detail must list it."""
    _, detail = await terminated_while_waiting(client, settings, endpoints, receiver, org_id)
    assert [(a.attempt, a.response_status) for a in detail.attempts] == [(1, 500)]
    assert detail.attempt_count == len(detail.attempts)


async def test_a_worker_killed_during_attempt_2_leaves_it_lost_between_attempts_1_and_3(
    client: Client, settings: Settings, endpoints: Endpoints, org_id: str, tmp_path: Path
) -> None:
    """Attempt 2 is the regular activity's first: it starts from attempt 1's record (passed in
    its input, not heartbeated by a local attempt) and heartbeats itself in flight. SIGKILL
    while the receiver holds it: the log shows it in progress after attempt 1, then lost once
    its start-to-close ran out and a new worker made attempt 3."""
    task_queue = f"kill-2-{uuid.uuid4().hex[:8]}"
    env = worker_env(client, database_url=settings.database_url, task_queue=task_queue)
    boom = Raw(b"HTTP/1.1 500 Oops\r\nContent-Length: 4\r\nConnection: close\r\n\r\nboom")
    async with raw_receiver(boom, Raw(b"", "hold"), OK) as receiver:
        webhook_id, _ = await endpoints.add(org_id, receiver.url)
        with worker_process(env, tmp_path / "first.log") as first:
            await first.ready()
            delivery_id = await start_with_policy(
                client, task_queue, org_id=org_id, webhook_id=webhook_id, url=receiver.url,
                policy=QUICK,
            )  # fmt: skip
            await receiver.wait_for(2)
            during = await deliveries.get_delivery(
                client, org_id=org_id, webhook_id=webhook_id, delivery_id=delivery_id
            )
            first.kill()
        with worker_process(env, tmp_path / "second.log") as second:
            await second.ready()
            handle = client.get_workflow_handle(delivery_id, result_type=DeliveryOutcome)
            outcome = await asyncio.wait_for(handle.result(), 60)

    assert during is not None and during.status == "pending"
    assert [(a.attempt, a.response_status, a.note) for a in during.attempts] == [
        (1, 500, None),
        (2, None, IN_PROGRESS),
    ]
    assert [(a.attempt, a.response_status, a.error) for a in outcome.attempts] == [
        (1, 500, None),
        (2, None, LOST),
        (3, 200, None),
    ]
    assert outcome.attempts[1].started_at is not None, "recorded before it was sent"
    assert receiver.requests == 3


# --- the schedule ---------------------------------------------------------------------------


@pytest.mark.usefixtures("worker")
async def test_attempts_come_after_the_policys_waits_and_stop_at_max_attempts(
    client: Client, settings: Settings, endpoints: Endpoints, receiver: Receiver, org_id: str
) -> None:
    """Local attempt 1, then the timer's wait (initial), then the regular activity's own first
    retry wait (initial x coefficient): exactly 3 POSTs, numbered 1, 2, 3.

    The coefficient is large so that the two waits cannot be mistaken for each other with only
    lower bounds and a loose upper one."""
    policy = DeliveryPolicy(
        timeout_seconds=1, window_seconds=60, initial_interval_seconds=0.5, backoff_coefficient=10
    )
    receiver.script(Answer(500, b"no"))
    webhook_id, delivery_id = await start_to_receiver(
        client, settings, endpoints, receiver, org_id, policy
    )
    handle = client.get_workflow_handle(delivery_id)
    assert await failure_of(handle) == "3 attempts failed; last: HTTP 500"

    arrivals = [r.at for r in receiver.requests]
    assert len(arrivals) == policy.max_attempts
    first_wait, second_wait = arrivals[1] - arrivals[0], arrivals[2] - arrivals[1]
    initial = policy.initial_interval_seconds
    assert first_wait >= initial
    assert first_wait < initial * policy.backoff_coefficient, "the first wait is the initial one"
    assert second_wait >= initial * policy.backoff_coefficient
    detail = await deliveries.get_delivery(
        client, org_id=org_id, webhook_id=webhook_id, delivery_id=delivery_id
    )
    assert detail is not None and detail.status == "failed"
    assert [(a.attempt, a.response_status) for a in detail.attempts] == [
        (1, 500),
        (2, 500),
        (3, 500),
    ]
    [scheduled] = [
        e.activity_task_scheduled_event_attributes
        async for e in handle.fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert scheduled.retry_policy.maximum_attempts == policy.max_attempts - 1


@pytest.mark.usefixtures("worker")
async def test_max_attempts_1_makes_one_post_and_fails_without_waiting(
    client: Client, settings: Settings, endpoints: Endpoints, receiver: Receiver, org_id: str
) -> None:
    """No attempt 2 to wait for: no timer, no regular activity (whose ``maximum_attempts`` of
    0 would mean unlimited to Temporal)."""
    policy = DeliveryPolicy(
        timeout_seconds=1,
        window_seconds=60,
        initial_interval_seconds=0.2,
        backoff_coefficient=2,
        max_attempts=1,
    )
    receiver.script(Answer(500, b"no"))
    webhook_id, delivery_id = await start_to_receiver(
        client, settings, endpoints, receiver, org_id, policy
    )
    handle = client.get_workflow_handle(delivery_id)
    assert await failure_of(handle) == "1 attempt failed; last: HTTP 500"
    await asyncio.sleep(policy.initial_interval_seconds * 3)
    assert len(receiver.requests) == 1
    kinds = await history_kinds(handle)
    assert EventType.EVENT_TYPE_TIMER_STARTED not in kinds
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED not in kinds
    detail = await deliveries.get_delivery(
        client, org_id=org_id, webhook_id=webhook_id, delivery_id=delivery_id
    )
    assert detail is not None and detail.status == "failed"
    assert [(a.attempt, a.response_status) for a in detail.attempts] == [(1, 500)]


# --- who starts it decides where attempt 1 runs ---------------------------------------------


@pytest.mark.usefixtures("worker")
async def test_another_sdks_plain_start_makes_every_attempt_regular_and_ours_runs_it_locally(
    client: Client, settings: Settings, endpoints: Endpoints, receiver: Receiver, org_id: str
) -> None:
    """A plain JSON start has the SDK's 10 s workflow task timeout, too short for the guide's
    10 s attempt to run inside it: the delivery still lands, as a regular activity numbered from
    1, with no local-activity marker. Ours sets the task timeout, so its attempt 1 is the marker
    and no activity is scheduled at all."""
    webhook_id, _ = await endpoints.add(org_id, receiver.url)
    plain = Client(
        client.service_client, namespace=client.namespace, data_converter=DataConverter.default
    )
    theirs_id = ids.delivery_id(f"evt_{uuid.uuid4().hex}", webhook_id)
    theirs = await plain.start_workflow(
        "DeliverWebhook",
        {"webhook_id": webhook_id, "org_id": org_id, "event": "drift.detected", "data": {}},
        id=theirs_id,
        task_queue=settings.task_queue,
    )
    ours = await start_test_delivery(
        client, settings, org_id=org_id, webhook_id=webhook_id, url=receiver.url
    )
    for handle in (client.get_workflow_handle(theirs.id, result_type=DeliveryOutcome), ours):
        outcome = await asyncio.wait_for(handle.result(), 30)
        assert [(a.attempt, a.response_status) for a in outcome.attempts] == [(1, 200)]

    theirs_kinds = await history_kinds(theirs)
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED in theirs_kinds
    assert EventType.EVENT_TYPE_MARKER_RECORDED not in theirs_kinds
    ours_kinds = await history_kinds(ours)
    assert EventType.EVENT_TYPE_MARKER_RECORDED in ours_kinds
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED not in ours_kinds
    assert len(receiver.requests) == 2


@pytest.mark.usefixtures("worker")
async def test_every_regular_attempt_is_numbered_from_1_when_none_ran_locally(
    client: Client, settings: Settings, endpoints: Endpoints, receiver: Receiver, org_id: str
) -> None:
    """A plain start with a 10 s HTTP timeout and quick retries: attempts 1 and 2 are the one
    regular activity's, which carries all 3 attempts of the policy and its first wait."""
    receiver.script(Answer(500, b"first"), Answer(200, b"second"))
    webhook_id, _ = await endpoints.add(org_id, receiver.url)
    plain = Client(
        client.service_client, namespace=client.namespace, data_converter=DataConverter.default
    )
    policy = {"timeout_seconds": 10, "window_seconds": 60, "initial_interval_seconds": 0.2}
    delivery_id = ids.delivery_id(f"evt_{uuid.uuid4().hex}", webhook_id)
    await plain.start_workflow(
        "DeliverWebhook",
        {"webhook_id": webhook_id, "org_id": org_id, "event": "drift.detected", "policy": policy},
        id=delivery_id,
        task_queue=settings.task_queue,
    )
    handle = client.get_workflow_handle(delivery_id, result_type=DeliveryOutcome)
    outcome = await asyncio.wait_for(handle.result(), 30)
    assert [(a.attempt, a.response_status) for a in outcome.attempts] == [(1, 500), (2, 200)]
    [scheduled] = [
        e.activity_task_scheduled_event_attributes
        async for e in handle.fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert scheduled.retry_policy.maximum_attempts == 3
    assert scheduled.retry_policy.initial_interval.ToMilliseconds() == 200


# --- ends that come before attempt 2 --------------------------------------------------------


async def test_a_window_that_closes_before_attempt_2_ends_the_delivery_failed(
    client: Client, settings: Settings, endpoints: Endpoints, receiver: Receiver, org_id: str
) -> None:
    """The policy fits its window (``schedule_problem``), but no worker polled for longer than
    the window when the delivery started: attempt 1 still runs (as the regular activity did
    before), and instead of attempt 2 the delivery ends saying the window ran out."""
    policy = DeliveryPolicy(
        timeout_seconds=1, window_seconds=3.5, initial_interval_seconds=0.5, backoff_coefficient=1
    )
    own = settings.model_copy(update={"task_queue": f"late-worker-{uuid.uuid4().hex[:8]}"})
    receiver.script(Answer(500, b"down"))
    webhook_id, delivery_id = await start_to_receiver(
        client, own, endpoints, receiver, org_id, policy
    )
    await asyncio.sleep(policy.window_seconds + 0.5)
    handle = client.get_workflow_handle(delivery_id)
    async with build_worker(client, own) as worker, worker:
        message = await failure_of(handle)

    assert message == "1 attempt failed; last: HTTP 500; the delivery window ran out"
    assert len(receiver.requests) == 1
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED not in await history_kinds(handle)
    detail = await deliveries.get_delivery(
        client, org_id=org_id, webhook_id=webhook_id, delivery_id=delivery_id
    )
    assert detail is not None
    assert (detail.status, detail.error) == ("failed", message)
    assert [(a.attempt, a.response_status) for a in detail.attempts] == [(1, 500)]


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize("gone", ["disabled", "deleted"])
async def test_an_endpoint_gone_before_attempt_1_ends_it_with_no_attempt_and_no_post(
    client: Client,
    settings: Settings,
    endpoints: Endpoints,
    receiver: Receiver,
    org_id: str,
    gone: str,
) -> None:
    """The local attempt finds the endpoint disabled or deleted: the delivery fails at once,
    records no attempt (nothing was tried) and neither waits nor schedules attempt 2."""
    webhook_id, _ = await endpoints.add(org_id, receiver.url)
    async with endpoints.db.session() as session, session.begin():
        hook = await webhooks.get_webhook(session, org_id, webhook_id)
        assert hook is not None
        if gone == "deleted":
            await webhooks.delete_webhook(session, hook)
        else:
            await webhooks.update_webhook(session, hook, enabled=False)
    handle = await start_test_delivery(
        client, settings, org_id=org_id, webhook_id=webhook_id, url=receiver.url
    )
    message = await failure_of(handle)

    assert message == f"endpoint {webhook_id} was {gone}; no further attempts"
    assert receiver.requests == []
    kinds = await history_kinds(handle)
    assert EventType.EVENT_TYPE_MARKER_RECORDED in kinds, "it ended at the local attempt"
    assert EventType.EVENT_TYPE_TIMER_STARTED not in kinds
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED not in kinds
    detail = await deliveries.get_delivery(
        client, org_id=org_id, webhook_id=webhook_id, delivery_id=handle.id
    )
    assert detail is not None
    assert (detail.status, detail.error) == ("failed", message)
    assert detail.attempts == [] and detail.attempt_count == 0
