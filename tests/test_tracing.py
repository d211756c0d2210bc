"""Tracing (issue 10): one trace from ``POST /v1/events`` to each delivery's POST, and nothing
in it that must stay private.

The API and a worker run as processes (``infraudit api``, ``python worker.py``) with tracing on,
exporting over OTLP/HTTP to a collector of the test's own (``tests/otlp_collector.py``); the
batch delay is set far beyond the test, so every span that arrives was sent by the processes'
flush at exit. Whether the fan-out and a delivery's first POST run as regular or local
activities does not matter here: both give the same span names and the same parent chain.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
from fastapi import FastAPI
from temporalio.client import Client

from infraudit import ids, tracing
from infraudit.cli.commands import create_api_key
from infraudit.config import Settings
from tests.api_process import api_env, api_process
from tests.conftest import Endpoints
from tests.otlp_collector import Span, running_collector
from tests.receiver import Receiver, running_receiver
from tests.worker_process import worker_env, worker_process

#: Headers a W3C propagator writes; the engine's POSTs to customers carry none of them.
PROPAGATION_HEADERS = {"traceparent", "tracestate", "baggage"}
#: A caller's trace context, as an upstream service instrumented with OpenTelemetry sends it.
CALLER_TRACE_ID = uuid.uuid4().hex
CALLER_SPAN_ID = uuid.uuid4().hex[:16]


async def publish_and_deliver(
    client: Client,
    env: dict[str, str],
    tmp_path: Path,
    *,
    api_key: str,
    event_id: str,
    body_marker: str,
    receivers: list[Receiver],
    webhook_ids: list[str],
) -> None:
    """Run a worker and the API as processes, publish one event through the API and wait until
    every receiver got its POST and every delivery ended; then stop both processes (SIGTERM),
    which is when they send what spans they hold."""
    with (
        worker_process(env, tmp_path / "worker.log") as worker,
        api_process(api_env(env), tmp_path / "api.log") as api,
    ):
        await asyncio.gather(worker.ready(), api.ready())
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
            answer = await http.post(
                "/v1/events",
                # A token in the query string (some callers put credentials there).
                params={"token": f"api-query-{body_marker}"},
                headers={
                    "Authorization": f"Bearer {api_key}",
                    "traceparent": f"00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-01",
                    "baggage": "caller=upstream",
                },
                json={"event": "drift.detected", "id": event_id, "data": {"note": body_marker}},
            )
        assert answer.status_code == 202, answer.text
        await asyncio.gather(*(r.wait_for(1) for r in receivers))
        async with asyncio.timeout(20):
            for webhook_id in webhook_ids:
                await client.get_workflow_handle(ids.delivery_id(event_id, webhook_id)).result()
        api.stop()
        worker.stop()


def ancestors(span: Span, spans: list[Span]) -> list[Span]:
    """``span``'s parent, its parent's parent, ... as far as the collected spans go."""
    by_id = {s.span_id: s for s in spans}
    chain: list[Span] = []
    parent = by_id.get(span.parent_id)
    while parent is not None:
        chain.append(parent)
        parent = by_id.get(parent.parent_id)
    return chain


def only(spans: list[Span], name: str) -> Span:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


async def test_one_trace_runs_from_the_api_request_through_both_deliveries_to_their_posts(
    client: Client,
    settings: Settings,
    endpoints: Endpoints,
    org_id: str,
    secret_key: str,
    tmp_path: Path,
) -> None:
    marker = uuid.uuid4().hex
    event_id = f"evt_trace_{marker[:12]}"
    api_key = await create_api_key(settings.database_url, org_id)
    env = worker_env(client, database_url=settings.database_url, task_queue=f"trace-{marker[:8]}")
    with (
        running_collector() as collector,
        running_receiver() as first,
        running_receiver() as second,
    ):
        hooks = [
            await endpoints.add(
                org_id,
                r.url.replace("http://", f"http://hook-user:pw-{marker}@") + f"?token=qs-{marker}",
            )
            for r in (first, second)
        ]
        traced = {
            **env,
            "INFRAUDIT_OTEL_ENABLED": "true",
            "INFRAUDIT_OTEL_ENDPOINT": collector.url,
            # Only the flush at exit sends: the test proves it happens.
            "OTEL_BSP_SCHEDULE_DELAY": "600000",
            # An operator asking for every request header: the API key must still not show.
            "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST": ".*",
            # Both the old and the new HTTP attribute names: the query is cut from each.
            "OTEL_SEMCONV_STABILITY_OPT_IN": "http/dup",
        }
        await publish_and_deliver(
            client,
            traced,
            tmp_path,
            api_key=api_key,
            event_id=event_id,
            body_marker=marker,
            receivers=[first, second],
            webhook_ids=[hook for hook, _ in hooks],
        )
        spans = list(collector.spans)
        posts = [*first.requests, *second.requests]

    # The receivers got the credentials and the query string, and no trace context.
    assert all(f"token=qs-{marker}" in p.path for p in posts)
    assert all(PROPAGATION_HEADERS.isdisjoint(h.lower() for h in p.headers) for p in posts)

    # The caller's trace goes on in the API's server span, with the query cut from its URL.
    server = only(spans, "POST /v1/events")
    assert (server.service, server.trace_id, server.parent_id) == (
        tracing.API_SERVICE,
        CALLER_TRACE_ID,
        CALLER_SPAN_ID,
    )
    assert "?" not in str(server.attributes["http.url"])
    assert server.attributes["url.query"] == "[REDACTED]"
    assert server.attributes["http.request.header.authorization"] == ("[REDACTED]",)
    assert {s.trace_id for s in spans} == {CALLER_TRACE_ID}
    # PublishEvent is started under it; a workflow's spans hang off the span that started it.
    start_publish = only(spans, "StartWorkflow:PublishEvent")
    assert only(spans, "RunWorkflow:PublishEvent").parent_id == start_publish.span_id
    # Each delivery is started in the fan-out under PublishEvent's trace, and its POST under
    # its own start, whatever kinds of activity do the fan-out and the POST.
    sends = [s for s in spans if s.name == "RunActivity:send_webhook"]
    starts = []
    for send in sends:
        chain = ancestors(send, spans)
        start = next(s for s in chain if s.name == "StartWorkflow:DeliverWebhook")
        assert start_publish in chain and server in chain, [s.name for s in chain]
        assert send.service == start.service == tracing.WORKER_SERVICE
        assert send.attributes["infraudit.delivery_id"] == start.attributes["temporalWorkflowID"]
        starts.append(start.span_id)
    runs = [s.parent_id for s in spans if s.name == "RunWorkflow:DeliverWebhook"]
    assert set(runs) == set(starts) and len(set(starts)) == 2, [s.name for s in spans]
    assert {
        (s.attributes["infraudit.webhook_id"], s.attributes["infraudit.delivery_id"]) for s in sends
    } == {(hook, ids.delivery_id(event_id, hook)) for hook, _ in hooks}
    assert all(s.attributes["infraudit.event_type"] == "drift.detected" for s in sends)

    # Nothing private in any span: the signing secrets, the API key, the keys that seal the
    # secrets, the endpoints' credentials and query strings, the API's query token, the payload.
    never = [*(secret for _, secret in hooks), api_key, secret_key, marker]
    leaks = [(s.name, t) for s in spans for t in s.texts() if any(n in t for n in never)]
    assert not leaks, leaks


async def test_with_tracing_off_nothing_is_exported_even_where_the_sdk_is_pointed(
    client: Client, settings: Settings, endpoints: Endpoints, org_id: str, tmp_path: Path
) -> None:
    marker = uuid.uuid4().hex
    event_id = f"evt_untraced_{marker[:12]}"
    api_key = await create_api_key(settings.database_url, org_id)
    env = worker_env(
        client, database_url=settings.database_url, task_queue=f"untraced-{marker[:8]}"
    )
    with running_collector() as collector, running_receiver() as receiver:
        hook, _ = await endpoints.add(org_id, receiver.url)
        pointed = {
            **env,
            # The SDK's own variables point at the collector and would send at once, but
            # INFRAUDIT_OTEL_ENABLED is not set: no exporter may exist to use them.
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "OTEL_BSP_SCHEDULE_DELAY": "1",
        }
        await publish_and_deliver(
            client,
            pointed,
            tmp_path,
            api_key=api_key,
            event_id=event_id,
            body_marker=marker,
            receivers=[receiver],
            webhook_ids=[hook],
        )
        assert (collector.requests, collector.spans) == (0, [])
    assert PROPAGATION_HEADERS.isdisjoint(h.lower() for h in receiver.requests[0].headers)


def test_tracing_off_makes_no_provider_no_interceptor_and_leaves_the_app_alone(
    settings: Settings,
) -> None:
    """The default: no exporter, no interceptor on Temporal clients, no middleware."""
    assert settings.otel_enabled is False
    with tracing.exporting(settings, tracing.API_SERVICE) as provider:
        assert provider is None
    assert tracing.temporal_interceptors(settings) == []
    app = FastAPI()
    tracing.instrument(app, settings)
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
