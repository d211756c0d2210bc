"""The OpenAPI document is the API: security, every status a route answers, and Schemathesis.

The document is what customers generate clients from and what schema-based testers trust, so it
must declare the API key on every ``/v1`` route and every error status with the body we send.
The last test lets Schemathesis (every check it has, two orgs for object-level authorization)
loose on the real API over uvicorn, backed by the real Temporal dev server and worker.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from temporalio.client import Client

from infraudit.api.app import create_app
from infraudit.cli.commands import create_api_key
from infraudit.config import Settings
from tests.api_fixtures import running_api

#: Every operation and the error statuses it declares; 401 and 503 are on every ``/v1`` one.
#: Kept by hand on purpose: a status added or dropped in the code must be a reviewed change here.
DECLARED_ERRORS: dict[tuple[str, str], set[int]] = {
    ("get", "/v1/webhooks"): set(),
    ("post", "/v1/webhooks"): {409, 413, 422, 429},
    ("get", "/v1/webhooks/{webhook_id}"): {404, 422},
    ("patch", "/v1/webhooks/{webhook_id}"): {404, 413, 422, 429},
    ("delete", "/v1/webhooks/{webhook_id}"): {404, 422, 429},
    ("post", "/v1/webhooks/{webhook_id}/test"): {404, 409, 413, 422, 429},
    ("get", "/v1/webhooks/{webhook_id}/deliveries"): {404, 422},
    ("get", "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}"): {404, 422},
    ("post", "/v1/events"): {409, 413, 422, 429},
    ("get", "/v1/event-types"): set(),
}
ERROR_BODY = {"$ref": "#/components/schemas/ErrorBody"}

#: Bounds of the Schemathesis run: examples per operation, and seconds per request (a publish
#: may wait 10 s for its fan-out). Deterministic generation makes every run send the same cases.
MAX_EXAMPLES = 25
REQUEST_TIMEOUT = 20

#: The repository, so the schemathesis subprocess can import ``tests.schemathesis_hooks``.
ROOT = str(Path(__file__).resolve().parent.parent)


@pytest.fixture(scope="module")
async def api(settings: Settings, client: Client, worker: None) -> AsyncIterator[str]:
    """The API in dev mode (Schemathesis registers http URLs), on Temporal with the worker."""
    async with running_api(settings.model_copy(update={"dev": True}), client) as base:
        yield base


async def new_key(settings: Settings, name: str) -> str:
    """An API key of a fresh org."""
    return await create_api_key(settings.database_url, f"{name}-{uuid.uuid4().hex[:8]}")


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "field", "errors"}, body
    assert body["error"]["message"]
    return body["error"]


async def test_the_document_declares_the_key_and_every_error_status(api: str) -> None:
    async with httpx.AsyncClient(base_url=api) as http:
        document = (await http.get("/openapi.json")).json()
    assert document["components"]["securitySchemes"] == {
        "ApiKey": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "iak_...",
            "description": "An org's API key, made by `infraudit api-key create --org ORG`.",
        }
    }
    assert "HTTPValidationError" not in document["components"]["schemas"]
    operations = {
        (method, path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    v1 = {key: op for key, op in operations.items() if key[1].startswith("/v1/")}
    assert set(v1) == set(DECLARED_ERRORS)
    for key, operation in v1.items():
        assert operation["security"] == [{"ApiKey": []}], key
        errors = {int(code) for code in operation["responses"] if code.startswith(("4", "5"))}
        assert errors == DECLARED_ERRORS[key] | {401, 503}, key
        for code in errors:
            response = operation["responses"][str(code)]
            assert response["content"]["application/json"]["schema"] == ERROR_BODY, (key, code)
        assert operation["responses"]["401"]["headers"]["WWW-Authenticate"]["required"]
        for code in errors & {429, 503}:
            assert operation["responses"][str(code)]["headers"]["Retry-After"]["required"]
    for key in [("get", "/healthz"), ("get", "/readyz")]:
        assert "security" not in operations[key]
    readiness = {"$ref": "#/components/schemas/Readiness"}
    for code in ("200", "503"):
        ready = operations[("get", "/readyz")]["responses"][code]
        assert ready["content"]["application/json"]["schema"] == readiness


async def test_every_v1_route_of_the_app_needs_a_key(api: str, settings: Settings) -> None:
    """Walks the app's own routes, not the document, so a route left out of it is tried too."""
    routes = [
        (method, route.path)
        for route in iter_route_contexts(create_app(settings).routes)
        if route.path and route.path.startswith("/v1/")
        for method in route.methods or ()
    ]
    assert {(method.lower(), path) for method, path in routes} == set(DECLARED_ERRORS)
    async with httpx.AsyncClient(base_url=api) as anonymous:
        for method, path in routes:
            url = path.format(webhook_id="wh_x", delivery_id="del_x")
            for headers in ({}, {"Authorization": "Bearer iak_unknown"}, {"Authorization": "x"}):
                response = await anonymous.request(method, url, headers=headers)
                assert response.status_code == 401, (method, path, headers)
                assert response.headers["www-authenticate"] == "Bearer"
                assert error_of(response)["field"] == "Authorization"


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/v1/webhooks", "GET, POST"),
        ("/v1/webhooks/wh_x", "DELETE, GET, PATCH"),
        ("/v1/event-types", "GET"),
    ],
)
async def test_a_405_names_every_method_of_the_path(api: str, path: str, allowed: str) -> None:
    async with httpx.AsyncClient(base_url=api) as http:
        for method in ("OPTIONS", "PUT", "HEAD"):
            response = await http.request(method, path)
            assert response.status_code == 405
            assert response.headers["allow"] == allowed
            if method != "HEAD":  # an answer to HEAD has no body
                error_of(response)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"event": "drift.detected",', "not valid JSON: Expecting property name"),
        (b'{"event": "drift.d\xe9tected"}', "not valid JSON: it is not UTF-8"),
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    ],
    ids=["truncated", "latin-1", "deep"],
)
async def test_a_body_that_is_not_json_is_a_422_naming_body(
    api: str, settings: Settings, body: bytes, says: str
) -> None:
    key = await new_key(settings, "json")
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=api, headers=headers) as http:
        for method, path in [
            ("POST", "/v1/events"),
            ("POST", "/v1/webhooks"),
            ("PATCH", "/v1/webhooks/wh_x"),
        ]:
            response = await http.request(method, path, content=body)
            assert response.status_code == 422, (path, response.text)
            error = error_of(response)
            assert error["field"] == "body"
            assert says in error["message"], error


