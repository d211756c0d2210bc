"""`infraudit up` end to end: real Temporal, worker, API and receivers, as a user runs them.

One test walks the whole life of a stack, because starting one costs seconds: start, register
endpoints, test a good and a failing one with `infraudit webhook test`, stop with Ctrl-C, check
nothing is left running, start again in the same folder and find the state (and key) kept.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import pytest

from infraudit import signing
from tests.cli_support import (
    StackPorts,
    UpProcess,
    child_pids,
    is_alive,
    port_is_free,
    run_cli,
    stack_env,
)
from tests.receiver import Answer, running_receiver

pytestmark = pytest.mark.xdist_group("infraudit-up")


def create_webhook(env: dict[str, str], url: str) -> dict[str, object]:
    """Register an endpoint through the CLI; returns the API's JSON (secret included)."""
    created = run_cli(
        ["webhook", "create", "--url", url, "--event", "drift.detected", "--json"], env
    )
    assert created.returncode == 0, created.stderr
    hook: dict[str, object] = json.loads(created.stdout)
    return hook


def test_up_runs_the_stack_stops_on_ctrl_c_and_keeps_its_state(tmp_path: Path) -> None:
    ports = StackPorts.pick()
    env = stack_env(ports)

    with UpProcess(tmp_path, env, name="first") as up:
        key = up.wait_ready()
        assert (tmp_path / ".infraudit" / "dev-api-key").read_text().strip() == key
        assert f"http://127.0.0.1:{ports.api}/docs" in up.stdout
        assert f"http://127.0.0.1:{ports.ui}" in up.stdout
        cli_env = {**env, "INFRAUDIT_API_KEY": key}

        with running_receiver() as good:
            hook = create_webhook(cli_env, good.url)
            tested = run_cli(["webhook", "test", str(hook["id"])], cli_env)
            assert tested.returncode == 0, tested.stdout + tested.stderr
            assert "delivered" in tested.stdout
            assert len(good.requests) == 1
            ping = good.requests[0]
            headers = {k.lower(): v for k, v in ping.headers.items()}
            assert headers["x-infraaudit-event"] == "webhook.ping"
            assert signing.verify_signature(
                ping.body, str(hook["secret"]), headers["x-infraaudit-signature"]
            )
            assert headers["x-infraaudit-delivery"] in tested.stdout
            assert json.loads(ping.body)["webhook_id"] == hook["id"]

        with running_receiver() as broken:
            broken.script(Answer(status=503, body=b"down for maintenance"))
            failing = create_webhook(cli_env, broken.url)
            tested = run_cli(["webhook", "test", str(failing["id"]), "--json"], cli_env)
            assert tested.returncode == 1, tested.stdout + tested.stderr
            outcome = json.loads(tested.stdout)
            assert outcome["status"] == "failed"
            assert [a["response_status"] for a in outcome["attempts"]] == [503, 503, 503]
            assert len(broken.requests) == 3

        children = child_pids(up.process.pid)
        assert len(children) == 3, children  # Temporal, worker, API
        assert up.stop(signal.SIGINT) == 0, up.stderr[-4000:]

    assert [pid for pid in children if is_alive(pid)] == []
    assert all(port_is_free(port) for port in ports.all()), ports

    with UpProcess(tmp_path, env, name="second") as again:
        assert again.wait_ready() == key
        listed = run_cli(["webhook", "list", "--json"], cli_env)
        assert listed.returncode == 0, listed.stderr
        assert {h["id"] for h in json.loads(listed.stdout)["data"]} == {
            hook["id"],
            failing["id"],
        }
        assert again.stop(signal.SIGTERM) == 0, again.stderr[-4000:]


def test_up_refuses_a_port_in_use_with_a_message(tmp_path: Path) -> None:
    ports = StackPorts.pick()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", ports.api))
        taken.listen()
        with UpProcess(tmp_path, stack_env(ports)) as up:
            assert up.process.wait(60) == 1
    assert f"port {ports.api}" in up.stderr
    assert "Traceback" not in up.stderr


def test_up_stops_everything_when_a_child_dies(tmp_path: Path) -> None:
    ports = StackPorts.pick()
    with UpProcess(tmp_path, stack_env(ports)) as up:
        up.wait_ready()
        # A second stack on other ports but the same folder would share its databases.
        with UpProcess(tmp_path, stack_env(StackPorts.pick()), name="second") as second:
            assert second.process.wait(60) == 1
        assert "is in use by another `infraudit up`" in second.stderr
        assert "Traceback" not in second.stderr
        children = child_pids(up.process.pid)
        worker = next(
            pid for pid in children if b"worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
        )
        os.kill(worker, signal.SIGKILL)
        assert up.process.wait(30) == 1
    assert "the worker exited unexpectedly" in up.stderr
    assert [pid for pid in children if is_alive(pid)] == []
    assert all(port_is_free(port) for port in ports.all()), ports
