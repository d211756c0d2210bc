"""Events as they enter through the API and the Python client: the limits on ``data``, malformed
bodies, reserved event types and event ids reused for other content.

Whatever is refused is refused before a workflow starts (the publish workflow id is then
unknown to Temporal); whatever is accepted reaches the receiver unchanged.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pydantic
import pytest
from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.service import RPCError, RPCStatusCode

from infraudit import event_data, events, ids, signing
from infraudit.client import EventIdConflict, publish_event, start_publish
from infraudit.config import Settings
from tests.api_fixtures import Caller, caller, running_api
from tests.conftest import Endpoints
from tests.receiver import Receiver

pytestmark = pytest.mark.usefixtures("worker")

#: The API under test accepts envelopes up to 8 KiB, so size limits are cheap to reach.
LIMIT = 8 * 1024


@pytest.fixture(scope="module")
async def base_url(settings: Settings, client: Client) -> AsyncIterator[str]:
    async with running_api(
        settings.model_copy(update={"dev": True, "max_event_bytes": LIMIT}), client
    ) as base:
        yield base


@pytest.fixture
async def me(base_url: str, settings: Settings, org_id: str) -> AsyncIterator[Caller]:
    async with caller(base_url, settings.database_url, org_id) as c:
        yield c


def nested(depth: int) -> dict[str, Any]:
    """An object ``depth`` levels deep, counting itself."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


async def post_raw(c: Caller, body: bytes, content_type: str | None = "application/json") -> Any:
    headers = {"Content-Type": content_type} if content_type else {}
    return await c.http.post("/v1/events", content=body, headers=headers)


async def assert_not_started(client: Client, org_id: str, event_id: str) -> None:
    """No PublishEvent was ever started for this event."""
    with pytest.raises(RPCError) as missing:
        await client.get_workflow_handle(ids.publish_workflow_id(org_id, event_id)).describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND


#: (name, the JSON text of ``data``, text the error message must hold)
DATA_REFUSED: list[tuple[str, str, str]] = [
    ("33 levels deep", json.dumps(nested(33)), "nested deeper than 32 levels"),
    ("230 levels deep", json.dumps(nested(230)), "nested deeper than 32 levels"),
    ("integer 2^53", '{"n": 9007199254740992}', "data.n: integer beyond"),
    ("integer -2^53", '{"n": [-9007199254740992]}', "data.n[0]: integer beyond"),
    ("number past a double", '{"x": 1e400}', "data.x: inf is not a JSON number"),
    ("NaN literal", '{"x": NaN}', "data.x: nan is not a JSON number"),
    ("-Infinity literal", '{"x": -Infinity}', "data.x: -inf is not a JSON number"),
    ("lone surrogate", '{"s": "ok \\ud800"}', "data.s: holds a lone surrogate"),
    ("lone surrogate key", '{"\\udfff": 1}', "lone surrogate"),
    ("envelope over the limit", json.dumps({"s": "x" * (LIMIT - 1024 - 7)}), "byte limit"),
    # 400 numbers of 4 characters, each 18 in the envelope: the envelope is measured, not the body
    ("numbers that grow", '{"n": [' + ",".join(["1E15"] * 400) + "]}", "byte limit"),
]


@pytest.mark.parametrize(
    ("data", "expected"),
    [(d, e) for _, d, e in DATA_REFUSED],
    ids=[name for name, _, _ in DATA_REFUSED],
)
async def test_data_json_cannot_carry_is_a_422_naming_data_before_anything_starts(
    me: Caller, client: Client, data: str, expected: str
) -> None:
    event_id = f"evt_{uuid.uuid4().hex}"
    body = f'{{"event": "drift.detected", "id": "{event_id}", "data": {data}}}'
    assert len(body.encode()) < LIMIT  # refused for its data, not by the body's 413
    response = await post_raw(me, body.encode())
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "data"
    assert expected in error["message"]
    await assert_not_started(client, me.org_id, event_id)


VALID = b'{"event": "drift.detected", "data": {}}'

