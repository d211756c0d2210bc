"""The JSON contract of the workflows and activities: inputs, outputs and the memo.

These models are what a Go or TypeScript service sends when it starts a workflow directly, so
they validate: a bad input fails the workflow with a message instead of retrying forever.
Field names here are the wire names documented in docs/workflows.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from infraudit import events
from infraudit.config import MAX_ATTEMPTS, Settings

DeliveryStatus = Literal["pending", "delivered", "failed"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeliveryPolicy(_Model):
    """How hard one delivery tries: the retry policy of its HTTP POST activity."""

    timeout_seconds: float = Field(gt=0)
    window_seconds: float = Field(gt=0)
    initial_interval_seconds: float = Field(gt=0)
    backoff_coefficient: float = Field(ge=1)
    max_attempts: int = Field(MAX_ATTEMPTS, ge=1, le=MAX_ATTEMPTS)

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryPolicy:
        """The policy the settings describe."""
        return cls(
            timeout_seconds=settings.http_timeout,
            window_seconds=settings.delivery_window,
            initial_interval_seconds=settings.retry_initial_interval,
            backoff_coefficient=settings.retry_backoff_coefficient,
        )


class _EventModel(_Model):
    event: str
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("event")
    @classmethod
    def _known_event(cls, value: str) -> str:
        return events.check_known(value)


class PublishEventInput(_EventModel):
    """Input of ``PublishEvent``: one event for one org, fanned out to its subscribers."""

    org_id: str = Field(min_length=1)
    event_id: str | None = Field(None, min_length=1, max_length=128)
    timestamp: datetime | None = None


class PublishEventResult(_Model):
    """Output of ``PublishEvent``: the event id and one delivery id per subscribed endpoint."""

    event_id: str
    delivery_ids: list[str]


class DeliverWebhookInput(_EventModel):
    """Input of ``DeliverWebhook``; its workflow id is the delivery id (``del_…``)."""

    webhook_id: str = Field(min_length=1)
    org_id: str = Field(min_length=1)
    event_id: str | None = None
    timestamp: datetime | None = None
    policy: DeliveryPolicy | None = None


class Attempt(_Model):
    """One HTTP POST attempt as the delivery log shows it."""

    attempt: int
    started_at: datetime
    duration_ms: int
    response_status: int | None = None
    response_body: str | None = None
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        """A 2xx answered in time: the delivery landed."""
        return (
            self.error is None
            and self.response_status is not None
            and (200 <= self.response_status < 300)
        )


class DeliveryOutcome(_Model):
    """Output of ``DeliverWebhook`` when delivered; also the ``result`` memo entry."""

    status: DeliveryStatus
    attempts: list[Attempt]
    error: str | None = None


class SendRequest(_Model):
    """Input of the ``send_webhook`` activity; the secret is loaded by the activity, not here."""

    delivery_id: str
    webhook_id: str
    event: str
    body: str
    timeout_seconds: float


class FanOutRequest(_Model):
    """Input of the ``fan_out_page`` activity: start deliveries for one page of subscribers."""

    org_id: str
    event: str
    event_id: str
    data: dict[str, Any]
    timestamp: datetime
    after_webhook_id: str | None = None
    page_size: int = Field(500, ge=1, le=2000)


class FanOutPage(_Model):
    """Output of ``fan_out_page``; ``next_after`` is None on the last page."""

    delivery_ids: list[str]
    next_after: str | None = None


class MemoResult(_Model):
    """The ``result`` memo entry: what a delivery-log row shows once the delivery ended."""

    status: DeliveryStatus
    attempt_count: int
    response_status: int | None = None
    response_body: str | None = None
    timestamp: datetime | None = None
    error: str | None = None

    @classmethod
    def from_attempts(
        cls, status: DeliveryStatus, attempts: list[Attempt], error: str | None
    ) -> MemoResult:
        """The row for a delivery that made ``attempts``; the last one speaks for it."""
        last = attempts[-1] if attempts else None
        return cls(
            status=status,
            attempt_count=len(attempts),
            response_status=last.response_status if last else None,
            response_body=last.response_body if last else None,
            timestamp=last.started_at if last else None,
            error=error,
        )


#: Memo keys: ``payload`` holds the envelope exactly as sent, ``result`` a :class:`MemoResult`.
MEMO_PAYLOAD = "payload"
MEMO_RESULT = "result"

#: Workflow type names, the names other SDKs start them by.
PUBLISH_EVENT = "PublishEvent"
DELIVER_WEBHOOK = "DeliverWebhook"
