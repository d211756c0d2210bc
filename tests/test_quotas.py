"""Limits per org: the webhook cap (409), rate limits (429 with Retry-After), private state.

Each API test serves the real app over uvicorn with one limit set low and the others as the
session's (out of reach), then meets the limit exactly: the requests it allows pass, the next
is refused and did nothing, and another org (or webhook) is not held back. Refills are slow
(a token every 20-30 s), so no test depends on how fast this machine runs; the refill
arithmetic itself is checked on a bucket with a clock of the test's own. The last tests check
that the local state is private to its owner after a real ``infraudit up`` and a fresh store.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from infraudit import ids
from infraudit.api.quotas import TokenBuckets
from infraudit.config import Settings
from infraudit.store import migrate
from infraudit.store.db import Database
from tests.api_fixtures import Caller, caller, running_api
from tests.cli_support import StackPorts, UpProcess, stack_env
from tests.receiver import Receiver


@asynccontextmanager
async def api_with(
    settings: Settings, client: Client, **limits: Any
) -> AsyncIterator[tuple[str, Settings]]:
    """A dev-mode API whose settings are the session's with ``limits``; (base URL, settings)."""
    limited = settings.model_copy(update={"dev": True, **limits})
    async with running_api(limited, client) as base:
        yield base, limited


def refused(response: httpx.Response, status: int, field: str) -> str:
    """The error shape naming ``field``; returns the message."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["field"] == field, error
    message: str = error["message"]
    return message


def retry_after(response: httpx.Response, at_most: int) -> int:
    """The 429's ``Retry-After``: whole seconds, at least 1, at most one token's refill time."""
    seconds = int(response.headers["retry-after"])
    assert 1 <= seconds <= at_most, seconds
    assert f"retry in {seconds} s" in response.json()["error"]["message"]
    return seconds


async def register(c: Caller, url: str = "https://example.com/hook") -> httpx.Response:
    return await c.http.post("/v1/webhooks", json={"url": url, "event_types": ["drift.detected"]})


async def test_an_org_publishes_its_burst_then_429_and_other_orgs_are_not_held_back(
    settings: Settings, client: Client, worker: None
) -> None:
    async with (
        api_with(settings, client, events_per_second=0.05, event_burst=3) as (base, limited),
        caller(base, limited.database_url, f"busy-{uuid.uuid4().hex[:8]}") as busy,
        caller(base, limited.database_url, f"calm-{uuid.uuid4().hex[:8]}") as calm,
    ):

        async def publish(c: Caller, event_id: str) -> httpx.Response:
            return await c.http.post(
                "/v1/events", json={"event": "drift.detected", "data": {}, "id": event_id}
            )

        for n in range(3):
            assert (await publish(busy, f"evt_{n}")).status_code == 202
        over = await publish(busy, "evt_over")
        message = refused(over, 429, "org")
        assert "0.05 events per second per org, in bursts of at most 3" in message
        retry_after(over, at_most=20)
        assert (await publish(calm, "evt_0")).status_code == 202

        # Refused means nothing started: no PublishEvent exists for that id.
        handle = client.get_workflow_handle(ids.publish_workflow_id(busy.org_id, "evt_over"))
        with pytest.raises(RPCError) as missing:
            await handle.describe()
        assert missing.value.status == RPCStatusCode.NOT_FOUND


async def test_test_pings_are_limited_per_webhook(
    settings: Settings, client: Client, worker: None, receiver: Receiver
) -> None:
    async with (
        api_with(settings, client, pings_per_minute=2) as (base, limited),
        caller(base, limited.database_url, f"pinger-{uuid.uuid4().hex[:8]}") as me,
    ):
        first, second = [(await register(me, receiver.url)).json()["id"] for _ in range(2)]
        for _ in range(2):
            assert (await me.http.post(f"/v1/webhooks/{first}/test")).status_code == 202
        over = await me.http.post(f"/v1/webhooks/{first}/test")
        assert "2 test pings per webhook per minute" in refused(over, 429, "webhook_id")
        retry_after(over, at_most=30)
        assert (await me.http.post(f"/v1/webhooks/{second}/test")).status_code == 202

        await receiver.wait_for(3)
        await asyncio.sleep(0.5)  # a refused ping would have arrived by now
        per_webhook = [
            {k.lower(): v for k, v in r.headers.items()}["x-infraaudit-webhook"]
            for r in receiver.requests
        ]
        assert sorted(per_webhook) == sorted([first, first, second])


async def test_webhook_changes_are_limited_per_org_and_reads_are_not(
    settings: Settings, client: Client
) -> None:
    async with (
        api_with(settings, client, webhook_writes_per_minute=3) as (base, limited),
        caller(base, limited.database_url, f"writer-{uuid.uuid4().hex[:8]}") as me,
        caller(base, limited.database_url, f"other-{uuid.uuid4().hex[:8]}") as other,
    ):
        hook = (await register(me)).json()["id"]
        patched = await me.http.patch(f"/v1/webhooks/{hook}", json={"description": "x"})
        assert patched.status_code == 200
        assert (await me.http.delete(f"/v1/webhooks/{hook}")).status_code == 204
        for over in [
            await register(me),
            await me.http.patch(f"/v1/webhooks/{hook}", json={"description": "y"}),
            await me.http.delete(f"/v1/webhooks/{hook}"),
        ]:
            message = refused(over, 429, "org")
            assert "3 webhook creates, updates and deletes per org per minute" in message
            retry_after(over, at_most=20)
        assert (await me.http.get("/v1/webhooks")).json() == {"data": []}
        assert (await register(other)).status_code == 201


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url_of(request: pytest.FixtureRequest, settings: Settings) -> str:
    """The session's SQLite store, or a PostgreSQL one (skipped when none answers)."""
    if request.param == "sqlite":
        return settings.database_url
    url: str = request.getfixturevalue("postgres_url")
    return url


