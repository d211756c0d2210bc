"""Metrics, scraped over HTTP from a real worker process and a real API process (issue 10).

Both processes run as operators run them (``python worker.py``, ``infraudit api``) against the
session's dev server and store, on a task queue of their own, with the metrics listeners on
free ports. One event published through the API fans out to an endpoint that answers 200 and
one that always answers 503 (three quick attempts): the worker's counters move by exactly
that, its in-flight gauge is back at 0, the SDK's own metrics are in the same scrape, and no
URL, secret, id or payload text is anywhere in either scrape. The API counts its requests by
route template, never by path, and does not serve ``/metrics`` on its public port.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client

from infraudit import metrics
from infraudit.api.metrics import UNMATCHED
from infraudit.cli.commands import create_api_key
from tests.api_process import ApiProcess, api_env, api_process
from tests.cli_support import free_port
from tests.conftest import Endpoints
from tests.helpers import eventually
from tests.receiver import Answer, running_receiver
from tests.worker_process import WorkerProcess, worker_env, worker_process

#: The retry schedule of the deliveries the API starts: 1 s per attempt, attempts 0.2 s and
#: 0.4 s apart, so a delivery that always meets a 503 fails within about 3 s.
QUICK_POLICY = {
    "INFRAUDIT_HTTP_TIMEOUT": "1",
    "INFRAUDIT_DELIVERY_WINDOW": "60",
    "INFRAUDIT_RETRY_INITIAL_INTERVAL": "0.2",
    "INFRAUDIT_RETRY_BACKOFF_COEFFICIENT": "2",
}


@dataclass
class Stack:
    """A worker and an API process, and where their metrics are served."""

    worker: WorkerProcess
    api: ApiProcess
    worker_http: str
    api_metrics: str


@pytest.fixture(scope="module")
async def stack(
    client: Client, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    logs = tmp_path_factory.mktemp("metrics")
    worker_port, metrics_port = free_port(), free_port()
    base = worker_env(client, database_url=database_url, task_queue=f"metrics-{uuid.uuid4().hex}")
    base.update(QUICK_POLICY)
    env_worker = {**base, "INFRAUDIT_WORKER_HTTP_PORT": str(worker_port)}
    env_api = {**api_env(base), "INFRAUDIT_API_METRICS_PORT": str(metrics_port)}
    with (
        worker_process(env_worker, logs / "worker.log") as worker,
        api_process(env_api, logs / "api.log") as api,
    ):
        await asyncio.gather(worker.ready(), api.ready())
        yield Stack(
            worker,
            api,
            worker_http=f"http://127.0.0.1:{worker_port}",
            api_metrics=f"http://127.0.0.1:{metrics_port}",
        )


#: One sample: (name, sorted label pairs) -> value.
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(url: str) -> tuple[str, Samples]:
    """``GET /metrics`` at ``url``: the text and its samples, parsed as Prometheus parses them."""
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"{url}/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    return response.text, samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over the series whose labels include ``labels``."""
    return sum(
        value
        for (sample, pairs), value in samples.items()
        if sample == name and labels.items() <= dict(pairs).items()
    )


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


