"""What the worker and the API log (issue 10, "Logs"; the setup is infraudit.logs).

- A real worker process, in either format, logs no URL credentials, query strings, secrets or
  payloads at INFO, and a receiver's 503 is one line, not a warning with a traceback.
- In JSON every line it writes parses, and a failed attempt's line says which delivery, webhook,
  event and attempt it is about.
- The API in JSON: uvicorn's own lines and its access log too, without the query string.
- The fields come from Temporal's context and from ``logs.bind``, whose fields stay in the task
  that bound them; nothing else a record carries is written.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowFailureError

from infraudit import logs
from infraudit.cli.commands import create_api_key
from infraudit.config import Settings
from tests.api_process import api_env, api_process
from tests.conftest import Endpoints
from tests.helpers import start_test_delivery
from tests.receiver import Answer, running_receiver
from tests.worker_process import worker_env, worker_process

#: A text line: ``<date> <time> <LEVEL> <logger> <message>`` (infraudit.logs.TEXT_FORMAT).
TEXT_LINE = re.compile(r"^\S+ \S+ (?P<level>[A-Z]+) (?P<logger>\S+) (?P<message>.*)$")


def parsed(log: str, log_format: str) -> list[dict[str, Any]]:
    """Every line of ``log`` as a dict with at least level, logger and message; fails on a line
    that is not in ``log_format``."""
    lines = log.splitlines()
    if log_format == "json":
        return [json.loads(line) for line in lines]
    matches = [TEXT_LINE.match(line) for line in lines]
    assert all(matches), [line for line, m in zip(lines, matches, strict=True) if not m]
    return [m.groupdict() for m in matches if m]


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_a_worker_at_info_logs_no_url_secrets_or_payloads_and_no_tracebacks(
    client: Client,
    settings: Settings,
    endpoints: Endpoints,
    org_id: str,
    tmp_path: Path,
    secret_key: str,
    log_format: str,
) -> None:
    """One delivery answered 503 then 200 and one to a closed port, both to URLs with a
    password and a token, through ``python worker.py`` at its own INFO logging setup."""
    task_queue = f"logs-{uuid.uuid4().hex[:8]}"
    env = worker_env(client, database_url=settings.database_url, task_queue=task_queue)
    env["INFRAUDIT_LOG_FORMAT"] = log_format
    here = settings.model_copy(update={"task_queue": task_queue})
    marker = f"payload-marker-{uuid.uuid4().hex}"
    with (
        running_receiver() as receiver,
        worker_process(env, tmp_path / "worker.log") as worker,
    ):
        receiver.script(Answer(503, b"try later"), Answer(200))
        port = receiver.url.split(":")[2].split("/")[0]
        answering = f"http://user:p4ssw0rd@127.0.0.1:{port}/hook?token=s3cr3t"
        closed = "http://user:p4ssw0rd@127.0.0.1:9/hook?token=s3cr3t"
        hook, secret = await endpoints.add(org_id, answering)
        closed_hook, closed_secret = await endpoints.add(org_id, closed)
        await worker.ready()
        delivered = await start_test_delivery(
            client, here, org_id=org_id, webhook_id=hook, url=answering, data={"m": marker}
        )
        failing = await start_test_delivery(
            client, here, org_id=org_id, webhook_id=closed_hook, url=closed, data={"m": marker}
        )
        outcome = await delivered.result()
        with pytest.raises(WorkflowFailureError):
            await failing.result()
        log = worker.log()

    assert [a.response_status for a in outcome.attempts] == [503, 200]
    sent_headers = {k.lower() for k in receiver.requests[0].headers}
    assert "authorization" in sent_headers, "the URL's credentials were used"
    assert marker.encode() in receiver.requests[0].body, "the payload was sent"
    lines = parsed(log, log_format)
    messages = {line["message"]: line for line in lines}
    busy = f"attempt 1 to webhook {hook} at http://127.0.0.1:{port}/hook failed: HTTP 503"
    refused = f"attempt 3 to webhook {closed_hook} at http://127.0.0.1:9/hook failed: Connect"
    [busy_line] = [line for text, line in messages.items() if text.startswith(busy)]
    [refused_line] = [line for text, line in messages.items() if text.startswith(refused)]
    for leaked in (
        "p4ssw0rd",
        "s3cr3t",
        "token=",
        secret,
        secret.removeprefix("whsec_"),
        closed_secret,
        secret_key,
        marker,
    ):
        assert leaked not in log, leaked
    assert "Traceback" not in log
    assert {line["level"] for line in lines} <= {"INFO"}, log
    if log_format == "json":
        about = ("delivery_id", "webhook_id", "event", "attempt", "activity")
        assert {key: busy_line.get(key) for key in about} == {
            "delivery_id": delivered.id,
            "webhook_id": hook,
            "event": "drift.detected",
            "attempt": 1,
            "activity": "send_webhook",
        }, busy_line
        assert {key: refused_line.get(key) for key in about} == {
            "delivery_id": failing.id,
            "webhook_id": closed_hook,
            "event": "drift.detected",
            "attempt": 3,
            "activity": "send_webhook",
        }, refused_line
        assert busy_line["logger"] == "temporalio.activity"
        assert "({" not in busy_line["message"], "the context is in fields, not the message"


async def test_the_api_in_json_writes_json_lines_and_access_lines_without_query_strings(
    client: Client, settings: Settings, org_id: str, tmp_path: Path
) -> None:
    """uvicorn's start and stop lines, the access log and our own lines are all JSON; a token
    in a query string stays out, and so does the API key of a request."""
    env = api_env(worker_env(client, database_url=settings.database_url, task_queue="unused"))
    env["INFRAUDIT_LOG_FORMAT"] = "json"
    key = await create_api_key(settings.database_url, org_id)
    with api_process(env, tmp_path / "api.log") as api:
        await api.ready()
        async with httpx.AsyncClient(base_url=api.url, timeout=10) as http:
            assert (await http.get("/readyz?token=s3cr3t-query")).status_code == 200
            listed = await http.get(
                "/v1/webhooks?api_key=s3cr3t-query", headers={"Authorization": f"Bearer {key}"}
            )
            assert listed.status_code == 200, listed.text
        api.stop()
        log = api.log()

    lines = parsed(log, "json")
    access = [line["message"] for line in lines if line["logger"] == "uvicorn.access"]
    assert any('"GET /readyz HTTP/1.1" 200' in line for line in access), access
    assert any('"GET /v1/webhooks HTTP/1.1" 200' in line for line in access), access
    assert any(line["message"].startswith("Uvicorn running on") for line in lines), log
    assert any(line["message"] == "Application shutdown complete." for line in lines), log
    for leaked in ("s3cr3t-query", key):
        assert leaked not in log, leaked
    assert {"time", "level", "logger", "message"} <= set(lines[0])


@contextmanager
def json_lines() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own whose handler is set up as ``INFRAUDIT_LOG_FORMAT=json`` sets the
    process's, and what it wrote."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonLines())
    handler.addFilter(logs.DeliveryFields())
    logger = logging.getLogger(f"test.logs.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield logger, out
    finally:
        logger.removeHandler(handler)


def activity_context(workflow_type: str, attempt: int) -> dict[str, Any]:
    """The ``temporal_activity`` extra of Temporal's ``activity.logger`` (temporalio 1.35)."""
    return {
        "activity_id": "1",
        "activity_type": "send_webhook",
        "attempt": attempt,
        "namespace": "default",
        "task_queue": "q",
        "workflow_id": "del_abc" if workflow_type == "DeliverWebhook" else "publish:o:e",
        "workflow_run_id": "run",
        "workflow_type": workflow_type,
    }


