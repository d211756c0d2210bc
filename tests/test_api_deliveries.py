"""Events, test pings and the delivery log through the real API, worker and receivers."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from infraudit import ids, signing
from infraudit.config import Settings
from tests.api_fixtures import Caller, caller, running_api
from tests.helpers import eventually
from tests.receiver import Answer, Receiver

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture(scope="module")
async def base_url(settings: Settings, client: Client) -> AsyncIterator[str]:
    async with running_api(settings.model_copy(update={"dev": True}), client) as base:
        yield base


@pytest.fixture
async def me(base_url: str, settings: Settings) -> AsyncIterator[Caller]:
    async with caller(base_url, settings.database_url, f"org-{uuid.uuid4().hex[:8]}") as c:
        yield c


async def register(c: Caller, url: str, *types: str) -> dict[str, Any]:
    response = await c.http.post(
        "/v1/webhooks", json={"url": url, "event_types": list(types) or ["drift.detected"]}
    )
    assert response.status_code == 201, response.text
    return response.json()


async def finished(c: Caller, webhook_id: str, delivery_id: str) -> dict[str, Any]:
    """The delivery's detail once it is delivered or failed."""

    async def probe() -> httpx.Response:
        return await c.http.get(f"/v1/webhooks/{webhook_id}/deliveries/{delivery_id}")

    response = await eventually(
        probe,
        lambda r: r.status_code == 200 and r.json()["status"] != "pending",
    )
    return response.json()


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_test_ping_is_delivered_and_logged_with_every_field(
    me: Caller, receiver: Receiver
) -> None:
    receiver.script(Answer(500, b"first fails"), Answer(200, b'{"received":true}'))
    hook = await register(me, receiver.url, "alert.created")
    before = datetime.now(UTC)
    response = await me.http.post(f"/v1/webhooks/{hook['id']}/test")
    assert response.status_code == 202
    delivery_id = response.json()["delivery_id"]
    assert delivery_id.startswith("del_")

    detail = await finished(me, hook["id"], delivery_id)
    sent = receiver.requests[-1]
    assert signing.verify_signature(
        sent.body, hook["secret"], sent.headers["X-InfraAudit-Signature"]
    )
    assert detail["delivery_id"] == delivery_id
    assert detail["webhook_id"] == hook["id"]
    assert detail["event"] == "webhook.ping"
    assert detail["status"] == "delivered"
    assert detail["attempt_count"] == 2
    assert detail["payload"] == json.loads(sent.body)
    assert detail["payload"]["event"] == "webhook.ping"
    assert detail["response_status"] == 200
    assert detail["response_body"] == '{"received":true}'
    assert detail["next_attempt_at"] is None
    created = parse_time(detail["created_at"])
    assert before.replace(microsecond=0) <= created <= datetime.now(UTC)
    assert [
        (a["attempt"], a["response_status"], a["response_body"], a["error"])
        for a in detail["attempts"]
    ] == [(1, 500, "first fails", None), (2, 200, '{"received":true}', None)]
    assert all(0 <= a["duration_ms"] < 10_000 for a in detail["attempts"])  # within 10 s
    assert parse_time(detail["timestamp"]) == parse_time(detail["attempts"][-1]["started_at"])

    rows = await eventually(
        lambda: me.http.get(f"/v1/webhooks/{hook['id']}/deliveries"),
        lambda r: r.json()["data"] and r.json()["data"][0]["status"] == "delivered",
    )
    [row] = rows.json()["data"]
    assert row == {k: v for k, v in detail.items() if k not in ("attempts", "next_attempt_at")}
    every_response = rows.text + json.dumps(detail)
    assert hook["secret"] not in every_response


async def test_failed_delivery_shows_failed_with_the_last_response(
    me: Caller, receiver: Receiver
) -> None:
    receiver.script(Answer(503, b"maintenance"))
    hook = await register(me, receiver.url)
    delivery_id = (await me.http.post(f"/v1/webhooks/{hook['id']}/test")).json()["delivery_id"]
    detail = await finished(me, hook["id"], delivery_id)
    assert detail["status"] == "failed"
    assert detail["attempt_count"] == 3
    assert [a["response_status"] for a in detail["attempts"]] == [503, 503, 503]
    assert detail["response_body"] == "maintenance"
    assert detail["error"] == "3 attempts failed; last: HTTP 503"


async def test_pending_delivery_shows_attempts_so_far_and_the_next_one(
    settings: Settings, client: Client, receiver: Receiver
) -> None:
    slow = settings.model_copy(
        update={"dev": True, "retry_initial_interval": 60.0, "delivery_window": 600.0}
    )
    receiver.script(Answer(502, b"bad gateway"))
    async with (
        running_api(slow, client) as base,
        caller(base, settings.database_url, f"org-{uuid.uuid4().hex[:8]}") as c,
    ):
        hook = await register(c, receiver.url)
        delivery_id = (await c.http.post(f"/v1/webhooks/{hook['id']}/test")).json()["delivery_id"]
        path = f"/v1/webhooks/{hook['id']}/deliveries/{delivery_id}"
        response = await eventually(
            lambda: c.http.get(path),
            lambda r: r.status_code == 200 and r.json()["next_attempt_at"] is not None,
        )
        detail = response.json()
        row = (await c.http.get(f"/v1/webhooks/{hook['id']}/deliveries")).json()["data"]
        await client.get_workflow_handle(delivery_id).terminate("test over")
    assert detail["status"] == "pending"
    assert detail["attempt_count"] == 1
    assert detail["attempts"][0]["response_status"] == 502
    assert detail["attempts"][0]["response_body"] == "bad gateway"
    next_at = parse_time(detail["next_attempt_at"])
    assert 30 < (next_at - datetime.now(UTC)).total_seconds() <= 60
    assert [(r["status"], r["attempt_count"], r["response_status"]) for r in row] == [
        ("pending", 1, 502)
    ]


