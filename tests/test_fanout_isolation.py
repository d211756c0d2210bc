"""One endpoint's bad stored data never stops another endpoint's delivery.

The bad rows were written before the URL rules existed (straight into the store): a URL with port
99999 (which crashed every fan-out page it was on), and a webhook id Temporal refuses as a search
attribute (over its 2 KiB limit). Good endpoints sit on both sides of them in id order, spread
over several fan-out pages; the real fan-out activity runs with pages of 2 under its own name.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import delete, insert, literal, select, update
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from infraudit import ids
from infraudit.activities.fanout import FanOutActivities
from infraudit.client import start_publish
from infraudit.config import Settings
from infraudit.contract import FanOutPage, FanOutRequest, PublishEventResult
from infraudit.store import webhooks
from infraudit.store.db import Database
from infraudit.store.models import Subscription, Webhook
from infraudit.workflows.publish import PublishEvent
from tests.api_fixtures import caller, running_api
from tests.conftest import Endpoints
from tests.helpers import eventually
from tests.receiver import Receiver

pytestmark = pytest.mark.usefixtures("worker")

BAD_URL = "http://127.0.0.1:99999/hook"
PAGE = 2


@dataclass(frozen=True)
class Org:
    """Seven endpoints in id order: good, good, bad URL, good, refused id, good, good; the good
    ones map to the ``to`` their receiver URL carries."""

    org_id: str
    good: dict[str, str]
    bad_url: str
    refused_id: str


async def rekey(db: Database, old_id: str, new_id: str) -> None:
    """Give a stored endpoint another id, as a row written by hand could have."""
    hooks = Webhook.__table__
    async with db.session() as session, session.begin():
        columns = [literal(new_id).label("id") if c.name == "id" else c for c in hooks.c]
        await session.execute(
            insert(hooks).from_select(
                [c.name for c in hooks.c], select(*columns).where(hooks.c.id == old_id)
            )
        )
        await session.execute(
            update(Subscription).where(Subscription.webhook_id == old_id).values(webhook_id=new_id)
        )
        await session.execute(delete(hooks).where(hooks.c.id == old_id))


@pytest.fixture
async def org(endpoints: Endpoints, db: Database, receiver: Receiver, org_id: str) -> Org:
    added = [await endpoints.add(org_id, f"{receiver.url}?to={n}") for n in range(7)]
    ordered = sorted(webhook_id for webhook_id, _ in added)
    bad_url, refused = ordered[2], ordered[4]
    async with db.session() as session, session.begin():
        hook = await webhooks.get_webhook(session, org_id, bad_url)
        assert hook is not None
        await webhooks.update_webhook(session, hook, url=BAD_URL)
    # Sorts right after its old id, so it stays fifth; too long for a search attribute.
    refused_id = refused + "z" * 3000
    await rekey(db, refused, refused_id)
    to_of = {webhook_id: str(n) for n, (webhook_id, _) in enumerate(added)}
    good = {w: to_of[w] for w in ordered if w not in (bad_url, refused)}
    return Org(org_id, good, bad_url, refused_id)


@asynccontextmanager
async def small_pages(client: Client, db: Database, settings: Settings) -> AsyncIterator[str]:
    """A queue whose worker runs PublishEvent with the real fan-out activity in pages of 2.

    Deliveries still go to the session worker's queue. The page size is overridden here, by
    registering the activity under its name, so nothing in the engine has a test-only knob.
    """
    queue = f"{settings.task_queue}-pages-{uuid.uuid4().hex[:6]}"
    real = FanOutActivities(db, client, settings)

    @activity.defn(name="fan_out_page")
    async def fan_out_page(request: FanOutRequest) -> FanOutPage:
        return await real.fan_out_page(request.model_copy(update={"page_size": PAGE}))

    async with Worker(
        client, task_queue=queue, workflows=[PublishEvent], activities=[fan_out_page]
    ):
        yield queue


async def assert_every_good_endpoint_received_once(receiver: Receiver, org: Org) -> None:
    received = await receiver.wait_for(len(org.good))
    tos = sorted(parse_qs(urlsplit(r.path).query)["to"][0] for r in received)
    assert tos == sorted(org.good.values())
    assert {r.headers["X-InfraAudit-Webhook"] for r in received} == set(org.good)


def assert_result(result: PublishEventResult, event_id: str, org: Org) -> None:
    """Every delivery but the refused one started; the refused one is recorded with why (our
    contract's id pattern or Temporal's search attribute limit, whichever refuses it first)."""
    started = [*org.good, org.bad_url]
    assert sorted(result.delivery_ids) == sorted(ids.delivery_id(event_id, w) for w in started)
    (failed,) = result.failed
    assert failed.webhook_id == org.refused_id
    assert "webhookid" in failed.reason.lower().replace("_", "")
    assert "\n" not in failed.reason


async def assert_bad_url_delivery_failed(client: Client, event_id: str, org: Org) -> None:
    """The bad URL's delivery ends failed, with a reason, instead of retrying on and on."""
    handle = client.get_workflow_handle(ids.delivery_id(event_id, org.bad_url))
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert str(failure.value.cause) == (
        "DeliveryFailed: endpoint URL cannot be used: port must be a number from 1 to 65535, "
        "without leading zeros; no further attempts"
    )
    summary = await (await handle.describe()).static_summary()
    assert summary == f"drift.detected → {BAD_URL}"


