"""The `infraudit` command as scripts and people use it: output, JSON, errors and exit codes.

The commands that need no server run against a temp SQLite file or an unused port. The rest
share one `infraudit up` stack for the module (starting one costs seconds).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infraudit.store import orgs
from infraudit.store.db import Database
from tests.cli_support import StackPorts, UpProcess, clean_env, free_port, run_cli, stack_env
from tests.receiver import Answer, running_receiver

pytestmark = pytest.mark.xdist_group("infraudit-cli")


def assert_clean_error(result: Any, code: int, *fragments: str) -> None:
    """Exit ``code``, a message naming ``fragments`` on stderr, no traceback, nothing on stdout."""
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    for fragment in fragments:
        assert fragment in result.stderr


# --- no server needed ----------------------------------------------------------------------


def test_api_key_create_prints_only_the_key_and_stores_its_hash(tmp_path: Path) -> None:
    db_file = tmp_path / "keys.db"
    env = clean_env(INFRAUDIT_DATABASE_URL=f"sqlite:///{db_file}")

    first = run_cli(["api-key", "create", "--org", "acme"], env, cwd=tmp_path)
    second = run_cli(["api-key", "create", "--org", "acme"], env, cwd=tmp_path)

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    keys = [first.stdout.splitlines(), second.stdout.splitlines()]
    assert all(len(lines) == 1 and lines[0].startswith("iak_") for lines in keys), keys
    key, other = keys[0][0], keys[1][0]
    assert key != other

    async def owners() -> list[str | None]:
        db = Database(f"sqlite:///{db_file}")
        try:
            async with db.session() as session:
                return [await orgs.org_for_api_key(session, k) for k in (key, other, "iak_no")]
        finally:
            await db.dispose()

    assert asyncio.run(owners()) == ["acme", "acme", None]
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("keys.db*"))
    assert key.encode() not in stored and other.encode() not in stored


def test_api_key_create_refuses_a_bad_org_id(tmp_path: Path) -> None:
    env = clean_env(INFRAUDIT_DATABASE_URL=f"sqlite:///{tmp_path / 'keys.db'}")
    result = run_cli(["api-key", "create", "--org", "no spaces/here"], env, cwd=tmp_path)
    assert_clean_error(result, 2, "org id must be")


def test_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    db_file = tmp_path / "nested" / "fresh.db"
    env = clean_env(INFRAUDIT_DATABASE_URL=f"sqlite:///{db_file}")
    result = run_cli(["db", "upgrade"], env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "newest schema" in result.stdout
    assert db_file.is_file()


def test_missing_api_key_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli(["webhook", "list"], clean_env(), cwd=tmp_path)
    assert_clean_error(result, 2, "INFRAUDIT_API_KEY")


def test_an_unreachable_api_is_reported_without_a_traceback(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    env = clean_env(INFRAUDIT_API_URL=url, INFRAUDIT_API_KEY="iak_whatever")
    result = run_cli(["webhook", "show", "wh_x"], env, cwd=tmp_path)
    assert_clean_error(result, 1, "cannot reach the API", url)


def test_invalid_settings_and_arguments_are_usage_errors(tmp_path: Path) -> None:
    bad_setting = run_cli(["webhook", "list"], clean_env(INFRAUDIT_HTTP_TIMEOUT="-1"), cwd=tmp_path)
    assert_clean_error(bad_setting, 2, "http_timeout")

    env = clean_env(INFRAUDIT_API_KEY="iak_whatever")
    bad_data = run_cli(["event", "publish", "drift.detected", "--data", "[1"], env, cwd=tmp_path)
    assert_clean_error(bad_data, 2, "--data is not valid JSON")
    not_object = run_cli(["event", "publish", "drift.detected", "--data", "[1]"], env, cwd=tmp_path)
    assert_clean_error(not_object, 2, "JSON object")
    # Data the API would refuse is refused here, naming the path, before anything is sent.
    for data, problem in [
        ('{"n": 1e400}', "data.n: inf is not a JSON number"),
        ('{"n": NaN}', "data.n: nan is not a JSON number"),
        ('{"s": "\\ud800"}', "data.s: holds a lone surrogate"),
        ('{"n": 9007199254740993}', "data.n: integer beyond"),
    ]:
        refused = run_cli(["event", "publish", "drift.detected", "--data", data], env, cwd=tmp_path)
        assert_clean_error(refused, 2, f"--data: {problem}")
    nothing = run_cli(["webhook", "update", "wh_x"], env, cwd=tmp_path)
    assert_clean_error(nothing, 2, "nothing to update")


# --- against a running stack ---------------------------------------------------------------


@dataclass(frozen=True)
class Stack:
    """A running `infraudit up` and the environment of a CLI user holding its dev key."""

    env: dict[str, str]

    def run(self, *args: str, timeout: float = 90.0) -> Any:
        """``infraudit <args>`` as that user."""
        return run_cli(list(args), self.env, timeout=timeout)

    def json(self, *args: str) -> Any:
        """``infraudit <args> --json``, which must succeed; its parsed output."""
        result = self.run(*args, "--json")
        assert result.returncode == 0, (result.stdout, result.stderr)
        return json.loads(result.stdout)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack for the module, stopped (and checked to stop cleanly) at the end."""
    ports = StackPorts.pick()
    env = stack_env(ports)
    with UpProcess(tmp_path_factory.mktemp("cli-stack"), env) as up:
        key = up.wait_ready()
        yield Stack(env={**env, "INFRAUDIT_API_KEY": key})
        assert up.stop() == 0, up.stderr[-4000:]