async def test_fields_come_from_temporal_and_bind_and_nothing_else_is_written() -> None:
    with json_lines() as (logger, out):
        logger.info(
            "sent",
            extra={
                "temporal_activity": activity_context("DeliverWebhook", 2),
                "color_message": "\x1b[1msent",
                "password": "p4ssw0rd",
            },
        )
        logger.info("fanned out", extra={"temporal_activity": activity_context("PublishEvent", 1)})
        logger.info(
            "decided",
            extra={
                "temporal_workflow": {
                    "attempt": 7,
                    "namespace": "default",
                    "run_id": "run",
                    "task_queue": "q",
                    "workflow_id": "del_abc",
                    "workflow_type": "DeliverWebhook",
                }
            },
        )

        async def bound() -> None:
            logs.bind(webhook_id="wh_1", event="drift.detected", attempt=4)
            await asyncio.sleep(0.01)
            logger.info("bound", extra={"temporal_activity": activity_context("DeliverWebhook", 1)})

        async def unbound() -> None:
            await asyncio.sleep(0.02)
            logger.info("unbound")

        await asyncio.gather(bound(), unbound())
        logger.info("after")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")

    sent, fanned, decided, bound_line, unbound_line, after, failed = map(
        json.loads, out.getvalue().splitlines()
    )
    written = ["time", "level", "logger", "message", "delivery_id", "attempt", "activity"]
    assert list(sent) == [*written, "workflow"]
    assert sent["delivery_id"] == "del_abc" and sent["attempt"] == 2
    assert "password" not in sent and "color_message" not in sent
    assert "delivery_id" not in fanned and fanned["workflow"] == "PublishEvent"
    assert decided["delivery_id"] == "del_abc" and "attempt" not in decided
    assert {k: bound_line[k] for k in ("webhook_id", "event", "attempt")} == {
        "webhook_id": "wh_1",
        "event": "drift.detected",
        "attempt": 4,
    }
    assert set(unbound_line) == set(after) == {"time", "level", "logger", "message"}
    assert failed["level"] == "ERROR" and "ValueError: boom" in failed["exc_info"]


def test_the_text_format_is_the_default_and_the_http_client_stays_quiet() -> None:
    """``make run`` shows text; httpx's request lines (whole URLs) never pass, at any level."""
    config = logs.config(Settings(log_level="DEBUG"))
    assert config["formatters"]["lines"] == {"format": logs.TEXT_FORMAT}
    assert config["root"]["level"] == "DEBUG"
    for name in logs.URL_LOGGERS:
        assert config["loggers"][name]["level"] == "WARNING"
    assert Settings(log_format="JSON").log_format == "json"
