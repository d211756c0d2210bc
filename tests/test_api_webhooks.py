"""Registration API over real HTTP, on SQLite and PostgreSQL: auth, scoping, CRUD, bad input."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from infraudit.config import Settings
from tests.api_fixtures import Caller, caller, running_api


@pytest.fixture(params=["sqlite", "postgresql"], scope="module")
async def api(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[tuple[str, str]]:
    """(base URL, database URL) of a dev-mode API over each database; no Temporal needed."""
    url = (
        settings.database_url
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    api_settings = settings.model_copy(update={"database_url": url, "dev": True})
    async with running_api(api_settings, None) as base:
        yield base, url


@pytest.fixture
async def alice(api: tuple[str, str]) -> AsyncIterator[Caller]:
    async with caller(api[0], api[1], f"alice-{uuid.uuid4().hex[:6]}") as c:
        yield c


@pytest.fixture
async def bob(api: tuple[str, str]) -> AsyncIterator[Caller]:
    async with caller(api[0], api[1], f"bob-{uuid.uuid4().hex[:6]}") as c:
        yield c


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["message"]
    return body["error"]


async def create(c: Caller, **overrides: Any) -> dict[str, Any]:
    body = {"url": "https://example.com/hook", "event_types": ["drift.detected"], **overrides}
    response = await c.http.post("/v1/webhooks", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def test_every_v1_route_needs_a_valid_key(api: tuple[str, str]) -> None:
    async with httpx.AsyncClient(base_url=api[0]) as anonymous:
        for method, path in [
            ("GET", "/v1/webhooks"),
            ("POST", "/v1/webhooks"),
            ("GET", "/v1/webhooks/wh_x"),
            ("PATCH", "/v1/webhooks/wh_x"),
            ("DELETE", "/v1/webhooks/wh_x"),
            ("POST", "/v1/webhooks/wh_x/test"),
            ("GET", "/v1/webhooks/wh_x/deliveries"),
            ("GET", "/v1/webhooks/wh_x/deliveries/del_x"),
            ("POST", "/v1/events"),
            ("GET", "/v1/event-types"),
        ]:
            for headers in ({}, {"Authorization": "Bearer iak_not-a-key"}, {"Authorization": "x"}):
                response = await anonymous.request(method, path, headers=headers, json={})
                assert response.status_code == 401, (method, path, headers)
                assert error_of(response)["field"] == "Authorization"
                assert response.headers["www-authenticate"] == "Bearer"


async def test_create_shows_the_secret_once_and_never_again(alice: Caller) -> None:
    created = await create(alice, description="prod alerts", event_types=["alert.created"])
    assert created["secret"].startswith("whsec_")
    assert created["id"].startswith("wh_")
    assert created["enabled"] is True
    assert created["event_types"] == ["alert.created"]
    assert created["description"] == "prod alerts"
    webhook_id, secret = created["id"], created["secret"]
    responses = [
        await alice.http.get("/v1/webhooks"),
        await alice.http.get(f"/v1/webhooks/{webhook_id}"),
        await alice.http.patch(f"/v1/webhooks/{webhook_id}", json={"description": "x"}),
    ]
    for response in responses:
        assert response.status_code == 200
        assert secret not in response.text
        assert "secret" not in response.text


async def test_crud_round_trip(alice: Caller) -> None:
    created = await create(alice)
    webhook_id = created["id"]
    patched = await alice.http.patch(
        f"/v1/webhooks/{webhook_id}",
        json={
            "url": "https://example.org/new",
            "event_types": ["cost.anomaly", "job.completed", "cost.anomaly"],
            "enabled": False,
        },
    )
    assert patched.status_code == 200
    assert patched.json() | {"updated_at": None} == {
        **{k: v for k, v in created.items() if k != "secret"},
        "url": "https://example.org/new",
        "event_types": ["cost.anomaly", "job.completed"],
        "enabled": False,
        "updated_at": None,
    }
    listed = (await alice.http.get("/v1/webhooks")).json()["data"]
    assert [h["id"] for h in listed] == [webhook_id]
    assert (await alice.http.delete(f"/v1/webhooks/{webhook_id}")).status_code == 204
    gone = await alice.http.get(f"/v1/webhooks/{webhook_id}")
    assert gone.status_code == 404
    assert error_of(gone)["field"] == "webhook_id"
    assert (await alice.http.get("/v1/webhooks")).json() == {"data": []}


async def test_another_orgs_webhook_is_a_404_everywhere(alice: Caller, bob: Caller) -> None:
    webhook_id = (await create(alice))["id"]
    for method, path, body in [
        ("GET", f"/v1/webhooks/{webhook_id}", None),
        ("PATCH", f"/v1/webhooks/{webhook_id}", {"enabled": False}),
        ("DELETE", f"/v1/webhooks/{webhook_id}", None),
        ("POST", f"/v1/webhooks/{webhook_id}/test", None),
        ("GET", f"/v1/webhooks/{webhook_id}/deliveries", None),
        ("GET", f"/v1/webhooks/{webhook_id}/deliveries/del_anything", None),
    ]:
        response = await bob.http.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
    assert (await bob.http.get("/v1/webhooks")).json() == {"data": []}
    still = await alice.http.get(f"/v1/webhooks/{webhook_id}")
    assert still.status_code == 200 and still.json()["enabled"] is True


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"event_types": ["drift.detected"]}, "url"),
        ({"url": "ftp://example.com/x", "event_types": ["drift.detected"]}, "url"),
        ({"url": "not a url", "event_types": ["drift.detected"]}, "url"),
        ({"url": "https://example.com/" + "a" * 3000, "event_types": ["alert.created"]}, "url"),
        ({"url": "https://example.com/h"}, "event_types"),
        ({"url": "https://example.com/h", "event_types": []}, "event_types"),
        ({"url": "https://example.com/h", "event_types": ["drift.detectd"]}, "event_types"),
        ({"url": "https://example.com/h", "event_types": "drift.detected"}, "event_types"),
        ({"url": "https://e.com/h", "event_types": ["alert.created"], "secret": "x"}, "secret"),
        ({"url": "https://e.com/h", "event_types": ["alert.created"], "description": 5}, None),
    ],
)
async def test_bad_registrations_get_422_naming_the_field(
    alice: Caller, body: dict[str, Any], field: str | None
) -> None:
    response = await alice.http.post("/v1/webhooks", json=body)
    assert response.status_code == 422, response.text
    error = error_of(response)
    if field is not None:
        assert error["field"].split(".")[0] == field


async def test_malformed_and_oversized_bodies(alice: Caller) -> None:
    malformed = await alice.http.post(
        "/v1/webhooks", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 422
    error_of(malformed)
    not_an_object = await alice.http.post("/v1/webhooks", json=[1, 2])
    assert not_an_object.status_code == 422
    huge = await alice.http.post(
        "/v1/webhooks",
        json={"url": "https://e.com", "event_types": ["alert.created"], "description": "x" * 70000},
    )
    assert huge.status_code == 413
    assert error_of(huge)["field"] == "body"


async def test_bad_updates_and_unknown_ids(alice: Caller) -> None:
    webhook_id = (await create(alice))["id"]
    for body, field in [
        ({"event_types": []}, "event_types"),
        ({"event_types": ["nope"]}, "event_types"),
        ({"enabled": "maybe"}, "enabled"),
        ({"url": "gopher://x"}, "url"),
        ({"colour": "red"}, "colour"),
    ]:
        response = await alice.http.patch(f"/v1/webhooks/{webhook_id}", json=body)
        assert response.status_code == 422, (body, response.text)
        assert error_of(response)["field"] == field
    assert (await alice.http.patch("/v1/webhooks/wh_missing", json={})).status_code == 404
    assert (await alice.http.delete("/v1/webhooks/wh_missing")).status_code == 404


async def test_outside_dev_mode_only_public_https_endpoints_are_accepted(
    settings: Settings,
) -> None:
    production = settings.model_copy(update={"dev": False})
    async with (
        running_api(production, None) as base,
        caller(base, settings.database_url, f"prod-{uuid.uuid4().hex[:6]}") as c,
    ):
        for url in [
            "http://example.com/hook",
            "https://127.0.0.1/hook",
            "https://localhost:8443/hook",
            "https://10.1.2.3/hook",
            "https://[::1]/hook",
            "https://169.254.169.254/latest",
        ]:
            response = await c.http.post(
                "/v1/webhooks", json={"url": url, "event_types": ["alert.created"]}
            )
            assert response.status_code == 422, url
            assert error_of(response)["field"] == "url"
        ok = await c.http.post(
            "/v1/webhooks",
            json={"url": "https://hooks.example.com/x", "event_types": ["alert.created"]},
        )
        assert ok.status_code == 201


async def test_event_types_health_and_docs(api: tuple[str, str], alice: Caller) -> None:
    async with httpx.AsyncClient(base_url=api[0]) as http:
        catalog = (await alice.http.get("/v1/event-types")).json()["data"]
        assert len(catalog) == 9
        assert {
            "name": "drift.detected",
            "description": "A new drift finding is created",
            "reserved": False,
        } in catalog
        assert {e["name"] for e in catalog if e["reserved"]} == {"webhook.ping"}
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        assert (await http.get("/openapi.json")).status_code == 200
        assert (await http.get("/docs")).status_code == 200


async def test_text_postgresql_cannot_store_is_a_422_or_404_on_both_stores(alice: Caller) -> None:
    """NUL (U+0000) made PostgreSQL answer 500 where SQLite stored it: refused everywhere."""
    created = await alice.http.post(
        "/v1/webhooks",
        json={
            "url": "https://example.com/h",
            "event_types": ["alert.created"],
            "description": "a\0",
        },
    )
    assert created.status_code == 422, created.text
    assert error_of(created)["field"] == "description"
    hook = await create(alice)
    patched = await alice.http.patch(f"/v1/webhooks/{hook['id']}", json={"description": "x\0"})
    assert patched.status_code == 422
    assert error_of(patched)["field"] == "description"
    for method in ("GET", "DELETE"):
        response = await alice.http.request(method, "/v1/webhooks/wh_a%00b")
        assert response.status_code == 404, response.text
        assert error_of(response)["field"] == "webhook_id"
    ping = await alice.http.post("/v1/webhooks/wh_a%00b/test")
    assert ping.status_code == 404
    huge = await alice.http.get("/v1/webhooks/" + "x" * 5000)
    assert huge.status_code == 404
    assert len(huge.content) < 500, "the id is not repeated back at any length"


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b'{"event":"drift.detected","event":"drift.resolved"}', None, "appears twice"),
        (b'{"event":"drift.detected","data":{"x":1,"x":2}}', None, "'x' appears twice"),
        ('{"event":"drift.detected"}'.encode("utf-16"), None, "not UTF-8"),
        (
            '{"event":"drift.detected"}'.encode("utf-32"),
            "application/json; charset=utf-32",
            "UTF-8",
        ),
        (b'{"event":"drift.detected","data":{"n":' + b"9" * 5000 + b"}}", None, "5000 digits"),
    ],
    ids=["duplicate key", "duplicate key in data", "utf-16", "utf-32 declared", "5000 digits"],
)
async def test_event_bodies_json_reads_two_ways_are_refused(
    alice: Caller, body: bytes, content_type: str | None, reason: str
) -> None:
    headers = {"Content-Type": content_type or "application/json"}
    response = await alice.http.post("/v1/events", content=body, headers=headers)
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["field"] == "body"
    assert reason in error["message"]


async def test_a_json_body_with_a_byte_order_mark_is_read(alice: Caller) -> None:
    body = "\ufeff" + '{"url": "https://example.com/bom", "event_types": ["alert.created"]}'
    response = await alice.http.post(
        "/v1/webhooks", content=body.encode(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 201, response.text
