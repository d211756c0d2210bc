"""The engine's request and HTTP client, for the baselines that POST without the engine.

Envelope and signature come from :mod:`infraudit.signing`, the headers are the set the send
activity sends, so the receiver gets the same bytes and headers from every row (B and C). A and
B POST through the engine's own HTTP client (its pool and its egress guard, with private
targets allowed as in dev mode, since the receiver is on 127.0.0.1).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from infraudit import egress, signing
from infraudit.activities.send import USER_AGENT, new_http_client


def envelope_body(*, event: str, data: dict[str, Any], webhook_id: str, delivery_id: str) -> bytes:
    """The envelope of one delivery as the bytes that are signed and POSTed."""
    envelope = signing.build_envelope(
        event=event,
        timestamp=datetime.now(UTC),
        webhook_id=webhook_id,
        delivery_id=delivery_id,
        data=data,
    )
    return signing.envelope_body(envelope)


def signed_headers(
    body: bytes, *, secret: str, event: str, delivery_id: str, webhook_id: str
) -> dict[str, str]:
    """The request headers for ``body``, its signature under ``secret`` included."""
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        signing.SIGNATURE_HEADER: signing.sign(body, secret),
        signing.EVENT_HEADER: event,
        signing.DELIVERY_HEADER: delivery_id,
        signing.WEBHOOK_HEADER: webhook_id,
    }


def engine_http_client() -> httpx.AsyncClient:
    """The HTTP client a worker of the engine POSTs with, allowed to reach 127.0.0.1."""
    return new_http_client(egress.Guard(allow_private=True))