async def test_an_org_has_at_most_its_cap_of_webhooks(
    settings: Settings, client: Client, database_url_of: str
) -> None:
    async with (
        api_with(settings, client, max_webhooks_per_org=3, database_url=database_url_of) as (
            base,
            limited,
        ),
        caller(base, limited.database_url, f"capped-{uuid.uuid4().hex[:8]}") as me,
        caller(base, limited.database_url, f"fresh-{uuid.uuid4().hex[:8]}") as fresh,
    ):
        hooks = [(await register(me)).json()["id"] for _ in range(3)]
        over = await register(me)
        assert "this org has 3 webhooks" in refused(over, 409, "org")
        assert "retry-after" not in over.headers
        listed = (await me.http.get("/v1/webhooks")).json()["data"]
        assert [h["id"] for h in listed] == hooks
        assert (await register(fresh)).status_code == 201

        assert (await me.http.delete(f"/v1/webhooks/{hooks[0]}")).status_code == 204
        assert (await register(me)).status_code == 201
        assert (await register(me)).status_code == 409


async def test_concurrent_registrations_never_pass_the_cap(
    settings: Settings, client: Client, database_url_of: str
) -> None:
    """Two registrations counting at once must not both see room for one more: each waits for
    the one before it to commit (see ``store.webhooks.count_webhooks_locking_org``)."""
    async with (
        api_with(settings, client, max_webhooks_per_org=3, database_url=database_url_of) as (
            base,
            limited,
        ),
        caller(base, limited.database_url, f"racer-{uuid.uuid4().hex[:8]}") as me,
    ):
        answers = await asyncio.gather(*(register(me) for _ in range(8)))
        assert sorted(a.status_code for a in answers) == [201] * 3 + [409] * 5
        assert len((await me.http.get("/v1/webhooks")).json()["data"]) == 3


def test_a_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    now = [100.0]
    bucket = TokenBuckets(rate=0.5, burst=2, clock=lambda: now[0])
    assert [bucket.take("org"), bucket.take("org")] == [0.0, 0.0]
    assert bucket.take("org") == pytest.approx(2.0)  # one token at 0.5/s
    now[0] += 1.5
    assert bucket.take("org") == pytest.approx(0.5)  # 0.75 of a token so far
    now[0] += 0.5
    assert bucket.take("org") == 0.0
    assert bucket.take("another") == 0.0  # each key its own bucket
    now[0] += 3600
    assert [bucket.take("org"), bucket.take("org")] == [0.0, 0.0]  # full again, never more
    assert bucket.take("org") > 0


def test_buckets_that_are_full_again_are_forgotten() -> None:
    """Memory stays bounded by the keys active lately, not by every org ever seen."""
    now = [0.0]
    bucket = TokenBuckets(rate=1.0, burst=1, clock=lambda: now[0])
    for n in range(10_000):
        bucket.take(f"old-{n}")
    assert len(bucket) == 10_000  # all still empty: none may be forgotten
    now[0] += 1.0  # the old buckets are full again
    for n in range(10_000):
        bucket.take(f"new-{n}")
    assert len(bucket) == 10_000
    assert bucket.take("old-0") == 0.0
    assert bucket.take("new-0") > 0


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_a_new_sqlite_store_is_private_to_its_owner(
    tmp_path: Path, settings: Settings
) -> None:
    old = os.umask(0o022)  # what most shells give: files readable by everyone
    try:
        url = f"sqlite:///{tmp_path / 'state' / 'infraudit.db'}"
        migrate.upgrade(url)
        db = Database(url)
        try:
            async with db.session() as s, s.begin():
                await s.execute(text("SELECT count(*) FROM orgs"))
            files = sorted(p.name for p in (tmp_path / "state").iterdir())
            assert files == ["infraudit.db", "infraudit.db-shm", "infraudit.db-wal"]
            assert mode(tmp_path / "state") == 0o700
            assert {name: mode(tmp_path / "state" / name) for name in files} == dict.fromkeys(
                files, 0o600
            )
        finally:
            await db.dispose()
    finally:
        os.umask(old)


@pytest.mark.xdist_group("infraudit-up")
def test_up_keeps_its_state_folder_private_even_one_left_readable(tmp_path: Path) -> None:
    state = tmp_path / ".infraudit"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    (state / "dev-api-key").write_text("iak_stale\n")  # as an older release left it
    (state / "dev-api-key").chmod(0o644)
    env = stack_env(StackPorts.pick())
    env.pop("INFRAUDIT_SECRET_KEYS", None)  # `up` then keeps its own key in the folder

    with UpProcess(tmp_path, env) as up:
        up.wait_ready()
        names = {p.name for p in state.iterdir()}
        modes = {p.name: mode(p) for p in state.iterdir()}
        up.stop()

    assert mode(state) == 0o700
    expected = {"infraudit.db", "temporal.db", "dev-api-key", "secret.key", "temporal.log"}
    assert expected <= names, names
    assert any(n.endswith("-wal") for n in names), names
    assert modes == dict.fromkeys(names, 0o600), json.dumps(
        {n: oct(m) for n, m in modes.items()}, indent=1
    )