async def test_publish_through_the_api_reaches_every_good_endpoint_past_bad_rows(
    client: Client, db: Database, settings: Settings, receiver: Receiver, org: Org
) -> None:
    async with small_pages(client, db, settings) as queue:
        api_settings = settings.model_copy(update={"dev": True, "task_queue": queue})
        async with (
            running_api(api_settings, client) as base,
            caller(base, settings.database_url, org.org_id) as c,
        ):
            response = await c.http.post(
                "/v1/events", json={"event": "drift.detected", "data": {"n": 1}, "id": "iso-1"}
            )
            assert response.status_code == 202, response.text
            accepted = response.json()
            await assert_every_good_endpoint_received_once(receiver, org)
            publish = client.get_workflow_handle_for(
                PublishEvent.run, ids.publish_workflow_id(org.org_id, "iso-1")
            )
            result = await publish.result()
            assert_result(result, "iso-1", org)
            # The answer lists every subscribed endpoint, the one whose start was refused too.
            refused = ids.delivery_id("iso-1", org.refused_id)
            assert sorted(accepted["delivery_ids"]) == sorted([*result.delivery_ids, refused])
            await assert_bad_url_delivery_failed(client, "iso-1", org)

            async def bad_row() -> dict[str, Any]:
                delivery_id = ids.delivery_id("iso-1", org.bad_url)
                got = await c.http.get(f"/v1/webhooks/{org.bad_url}/deliveries/{delivery_id}")
                return got.json()

            row = await eventually(bad_row, lambda r: r.get("status") == "failed")
            assert row["error"]


async def test_publish_event_records_what_it_could_not_start_and_delivers_the_rest(
    client: Client, db: Database, settings: Settings, receiver: Receiver, org: Org
) -> None:
    event_id = f"evt_{uuid.uuid4().hex}"
    async with small_pages(client, db, settings) as queue:
        _, handle = await start_publish(
            client, org_id=org.org_id, event="drift.detected", event_id=event_id, task_queue=queue
        )
        result = await handle.result()
    assert_result(result, event_id, org)
    await assert_every_good_endpoint_received_once(receiver, org)
    await assert_bad_url_delivery_failed(client, event_id, org)


async def test_a_ping_to_a_stored_unusable_url_is_accepted_and_fails_as_a_delivery(
    client: Client, settings: Settings, endpoints: Endpoints, org_id: str
) -> None:
    webhook_id, _ = await endpoints.add(org_id, BAD_URL, ["alert.created"])
    async with (
        running_api(settings.model_copy(update={"dev": True}), client) as base,
        caller(base, settings.database_url, org_id) as c,
    ):
        ping = await c.http.post(f"/v1/webhooks/{webhook_id}/test")
        assert ping.status_code == 202, ping.text
        handle = client.get_workflow_handle(ping.json()["delivery_id"])
        with pytest.raises(WorkflowFailureError):
            await handle.result()


class RefusingClient:
    """Stands in for the Temporal client: every start fails with ``status``."""

    def __init__(self, status: RPCStatusCode) -> None:
        self.status = status
        self.starts = 0

    async def start_workflow(self, *_: object, **__: object) -> None:
        self.starts += 1
        raise RPCError("refused", self.status, b"")


@pytest.mark.parametrize(
    ("status", "page_fails"),
    [
        (RPCStatusCode.UNAVAILABLE, True),
        (RPCStatusCode.DEADLINE_EXCEEDED, True),
        (RPCStatusCode.INVALID_ARGUMENT, False),
    ],
)
async def test_a_temporal_outage_fails_the_page_for_a_retry_but_a_refused_start_is_recorded(
    db: Database,
    settings: Settings,
    endpoints: Endpoints,
    org_id: str,
    status: RPCStatusCode,
    page_fails: bool,
) -> None:
    added = sorted([(await endpoints.add(org_id, f"https://example.com/{n}"))[0] for n in range(3)])
    refusing = RefusingClient(status)
    fan_out = FanOutActivities(db, refusing, settings)  # type: ignore[arg-type]
    request = FanOutRequest(
        org_id=org_id,
        event="drift.detected",
        event_id="evt_outage",
        data={},
        timestamp=datetime(2026, 11, 29, 10, 30, tzinfo=UTC),
        page_size=10,
    )
    if page_fails:
        with pytest.raises(RPCError):
            await ActivityEnvironment().run(fan_out.fan_out_page, request)
        return
    page = await ActivityEnvironment().run(fan_out.fan_out_page, request)
    assert refusing.starts == 3
    assert page.delivery_ids == []
    assert [f.webhook_id for f in page.failed] == added
    assert {f.reason for f in page.failed} == {"RPCError: refused"}
