"""Scale-out on one box (issue 10): two workers and two APIs share one Temporal and one database.

Every process is real and separate, as an operator runs them: two ``python worker.py`` and two
``infraudit api`` on one task queue of their own, the session's Temporal dev server, and
PostgreSQL (a database of this test process's own, from the ``postgres_url`` fixture: the test
is skipped exactly when that fixture finds no PostgreSQL, and CI has one). A few hundred events
go in through both APIs over HTTP while one worker is killed with SIGKILL and started again.
What must hold is what a customer and an operator would check: every delivery arrived, signed
and listed in the delivery log; a POST that arrived twice shows in that delivery's log as an
attempt whose worker was lost; both APIs accepted events; and the history of the deliveries
names every worker process (the identity Temporal records, ``pid@host``) as having run them.

docs/operations.md ("Scaling out") names this test as the proof.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from infraudit import deliveries, ids, signing
from infraudit.activities.send import LOST
from infraudit.cli.commands import create_api_key
from infraudit.contract import DELIVER_WEBHOOK
from infraudit.deliveries import DeliveryDetail
from infraudit.search_attributes import ORG_ID
from tests.api_process import ApiProcess, api_env, api_process
from tests.helpers import eventually
from tests.ledger import Ledger, ledger
from tests.worker_process import worker_env, worker_process

# It starts four processes of the engine, a whole stack as the `infraudit up` tests do: in their
# group, no two of these stacks compete for the cores at once (`make test`: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("infraudit-up")

#: Events published, half through each API.
EVENTS = 300
#: Event types published in turn; with :data:`SUBSCRIPTIONS` the first two reach two endpoints
#: each and the third one: 500 deliveries for 300 events.
PUBLISHED = ("drift.detected", "alert.created", "cost.anomaly")
#: The event types of each endpoint registered.
SUBSCRIPTIONS = (
    ["drift.detected"],
    ["alert.created"],
    ["cost.anomaly"],
    ["drift.detected", "alert.created"],
)
#: The worker is killed once this many POSTs arrived: both workers are busy by then.
KILL_AFTER_POSTS = 60
#: Events published only once the killed worker runs again, so that its successor gets work.
AFTER_RESTART = EVENTS // 3
#: Requests each API has under way at once.
CONCURRENT_REQUESTS = 8
#: What the test changes in the engine's settings, for every process. A 3 s HTTP timeout makes
#: the delivery workflow task timeout 11 s (``workflow_task_timeout``): the time until another
#: worker takes over a first attempt the killed one was making. The API waits up to 10 s for
#: a loaded Temporal before it answers 503. The per-org rate limits are lifted.
SETTINGS_ENV = {
    "INFRAUDIT_HTTP_TIMEOUT": "3",
    "INFRAUDIT_RETRY_INITIAL_INTERVAL": "0.5",
    "INFRAUDIT_RETRY_BACKOFF_COEFFICIENT": "2",
    "INFRAUDIT_DELIVERY_WINDOW": "120",
    "INFRAUDIT_TEMPORAL_RPC_TIMEOUT": "10",
    "INFRAUDIT_EVENTS_PER_SECOND": "100000",
    "INFRAUDIT_EVENT_BURST": "100000",
}


async def test_two_workers_and_two_apis_deliver_every_event_once_through_a_worker_kill(
    client: Client, postgres_url: str, tmp_path: Path
) -> None:
    """Worker b is killed once both workers are busy and started again (b2) before the last
    third of the events goes in; every check is made after the last delivery ended."""
    org_id = f"org-scale-{uuid.uuid4().hex[:10]}"
    queue = f"scale-out-{uuid.uuid4().hex[:8]}"
    env = {
        **worker_env(client, database_url=postgres_url, task_queue=queue),
        **SETTINGS_ENV,
    }
    key = await create_api_key(postgres_url, org_id)
    auth = {"Authorization": f"Bearer {key}"}
    with ExitStack() as stack:
        steady, doomed = (
            stack.enter_context(worker_process(env, tmp_path / f"worker-{name}.log"))
            for name in ("a", "b")
        )
        apis = [
            stack.enter_context(api_process(api_env(env), tmp_path / f"api-{n}.log"))
            for n in (1, 2)
        ]
        await asyncio.gather(*(p.ready() for p in (steady, doomed, *apis)))
        async with ledger() as book:
            secrets = await register_endpoints(apis, auth, book.url)
            restarted = asyncio.Event()
            publishing = asyncio.create_task(publish_all(apis, auth, restarted))
            await book.wait_until(
                lambda b: len(b.receipts) >= KILL_AFTER_POSTS or publishing.done(),
                what="the first POSTs",
            )
            if publishing.done():  # it waits for the restart unless a publish failed: say why
                publishing.result()
            doomed.kill()
            successor = stack.enter_context(worker_process(env, tmp_path / "worker-b2.log"))
            await successor.ready()
            restarted.set()
            answers = await publishing
            expected = {d for answer in answers for d in answer.delivery_ids}
            await book.wait_until(
                lambda b: expected <= set(b.by_delivery()), within=60, what="every delivery"
            )
            await eventually(
                lambda: client.count_workflows(
                    f"WorkflowType = '{DELIVER_WEBHOOK}' AND {ORG_ID.name} = '{org_id}' "
                    "AND ExecutionStatus = 'Running'"
                ),
                lambda running: running.count == 0,
                within=30,
            )
            details = await read_log(client, org_id, expected, book)
            workers = await identities(client, expected)
        assert steady.process.poll() is None and successor.process.poll() is None

    # Both APIs accepted their half; the delivery ids they answered are the subscriptions'.
    assert len(answers) == EVENTS
    assert Counter(a.api for a in answers) == {apis[0].url: EVENTS // 2, apis[1].url: EVENTS // 2}
    by_type = {t: [h for h, (types, _) in secrets.items() if t in types] for t in PUBLISHED}
    assert expected == {
        ids.delivery_id(a.event_id, hook) for a in answers for hook in by_type[a.event]
    }
    # Nothing arrived that was not published; each delivery as its log says.
    assert set(book.by_delivery()) == expected
    for detail in details.values():
        assert_delivered_once_or_retried(book, detail, secrets[detail.webhook_id][1])
    # Every worker process ran deliveries: the two started first, and the one started again.
    processes = (steady, doomed, successor)
    assert set(workers) == {f"{w.process.pid}@{socket.gethostname()}" for w in processes}, workers


@dataclass(frozen=True)
class Answer:
    """One event's 202: the API that gave it (its URL), the event and its delivery ids."""

    api: str
    event_id: str
    event: str
    delivery_ids: list[str]


