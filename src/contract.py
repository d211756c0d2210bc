"""The JSON contract of the workflows and activities: inputs, outputs and the memo.

These models are what a Go or TypeScript service sends when it starts a workflow directly, so
they validate: a bad input fails the workflow with a message instead of retrying forever.
Field names here are the wire names documented in docs/workflows.md.

Two kinds of model, on purpose:

- **Inputs from other services** (``PublishEventInput``, ``DeliverWebhookInput`` and its
  ``DeliveryPolicy``) are strict: unknown fields are refused, and whatever validates can run.
  Every value is bounded so that it makes a valid workflow id, search attribute, envelope and
  retry policy; a starter learns of a mistake from the failed workflow, not from a delivery
  that quietly never happens.
- **Models we write and read ourselves** (activity inputs and results, the memo, workflow
  results) ignore fields they do not know: during a rolling deploy old and new workers run side
  by side, and an old worker must read what a new one wrote.

This module is a leaf: it imports nothing of the process (no settings, no I/O).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from infraudit import events, ids
from infraudit.event_data import EventData

DeliveryStatus = Literal["pending", "delivered", "failed"]

#: The guide promises three attempts; not a setting, because changing it breaks a promise.
MAX_ATTEMPTS = 3

#: Bounds of a delivery's retry policy, in seconds (the settings obey them too). They keep every
#: value a valid Temporal duration: the product promises 10 s per attempt and a 30-minute window,
#: and a delivery still retrying after a day is no longer a webhook.
MIN_TIMEOUT_SECONDS = 0.01
MAX_TIMEOUT_SECONDS = 300.0
MIN_WINDOW_SECONDS = 1.0
MAX_WINDOW_SECONDS = 86_400.0
MIN_INTERVAL_SECONDS = 0.01
MAX_BACKOFF_COEFFICIENT = 100.0

#: The retry policy the customer guide promises (spec/customer-guide.txt): 10 s per attempt,
#: the second attempt 5 minutes after the first, each later wait 3 times the one before, all
#: within 30 minutes. A ``DeliverWebhookInput`` without ``policy`` gets it, and the settings'
#: defaults are these values: workflow code reads its input and this module, never settings.
DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_WINDOW_SECONDS = 1800.0
DEFAULT_INTERVAL_SECONDS = 300.0
DEFAULT_BACKOFF_COEFFICIENT = 3.0

#: Identifier formats. Each keeps ``publish:<org_id>:<event_id>`` unambiguous (no ``:`` in an
#: org id) and under Temporal's workflow id limit, and each is safe in an HTTP header, a search
#: attribute and a visibility query. ``ORG_ID_PATTERN`` is the store's org id rule.
ORG_ID_PATTERN = ids.ORG_ID_PATTERN
EVENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
WEBHOOK_ID_PATTERN = r"^wh_[A-Za-z0-9]{1,64}$"


def schedule_problem(
    *,
    timeout_seconds: float,
    window_seconds: float,
    initial_interval_seconds: float,
    backoff_coefficient: float,
    max_attempts: int = MAX_ATTEMPTS,
) -> str | None:
    """Why the last attempt might not start inside the window, or None when it always can.

    The last attempt starts at worst after every earlier attempt used its whole timeout and
    every wait between them (``initial * backoff^k``) passed; Temporal would end the activity
    with a timeout before it, so a policy that cannot fit its attempts promises what it cannot do.
    """
    waits = sum(initial_interval_seconds * backoff_coefficient**k for k in range(max_attempts - 1))
    last_start = waits + (max_attempts - 1) * timeout_seconds
    if last_start < window_seconds:
        return None
    return (
        f"retry schedule does not fit: attempt {max_attempts} would start {last_start:g}s after "
        f"the first ({max_attempts - 1} waits and {max_attempts - 1} timeouts of "
        f"{timeout_seconds:g}s), not inside the {window_seconds:g}s delivery window"
    )


class _Strict(BaseModel):
    """An input another service sends: unknown fields are an error.

    Validation messages leave the offending value out (``hide_input_in_errors``): they become
    the failed workflow's message and the worker's log, and the value may be event data.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class _Tolerant(BaseModel):
    """A model we write and read ourselves: fields a newer worker added are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class DeliveryPolicy(_Strict):
    """How hard one delivery tries: the retry policy of its HTTP POST activity."""

    model_config = ConfigDict(allow_inf_nan=False)

    timeout_seconds: float = Field(
        DEFAULT_TIMEOUT_SECONDS, ge=MIN_TIMEOUT_SECONDS, le=MAX_TIMEOUT_SECONDS
    )
    window_seconds: float = Field(
        DEFAULT_WINDOW_SECONDS, ge=MIN_WINDOW_SECONDS, le=MAX_WINDOW_SECONDS
    )
    initial_interval_seconds: float = Field(
        DEFAULT_INTERVAL_SECONDS, ge=MIN_INTERVAL_SECONDS, le=MAX_WINDOW_SECONDS
    )
    backoff_coefficient: float = Field(
        DEFAULT_BACKOFF_COEFFICIENT, ge=1, le=MAX_BACKOFF_COEFFICIENT
    )
    max_attempts: int = Field(MAX_ATTEMPTS, ge=1, le=MAX_ATTEMPTS)

    @model_validator(mode="after")
    def _attempts_fit_the_window(self) -> DeliveryPolicy:
        problem = schedule_problem(
            timeout_seconds=self.timeout_seconds,
            window_seconds=self.window_seconds,
            initial_interval_seconds=self.initial_interval_seconds,
            backoff_coefficient=self.backoff_coefficient,
            max_attempts=self.max_attempts,
        )
        if problem:
            raise ValueError(problem)
        return self


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_TIMESTAMP_RULE = "an RFC 3339 date-time with an offset, e.g. 2026-11-29T10:30:00Z"


def _rfc3339_text(value: object) -> object:
    """Let through a datetime (Python callers) or RFC 3339 text; pydantic parses the text.

    pydantic alone would also take a bare date, a time without an offset, or a number of
    seconds (or milliseconds: it guesses), none of which says one moment unambiguously.
    """
    if isinstance(value, datetime) or (isinstance(value, str) and _RFC3339.match(value)):
        return value
    raise ValueError(f"must be {_TIMESTAMP_RULE}, got {value!r}")


def _utc(value: datetime) -> datetime:
    """The moment in UTC, within the years the envelope's ``YYYY-MM-DDTHH:MM:SSZ`` can show."""
    if value.utcoffset() is None:
        raise ValueError(f"has no offset; must be {_TIMESTAMP_RULE}")
    try:
        moment = value.astimezone(UTC)
    except OverflowError:
        moment = None
    if moment is None or not 1000 <= moment.year <= 9999:
        raise ValueError("must fall in the years 1000-9999 (UTC)")
    return moment


