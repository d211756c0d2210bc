"""The systems under test, started for one run: Temporal dev server, SQLite store, Redis.

The dev server is started here as a subprocess (not through ``start_local``) so that its pid,
and so its CPU, is known; its flags are those of ``infraudit up``
(:func:`infraudit.cli.stack.temporal_command`) with the Web UI off. Redis is not started: it runs
on the machine already (as in CI); the bench only reads its pid and cleans up its own keys.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import redis
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from infraudit import ids
from infraudit.cli.stack import temporal_command
from infraudit.config import Settings
from infraudit.store import orgs, webhooks
from infraudit.store.db import Database
from infraudit.store.models import Subscription, Webhook
from infraudit.store.secret_box import keyring_of


def start_temporal(state_dir: Path, port: int) -> subprocess.Popen[bytes]:
    """``temporal server start-dev`` on 127.0.0.1:``port`` with its log in ``state_dir``."""
    settings = Settings(temporal_address=f"127.0.0.1:{port}")
    command = [*temporal_command(settings, state_dir), "--headless"]
    log = (state_dir / "temporal.log").open("wb")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


async def connect(address: str, within: float = 60.0) -> Client:
    """A client of the dev server once it answers (it takes a few seconds to start)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            client = await Client.connect(address, data_converter=pydantic_data_converter)
            await client.count_workflows()
            return client
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)


async def add_endpoints(db: Database, org_id: str, url: str, event: str, count: int) -> list[str]:
    """Register ``count`` endpoints through the store's own function; returns their ids."""
    created: list[str] = []
    async with db.session() as session, session.begin():
        await orgs.ensure_org(session, org_id)
        for n in range(count):
            hook, _ = await webhooks.create_webhook(
                session, org_id=org_id, url=f"{url}/hook/{n}", event_types=[event]
            )
            created.append(hook.id)
    return created


async def add_many_endpoints(
    db: Database, org_id: str, url: str, event: str, count: int
) -> list[str]:
    """Register ``count`` endpoints in one flush (10,000 one by one is slow); their ids."""
    async with db.session() as session, session.begin():
        await orgs.ensure_org(session, org_id)
        keyring = keyring_of(session)
        webhook_ids = [ids.new_webhook_id() for _ in range(count)]
        session.add_all(
            Webhook(
                id=webhook_id,
                org_id=org_id,
                url=f"{url}/hook/{n}",
                description="",
                enabled=True,
                sealed_secret=keyring.seal(ids.new_secret(), webhook_id=webhook_id),
                subscriptions=[Subscription(event_type=event)],
            )
            for n, webhook_id in enumerate(webhook_ids)
        )
    return webhook_ids


def redis_info(url: str) -> tuple[int, str]:
    """The Redis server's pid (for its CPU) and version."""
    with redis.Redis.from_url(url) as r:
        info = r.info("server")
    return int(info["process_id"]), str(info["redis_version"])


def redis_cleanup(url: str, queue: str) -> int:
    """Delete the keys of this run's Celery queue (its name is unique to the run)."""
    with redis.Redis.from_url(url) as r:
        keys = list(r.scan_iter(match=f"*{queue}*"))
        return int(r.delete(*keys)) if keys else 0
