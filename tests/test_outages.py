"""An outage is a fast 503 that says what became of the request, and the API recovers after it.

Temporal here is a dev server of this module's own (``infraudit up``'s command line, on free
ports), so it can be hung with SIGSTOP and stopped outright without touching the session's. The
API is real uvicorn with a client it connects itself, as in production; a worker of the engine
polls the same server so that published events really fan out once it is back. The database
outages point an API at a PostgreSQL port where nothing listens and at a SQLite path it cannot
open.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from infraudit import temporal
from infraudit.config import Settings
from infraudit.worker import build_worker
from tests.api_fixtures import Caller, caller, running_api
from tests.cli_support import free_port
from tests.helpers import eventually
from tests.receiver import Received, Receiver
from tests.temporal_server import TemporalServer

#: "Fast": the API's deadline is 2 s; this leaves room for a loaded 2-core machine.
FAST = 5.0


@dataclass
class Outage:
    """This module's Temporal server and the settings of an API (and worker) using it."""

    server: TemporalServer
    settings: Settings


@pytest.fixture(scope="module")
async def outage(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Outage]:
    """A Temporal server of our own, with a worker of the engine polling it."""
    own = settings.model_copy(
        update={
            "temporal_address": f"127.0.0.1:{free_port()}",
            "temporal_ui_port": free_port(),
            "task_queue": f"outage-{uuid.uuid4().hex[:8]}",
            "dev": True,
        }
    )
    server = TemporalServer(own, tmp_path_factory.mktemp("temporal"))
    await server.start()
    try:
        worker_client = await temporal.connect(own)
        async with build_worker(worker_client, own) as worker, worker:
            yield Outage(server, own)
    finally:
        server.stop()


@pytest.fixture
async def server(outage: Outage) -> AsyncIterator[TemporalServer]:
    """The module's server, running again after the test whatever the test did to it."""
    yield outage.server
    if outage.server.process is None:
        await outage.server.start()
    else:
        outage.server.resume()


@dataclass
class Request:
    """One request a caller makes, and the status it gets while everything works."""

    method: str
    path: str
    ok: int
    json: dict[str, Any] | None = None


@dataclass
class Timed:
    request: Request
    response: httpx.Response
    seconds: float


async def timed(http: httpx.AsyncClient, request: Request) -> Timed:
    started = time.monotonic()
    response = await http.request(request.method, request.path, json=request.json)
    return Timed(request, response, time.monotonic() - started)


async def temporal_requests(me: Caller, receiver: Receiver) -> list[Request]:
    """Every route that calls Temporal, for a webhook with one delivery in its log."""
    created = await me.http.post(
        "/v1/webhooks", json={"url": receiver.url, "event_types": ["drift.detected"]}
    )
    assert created.status_code == 201, created.text
    hook = created.json()["id"]
    pinged = await me.http.post(f"/v1/webhooks/{hook}/test")
    assert pinged.status_code == 202, pinged.text
    delivery = pinged.json()["delivery_id"]
    return [
        Request(
            "POST",
            "/v1/events",
            202,
            {"event": "drift.detected", "data": {"resource": "sg-1"}, "id": "evt_outage"},
        ),
        Request("POST", f"/v1/webhooks/{hook}/test", 202),
        Request("GET", f"/v1/webhooks/{hook}/deliveries", 200),
        Request("GET", f"/v1/webhooks/{hook}/deliveries/{delivery}", 200),
    ]


def assert_unavailable(answer: Timed, settings: Settings) -> str:
    """A fast 503 in the error shape that gives away no address; returns its message."""
    response = answer.response
    where = f"{answer.request.method} {answer.request.path}"
    assert response.status_code == 503, (where, response.text)
    assert answer.seconds < FAST, (where, answer.seconds)
    assert response.headers["retry-after"] == "5", where
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["field"] is None
    assert body["error"]["errors"] == []
    host, _, port = settings.temporal_address.rpartition(":")
    for secret in (host, port, "localhost"):
        assert secret not in response.text, (where, response.text)
    message: str = body["error"]["message"]
    return message


def assert_says_what_to_do(answers: list[Timed], settings: Settings) -> None:
    """Each route's message says what became of the request and what is safe to do."""
    messages = [assert_unavailable(answer, settings) for answer in answers]
    event, ping, log, detail = messages
    assert "may not have been recorded" in event
    assert "same id ('evt_outage')" in event
    assert "delivered once" in event
    assert "test ping may not have started" in ping
    assert "Nothing was changed" in log
    assert "Nothing was changed" in detail


async def assert_works(me: Caller, requests: list[Request]) -> None:
    for request in requests:
        response = await me.http.request(request.method, request.path, json=request.json)
        assert response.status_code == request.ok, (request.path, response.text)


@asynccontextmanager
async def two_apis(
    outage: Outage, name: str
) -> AsyncIterator[tuple[Caller, Callable[[], Awaitable[Caller]]]]:
    """Callers of two APIs for a fresh org: ``me``'s API will have reached Temporal before the
    outage (the test makes a call first); the test starts the other with ``start_late()`` during
    the outage, so it has never reached Temporal (its requests share one connect attempt, its
    start-up check's: infraudit.api.app.reach_dependencies). Both run until the block ends."""
    org = f"{name}-{uuid.uuid4().hex[:8]}"
    async with AsyncExitStack() as apis:
        base = await apis.enter_async_context(running_api(outage.settings, None))
        me = await apis.enter_async_context(caller(base, outage.settings.database_url, org))

        async def start_late() -> Caller:
            late = await apis.enter_async_context(running_api(outage.settings, None))
            return await apis.enter_async_context(caller(late, outage.settings.database_url, org))

        yield me, start_late


