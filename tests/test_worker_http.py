"""The worker's /healthz and /readyz (issue 10), and the small HTTP server behind them.

A real worker process (``python worker.py``) reaches the session's dev server through a TCP
relay of this test's, so Temporal can be made unreachable from the worker alone: closing the
relay is an outage for it, opening it again ends the outage. ``/healthz`` answers throughout;
``/readyz`` is 503 while the worker has no Temporal (before it first connected, and during the
outage) and 200 when it is connected, its store answers and it polls.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest
from temporalio.client import Client

from infraudit import ops_http
from infraudit.config import Settings
from tests.cli_support import free_port
from tests.helpers import eventually
from tests.relay import Relay
from tests.worker_process import worker_env, worker_process


async def get(url: str) -> tuple[int, Any]:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(url)
    return response.status_code, response.json()


async def test_readyz_follows_temporal_while_healthz_answers_throughout(
    client: Client, database_url: str, tmp_path: Path
) -> None:
    host, _, port = client.service_client.config.target_host.rpartition(":")
    relay = Relay(host, int(port))
    http_port = free_port()
    env = worker_env(client, database_url=database_url, task_queue=f"probe-{uuid.uuid4().hex}")
    env["INFRAUDIT_TEMPORAL_ADDRESS"] = f"127.0.0.1:{relay.port}"
    env["INFRAUDIT_WORKER_HTTP_PORT"] = str(http_port)
    base = f"http://127.0.0.1:{http_port}"

    async def answers(path: str) -> tuple[int, Any] | None:
        try:
            return await get(f"{base}{path}")
        except httpx.TransportError:
            return None

    # The relay closes only after the worker stopped: a stopping worker tells Temporal so.
    try:
        with worker_process(env, tmp_path / "worker.log") as worker:
            # Temporal not reachable yet: the worker is alive and says what it waits for.
            assert await eventually(lambda: answers("/healthz"), lambda a: a is not None) == (
                200,
                {"status": "ok"},
            )
            assert await get(f"{base}/readyz") == (
                503,
                {
                    "status": "unavailable",
                    "database": "ok",
                    "temporal": "unavailable: not connected yet",
                    "polling": "unavailable: not polling",
                },
            )
            await relay.open()
            await worker.ready()
            ready = {"status": "ok", "database": "ok", "temporal": "ok", "polling": "ok"}
            assert await eventually(lambda: get(f"{base}/readyz"), lambda a: a[0] == 200) == (
                200,
                ready,
            )
            # Temporal gone: not ready, naming it; the store and the process are fine.
            await relay.close()
            _, body = await eventually(
                lambda: get(f"{base}/readyz"), lambda a: a[0] == 503, within=10
            )
            assert body["temporal"].startswith("unavailable: ")
            assert body["database"] == "ok"
            assert await get(f"{base}/healthz") == (200, {"status": "ok"})
            # Temporal back: ready again, without a restart.
            await relay.open()
            await eventually(lambda: get(f"{base}/readyz"), lambda a: a == (200, ready), within=15)
            # Stopped off the event loop, which the relay needs to carry the worker's goodbye.
            await asyncio.to_thread(worker.stop)
    finally:
        if relay.server is not None:
            await relay.close()


async def raw(port: int, request: bytes) -> bytes:
    """Everything the server at ``port`` answers to ``request`` before it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    try:
        return await reader.read()
    finally:
        writer.close()


async def test_the_probe_server_answers_only_what_it_serves() -> None:
    async def fine() -> ops_http.Response:
        return ops_http.Response(200, json.dumps({"status": "ok"}).encode())

    async def broken() -> ops_http.Response:
        raise RuntimeError("a bug")

    port = free_port()
    routes: dict[str, ops_http.Route] = {"/fine": fine, "/broken": broken}
    async with (
        ops_http.serving("127.0.0.1", port, routes, what="a test"),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http,
    ):
        ok = await http.get("/fine?x=1")
        assert (ok.status_code, ok.json()) == (200, {"status": "ok"})
        assert ok.headers["connection"] == "close"
        # HEAD: the GET's head, no body (read off the socket: an HTTP client would skip one).
        head = await raw(port, b"HEAD /fine HTTP/1.1\r\nHost: x\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n"), head
        assert (await http.get("/elsewhere")).status_code == 404
        assert (await http.post("/fine", content=b"x")).status_code == 405
        assert (await http.get("/broken")).status_code == 500
        assert (await raw(port, b"nonsense\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
        # A second listener on the same port is one clear error, not a traceback.
        try:
            async with ops_http.serving("127.0.0.1", port, routes, what="a second test"):
                raise AssertionError("bound a port in use")
        except ops_http.ListenError as err:
            assert str(err).startswith(f"cannot listen on 127.0.0.1:{port} for a second test: ")


def test_the_engine_ports_must_differ() -> None:
    """Under `make run` the API, its metrics and the worker share one environment."""
    assert Settings(worker_http_port=8001, api_metrics_port=8002).worker_http_port == 8001
    with pytest.raises(pydantic.ValidationError, match="INFRAUDIT_WORKER_HTTP_PORT and "):
        Settings(worker_http_port=8000)
    with pytest.raises(pydantic.ValidationError, match="both 9000"):
        Settings(worker_http_port=9000, api_metrics_port=9000)
