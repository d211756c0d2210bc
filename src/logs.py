"""The one logging setup of every process: the worker, the API (uvicorn's own loggers and its
access log included) and so the children of ``infraudit up``, which run those two commands.

``INFRAUDIT_LOG_FORMAT=text`` (the default, what ``make run`` shows) writes
``<time> <LEVEL> <logger> <message>`` lines, to which Temporal's SDK appends the activity or
workflow a line comes from. ``json`` writes one JSON object per line, for a log collector, with
the keys of :data:`JSON_KEYS`, absent when unknown:

- ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``; ``exc_info`` for a traceback;
- ``delivery_id``: the DeliverWebhook workflow's id, read from the context that Temporal's
  ``activity.logger`` and ``workflow.logger`` put in ``extra`` (``temporal_activity`` and
  ``temporal_workflow``); ``activity`` and ``workflow``: their types; ``attempt``: the
  activity's attempt by Temporal's count;
- ``webhook_id``, ``event`` and the delivery's own ``attempt`` number (which Temporal's count
  is not once attempt 1 ran as a local activity): what an activity declared with :func:`bind`.

Nothing else a library adds to a record (uvicorn's ``color_message``, Temporal's context dicts)
is written: an allow-list, so a new ``extra`` cannot carry something secret into the log.

What never reaches the log at any level: the HTTP client's lines (``httpx`` logs whole endpoint
URLs, userinfo and query string included, so only its warnings pass) and the query string of the
API's access log lines (a client may put a token there). The rest is kept out where it is logged:
endpoint URLs are redacted (:func:`infraudit.urls.redact`), and secrets, API keys and payloads
are never arguments of a log call.
"""

from __future__ import annotations

import logging
import logging.config
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.json import JsonFormatter
from temporalio import activity, workflow
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)

from infraudit.config import Settings
from infraudit.contract import DELIVER_WEBHOOK

#: The text format (``INFRAUDIT_LOG_FORMAT=text``).
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
#: What a JSON line may hold, in this order: the line itself, then what it is about.
JSON_KEYS = (
    "time",
    "level",
    "logger",
    "message",
    "delivery_id",
    "webhook_id",
    "event",
    "attempt",
    "activity",
    "workflow",
    "exc_info",
)
#: Loggers that write whole endpoint URLs (credentials and tokens included) below WARNING.
URL_LOGGERS = ("httpx", "httpcore")
#: uvicorn's access logger, whose message arguments are (client, method, path, version, status).
ACCESS_LOGGER = "uvicorn.access"
#: The logger that Temporal's core (the SDK's Rust part) writes through (:func:`temporal_core`).
CORE_LOGGER = "temporalio.core"

_bound: ContextVar[Mapping[str, object] | None] = ContextVar("infraudit_log_fields", default=None)


def bind(
    *, webhook_id: str | None = None, event: str | None = None, attempt: int | None = None
) -> None:
    """Put what an activity is about on every JSON line logged from here on in this task:
    ``attempt`` is the delivery's attempt number, which replaces Temporal's count.

    Call it first thing in an activity: Temporal runs each activity in an asyncio task of its
    own, whose context this changes, so the fields last exactly as long as that activity
    (the SDK's own lines about it included) and reach no other.
    """
    given = {"webhook_id": webhook_id, "event": event, "attempt": attempt}
    _bound.set({key: value for key, value in given.items() if value is not None})


class DeliveryFields(logging.Filter):
    """Copies what a record is about (:data:`JSON_KEYS`) onto it from Temporal's ``extra`` and
    from :func:`bind`; a value the logging call passed itself wins."""

    def filter(self, record: logging.LogRecord) -> bool:
        about: dict[str, Any] = {}
        in_workflow = getattr(record, "temporal_workflow", None)
        in_activity = getattr(record, "temporal_activity", None)
        for details in (in_workflow, in_activity):
            if isinstance(details, Mapping):
                about["workflow"] = details.get("workflow_type")
                if details.get("workflow_type") == DELIVER_WEBHOOK:
                    about["delivery_id"] = details.get("workflow_id")
        # Only an activity's: a workflow's own "attempt" counts workflow tasks, not deliveries'.
        if isinstance(in_activity, Mapping):
            about["activity"] = in_activity.get("activity_type")
            about["attempt"] = in_activity.get("attempt")
        about.update(_bound.get() or {})
        for key, value in about.items():
            if value is not None and key not in record.__dict__:
                setattr(record, key, value)
        return True


class AccessPath(logging.Filter):
    """Drops the query string from uvicorn's access lines: a client may put a token there."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.name == ACCESS_LOGGER and isinstance(args, tuple) and len(args) == 5:
            client, method, path, version, status = args
            record.args = (client, method, str(path).partition("?")[0], version, status)
        return True


class JsonLines(JsonFormatter):
    """python-json-logger's formatter, writing only :data:`JSON_KEYS`, in that order."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
        )

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {key: log_data[key] for key in JSON_KEYS if log_data.get(key) is not None}


def config(settings: Settings) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` of ``settings``; uvicorn takes it as ``log_config``.

    One handler, on the root logger, writes to stderr; every other logger (uvicorn's included)
    only propagates to it, so each line is written once, in one format. Loggers that exist
    already (module loggers made at import) stay enabled.
    """
    json_lines = settings.log_format == "json"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "access_path": {"()": AccessPath},
            "delivery_fields": {"()": DeliveryFields},
        },
        "formatters": {"lines": {"()": JsonLines} if json_lines else {"format": TEXT_FORMAT}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "lines",
                "filters": ["access_path", *(["delivery_fields"] if json_lines else [])],
            }
        },
        "loggers": {
            **{name: {"level": "WARNING"} for name in URL_LOGGERS},
            # Handlers an earlier uvicorn setup gave them are replaced by none: lines propagate.
            **{name: {} for name in ("uvicorn", "uvicorn.error", ACCESS_LOGGER)},
        },
        "root": {"level": settings.log_level.upper(), "handlers": ["stderr"]},
    }


def temporal_core() -> LoggingConfig:
    """The logging of a Temporal runtime: the SDK core's warnings (a poll retried while the
    server is away) through :data:`CORE_LOGGER`, so this setup formats them.

    Left to itself the core prints its own coloured lines on stderr, which no JSON reader can
    parse. Whoever builds a process's runtime must pass this as ``TelemetryConfig(logging=...)``.
    """
    return LoggingConfig(
        filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
        forwarding=LogForwardingConfig(
            logger=logging.getLogger(CORE_LOGGER), append_target_to_name=False
        ),
    )


def setup(settings: Settings) -> None:
    """Configure this process's logging from ``settings``: called first by every process,
    before any Temporal client exists.

    Temporal's default runtime gets :func:`temporal_core` (replacing one set before). In JSON
    lines Temporal's context is in fields, so the SDK stops repeating it in messages. Python's
    warnings become log lines, so nothing reaches stderr in another format.
    """
    logging.config.dictConfig(config(settings))
    logging.captureWarnings(True)
    Runtime.set_default(
        Runtime(telemetry=TelemetryConfig(logging=temporal_core())), error_if_already_set=False
    )
    in_message = settings.log_format == "text"
    activity.logger.activity_info_on_message = in_message
    workflow.logger.workflow_info_on_message = in_message