async def register_endpoints(
    apis: list[ApiProcess], auth: dict[str, str], url: str
) -> dict[str, tuple[list[str], str]]:
    """Register :data:`SUBSCRIPTIONS` (through the APIs in turn), all to the receiver at
    ``url``; returns each webhook id's event types and signing secret."""
    registered: dict[str, tuple[list[str], str]] = {}
    for n, event_types in enumerate(SUBSCRIPTIONS):
        async with httpx.AsyncClient(base_url=apis[n % 2].url, headers=auth, timeout=30) as http:
            created = await http.post("/v1/webhooks", json={"url": url, "event_types": event_types})
        assert created.status_code == 201, created.text
        hook = created.json()
        registered[hook["id"]] = (event_types, hook["secret"])
    return registered


async def publish_all(
    apis: list[ApiProcess], auth: dict[str, str], restarted: asyncio.Event
) -> list[Answer]:
    """Publish :data:`EVENTS` events, event n through API n % 2 and of type n % 3; the last
    :data:`AFTER_RESTART` only once ``restarted`` is set.

    A 503 (Temporal slow to answer on a busy box) is published again with the same id, as
    docs/api.md tells callers; any other answer than 202 fails the test.
    """
    gates = [asyncio.Semaphore(CONCURRENT_REQUESTS) for _ in apis]
    clients = [httpx.AsyncClient(base_url=a.url, headers=auth, timeout=60) for a in apis]

    async def publish(n: int) -> Answer:
        if n >= EVENTS - AFTER_RESTART:
            await restarted.wait()
        event_id = f"evt_scale_{n}_{uuid.uuid4().hex[:8]}"
        event = PUBLISHED[n % 3]
        body = {"event": event, "id": event_id, "data": {"n": n}}
        async with gates[n % 2]:
            for _ in range(3):
                answer = await clients[n % 2].post("/v1/events", json=body)
                if answer.status_code != 503:
                    break
        assert answer.status_code == 202, answer.text
        return Answer(apis[n % 2].url, event_id, event, answer.json()["delivery_ids"])

    try:
        return list(await asyncio.gather(*(publish(n) for n in range(EVENTS))))
    finally:
        for http in clients:
            await http.aclose()


