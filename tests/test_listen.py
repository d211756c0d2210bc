"""The local receiver of ``infraudit listen``."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from infraudit import signing
from infraudit.cli.listen import create_listener
from infraudit.config import Settings
from tests.cli_support import clean_env, free_port, port_is_free
from tests.conftest import Endpoints
from tests.helpers import eventually, start_test_delivery


def signed_delivery(secret: str) -> tuple[bytes, dict[str, str]]:
    body = signing.envelope_body(
        signing.build_envelope(
            event="webhook.ping",
            timestamp=datetime(2026, 1, 1, tzinfo=UTC),
            webhook_id="wh_1",
            delivery_id="del_1",
            data={"hello": "world"},
        )
    )
    headers = {
        signing.SIGNATURE_HEADER: signing.sign(body, secret),
        signing.EVENT_HEADER: "webhook.ping",
        signing.DELIVERY_HEADER: "del_1",
        "Content-Type": "application/json",
    }
    return body, headers


async def test_listener_checks_signatures_and_answers_the_chosen_status() -> None:
    lines: list[str] = []
    app = create_listener(secret="whsec_abc", status=503, echo=lines.append)
    body, headers = signed_delivery("whsec_abc")
    forged, forged_headers = signed_delivery("whsec_other")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://listener"
    ) as http:
        good = await http.post("/any/path", content=body, headers=headers)
        bad = await http.post("/", content=forged, headers=forged_headers)
    assert good.status_code == bad.status_code == 503
    assert lines[0] == "webhook.ping del_1: signature valid"
    assert '"hello": "world"' in lines[1]
    assert lines[2] == "webhook.ping del_1: SIGNATURE INVALID"


@pytest.mark.usefixtures("worker")
async def test_engine_delivers_to_infraudit_listen(
    client: Client, settings: Settings, endpoints: Endpoints, org_id: str, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hooks/infraaudit"
    webhook_id, secret = await endpoints.add(org_id, url)
    output = tmp_path / "listen.out"
    with output.open("w") as sink:
        command = ["-m", "infraudit.cli", "listen", "--port", str(port), "--secret", secret]
        listener = await asyncio.create_subprocess_exec(
            sys.executable,
            *command,
            "--quiet",
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=clean_env(),
            cwd=tmp_path,
        )
        try:
            await eventually(lambda: asyncio.to_thread(port_is_free, port), lambda free: not free)
            handle = await start_test_delivery(
                client, settings, org_id=org_id, webhook_id=webhook_id, url=url
            )
            outcome = await handle.result()
        finally:
            listener.send_signal(signal.SIGINT)
            async with asyncio.timeout(20):
                await listener.wait()
    assert outcome.status == "delivered"
    assert f"drift.detected {handle.id}: signature valid" in output.read_text()
