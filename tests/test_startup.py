"""A worker or API started before Temporal or the database (issue 10, "Processes that behave").

Each says in one line per try what it cannot reach and when it tries again (1 s, then 2 s, ...),
prints no traceback and keeps running; once Temporal is there the worker polls and delivers and
the API is ready. SIGTERM during the wait stops the process at once. The processes are real
(``python worker.py``, ``infraudit api``); Temporal is a dev server of the test's own
(``infraudit up``'s command line) started on the port they were told, after them.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
from temporalio.client import Client

from infraudit.cli.binaries import binary
from infraudit.cli.commands import create_api_key
from infraudit.config import Settings
from infraudit.store.secret_box import new_key
from tests.api_process import api_env, api_process
from tests.cli_support import clean_env, free_port
from tests.receiver import running_receiver
from tests.temporal_server import TemporalServer
from tests.worker_process import ROOT, WorkerProcess, worker_env, worker_process

#: What a try's line says after the reason: ``; next try in <seconds> s``.
NEXT_TRY = re.compile(r"; next try in (\d+(?:\.\d+)?) s\b")


async def tries(process: WorkerProcess, cannot_reach: str, count: int = 2) -> list[str]:
    """The process's lines saying ``cannot reach <what>``, once there are ``count``."""
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        lines = [
            line for line in process.log().splitlines() if f"cannot reach {cannot_reach}" in line
        ]
        if len(lines) >= count:
            return lines
        assert process.process.poll() is None, f"it exited:\n{process.log()}"
        assert asyncio.get_running_loop().time() < deadline, process.log()
        await asyncio.sleep(0.1)


def waits(lines: list[str]) -> list[float]:
    """The ``next try in`` of each line, which every line has."""
    found = [NEXT_TRY.search(line) for line in lines]
    assert all(found), lines
    return [float(m.group(1)) for m in found if m]


async def test_a_worker_and_an_api_started_before_temporal_wait_then_deliver(
    client: Client, settings: Settings, org_id: str, tmp_path: Path
) -> None:
    own = settings.model_copy(
        update={"temporal_address": f"127.0.0.1:{free_port()}", "temporal_ui_port": free_port()}
    )
    env = worker_env(client, database_url=settings.database_url, task_queue=uuid.uuid4().hex)
    env["INFRAUDIT_TEMPORAL_ADDRESS"] = own.temporal_address
    state = tmp_path / "temporal"
    state.mkdir()
    server = TemporalServer(own, state)
    key = await create_api_key(settings.database_url, org_id)
    with (
        running_receiver() as receiver,
        worker_process(env, tmp_path / "worker.log") as worker,
        api_process(api_env(env), tmp_path / "api.log") as api,
    ):
        worker_tries = await tries(worker, f"Temporal at {own.temporal_address}")
        api_tries = await tries(api, f"Temporal at {own.temporal_address}")
        async with httpx.AsyncClient(
            base_url=api.url, headers={"Authorization": f"Bearer {key}"}, timeout=10
        ) as http:
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/readyz")).status_code == 503
            await server.start()
            try:
                await worker.ready(within=40)
                await api.ready(within=40)
                created = await http.post(
                    "/v1/webhooks", json={"url": receiver.url, "event_types": ["drift.detected"]}
                )
                assert created.status_code == 201, created.text
                pinged = await http.post(f"/v1/webhooks/{created.json()['id']}/test")
                assert pinged.status_code == 202, pinged.text
                await receiver.wait_for(1)
            finally:
                server.stop()
        logged = worker.log() + api.log()

    assert waits(worker_tries)[:2] == [1, 2] and waits(api_tries)[:2] == [1, 2]
    assert "reached Temporal at" in worker.log()
    assert "Traceback" not in logged


async def test_an_unreachable_database_is_a_line_per_try_without_its_password_until_sigterm(
    client: Client, tmp_path: Path
) -> None:
    """PostgreSQL where nothing listens: JSON lines that name it without the password; SIGTERM
    during the wait ends each process within a second or two, the worker with exit 0."""
    password = f"pw-{uuid.uuid4().hex}"
    in_query = f"qpw-{uuid.uuid4().hex}"  # drivers also take it from the query string
    address = f"127.0.0.1:{free_port()}"
    url = f"postgresql://infraudit:{password}@{address}/infraudit?password={in_query}"
    env = worker_env(client, database_url=url, task_queue=uuid.uuid4().hex)
    env["INFRAUDIT_LOG_FORMAT"] = "json"
    with (
        worker_process(env, tmp_path / "worker.log") as worker,
        api_process(api_env(env), tmp_path / "api.log") as api,
    ):
        lines = {
            "worker": await tries(worker, "the database"),
            "API": await tries(api, "the database"),
        }
        stopped = {}
        for name, process in (("worker", worker), ("API", api)):
            began = time.monotonic()
            process.process.send_signal(signal.SIGTERM)
            stopped[name] = process.process.wait(timeout=10), time.monotonic() - began

    for name, process in (("worker", worker), ("API", api)):
        log = process.log()
        for line in log.splitlines():
            json.loads(line)
        assert password not in log and in_query not in log, name
        assert "Traceback" not in log, name
        assert f"@{address}/infraudit " in lines[name][0], lines[name][0]
        assert waits(lines[name])[:2] == [1, 2], lines[name]
        assert stopped[name][1] < 5, (name, stopped[name])
    # uvicorn ends by raising the SIGTERM it handled again, once it has shut down cleanly.
    assert stopped["worker"][0] == 0 and stopped["API"][0] in (0, -signal.SIGTERM)


def test_misconfigured_processes_say_so_in_one_line_without_a_traceback(tmp_path: Path) -> None:
    """``python worker.py`` and ``infraudit api`` refuse bad settings with one ``error:`` line
    and exit 2 (the same as ``infraudit worker``), and a listener whose port is taken with one
    line and exit 1, never with a traceback from the event loop or uvicorn's lifespan."""
    keys = {
        "INFRAUDIT_SECRET_KEYS": new_key(),
        "INFRAUDIT_DATABASE_URL": f"sqlite:///{tmp_path}/s.db",
    }
    worker = [sys.executable, str(ROOT / "worker.py")]
    api = [binary("infraudit"), "api"]
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        cases = [
            (worker, {"INFRAUDIT_LOG_FORMAT": "xml"}, 2, "log_format"),
            (worker, {"INFRAUDIT_SECRET_KEYS": ""}, 2, "INFRAUDIT_SECRET_KEYS"),
            (api, {"INFRAUDIT_API_PORT": "99999"}, 2, "api_port"),
            (api, {"INFRAUDIT_TEMPORAL_UI_PORT": "-5"}, 2, "temporal_ui_port"),
            (api, {"INFRAUDIT_API_METRICS_PORT": port}, 1, f"cannot listen on 127.0.0.1:{port}"),
            (worker, {"INFRAUDIT_WORKER_HTTP_PORT": port}, 1, f"cannot listen on 127.0.0.1:{port}"),
        ]
        for command, settings, code, named in cases:
            done = subprocess.run(
                command,
                env=clean_env(**{**keys, **settings}),
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            said = done.stdout + done.stderr
            assert done.returncode == code, (settings, said)
            assert "Traceback" not in said, (settings, said)
            [line] = [x for x in done.stderr.splitlines() if x.startswith("error:")]
            assert named in line, (settings, line)
