"""The API's metrics: request counts and latencies, and the listener that serves ``/metrics``.

``/metrics`` is not a route of the public API: it is served on a listener of its own,
``INFRAUDIT_API_METRICS_HOST:INFRAUDIT_API_METRICS_PORT`` (off while the port is unset), which
a deployment keeps off the internet (compose does not publish it). The numbers carry no secret,
but request and event volumes across every org are nobody's business outside the operators,
and a public scrape endpoint is also free work for anyone (docs/operations.md "Metrics").
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from infraudit import ops_http
from infraudit.config import Settings
from infraudit.metrics import ApiMetrics

#: ``method`` label values; any other method a client invents counts as ``other``.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: ``route`` of a request no route matched (a 404): the path itself never becomes a label.
UNMATCHED = "unmatched"

#: The listener's name in errors.
WHAT = "the API's /metrics (INFRAUDIT_API_METRICS_PORT)"


def for_process(settings: Settings) -> ApiMetrics | None:
    """The API process's metrics when ``INFRAUDIT_API_METRICS_PORT`` is set, with the process's
    Temporal SDK runtime reporting into them; call it before the app's client connects."""
    if settings.api_metrics_port is None:
        return None
    metrics = ApiMetrics()
    metrics.install_sdk_runtime()
    return metrics


class RequestMetrics:
    """ASGI middleware: counts each HTTP request by method, route template and status.

    The route is the template the router matched (``/v1/webhooks/{webhook_id}``), read after
    the app ran; a request that raised counts as the 500 the server answers.
    """

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            method = scope["method"] if scope["method"] in METHODS else "other"
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            self.metrics.count_request(method, route, status, time.perf_counter() - began)


@asynccontextmanager
async def serving(settings: Settings, metrics: ApiMetrics | None) -> AsyncIterator[None]:
    """``GET /metrics`` on the API's metrics listener for the block (nothing without metrics or
    while the port is unset); raises :class:`infraudit.ops_http.ListenError` when the port
    cannot be bound."""
    if metrics is None or settings.api_metrics_port is None:
        yield
        return
    async with (
        ops_http.serving(
            settings.api_metrics_host,
            settings.api_metrics_port,
            {"/metrics": metrics.scrape},
            what=WHAT,
        ),
        metrics.draining(),
    ):
        yield
