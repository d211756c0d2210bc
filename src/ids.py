"""Identifiers: random ones for things we create, derived ones for deliveries.

A delivery id is a pure function of (event id, endpoint id), and it is the DeliverWebhook
workflow id: publishing the same event again lands on the same workflow and delivers nothing twice.
"""

from __future__ import annotations

import base64
import hashlib
import secrets


def _token(nbytes: int) -> str:
    return base64.b32encode(secrets.token_bytes(nbytes)).decode().rstrip("=").lower()


def new_webhook_id() -> str:
    """A new endpoint id, ``wh_…``."""
    return f"wh_{_token(10)}"


def new_event_id() -> str:
    """A new event id, ``evt_…``, for events published without one."""
    return f"evt_{_token(15)}"


def new_secret() -> str:
    """A new signing secret, ``whsec_…`` (256 random bits)."""
    return f"whsec_{secrets.token_urlsafe(32)}"


def new_api_key() -> str:
    """A new API key; only its hash is stored."""
    return f"iak_{secrets.token_urlsafe(32)}"


def hash_api_key(key: str) -> str:
    """The stored form of an API key (keys are random, so a plain SHA-256 is enough)."""
    return hashlib.sha256(key.encode()).hexdigest()


def delivery_id(event_id: str, webhook_id: str) -> str:
    """The delivery id of one event to one endpoint, ``del_…``; stable across calls."""
    digest = hashlib.sha256(f"{event_id}\x00{webhook_id}".encode()).digest()
    return f"del_{base64.b32encode(digest[:15]).decode().lower()}"


def publish_workflow_id(org_id: str, event_id: str) -> str:
    """The PublishEvent workflow id: one per (org, event id), so a repeat publish is a no-op."""
    return f"publish:{org_id}:{event_id}"