def test_webhook_commands_print_the_apis_json(stack: Stack) -> None:
    created = stack.json(
        "webhook", "create", "--url", "http://127.0.0.1:9/hook",
        "--event", "drift.detected", "--event", "alert.created", "--description", "ops",
    )  # fmt: skip
    assert created["id"].startswith("wh_")
    assert created["secret"].startswith("whsec_")
    assert created["event_types"] == ["alert.created", "drift.detected"]

    listed = stack.json("webhook", "list")
    assert created["id"] in {h["id"] for h in listed["data"]}
    assert all("secret" not in h for h in listed["data"])
    shown = stack.json("webhook", "show", created["id"])
    assert shown["description"] == "ops" and "secret" not in shown

    updated = stack.json("webhook", "update", created["id"], "--disable", "--event", "cost.anomaly")
    assert updated["enabled"] is False
    assert updated["event_types"] == ["cost.anomaly"]

    deleted = stack.run("webhook", "delete", created["id"])
    assert deleted.returncode == 0, deleted.stderr
    assert_clean_error(stack.run("webhook", "show", created["id"]), 1, "not found")


def test_human_output_shows_the_secret_once_and_a_table(stack: Stack) -> None:
    created = stack.run(
        "webhook", "create", "--url", "http://127.0.0.1:9/x", "--event", "job.completed"
    )
    assert created.returncode == 0, created.stderr
    assert "whsec_" in created.stdout and "only once" in created.stdout
    webhook_id = next(
        line.split()[-1] for line in created.stdout.splitlines() if line.startswith("ID:")
    )
    listed = stack.run("webhook", "list")
    assert listed.returncode == 0
    assert listed.stdout.splitlines()[0].split() == [
        "ID",
        "URL",
        "EVENTS",
        "ENABLED",
        "DESCRIPTION",
    ]
    assert webhook_id in listed.stdout
    assert "whsec_" not in listed.stdout


def test_api_errors_print_the_apis_message(stack: Stack) -> None:
    bad_url = stack.run("webhook", "create", "--url", "ftp://example", "--event", "drift.detected")
    assert_clean_error(bad_url, 1, "url", "HTTP 422")
    unknown_type = stack.run("event", "publish", "no.such.event")
    assert_clean_error(unknown_type, 1, "unknown event type")
    assert_clean_error(stack.run("webhook", "test", "wh_missing"), 1, "not found")


def test_event_publish_and_the_delivery_log(stack: Stack) -> None:
    with running_receiver() as receiver:
        hook = stack.json(
            "webhook", "create", "--url", receiver.url, "--event", "vulnerability.found"
        )
        event_id = f"evt_cli_{time.monotonic_ns()}"
        args = ("event", "publish", "vulnerability.found", "--data", '{"cve": "CVE-2024-1"}')
        published = stack.json(*args, "--id", event_id)
        assert published["event_id"] == event_id
        assert len(published["delivery_ids"]) == 1
        again = stack.json(*args, "--id", event_id)
        assert again["delivery_ids"] == published["delivery_ids"]

        delivery_id = published["delivery_ids"][0]
        deadline = time.monotonic() + 30
        while True:
            rows = stack.json("webhook", "deliveries", hook["id"], "--limit", "5")["data"]
            if rows and rows[0]["status"] == "delivered":
                break
            assert time.monotonic() < deadline, rows
            time.sleep(0.5)
        assert [r["delivery_id"] for r in rows] == [delivery_id]
        assert len(receiver.requests) == 1
        assert json.loads(receiver.requests[0].body)["data"] == {"cve": "CVE-2024-1"}

        table = stack.run("webhook", "deliveries", hook["id"])
        assert delivery_id in table.stdout and "delivered" in table.stdout


def test_webhook_test_exits_2_while_the_delivery_is_still_pending(stack: Stack) -> None:
    with running_receiver() as slow:
        slow.script(Answer(status=200, delay=5.0))
        hook = stack.json("webhook", "create", "--url", slow.url, "--event", "drift.detected")
        result = stack.run("webhook", "test", hook["id"], "--timeout", "1")
        assert result.returncode == 2, (result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        assert "Still pending" in result.stderr
        assert "del_" in result.stdout