#: (name, body, Content-Type)
MALFORMED: list[tuple[str, bytes, str | None]] = [
    ("invalid JSON", b'{"event": "drift.detected",', "application/json"),
    ("not UTF-8", b'{"event": "drift.detected", "data": {"s": "\xff"}}', "application/json"),
    ("empty body", b"", "application/json"),
    ("an array", b'[{"event": "drift.detected"}]', "application/json"),
    ("a string", b'"drift.detected"', "application/json"),
    ("a NaN literal alone", b"NaN", "application/json"),
    ("nested past the parser", b"[" * 3000 + b"]" * 3000, "application/json"),
    ("text/plain", VALID, "text/plain"),
    ("no Content-Type", VALID, None),
    ("a form", b"event=drift.detected", "application/x-www-form-urlencoded"),
]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b, t) for _, b, t in MALFORMED],
    ids=[name for name, _, _ in MALFORMED],
)
async def test_malformed_bodies_are_a_422_naming_body(
    me: Caller, body: bytes, content_type: str | None
) -> None:
    response = await post_raw(me, body, content_type)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "body", error
    assert error["message"]


async def test_data_at_every_limit_is_delivered_unchanged(
    me: Caller, endpoints: Endpoints, receiver: Receiver
) -> None:
    await endpoints.add(me.org_id, receiver.url, ["drift.detected"])
    data: dict[str, Any] = {
        "deep": nested(31),  # data itself is level 1: 32 levels, the limit
        "largest": 2**53 - 1,
        "smallest": -(2**53 - 1),
        "nul": "a\x00b",
        "astral": "\U0001f980",
        "separator": "\u2028",
        "": "an empty key",
        "ratio": 0.1,
        "pad": "",
    }
    room = event_data.max_data_bytes(LIMIT) - len(signing.envelope_body(data))
    data["pad"] = "x" * room  # exactly the largest data the API accepts
    response = await me.http.post("/v1/events", json={"event": "drift.detected", "data": data})
    assert response.status_code == 202, response.text

    [received] = await receiver.wait_for(1)
    assert json.loads(received.body)["data"] == data
    assert len(received.body) <= LIMIT


async def test_an_event_id_reused_for_other_content_is_a_409_and_the_same_event_a_repeat(
    me: Caller, client: Client, endpoints: Endpoints, receiver: Receiver
) -> None:
    await endpoints.add(me.org_id, receiver.url, ["drift.detected", "alert.created"])
    event = {"event": "drift.detected", "data": {"resource": "sg-1", "n": 1}, "id": "drift-42"}

    first = await me.http.post("/v1/events", json=event)
    assert first.status_code == 202, first.text
    [delivered] = await receiver.wait_for(1)
    # Key order is no difference: the same event as a JSON value.
    again = await me.http.post("/v1/events", json={**event, "data": {"n": 1, "resource": "sg-1"}})
    assert (again.status_code, again.json()) == (202, first.json())

    for other in (
        {**event, "event": "alert.created"},
        {**event, "data": {"resource": "sg-2", "n": 1}},
        {**event, "data": {"resource": "sg-1", "n": 1.0}},
        {**event, "data": {}},
    ):
        response = await me.http.post("/v1/events", json=other)
        assert response.status_code == 409, (other, response.text)
        error = response.json()["error"]
        assert error["field"] == "id"
        assert "drift-42" in error["message"]

    assert json.loads(delivered.body)["data"] == event["data"]
    assert len(receiver.requests) == 1


async def test_an_event_id_first_used_by_another_sdk_is_compared_too(
    me: Caller, client: Client, settings: Settings, endpoints: Endpoints, receiver: Receiver
) -> None:
    await endpoints.add(me.org_id, receiver.url, ["cost.anomaly"])
    plain = Client(
        client.service_client, namespace=client.namespace, data_converter=DataConverter.default
    )
    event_id = f"evt_{uuid.uuid4().hex}"
    published = await plain.execute_workflow(
        "PublishEvent",
        {"org_id": me.org_id, "event": "cost.anomaly", "event_id": event_id, "data": {"n": 1}},
        id=ids.publish_workflow_id(me.org_id, event_id),
        task_queue=settings.task_queue,
    )

    other = await me.http.post(
        "/v1/events", json={"event": "cost.anomaly", "id": event_id, "data": {"n": 2}}
    )
    same = await me.http.post(
        "/v1/events", json={"event": "cost.anomaly", "id": event_id, "data": {"n": 1}}
    )
    assert other.status_code == 409
    assert other.json()["error"]["field"] == "id"
    assert same.status_code == 202
    assert same.json() == {"event_id": event_id, "delivery_ids": published["delivery_ids"]}