async def read_log(
    client: Client, org_id: str, delivery_ids: set[str], book: Ledger
) -> dict[str, DeliveryDetail]:
    """Every delivery's detail as the delivery log shows it (``deliveries.get_delivery``)."""
    gate = asyncio.Semaphore(16)

    async def one(delivery_id: str) -> DeliveryDetail:
        webhook_id = book.of(delivery_id)[0].webhook_id
        async with gate:
            detail = await deliveries.get_delivery(
                client, org_id=org_id, webhook_id=webhook_id, delivery_id=delivery_id
            )
        assert detail is not None, delivery_id
        return detail

    found = await asyncio.gather(*(one(d) for d in sorted(delivery_ids)))
    return {d.delivery_id: d for d in found}


async def identities(client: Client, delivery_ids: set[str]) -> Counter[str]:
    """How many workflow and activity tasks of the deliveries each worker process finished.

    Temporal records the identity of the worker that polled a task on its Started event and of
    the one that finished it on its Completed event; the SDK's default identity, which the
    engine keeps, is ``pid@host``. Completions are counted, so a task the killed worker took
    and never finished is not work it did.
    """
    completed = {
        EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED: "workflow_task_completed_event_attributes",
        EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: "activity_task_completed_event_attributes",
    }
    gate = asyncio.Semaphore(16)
    tasks: Counter[str] = Counter()

    async def one(delivery_id: str) -> None:
        async with gate:
            history = await client.get_workflow_handle(delivery_id).fetch_history()
        for event in history.events:
            if event.event_type in completed:
                tasks[getattr(event, completed[event.event_type]).identity] += 1

    await asyncio.gather(*(one(d) for d in delivery_ids))
    return tasks


def assert_delivered_once_or_retried(book: Ledger, detail: DeliveryDetail, secret: str) -> None:
    """One delivery, as the receiver saw it and as its log tells it.

    Delivered, the last attempt answered 200. Every POST carried the same bytes with this
    delivery id, signed with the endpoint's secret. The log lists every POST: at least as many
    attempts as POSTs arrived, and each attempt that reported an outcome arrived. An attempt
    whose worker was lost may or may not have reached the receiver before the kill, so a POST
    that arrived twice needs one of those in the log (``tests/test_reliability.py`` shows the
    single-POST form of these checks).
    """
    posts = book.of(detail.delivery_id)
    attempts = detail.attempts
    lost = [a for a in attempts if a.error == LOST]
    assert detail.status == "delivered", detail
    assert attempts[-1].response_status == 200, attempts
    assert len({p.body for p in posts}) == 1, "a retry sends the same bytes"
    assert json.loads(posts[0].body)["delivery_id"] == detail.delivery_id
    assert all(signing.verify_signature(p.body, secret, p.signature) for p in posts)
    assert len(attempts) - len(lost) <= len(posts) <= len(attempts), (attempts, posts)
    assert len(posts) == 1 or lost, f"{detail.delivery_id} arrived twice without a lost attempt"