async def test_publish_fans_out_once_per_event_id(
    me: Caller, receiver: Receiver, base_url: str, settings: Settings
) -> None:
    subscribed = await register(me, f"{receiver.url}?n=1", "vulnerability.found")
    unsubscribed = await register(me, f"{receiver.url}?n=2", "drift.detected")
    body = {"event": "vulnerability.found", "data": {"cve": "CVE-2024-3094"}, "id": "scan-42"}
    first = await me.http.post("/v1/events", json=body)
    again = await me.http.post("/v1/events", json=body)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    assert first.json()["event_id"] == "scan-42"
    [delivery_id] = first.json()["delivery_ids"]
    detail = await finished(me, subscribed["id"], delivery_id)
    assert detail["status"] == "delivered"
    assert detail["payload"]["data"] == {"cve": "CVE-2024-3094"}
    await asyncio.sleep(0.5)
    assert len(receiver.requests) == 1
    # Not merely late: the endpoint that does not subscribe has no delivery of it in Temporal
    # (the detail route describes the workflow whose id the fan-out would have used).
    never = ids.delivery_id("scan-42", unsubscribed["id"])
    absent = await me.http.get(f"/v1/webhooks/{unsubscribed['id']}/deliveries/{never}")
    assert absent.status_code == 404, absent.text

    async with caller(base_url, settings.database_url, f"other-{uuid.uuid4().hex[:6]}") as other:
        elsewhere = await other.http.post("/v1/events", json=body)
        assert elsewhere.status_code == 202
        assert elsewhere.json()["delivery_ids"] == [], "the same id in another org is its own"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"event": "drift.detectd"}, 422, "event"),
        ({"data": {}}, 422, "event"),
        ({"event": "drift.detected", "data": [1]}, 422, "data"),
        ({"event": "drift.detected", "id": "has spaces"}, 422, "id"),
        ({"event": "drift.detected", "id": "x" * 200}, 422, "id"),
        ({"event": "drift.detected", "extra": 1}, 422, "extra"),
        ({"event": "drift.detected", "data": {"blob": "x" * 300_000}}, 413, "body"),
    ],
)
async def test_bad_events_get_4xx_naming_the_field(
    me: Caller, body: dict[str, Any], status: int, field: str
) -> None:
    response = await me.http.post("/v1/events", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field


async def test_log_limits(me: Caller) -> None:
    hook = await register(me, "http://127.0.0.1:9/unused")
    for limit in ("0", "101", "ten"):
        response = await me.http.get(f"/v1/webhooks/{hook['id']}/deliveries?limit={limit}")
        assert response.status_code == 422
        assert response.json()["error"]["field"] == "limit"
    missing = await me.http.get(f"/v1/webhooks/{hook['id']}/deliveries/del_nothing")
    assert missing.status_code == 404


async def test_log_returns_exactly_the_newest_100_of_105(
    me: Caller, receiver: Receiver, client: Client
) -> None:
    hook = await register(me, receiver.url, "job.completed")

    async def publish(n: int) -> str:
        response = await me.http.post(
            "/v1/events", json={"event": "job.completed", "data": {"n": n}, "id": f"job-{n}"}
        )
        assert response.status_code == 202, response.text
        return response.json()["delivery_ids"][0]

    oldest = [await publish(n) for n in range(5)]
    # The 202 does not wait for the fan-out: the oldest must have started before the newest do.
    await eventually(
        lambda: client.count_workflows(f"WebhookId = '{hook['id']}'"),
        lambda counted: counted.count == len(oldest),
        within=60,
    )
    await asyncio.sleep(1.1)
    gate = asyncio.Semaphore(10)

    async def gated(n: int) -> str:
        async with gate:
            return await publish(n)

    newest = await asyncio.gather(*(gated(n) for n in range(5, 105)))
    await eventually(
        lambda: client.count_workflows(
            f"WebhookId = '{hook['id']}' AND DeliveryStatus = 'delivered'"
        ),
        lambda counted: counted.count == 105,
        within=90,
    )
    log = (await me.http.get(f"/v1/webhooks/{hook['id']}/deliveries")).json()["data"]
    assert len(log) == 100
    assert {row["delivery_id"] for row in log} == set(newest)
    assert not {row["delivery_id"] for row in log} & set(oldest)
    created = [row["created_at"] for row in log]
    assert created == sorted(created, reverse=True)
    assert all(row["status"] == "delivered" and row["attempt_count"] == 1 for row in log)
    ten = (await me.http.get(f"/v1/webhooks/{hook['id']}/deliveries?limit=10")).json()["data"]
    assert len(ten) == 10


async def test_disabled_endpoint_cannot_be_pinged(me: Caller) -> None:
    hook = await register(me, "http://127.0.0.1:9/unused")
    await me.http.patch(f"/v1/webhooks/{hook['id']}", json={"enabled": False})
    response = await me.http.post(f"/v1/webhooks/{hook['id']}/test")
    assert response.status_code == 409
    assert response.json()["error"]["field"] == "webhook_id"


async def test_readiness_reports_each_dependency(base_url: str, settings: Settings) -> None:
    async with httpx.AsyncClient(base_url=base_url) as http:
        ready = await http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "database": "ok", "temporal": "ok"}
    nowhere = settings.model_copy(update={"temporal_address": "127.0.0.1:1"})
    async with running_api(nowhere, None) as base, httpx.AsyncClient(base_url=base) as http:
        down = await http.get("/readyz")
        assert down.status_code == 503
        assert down.json()["temporal"].startswith("unavailable")
        assert down.json()["database"] == "ok"
