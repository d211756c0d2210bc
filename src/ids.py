"""Identifiers: random ones for things we create, derived ones for deliveries.

A delivery id is a pure function of (event id, endpoint id), and it is the DeliverWebhook
workflow id: publishing the same event again lands on the same workflow and delivers nothing twice.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

#: An org id: what the store accepts and the workflow contract checks. No ``:``, so
#: ``publish:<org_id>:<event_id>`` stays unambiguous; safe in a header and a visibility query.
ORG_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
#: The form :func:`delivery_id` makes: ``del_`` and 24 lowercase base32 characters.
DELIVERY_ID_PATTERN = r"^del_[a-z2-7]{24}$"


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


def delivery_id_problem(workflow_id: str, *, event_id: str | None, webhook_id: str) -> str | None:
    """Why ``workflow_id`` cannot be the id of this delivery, or None when it can.

    It travels in the envelope and in the ``X-InfraAudit-Delivery`` header, and receivers dedupe
    on it, so it must have the documented form; with an event id it must be the one derived from
    (event id, endpoint id), or the same event could reach the same endpoint twice.
    """
    if not re.fullmatch(DELIVERY_ID_PATTERN, workflow_id):
        return (
            f"workflow id {workflow_id!r} is not a delivery id: expected del_ and 24 characters "
            "a-z, 2-7 (infraudit.ids.delivery_id)"
        )
    if event_id is not None and workflow_id != delivery_id(event_id, webhook_id):
        return (
            f"workflow id {workflow_id!r} is not the delivery id of event {event_id!r} to "
            f"{webhook_id!r}; start it as {delivery_id(event_id, webhook_id)!r}"
        )
    return None
