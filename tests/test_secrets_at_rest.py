"""Signing secrets at rest, through the real stack: sealed rows, rotation, old rows, bad keys.

What a reader of the database (a backup, a replica, a leaked dump) sees is read with raw SQL and
raw file bytes, never through the store; what a customer sees is a real receiver checking the
signature with the secret shown at registration.
"""

from __future__ import annotations

import os
import stat
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from temporalio.client import Client, WorkflowFailureError

from infraudit import deliveries, ids, signing
from infraudit.cli import stack
from infraudit.config import Settings
from infraudit.store import migrate, orgs, webhooks
from infraudit.store.db import Database, sync_url
from infraudit.store.secret_box import KEYS_VARIABLE, Keyring, decode_keys, new_key
from infraudit.worker import build_worker
from tests.api_fixtures import caller, running_api
from tests.cli_support import clean_env, run_cli
from tests.conftest import Endpoints
from tests.helpers import history_text, start_test_delivery
from tests.receiver import Receiver


def keyring(*keys: str) -> Keyring:
    return Keyring(decode_keys(",".join(keys)))


def raw_secrets(url: str) -> dict[str, str]:
    """Every row's ``secret`` column as stored, read with plain SQL (no keyring)."""
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            return dict(conn.execute(text("SELECT id, secret FROM webhooks")).all())
    finally:
        engine.dispose()


def execute(url: str, statement: str, **params: object) -> None:
    """One raw SQL write, committed."""
    engine = create_engine(sync_url(url))
    try:
        with engine.begin() as conn:
            conn.execute(text(statement), params)
    finally:
        engine.dispose()


def sqlite_bytes(url: str) -> bytes:
    """The SQLite database file and its WAL, as a copy of the disk would hold them.

    Read by another process: opening and closing a descriptor of a SQLite file here would drop
    the locks this process's open connections hold on it (POSIX advisory locks belong to the
    process), and every later use of the store in this process would fail with disk I/O errors.
    """
    path = Path(make_url(url).database or "")
    files = [str(p) for p in sorted(path.parent.glob(f"{path.name}*"))]
    return subprocess.run(["cat", *files], capture_output=True, check=True).stdout


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, database_url: str) -> str:
    """The session's migrated store on SQLite, then on PostgreSQL."""
    if request.param == "sqlite":
        return database_url
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(params=["sqlite", "postgresql"])
def blank_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of its own (SQLite file or a new PostgreSQL database)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'blank.db'}"
        return
    server = str(request.getfixturevalue("postgres_url"))
    admin = create_engine(sync_url(server), isolation_level="AUTOCOMMIT")
    name = f"infraudit_blank_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# --- what the database holds ----------------------------------------------------------------


@pytest.mark.usefixtures("worker")
async def test_a_webhook_registered_through_the_api_is_sealed_at_rest_and_still_verifies(
    settings: Settings, client: Client, receiver: Receiver, org_id: str
) -> None:
    async with (
        running_api(settings.model_copy(update={"dev": True}), client) as base,
        caller(base, settings.database_url, org_id) as me,
    ):
        created = await me.http.post(
            "/v1/webhooks", json={"url": receiver.url, "event_types": ["drift.detected"]}
        )
        assert created.status_code == 201, created.text
        hook = created.json()
        secret = hook["secret"]

        stored = raw_secrets(settings.database_url)[hook["id"]]
        assert stored.startswith(Keyring.from_settings(settings).current_prefix)
        assert secret not in stored
        on_disk = sqlite_bytes(settings.database_url)
        assert secret.encode() not in on_disk
        assert secret.removeprefix("whsec_").encode() not in on_disk

        published = await me.http.post(
            "/v1/events", json={"event": "drift.detected", "data": {"resource": "sg-1"}}
        )
        assert published.status_code == 202, published.text
        [sent] = await receiver.wait_for(1)
    assert signing.verify_signature(sent.body, secret, sent.headers["X-InfraAudit-Signature"])


