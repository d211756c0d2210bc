"""The local receiver of ``infraudit listen``."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from infraudit import signing
from infraudit.listen import create_listener


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