async def test_a_value_of_another_type_is_refused_not_coerced(api: str, settings: Settings) -> None:
    """The document says ``enabled`` is a boolean; ``0`` or ``"false"`` must not pass as one."""
    key = await new_key(settings, "strict")
    async with httpx.AsyncClient(base_url=api, headers={"Authorization": f"Bearer {key}"}) as http:
        created = await http.post(
            "/v1/webhooks",
            json={"url": "https://example.com/hook", "event_types": ["drift.detected"]},
        )
        assert created.status_code == 201, created.text
        path = f"/v1/webhooks/{created.json()['id']}"
        for value in [0, 1, 0.0, "false", "true", "no"]:
            response = await http.patch(path, json={"enabled": value})
            assert response.status_code == 422, (value, response.text)
            assert error_of(response)["field"] == "enabled"
        assert (await http.get(path)).json()["enabled"] is True


async def test_schemathesis_with_every_check_finds_nothing(
    api: str, settings: Settings, tmp_path: Path
) -> None:
    """Status codes, content types, headers and bodies as declared; invalid input refused and
    valid input accepted; the key enforced; a deleted webhook gone; one org's webhooks never
    readable with another org's key. Any Schemathesis warning fails too (a run whose key was
    refused, or that never reached the routes behind an id, would prove nothing)."""
    peers = {name: await new_key(settings, name) for name in ("alice", "bob")}
    auth = tmp_path / "auth.json"
    auth.write_text(
        json.dumps(
            {
                "auth": [
                    {"name": n, "fixedHeaders": [{"name": "Authorization", "value": f"Bearer {k}"}]}
                    for n, k in peers.items()
                ]
            }
        )
    )
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        f"warnings = {{ fail-on = true }}\n\n[auth.wfc]\npath = {json.dumps(str(auth))}\n"
        f"peers = {json.dumps(list(peers))}\n"
    )
    run = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{api}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--generation-deterministic",
        "--workers",
        "1",
        "--request-timeout",
        str(REQUEST_TIMEOUT),
        cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks", "PYTHONPATH": ROOT},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output = (await run.communicate())[0].decode()
    assert run.returncode == 0, output
    operations = len(DECLARED_ERRORS) + 2  # and /healthz, /readyz
    assert f"Selected: {operations}/{operations}" in output, output
    assert f"Tested: {operations}" in output, output