#: An event's ``timestamp``: RFC 3339 with an offset, normalised to UTC.
EventTimestamp = Annotated[datetime, BeforeValidator(_rfc3339_text), AfterValidator(_utc)]


class PublishEventInput(_Strict):
    """Input of ``PublishEvent``: one event for one org, fanned out to its subscribers."""

    org_id: str = Field(pattern=ORG_ID_PATTERN)
    event: str
    data: EventData = Field(default_factory=dict)
    event_id: str | None = Field(None, pattern=EVENT_ID_PATTERN)
    timestamp: EventTimestamp | None = None

    @field_validator("event")
    @classmethod
    def _publishable(cls, value: str) -> str:
        return events.check_public(value)

    def same_event(self, other: PublishEventInput) -> bool:
        """Whether ``other`` publishes the same event: type, data and explicit timestamp.

        ``data`` is compared as JSON values (key order does not matter, ``1`` and ``1.0``
        differ, as they do on the wire); org and event id are the workflow id, so equal already.
        """
        return self._content() == other._content()

    def _content(self) -> str:
        content = {
            "event": self.event,
            "data": self.data,
            "timestamp": self.timestamp.isoformat() if self.timestamp else None,
        }
        return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class FailedStart(_Tolerant):
    """An endpoint whose delivery could not be started because of that endpoint's own data (say,
    a webhook id Temporal refuses as a search attribute); ``reason`` is the error, never the URL.
    The other endpoints' deliveries go ahead."""

    webhook_id: str
    reason: str


class PublishEventResult(_Tolerant):
    """Output of ``PublishEvent``: the event id, one delivery id per subscribed endpoint whose
    delivery started, and the endpoints whose delivery could not start (usually none)."""

    event_id: str
    delivery_ids: list[str]
    failed: list[FailedStart] = Field(default_factory=list)


class DeliverWebhookInput(_Strict):
    """Input of ``DeliverWebhook``; its workflow id is the delivery id (``del_…``).

    Unlike ``PublishEvent`` it accepts the reserved ``webhook.ping``: test pings are deliveries.
    """

    webhook_id: str = Field(pattern=WEBHOOK_ID_PATTERN)
    org_id: str = Field(pattern=ORG_ID_PATTERN)
    event: str
    data: EventData = Field(default_factory=dict)
    event_id: str | None = Field(None, pattern=EVENT_ID_PATTERN)
    timestamp: EventTimestamp | None = None
    #: None (or absent) means the guide's policy, ``DeliveryPolicy()``; our starters always set
    #: the one their settings describe.
    policy: DeliveryPolicy | None = None

    @property
    def effective_policy(self) -> DeliveryPolicy:
        """The policy this delivery runs with: its own, or the contract's default."""
        return self.policy or DeliveryPolicy()

    @field_validator("event")
    @classmethod
    def _known(cls, value: str) -> str:
        return events.check_known(value)