async def test_deliveries_and_attempts_are_counted_exactly(
    stack: Stack, database_url: str, endpoints: Endpoints, org_id: str
) -> None:
    marker = f"payload-{uuid.uuid4().hex}"
    with running_receiver() as landing, running_receiver() as failing:
        failing.script(Answer(status=503, body=f"busy {marker}".encode()))
        delivered_hook, delivered_secret = await endpoints.add(org_id, landing.url)
        failed_hook, failed_secret = await endpoints.add(org_id, failing.url)
        key = await create_api_key(database_url, org_id)
        async with httpx.AsyncClient(base_url=stack.api.url, timeout=10) as http:
            accepted = await http.post(
                "/v1/events",
                json={"event": "drift.detected", "data": {"marker": marker}},
                headers={"Authorization": f"Bearer {key}"},
            )
        assert accepted.status_code == 202, accepted.text
        await landing.wait_for(1)
        await failing.wait_for(3)

        async def failed_deliveries() -> float:
            return total(
                (await scrape(stack.worker_http))[1], "infraudit_deliveries_total", outcome="failed"
            )

        # The failed delivery ends once the workflow has its third attempt's failure.
        await eventually(failed_deliveries, lambda count: count >= 1)
        text, samples = await scrape(stack.worker_http)

    deliveries = "infraudit_deliveries_total"
    assert total(samples, deliveries, event_type="drift.detected", outcome="delivered") == 1
    assert total(samples, deliveries, event_type="drift.detected", outcome="failed") == 1
    assert total(samples, deliveries) == 2
    # Every event type and outcome is a series from the start, at 0 until it moves.
    assert total(samples, deliveries, event_type="alert.created", outcome="failed") == 0
    assert (deliveries, (("event_type", "alert.created"), ("outcome", "failed"))) in samples

    attempts = "infraudit_attempts_total"
    assert total(samples, attempts, outcome="succeeded", status_class="2xx") == 1
    assert total(samples, attempts, outcome="failed", status_class="5xx") == 3
    assert total(samples, attempts) == 4
    assert total(samples, "infraudit_attempt_duration_seconds_count") == 4
    assert total(samples, "infraudit_attempts_in_flight") == 0

    # Accepted -> 2xx for the one delivered delivery: a single quick attempt.
    assert total(samples, "infraudit_delivery_latency_seconds_count") == 1
    assert 0 < total(samples, "infraudit_delivery_latency_seconds_sum") < 10

    # The Temporal SDK's own metrics come through the same endpoint, named as Prometheus names
    # them (counters end in _total, durations in _seconds), without *_created series.
    assert total(samples, "temporal_workflow_task_schedule_to_start_latency_seconds_count") > 0
    assert total(samples, "temporal_request_total", operation="RespondWorkflowTaskCompleted") > 0
    assert total(samples, "temporal_workflow_failed_total", workflow_type="DeliverWebhook") == 1
    assert not [name for name in names(samples) if name.endswith(("_created", "_total_total"))]

    for leak in (
        landing.url,
        failing.url,
        urlsplit(landing.url).netloc,
        urlsplit(failing.url).netloc,
        delivered_secret,
        failed_secret,
        delivered_hook,
        failed_hook,
        org_id,
        key,
        marker,
    ):
        assert leak not in text, leak


async def test_the_api_counts_requests_by_route_template_and_serves_metrics_apart(
    stack: Stack,
) -> None:
    probe = f"nothing-{uuid.uuid4().hex}"
    async with httpx.AsyncClient(base_url=stack.api.url, timeout=10) as http:
        _, before = await scrape(stack.api_metrics)
        assert (await http.get(f"/v1/webhooks/wh_{probe}")).status_code == 401
        assert (await http.get(f"/{probe}")).status_code == 404
        assert (await http.request("BREW", "/healthz")).status_code == 405
        # Not on the public port: /metrics is an unknown path there.
        assert (await http.get("/metrics")).status_code == 404
    text, after = await scrape(stack.api_metrics)

    def moved(**labels: str) -> float:
        name = "infraudit_api_requests_total"
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved(method="GET", route="/v1/webhooks/{webhook_id}", status="401") == 1
    assert moved(method="GET", route=UNMATCHED, status="404") == 2
    assert moved(method="other", route="/healthz", status="405") == 1
    assert moved() == 4
    assert probe not in text
    assert total(after, "infraudit_api_request_duration_seconds_count") >= moved()
    # The API's Temporal client reports too (its health checks for /readyz, at least).
    assert "temporal_request_total" in names(after)
    assert not any(name.startswith("infraudit_attempts") for name in names(after))


@pytest.mark.parametrize(
    ("status", "label"),
    [(None, "none"), (200, "2xx"), (299, "2xx"), (301, "3xx"), (404, "4xx"), (503, "5xx"),
     (599, "5xx"), (199, "other"), (600, "other")],
)  # fmt: skip
def test_status_classes(status: int | None, label: str) -> None:
    assert metrics.status_class(status) == label


def test_event_type_labels_stay_in_the_catalog() -> None:
    assert metrics.event_type_label("drift.detected") == "drift.detected"
    assert metrics.event_type_label("webhook.ping") == "webhook.ping"
    assert metrics.event_type_label("https://user:pw@example.com/x") == metrics.OTHER
    assert metrics.event_type_label(None) == metrics.OTHER
