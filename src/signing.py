"""The envelope and its signature: built, serialised and signed here and nowhere else.

The engine, the tests and customers' receivers all use this module. The body is serialised once
to compact JSON bytes; those exact bytes are signed and sent, identical on every attempt, so a
receiver verifies the raw body it got, never a re-serialisation of it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

SIGNATURE_HEADER = "X-InfraAudit-Signature"
EVENT_HEADER = "X-InfraAudit-Event"
DELIVERY_HEADER = "X-InfraAudit-Delivery"
WEBHOOK_HEADER = "X-InfraAudit-Webhook"
_PREFIX = "sha256="


def format_timestamp(moment: datetime) -> str:
    """UTC RFC 3339 with a ``Z`` suffix and whole seconds, as the guide shows."""
    if moment.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_envelope(
    *, event: str, timestamp: datetime, webhook_id: str, delivery_id: str, data: dict[str, Any]
) -> dict[str, Any]:
    """The envelope as a mapping, keys in the guide's order."""
    return {
        "event": event,
        "timestamp": format_timestamp(timestamp),
        "webhook_id": webhook_id,
        "delivery_id": delivery_id,
        "data": data,
    }


def envelope_body(envelope: dict[str, Any]) -> bytes:
    """Serialise an envelope once: compact, UTF-8, key order kept."""
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()


def sign(body: bytes, secret: str) -> str:
    """The signature header value: ``sha256=<hex HMAC-SHA256(secret, body)>``."""
    return _PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, secret: str, header: str | None) -> bool:
    """Whether ``header`` is the signature of ``body`` under ``secret`` (constant-time)."""
    if not header:
        return False
    return hmac.compare_digest(sign(body, secret).encode(), header.strip().encode())