class Attempt(_Tolerant):
    """One HTTP POST attempt as the delivery log shows it.

    An attempt is recorded before its POST is sent, with no ``duration_ms`` and no outcome yet
    (*in flight*), so that every POST that may have reached the receiver is in the log even if
    the worker dies during it; the record gets its outcome when the POST ends. ``error`` says
    why an attempt failed (no answer, or "worker lost during the attempt"); ``note`` says what
    went wrong after the receiver answered (say, the connection reset mid-body), which never
    changes the outcome: a 2xx with a broken body is delivered. ``started_at`` is null only
    for an attempt known by its number alone (a worker lost before it could record one).
    ``note`` and the nullable fields were added later: records written before still validate.
    """

    attempt: int = Field(ge=1)
    started_at: datetime | None = None
    duration_ms: int | None = None
    response_status: int | None = None
    response_body: str | None = None
    error: str | None = None
    note: str | None = None

    @property
    def in_flight(self) -> bool:
        """Recorded as started but with no outcome: still running, or its worker was lost."""
        return self.duration_ms is None and self.error is None

    @property
    def succeeded(self) -> bool:
        """The receiver answered 2xx in time: the delivery landed (whatever the ``note``)."""
        return (
            self.error is None
            and self.response_status is not None
            and (200 <= self.response_status < 300)
        )


class DeliveryOutcome(_Tolerant):
    """Output of ``DeliverWebhook`` when delivered; also the ``result`` memo entry."""

    status: DeliveryStatus
    attempts: list[Attempt]
    error: str | None = None


class SendRequest(_Tolerant):
    """Input of the ``send_webhook`` activity; the secret is loaded by the activity, not here.

    ``org_id`` is the org the delivery was started for: the activity sends only when that org
    owns ``webhook_id`` (issue 7). It is None only in requests scheduled by a workflow of an
    earlier release, which did not pass it; those keep the old behaviour until they end.

    ``first_attempt`` is the delivery's attempt number of this activity's first attempt, and
    ``earlier`` the records of the attempts before it: ``DeliverWebhook`` makes attempt 1 as a
    local activity and the rest as one regular activity that goes on from there.
    """

    delivery_id: str
    webhook_id: str
    event: str
    body: str
    timeout_seconds: float
    org_id: str | None = None
    first_attempt: int = Field(1, ge=1)
    earlier: list[Attempt] = Field(default_factory=list)


class FanOutRequest(_Tolerant):
    """Input of the ``fan_out_page`` activity: start deliveries for one page of subscribers."""

    org_id: str
    event: str
    event_id: str
    data: dict[str, Any]
    timestamp: datetime
    after_webhook_id: str | None = None
    page_size: int = Field(500, ge=1, le=2000)


class FanOutPage(_Tolerant):
    """Output of ``fan_out_page``; ``next_after`` is None on the last page."""

    delivery_ids: list[str]
    next_after: str | None = None
    failed: list[FailedStart] = Field(default_factory=list)


class MemoResult(_Tolerant):
    """The ``result`` memo entry: what a delivery-log row shows once the delivery ended, or
    while it waits between its first attempt and the next.

    ``attempts`` lists every attempt, and ``next_attempt_at`` says when the next is due, only
    while the delivery waits for its second attempt (its detail has nowhere else to read the
    local first attempt from then); once it ended they are in its result.
    """

    status: DeliveryStatus
    attempt_count: int
    response_status: int | None = None
    response_body: str | None = None
    timestamp: datetime | None = None
    error: str | None = None
    attempts: list[Attempt] | None = None
    next_attempt_at: datetime | None = None

    @classmethod
    def from_attempts(
        cls,
        status: DeliveryStatus,
        attempts: list[Attempt],
        error: str | None,
        *,
        next_attempt_at: datetime | None = None,
    ) -> MemoResult:
        """The row for a delivery that made ``attempts``; the last one speaks for it.

        With ``next_attempt_at`` (a delivery waiting for its next attempt) the attempts
        themselves are kept too.
        """
        last = attempts[-1] if attempts else None
        return cls(
            status=status,
            attempt_count=len(attempts),
            response_status=last.response_status if last else None,
            response_body=last.response_body if last else None,
            timestamp=last.started_at if last else None,
            error=error,
            attempts=attempts if next_attempt_at else None,
            next_attempt_at=next_attempt_at,
        )


#: Memo keys: ``payload`` holds the envelope exactly as sent, ``result`` a :class:`MemoResult`.
MEMO_PAYLOAD = "payload"
MEMO_RESULT = "result"

#: Workflow type names, the names other SDKs start them by.
PUBLISH_EVENT = "PublishEvent"
DELIVER_WEBHOOK = "DeliverWebhook"
