"""OpenTelemetry tracing: one trace from ``POST /v1/events`` to each delivery's POST.

Off unless ``INFRAUDIT_OTEL_ENABLED``; then the API and the worker each export their spans over
OTLP/HTTP (protobuf) to ``INFRAUDIT_OTEL_ENDPOINT``, or where the SDK's own ``OTEL_EXPORTER_OTLP_*``
variables say (headers, TLS, timeout, compression; ``OTEL_TRACES_SAMPLER`` and
``OTEL_RESOURCE_ATTRIBUTES`` apply too). Off, no provider and no exporter exist, the FastAPI
app is not instrumented and Temporal clients carry no tracing interceptor.

The trace is carried by ``temporalio.contrib.opentelemetry.TracingInterceptor`` on every client
that :func:`infraudit.temporal.connect` makes: the API's client starts ``PublishEvent`` inside the
request's span, and the worker's client, which the fan-out activity uses to start each
``DeliverWebhook``, passes it on in the workflows' and activities' headers (regular and local
activities alike). The API's server span comes from FastAPI's instrumentation.

What a trace never holds (docs/security.md "Traces"): the customer-facing HTTP client is not
instrumented, so a receiver gets no ``traceparent``/``baggage`` header (our trace ids are none
of its business); request query strings are cut from the URL attributes (tokens travel there);
the ``Authorization`` header and cookies are redacted even when an operator asks the
instrumentation to capture request headers; span attributes carry ids and the event type, never
an endpoint URL, a secret, an API key or event data.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from temporalio import client, worker
from temporalio.contrib.opentelemetry import TracingInterceptor

from infraudit import __version__, urls
from infraudit.config import Settings
from infraudit.contract import FanOutRequest, SendRequest

#: ``service.name`` of each process's spans.
API_SERVICE = "infraudit-api"
WORKER_SERVICE = "infraudit-worker"

#: Appended to ``INFRAUDIT_OTEL_ENDPOINT``, as the OTLP spec has it for a base URL.
TRACES_PATH = "/v1/traces"

#: Probes that load balancers call every few seconds: a trace each would drown the real ones.
_UNTRACED_URLS = r"/healthz$,/readyz$"

#: Request headers whose values are replaced by ``[REDACTED]`` if an operator makes the
#: instrumentation capture headers (``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST``):
#: the API key and the Settings page's sign-in cookie travel in these.
_SECRET_HEADERS = ["authorization", "cookie", "key", "token", "secret"]

#: The server span's attributes that hold the query string: the full URL in the old HTTP
#: semantic conventions, the query alone in the new (``OTEL_SEMCONV_STABILITY_OPT_IN`` picks).
_URL_ATTRIBUTE = "http.url"
_QUERY_ATTRIBUTE = "url.query"


@contextmanager
def exporting(settings: Settings, service: str) -> Iterator[TracerProvider | None]:
    """The process's tracer provider for the block (None when tracing is off), flushed at its end.

    Installed as OpenTelemetry's global provider, which every tracer of the process (the
    Temporal interceptor's, the FastAPI instrumentation's) resolves to, even one made earlier.
    One per process: the API's lifespan and the worker's run each open it once. Spans are sent
    in batches (``OTEL_BSP_*`` tune them); the end of the block sends what is still queued, so a
    stopping process loses none.
    """
    if not settings.otel_enabled:
        yield None
        return
    resource = Resource.create(
        {
            "service.name": service,
            "service.namespace": "infraudit",
            "service.version": __version__,
            "service.instance.id": uuid.uuid4().hex,
        }
    )
    endpoint = settings.otel_endpoint.rstrip("/") + TRACES_PATH if settings.otel_endpoint else None
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    try:
        yield provider
    finally:
        provider.shutdown()


def temporal_interceptors(settings: Settings) -> list[client.Interceptor]:
    """The interceptors a Temporal client needs for tracing: none when tracing is off.

    On a client they also apply to the workers built on it, so one list covers the starts, the
    workflows and the activities of a process.
    """
    return [_DeliveryTracing()] if settings.otel_enabled else []


def instrument(app: FastAPI, settings: Settings) -> None:
    """Give each request to ``app`` a server span when tracing is on (probes excepted).

    The ASGI ``send``/``receive`` sub-spans are left out: one span per request says it all.
    """
    if not settings.otel_enabled:
        return
    FastAPIInstrumentor.instrument_app(
        app,
        server_request_hook=_drop_query,
        excluded_urls=_UNTRACED_URLS,
        http_capture_headers_sanitize_fields=_SECRET_HEADERS,
        exclude_spans=["receive", "send"],
    )


def _drop_query(span: trace.Span, scope: Mapping[str, Any]) -> None:
    """Cut the query string out of the URL attributes the instrumentation recorded.

    Runs right after the server span starts, when those attributes are set; the instrumentation
    keeps the query (only a few cloud signature parameters are masked), and callers may put
    tokens there. ``http.target`` and ``url.path`` hold the path alone.
    """
    if not scope.get("query_string") or not span.is_recording():
        return
    recorded: Mapping[str, Any] = getattr(span, "attributes", None) or {}
    if _URL_ATTRIBUTE in recorded:
        span.set_attribute(_URL_ATTRIBUTE, urls.redact(str(recorded[_URL_ATTRIBUTE])))
    if _QUERY_ATTRIBUTE in recorded:
        span.set_attribute(_QUERY_ATTRIBUTE, "[REDACTED]")


class _DeliveryTracing(TracingInterceptor):
    """Temporal's tracing interceptor, whose activity spans also name what they work on.

    ``RunActivity:send_webhook`` gets ``infraudit.delivery_id``, ``infraudit.webhook_id`` and
    ``infraudit.event_type``, ``RunActivity:fan_out_page`` the event type, so a trace can be
    found by any of them. Nothing else of the input (body, data, URL) is copied.
    """

    def intercept_activity(
        self, next: worker.ActivityInboundInterceptor
    ) -> worker.ActivityInboundInterceptor:
        return super().intercept_activity(_ActivityAttributes(next))


class _ActivityAttributes(worker.ActivityInboundInterceptor):
    """Sets the ids of an activity's input on the span the tracing interceptor opened for it."""

    async def execute_activity(self, input: worker.ExecuteActivityInput) -> Any:
        request = input.args[0] if input.args else None
        span = trace.get_current_span()
        if isinstance(request, SendRequest):
            span.set_attributes(
                {
                    "infraudit.delivery_id": request.delivery_id,
                    "infraudit.webhook_id": request.webhook_id,
                    "infraudit.event_type": request.event,
                }
            )
        elif isinstance(request, FanOutRequest):
            span.set_attribute("infraudit.event_type", request.event)
        return await super().execute_activity(input)
