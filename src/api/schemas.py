"""Request and response bodies of the API. Responses list their fields explicitly, so nothing
internal (the secret above all) can leak by a model gaining a column."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from infraudit import events
from infraudit.deliveries import DeliveryRow

MAX_URL_LENGTH = 2048
EVENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _event_types(values: list[str]) -> list[str]:
    for value in values:
        events.check_known(value)
    return sorted(set(values))


def check_endpoint_url(url: str, *, dev: bool) -> str | None:
    """Why ``url`` cannot be an endpoint, or None when it can.

    Outside dev mode only https to a public host is allowed: plain http leaks the payload, and a
    loopback or private address would let a customer make our workers call our own network.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "must be an absolute http(s) URL"
    if dev:
        return None
    if parts.scheme != "https":
        return "must use https (http is accepted only in dev mode)"
    host = parts.hostname.lower()
    if host == "localhost" or host.endswith((".localhost", ".internal", ".local")):
        return "must not point at a local host (accepted only in dev mode)"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if not address.is_global:
        return "must not point at a loopback, private or reserved address (dev mode only)"
    return None


class WebhookCreate(_In):
    """``POST /v1/webhooks``."""

    url: str = Field(max_length=MAX_URL_LENGTH, examples=["https://example.com/infraudit"])
    event_types: list[str] = Field(min_length=1, examples=[["drift.detected", "alert.created"]])
    description: str = Field("", max_length=500)

    _check_types = field_validator("event_types")(_event_types)


class WebhookUpdate(_In):
    """``PATCH /v1/webhooks/{id}``: only the given fields change."""

    url: str | None = Field(None, max_length=MAX_URL_LENGTH)
    event_types: list[str] | None = Field(None, min_length=1)
    description: str | None = Field(None, max_length=500)
    enabled: bool | None = None

    @field_validator("event_types")
    @classmethod
    def _check_types(cls, values: list[str] | None) -> list[str] | None:
        return None if values is None else _event_types(values)


class WebhookOut(BaseModel):
    """An endpoint as the API shows it: read from the model by these names only, never the
    secret."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    url: str
    event_types: list[str]
    description: str
    enabled: bool
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookOut):
    """The create response: the only one that ever carries ``secret``."""

    secret: str


class WebhookList(BaseModel):
    """``GET /v1/webhooks``."""

    data: list[WebhookOut]


class EventIn(_In):
    """``POST /v1/events``."""

    event: str = Field(examples=["drift.detected"])
    data: dict[str, Any] = Field(default_factory=dict)
    id: str | None = Field(None, pattern=EVENT_ID_PATTERN, description="Idempotency key.")

    @field_validator("event")
    @classmethod
    def _known(cls, value: str) -> str:
        return events.check_known(value)


class EventAccepted(BaseModel):
    """``POST /v1/events``: ``delivery_ids`` is null while a large fan-out is still running."""

    event_id: str
    delivery_ids: list[str] | None


class PingAccepted(BaseModel):
    """``POST /v1/webhooks/{id}/test``."""

    delivery_id: str


class EventTypeOut(BaseModel):
    """One catalog entry."""

    name: str
    description: str


class EventTypeList(BaseModel):
    """``GET /v1/event-types``."""

    data: list[EventTypeOut]


class DeliveryList(BaseModel):
    """``GET /v1/webhooks/{id}/deliveries``."""

    data: list[DeliveryRow]