async def test_rows_hold_only_ciphertext_on_sqlite_and_postgresql(
    store_url: str, settings: Settings, org_id: str
) -> None:
    ring = Keyring.from_settings(settings)
    db = Database(store_url, ring)
    try:
        async with db.session() as session, session.begin():
            await orgs.ensure_org(session, org_id)
            hook, secret = await webhooks.create_webhook(
                session, org_id=org_id, url="https://example.com/h", event_types=["cost.anomaly"]
            )
        stored = raw_secrets(store_url)[hook.id]
        assert stored.startswith(ring.current_prefix) and secret not in stored
        async with db.session() as session:
            target = await webhooks.load_signing_target(session, hook.id)
        assert target is not None and target.secret == secret
    finally:
        await db.dispose()


# --- keys that do not fit -------------------------------------------------------------------


@pytest.mark.usefixtures("worker")
async def test_a_secret_no_key_opens_fails_its_attempts_clearly_and_nothing_is_sent(
    caplog: pytest.LogCaptureFixture,
    client: Client,
    settings: Settings,
    endpoints: Endpoints,
    receiver: Receiver,
    org_id: str,
) -> None:
    foreign = keyring(new_key())
    lost_key, lost_secret = await endpoints.add(org_id, receiver.url)
    swapped, swapped_secret = await endpoints.add(org_id, receiver.url)
    healthy, healthy_secret = await endpoints.add(org_id, receiver.url)
    # One row sealed under a key this worker never had; one holding another webhook's value.
    execute(
        settings.database_url,
        "UPDATE webhooks SET secret = :s WHERE id = :id",
        s=foreign.seal(lost_secret, webhook_id=lost_key),
        id=lost_key,
    )
    execute(
        settings.database_url,
        "UPDATE webhooks SET secret = :s WHERE id = :id",
        s=raw_secrets(settings.database_url)[healthy],
        id=swapped,
    )
    expected = {
        lost_key: f"sealed under key {foreign.current_id}, which {KEYS_VARIABLE}",
        swapped: "does not open under key",
    }

    for webhook_id, reason in expected.items():
        handle = await start_test_delivery(
            client, settings, org_id=org_id, webhook_id=webhook_id, url=receiver.url
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
        assert f"3 attempts failed; last: the signing secret of {webhook_id}" in str(
            failed.value.cause
        )
        detail = await deliveries.get_delivery(
            client, org_id=org_id, webhook_id=webhook_id, delivery_id=handle.id
        )
        assert detail is not None and detail.status == "failed"
        assert [a.attempt for a in detail.attempts] == [1, 2, 3]
        assert all(reason in (a.error or "") for a in detail.attempts), detail.attempts
        seen = history_text(await handle.fetch_history()) + detail.model_dump_json()
        for secret in (lost_secret, swapped_secret, healthy_secret):
            assert secret not in seen

    # Each refused attempt is one warning line for the operator, without a traceback.
    not_sent = [
        r for r in caplog.records if "not sent" in r.getMessage() and lost_key in r.getMessage()
    ]
    assert [r.levelname for r in not_sent] == ["WARNING"] * 3
    assert not [r for r in caplog.records if r.name.startswith("temporalio") and r.exc_info]

    # The worker is fine: the next delivery of a sound endpoint goes out, correctly signed.
    assert receiver.requests == []
    handle = await start_test_delivery(
        client, settings, org_id=org_id, webhook_id=healthy, url=receiver.url
    )
    assert (await handle.result()).status == "delivered"
    [sent] = receiver.requests
    assert signing.verify_signature(
        sent.body, healthy_secret, sent.headers["X-InfraAudit-Signature"]
    )


@pytest.mark.usefixtures("worker")
async def test_a_disabled_endpoint_ends_at_once_even_when_no_key_opens_its_secret(
    client: Client, settings: Settings, endpoints: Endpoints, receiver: Receiver, org_id: str
) -> None:
    """Disabled means no further attempts; a key removed since must not make them retries."""
    webhook_id, secret = await endpoints.add(org_id, receiver.url, enabled=False)
    execute(
        settings.database_url,
        "UPDATE webhooks SET secret = :s WHERE id = :id",
        s=keyring(new_key()).seal(secret, webhook_id=webhook_id),
        id=webhook_id,
    )
    handle = await start_test_delivery(
        client, settings, org_id=org_id, webhook_id=webhook_id, url=receiver.url
    )
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    assert str(failed.value.cause) == (
        f"DeliveryFailed: endpoint {webhook_id} was disabled; no further attempts"
    )
    assert receiver.requests == []


def test_processes_refuse_to_start_without_a_usable_key(tmp_path: Path) -> None:
    env = clean_env(INFRAUDIT_DATABASE_URL=f"sqlite:///{tmp_path / 'store.db'}")
    bad = "c2hvcnQ="  # base64, but 5 bytes
    for args, extra in [
        (["worker"], {}),
        (["api"], {}),
        (["secrets", "rotate"], {KEYS_VARIABLE: bad}),
    ]:
        result = run_cli(args, {**env, **extra}, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr and bad not in result.stderr
        [line] = result.stderr.strip().splitlines()
        assert line.startswith(f"error: {KEYS_VARIABLE}"), line

    made = run_cli(["secrets", "new-key"], env, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert len(decode_keys(made.stdout.strip())) == 1


# --- rotation --------------------------------------------------------------------------------


async def test_rotation_moves_every_secret_to_the_new_key_and_deliveries_still_verify(
    tmp_path: Path, client: Client, settings: Settings, receiver: Receiver, org_id: str
) -> None:
    url = f"sqlite:///{tmp_path / 'rotate.db'}"
    migrate.upgrade(url)
    old, new, lost = new_key(), new_key(), new_key()
    before = Database(url, keyring(old))
    secrets: dict[str, str] = {}
    try:
        async with before.session() as session, session.begin():
            await orgs.ensure_org(session, org_id)
            for _ in range(3):
                hook, secret = await webhooks.create_webhook(
                    session, org_id=org_id, url=receiver.url, event_types=["drift.detected"]
                )
                secrets[hook.id] = secret
    finally:
        await before.dispose()
    # A row under a key nobody holds any more: rotation names it and leaves it alone.
    stranded = f"wh_{uuid.uuid4().hex[:16]}"
    now = datetime.now(UTC)
    execute(
        url,
        "INSERT INTO webhooks (id, org_id, url, description, enabled, secret, created_at,"
        " updated_at) VALUES (:id, :org, 'https://example.com/x', '', true, :s, :t, :t)",
        id=stranded,
        org=org_id,
        s=keyring(lost).seal(ids.new_secret(), webhook_id=stranded),
        t=now,
    )
    updated_before = _updated_at(url)

    env = clean_env(INFRAUDIT_DATABASE_URL=url, **{KEYS_VARIABLE: f"{new},{old}"})
    rotated = run_cli(["secrets", "rotate"], env, cwd=tmp_path)
    assert rotated.returncode == 1, rotated.stderr
    assert "Re-sealed 3 signing secret(s)" in rotated.stdout
    [problem] = rotated.stderr.strip().splitlines()
    assert stranded in problem and "sealed under key" in problem

    execute(url, "DELETE FROM webhooks WHERE id = :id", id=stranded)
    again = run_cli(["secrets", "rotate"], env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "Re-sealed 0 signing secret(s)" in again.stdout

    stored = raw_secrets(url)
    assert set(stored) == set(secrets)
    assert all(v.startswith(keyring(new).current_prefix) for v in stored.values()), stored
    assert _updated_at(url) == {k: v for k, v in updated_before.items() if k != stranded}

    # The old key is gone from the worker's settings: every secret still signs correctly.
    only_new = settings.model_copy(
        update={
            "database_url": url,
            "secret_keys": SecretStr(new),
            "task_queue": f"rotated-{uuid.uuid4().hex[:8]}",
            "dev": True,
        }
    )
    async with build_worker(client, only_new) as worker, worker:
        for webhook_id in secrets:
            handle = await start_test_delivery(
                client, only_new, org_id=org_id, webhook_id=webhook_id, url=receiver.url
            )
            assert (await handle.result()).status == "delivered"
    by_hook = {r.headers["X-InfraAudit-Webhook"]: r for r in receiver.requests}
    assert set(by_hook) == set(secrets)
    for webhook_id, sent in by_hook.items():
        signature = sent.headers["X-InfraAudit-Signature"]
        assert signing.verify_signature(sent.body, secrets[webhook_id], signature)


def _updated_at(url: str) -> dict[str, object]:
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            return dict(conn.execute(text("SELECT id, updated_at FROM webhooks")).all())
    finally:
        engine.dispose()


# --- rows written before encryption ----------------------------------------------------------


def test_db_upgrade_seals_the_plain_secrets_of_schema_0001(blank_url: str, tmp_path: Path) -> None:
    migrate.upgrade(blank_url, revision="0001")
    plain = {f"wh_{uuid.uuid4().hex[:16]}": ids.new_secret() for _ in range(3)}
    now = datetime.now(UTC)
    execute(blank_url, "INSERT INTO orgs (id, created_at) VALUES ('acme', :t)", t=now)
    for webhook_id, secret in plain.items():
        execute(
            blank_url,
            "INSERT INTO webhooks (id, org_id, url, description, enabled, secret, created_at,"
            " updated_at) VALUES (:id, 'acme', 'https://example.com/h', '', true, :s, :t, :t)",
            id=webhook_id,
            s=secret,
            t=now,
        )
    env = clean_env(INFRAUDIT_DATABASE_URL=blank_url)

    refused = run_cli(["db", "upgrade"], env, cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr
    [line] = refused.stderr.strip().splitlines()
    assert "3 webhook signing secret(s) are stored in plain text" in line
    assert KEYS_VARIABLE in line
    assert raw_secrets(blank_url) == plain
    assert _schema_version(blank_url) == "0001"

    key = new_key()
    upgraded = run_cli(["db", "upgrade"], {**env, KEYS_VARIABLE: key}, cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    sealed = raw_secrets(blank_url)
    ring = keyring(key)
    assert set(sealed) == set(plain)
    for webhook_id, stored in sealed.items():
        assert stored.startswith(ring.current_prefix) and plain[webhook_id] not in stored
        assert ring.open(stored, webhook_id=webhook_id) == plain[webhook_id]

    rerun = run_cli(["db", "upgrade"], {**env, KEYS_VARIABLE: key}, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert raw_secrets(blank_url) == sealed
    assert _schema_version(blank_url) == "0002"


def _schema_version(url: str) -> str:
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one())
    finally:
        engine.dispose()


# --- make run ---------------------------------------------------------------------------------


def test_make_run_keeps_one_private_local_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(KEYS_VARIABLE, raising=False)
    monkeypatch.delenv("INFRAUDIT_DEV", raising=False)
    kept = tmp_path / ".infraudit" / stack.SECRET_KEY_FILE

    stack.prepare_environment()
    first = os.environ[KEYS_VARIABLE]
    assert decode_keys(first) and kept.read_text().strip() == first
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE(kept.parent.stat().st_mode) == 0o700

    monkeypatch.delenv(KEYS_VARIABLE)
    stack.prepare_environment()
    assert os.environ[KEYS_VARIABLE] == first  # a restart opens what the last run sealed

    chosen = new_key()
    monkeypatch.setenv(KEYS_VARIABLE, chosen)
    stack.prepare_environment()
    assert os.environ[KEYS_VARIABLE] == chosen
    assert kept.read_text().strip() == first
