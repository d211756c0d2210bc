"""The API on SIGTERM stops accepting and finishes what it has (issue 10, "Processes that behave").

A deploy sends SIGTERM to an ``infraudit api`` (uvicorn) process that is in the middle of a
request. The request under way gets its whole answer, new connections are refused from the
moment the shutdown begins (the load balancer moves on to another API), and the process exits
soon after the last answer. To keep a request under way for as long as the test needs, the
API's Temporal (a dev server of the test's own) is hung with SIGSTOP while it publishes an
event, and its calls are given a deadline longer than the test.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from pathlib import Path

import httpx
from temporalio.client import Client

from infraudit.cli.commands import create_api_key
from infraudit.config import Settings
from tests.api_process import ApiProcess, api_env, api_process
from tests.cli_support import free_port
from tests.temporal_server import TemporalServer
from tests.worker_process import worker_env

#: Seconds the API's Temporal calls may take here (the default, 2 s, would end the hung publish
#: with a 503 before the test has sent SIGTERM and checked the listening socket).
RPC_DEADLINE = 30.0
#: Seconds the publish is held before SIGTERM (long enough to be under way in the API), and
#: again after the listener closed (so the shutdown has to wait for it).
HELD = 1.0


async def refused(api: ApiProcess, within: float = 5.0) -> None:
    """Return once a new TCP connection to the API is refused (its listening socket closed)."""
    host, port = api.url.removeprefix("http://").split(":")
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            _, writer = await asyncio.open_connection(host, int(port))
        except ConnectionRefusedError:
            return
        writer.close()
        await writer.wait_closed()
        assert asyncio.get_running_loop().time() < deadline, "still accepting after SIGTERM"
        await asyncio.sleep(0.05)


async def test_sigterm_finishes_the_request_under_way_and_refuses_new_connections(
    client: Client, settings: Settings, org_id: str, tmp_path: Path
) -> None:
    own = settings.model_copy(
        update={"temporal_address": f"127.0.0.1:{free_port()}", "temporal_ui_port": free_port()}
    )
    env = api_env(
        worker_env(client, database_url=settings.database_url, task_queue=uuid.uuid4().hex)
    )
    env["INFRAUDIT_TEMPORAL_ADDRESS"] = own.temporal_address
    env["INFRAUDIT_TEMPORAL_RPC_TIMEOUT"] = str(RPC_DEADLINE)
    state = tmp_path / "temporal"
    state.mkdir()
    server = TemporalServer(own, state)
    key = await create_api_key(settings.database_url, org_id)
    await server.start()
    try:
        with api_process(env, tmp_path / "api.log") as api:
            await api.ready()
            async with httpx.AsyncClient(
                base_url=api.url, headers={"Authorization": f"Bearer {key}"}, timeout=RPC_DEADLINE
            ) as http:
                server.pause()
                try:
                    under_way = asyncio.create_task(
                        http.post("/v1/events", json={"event": "drift.detected", "id": "evt_stop"})
                    )
                    await asyncio.sleep(HELD)
                    assert not under_way.done(), "the publish did not wait for Temporal"
                    api.process.send_signal(signal.SIGTERM)
                    await refused(api)
                    await asyncio.sleep(HELD)  # the shutdown is under way too, and waits
                    assert not under_way.done(), "the request under way ended with the listener"
                    assert api.process.poll() is None, "the API exited before answering"
                finally:
                    server.resume()
                answer = await under_way
            answered = time.monotonic()
            status = await asyncio.to_thread(api.process.wait, 10)
            exited = time.monotonic() - answered
            log = api.log()
    finally:
        server.stop()

    assert answer.status_code == 202, answer.text
    assert answer.json()["event_id"] == "evt_stop"
    assert exited < 10, exited
    # uvicorn, once shut down cleanly, raises the SIGTERM it handled again: the process ends
    # killed by it (a shell shows 143), as docs/operations.md "Failure behaviour" says.
    assert status == -signal.SIGTERM, (status, log)
    assert "Waiting for connections to close" in log
    assert "Traceback" not in log