async def test_the_client_raises_a_typed_error_for_a_running_publish_with_other_content(
    client: Client, settings: Settings, org_id: str
) -> None:
    idle = f"{settings.task_queue}-idle"  # no worker: the first publish stays running
    event_id = f"evt_{uuid.uuid4().hex}"
    published = {"org_id": org_id, "event": "job.completed", "event_id": event_id}
    _, handle = await start_publish(client, **published, data={"ok": True}, task_queue=idle)
    try:
        with pytest.raises(EventIdConflict) as conflict:
            await start_publish(client, **published, data={"ok": False}, task_queue=idle)
        assert conflict.value.event_id == event_id
        with pytest.raises(EventIdConflict):
            await start_publish(
                client,
                **published,
                data={"ok": True},
                timestamp=datetime(2026, 11, 29, tzinfo=UTC),
                task_queue=idle,
            )
        _, again = await start_publish(client, **published, data={"ok": True}, task_queue=idle)
        assert (await again.describe()).run_id == (await handle.describe()).run_id
    finally:
        await handle.terminate()


async def test_reserved_event_types_cannot_be_published_or_subscribed_and_are_marked(
    me: Caller, client: Client
) -> None:
    event_id = f"evt_{uuid.uuid4().hex}"
    published = await me.http.post("/v1/events", json={"event": "webhook.ping", "id": event_id})
    assert published.status_code == 422
    assert published.json()["error"]["field"] == "event"
    assert "reserved" in published.json()["error"]["message"]
    await assert_not_started(client, me.org_id, event_id)

    subscribed = await me.http.post(
        "/v1/webhooks",
        json={"url": "https://example.com/hook", "event_types": ["drift.detected", "webhook.ping"]},
    )
    assert subscribed.status_code == 422
    assert subscribed.json()["error"]["field"] == "event_types"
    assert "reserved" in subscribed.json()["error"]["message"]

    catalog = (await me.http.get("/v1/event-types")).json()["data"]
    reserved = {entry["name"] for entry in catalog if entry["reserved"]}
    assert reserved == {"webhook.ping"}
    assert len(catalog) == len(events.EVENT_TYPES)


#: (name, keyword arguments of publish_event, text the error must hold)
CLIENT_REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("data 33 levels deep", {"data": nested(33)}, "nested deeper than 32 levels"),
    ("integer 2^53", {"data": {"n": 2**53}}, "integer beyond"),
    ("a datetime in data", {"data": {"at": datetime.now(UTC)}}, "data.at: a datetime"),
    ("a Decimal in data", {"data": {"amount": Decimal("1.10")}}, "data.amount: a Decimal"),
    ("a tuple in data", {"data": {"pair": (1, 2)}}, "data.pair: a tuple"),
    ("a non-string key", {"data": {"tags": {1: "one"}}}, "key 1 is not a string"),
    ("lone surrogate", {"data": {"s": "\udc00"}}, "lone surrogate"),
    ("NaN", {"data": {"x": float("nan")}}, "not a JSON number"),
    ("naive timestamp", {"timestamp": datetime(2026, 11, 29, 10, 30)}, "has no offset"),
    ("reserved event type", {"event": "webhook.ping"}, "reserved"),
    ("event id with a space", {"event_id": "evt 1"}, "event_id"),
    ("org id with a colon", {"org_id": "acme:evil"}, "org_id"),
]


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [(a, e) for _, a, e in CLIENT_REFUSED],
    ids=[name for name, _, _ in CLIENT_REFUSED],
)
async def test_the_client_refuses_what_the_contract_refuses_before_starting(
    client: Client, settings: Settings, org_id: str, arguments: dict[str, Any], expected: str
) -> None:
    call = {"org_id": org_id, "event": "drift.detected", "event_id": "evt_1", **arguments}
    with pytest.raises(pydantic.ValidationError, match=expected):
        await publish_event(client, **call, task_queue=settings.task_queue)
    await assert_not_started(client, call["org_id"], call["event_id"])


def test_the_longest_envelope_of_the_largest_data_fits_the_limit() -> None:
    longest = {
        "event": max(events.EVENT_TYPES, key=len),
        "timestamp": datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
        "webhook_id": "wh_" + "x" * 64,  # the longest contract.WEBHOOK_ID_PATTERN allows
        "delivery_id": ids.delivery_id("e" * 128, "wh_" + "x" * 64),
    }
    for limit in (event_data.MAX_EVENT_BYTES, 4 * event_data.ENVELOPE_RESERVE):
        filler = "x" * (event_data.max_data_bytes(limit) - len(b'{"s":""}'))
        data = event_data.check({"s": filler}, max_event_bytes=limit)
        envelope = signing.envelope_body(signing.build_envelope(**longest, data=data))
        assert len(envelope) <= limit
        with pytest.raises(ValueError, match="byte limit"):
            event_data.check({"s": filler + "x"}, max_event_bytes=limit)