async def test_hung_temporal_answers_503_fast_and_the_same_requests_work_after(
    outage: Outage, server: TemporalServer, receiver: Receiver
) -> None:
    async with two_apis(outage, "hung") as (me, start_late):
        requests = await temporal_requests(me, receiver)
        assert (await me.http.get("/readyz")).status_code == 200  # the API has connected

        server.pause()
        try:
            late = await start_late()
            answers, first_connect = await asyncio.gather(
                asyncio.gather(*(timed(me.http, r) for r in requests)),
                asyncio.gather(*(timed(late.http, r) for r in requests)),
            )
            ready = await timed(me.http, Request("GET", "/readyz", 200))
        finally:
            server.resume()

        assert_says_what_to_do(answers, outage.settings)
        assert_says_what_to_do(first_connect, outage.settings)
        assert ready.response.status_code == 503
        assert ready.seconds < FAST
        assert ready.response.json()["status"] == "unavailable"
        assert ready.response.json()["database"] == "ok"
        assert ready.response.json()["temporal"].startswith("unavailable: ")

        await assert_works(me, requests)
        await assert_works(late, requests)
        assert (await me.http.get("/readyz")).status_code == 200

        # The event sent into the hang may have been recorded after all: the retry with its id
        # was a harmless repeat, and the endpoint gets it once.
        async def drift_events() -> list[Received]:
            return [r for r in receiver.requests if json.loads(r.body)["event"] == "drift.detected"]

        await eventually(drift_events, bool)
        await asyncio.sleep(1.0)  # a second delivery would have followed by now
        assert len(await drift_events()) == 1


async def test_stopped_temporal_answers_503_fast_and_the_same_requests_work_after_restart(
    outage: Outage, server: TemporalServer, receiver: Receiver
) -> None:
    async with two_apis(outage, "stopped") as (me, start_late):
        requests = await temporal_requests(me, receiver)

        server.stop()
        try:
            late = await start_late()
            answers = await asyncio.gather(*(timed(me.http, r) for r in requests))
            first_connect = await asyncio.gather(*(timed(late.http, r) for r in requests))
            ready = await timed(me.http, Request("GET", "/readyz", 200))
            anonymous = await me.http.post("/v1/events", json={"event": "drift.detected"})
        finally:
            await server.start()

        assert_says_what_to_do(answers, outage.settings)
        assert_says_what_to_do(first_connect, outage.settings)
        assert all("Temporal is unreachable" in a.response.text for a in first_connect)
        assert ready.response.status_code == 503
        assert ready.seconds < FAST
        assert ready.response.json()["temporal"].startswith("unavailable: ")

        await assert_works(me, requests)
        await assert_works(late, requests)

        # Without an id the API chose one, and the 503 names it for the retry.
        chosen = re.search(r"same id \('(evt_\w+)'\)", anonymous.json()["error"]["message"])
        assert chosen, anonymous.text
        retried = await me.http.post(
            "/v1/events", json={"event": "drift.detected", "id": chosen.group(1)}
        )
        assert retried.status_code == 202, retried.text
        assert retried.json()["event_id"] == chosen.group(1)


def _answer_fast_503(response: httpx.Response, seconds: float, hidden: str) -> None:
    assert response.status_code == 503, response.text
    assert seconds < FAST
    assert response.headers["retry-after"] == "5"
    assert response.json() == {
        "error": {
            "message": "the database is unavailable: nothing was read or changed; retry in a "
            "few seconds",
            "field": None,
            "errors": [],
        }
    }
    assert hidden not in response.text


@pytest.mark.parametrize("store", ["postgresql down", "sqlite unreadable"])
async def test_an_unreachable_database_is_a_fast_503_not_a_500(
    store: str, settings: Settings, client: Client, tmp_path: Path
) -> None:
    if store == "postgresql down":
        port = str(free_port())
        url, hidden = f"postgresql://infraudit@127.0.0.1:{port}/infraudit", port
    else:
        (tmp_path / "infraudit.db").mkdir()  # a path SQLite cannot open as a file
        url, hidden = f"sqlite:///{tmp_path / 'infraudit.db'}", str(tmp_path)
    down = settings.model_copy(update={"database_url": url})
    async with (
        running_api(down, client) as base,
        httpx.AsyncClient(base_url=base, headers={"Authorization": "Bearer iak_anything"}) as http,
    ):
        for method, path in [
            ("GET", "/v1/webhooks"),
            ("POST", "/v1/events"),
            ("GET", "/v1/webhooks/wh_x/deliveries"),
        ]:
            started = time.monotonic()
            body = {"event": "drift.detected", "data": {}} if method == "POST" else None
            response = await http.request(method, path, json=body)
            _answer_fast_503(response, time.monotonic() - started, hidden)
        started = time.monotonic()
        ready = await http.get("/readyz")
        assert time.monotonic() - started < FAST
        assert ready.status_code == 503
        assert ready.json()["database"] == "unavailable: OperationalError"
        assert ready.json()["temporal"] == "ok"
