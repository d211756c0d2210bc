"""Request and response bodies of the API. Responses list their fields explicitly, so nothing
internal (the secret above all) can leak by a model gaining a column."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from infraudit import event_data, events, urls
from infraudit.contract import EVENT_ID_PATTERN
from infraudit.deliveries import DeliveryRow
from infraudit.event_data import EventData
from infraudit.urls import MAX_URL_LENGTH

#: Where the OpenAPI document publishes the schema of one value inside an event's ``data``.
DATA_VALUE_REF = f"#/components/schemas/{event_data.VALUE_SCHEMA_NAME}"


class _In(BaseModel):
    """A request body: unknown fields refused, and no type coercion (``"enabled": 0`` or
    ``"true"`` is not a boolean), so what is accepted is what the OpenAPI document declares."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        """Refuse U+0000 in text: PostgreSQL cannot store it, and SQLite would keep what
        PostgreSQL refuses, so the same request would mean different things per store."""
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain the NUL character (U+0000)")
        return value


#: An event type customers may publish and subscribe to (the catalog less the reserved types).
#: The enum is for the OpenAPI document, so clients and schema-based testers know the valid
#: values; the validators still check, with a message naming them.
EventType = Annotated[
    str,
    Field(json_schema_extra={"enum": list(events.PUBLIC_TYPES)}),
]


def _event_types(values: list[str]) -> list[str]:
    for value in values:
        events.check_public(value)
    return sorted(set(values))


def _not_empty(values: object) -> object:
    """An empty list in words a person reads (the Settings page shows it beside the checkboxes);
    ``min_length=1`` still states the rule in the OpenAPI document."""
    if values == []:
        raise PydanticCustomError("too_short", "choose at least one event type")
    return values


class WebhookCreate(_In):
    """``POST /v1/webhooks``."""

    url: str = Field(
        max_length=MAX_URL_LENGTH,
        examples=["https://example.com/infraudit"],
        json_schema_extra={"format": urls.OPENAPI_FORMAT},
    )
    event_types: list[EventType] = Field(
        min_length=1, examples=[["drift.detected", "alert.created"]]
    )
    description: str = Field("", max_length=500)

    _check_types = field_validator("event_types")(_event_types)
    _check_not_empty = field_validator("event_types", mode="before")(_not_empty)


class WebhookUpdate(_In):
    """``PATCH /v1/webhooks/{id}``: only the given fields change."""

    url: str | None = Field(
        None, max_length=MAX_URL_LENGTH, json_schema_extra={"format": urls.OPENAPI_FORMAT}
    )
    event_types: list[EventType] | None = Field(None, min_length=1)
    description: str | None = Field(None, max_length=500)
    enabled: bool | None = None

    _check_not_empty = field_validator("event_types", mode="before")(_not_empty)

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
    """``POST /v1/events``: what ``data`` may hold is decided in ``infraudit.event_data``."""

    event: EventType = Field(examples=["drift.detected"])
    data: EventData = Field(
        default_factory=dict,
        description="A JSON object: at most 32 levels deep, integers within ±(2^53 - 1), "
        "no lone surrogates, at most INFRAUDIT_MAX_EVENT_BYTES minus 1 KiB as compact JSON.",
        json_schema_extra={"additionalProperties": {"$ref": DATA_VALUE_REF}},
    )
    id: str | None = Field(
        None,
        pattern=EVENT_ID_PATTERN,
        description="Idempotency key: the same id with the same event again is a harmless "
        "repeat; with another type, data or timestamp it is a 409.",
    )

    @field_validator("event")
    @classmethod
    def _publishable(cls, value: str) -> str:
        return events.check_public(value)


class EventAccepted(BaseModel):
    """``POST /v1/events``: one delivery id per endpoint subscribed when the event was accepted
    (docs/api.md says what a caller may rely on)."""

    event_id: str
    delivery_ids: list[str]


class PingAccepted(BaseModel):
    """``POST /v1/webhooks/{id}/test``."""

    delivery_id: str


class EventTypeOut(BaseModel):
    """One catalog entry; a reserved type is sent by the engine only (``webhook.ping``): it
    cannot be published or subscribed to, and every endpoint receives it when tested."""

    name: str
    description: str
    reserved: bool


class EventTypeList(BaseModel):
    """``GET /v1/event-types``."""

    data: list[EventTypeOut]


class DeliveryList(BaseModel):
    """``GET /v1/webhooks/{id}/deliveries``."""

    data: list[DeliveryRow]


class Readiness(BaseModel):
    """``GET /readyz``, 200 or 503: each dependency is ``ok`` or ``unavailable: <error type>``."""

    status: Literal["ok", "unavailable"]
    database: str
    temporal: str
