"""The registrations store on SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator

import pytest

from infraudit.config import Settings
from infraudit.store import orgs, webhooks
from infraudit.store.db import Database
from infraudit.store.models import ApiKey
from infraudit.store.secret_box import Keyring


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(
    request: pytest.FixtureRequest, database_url: str, settings: Settings
) -> AsyncIterator[Database]:
    url = database_url if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    database = Database(url, Keyring.from_settings(settings))
    yield database
    await database.dispose()


async def test_webhook_lifecycle(store: Database) -> None:
    org = f"org-{uuid.uuid4().hex[:8]}"
    async with store.session() as session, session.begin():
        await orgs.ensure_org(session, org)
        hook, secret = await webhooks.create_webhook(
            session,
            org_id=org,
            url="https://example.com/hook",
            event_types=["drift.detected", "alert.created", "drift.detected"],
            description="ops",
        )
    assert hook.id.startswith("wh_") and secret.startswith("whsec_")
    async with store.session() as session, session.begin():
        fetched = await webhooks.get_webhook(session, org, hook.id)
        assert fetched is not None
        assert fetched.event_types == ["alert.created", "drift.detected"]
        assert fetched.description == "ops" and fetched.enabled
        assert await webhooks.get_webhook(session, "someone-else", hook.id) is None
        target = await webhooks.load_signing_target(session, hook.id)
        assert target == webhooks.SigningTarget("https://example.com/hook", secret, True, org)
        updated = await webhooks.update_webhook(
            session, fetched, event_types=["cost.anomaly"], enabled=False, url="https://x.io/h"
        )
        assert updated.event_types == ["cost.anomaly"]
        assert updated.updated_at >= updated.created_at
    async with store.session() as session, session.begin():
        listed = await webhooks.list_webhooks(session, org)
        assert [(h.id, h.url, h.enabled) for h in listed] == [(hook.id, "https://x.io/h", False)]
        await webhooks.delete_webhook(session, listed[0])
    async with store.session() as session:
        assert await webhooks.load_signing_target(session, hook.id) is None
        assert await webhooks.list_webhooks(session, org) == []


async def test_subscribers_page_filters_and_pages(store: Database) -> None:
    org = f"org-{uuid.uuid4().hex[:8]}"
    async with store.session() as session, session.begin():
        await orgs.ensure_org(session, org)
        await orgs.ensure_org(session, f"{org}-b")
        wanted = []
        for n in range(5):
            hook, _ = await webhooks.create_webhook(
                session, org_id=org, url=f"https://e.com/{n}", event_types=["drift.detected"]
            )
            wanted.append(hook.id)
        off, _ = await webhooks.create_webhook(
            session, org_id=org, url="https://e.com/off", event_types=["drift.detected"]
        )
        await webhooks.update_webhook(session, off, enabled=False)
        await webhooks.create_webhook(
            session, org_id=org, url="https://e.com/a", event_types=["alert.created"]
        )
        await webhooks.create_webhook(
            session, org_id=f"{org}-b", url="https://e.com/b", event_types=["drift.detected"]
        )
    seen: list[str] = []
    after = None
    async with store.session() as session:
        while True:
            page = await webhooks.subscribers_page(
                session, org_id=org, event_type="drift.detected", after_webhook_id=after, limit=2
            )
            seen += [s.webhook_id for s in page]
            if len(page) < 2:
                break
            after = page[-1].webhook_id
    assert seen == sorted(wanted)


async def test_api_keys_are_stored_hashed(store: Database) -> None:
    org = f"org-{uuid.uuid4().hex[:8]}"
    async with store.session() as session, session.begin():
        key = await orgs.create_api_key(session, org)
    async with store.session() as session:
        assert await orgs.org_for_api_key(session, key) == org
        assert await orgs.org_for_api_key(session, key + "x") is None
        stored = await session.get(ApiKey, hashlib.sha256(key.encode()).hexdigest())
        assert stored is not None and stored.org_id == org


async def test_org_ids_are_validated(store: Database) -> None:
    async with store.session() as session:
        with pytest.raises(ValueError, match="org id must be"):
            await orgs.ensure_org(session, "bad org!")
