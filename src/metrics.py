"""The engine's Prometheus metrics: every name, label and bucket, and how each gets recorded.

One registry per process, served at one ``/metrics`` (the worker's listener,
:mod:`infraudit.worker_http`, or the API's, :mod:`infraudit.api.metrics`). What fills it:

- **Attempts** (worker): :mod:`infraudit.attempt_metrics`, an activity interceptor around
  ``send_webhook``, counts each POST attempt when it ends and keeps the in-flight gauge.
- **Deliveries ended and their latency** (worker): a delivery ends in workflow code, which a
  worker replays whenever it rebuilds a workflow from history, so counting there with
  prometheus-client would count one delivery again at each replay. ``DeliverWebhook`` calls
  :func:`record_delivery_end`, which records through the SDK's ``workflow.metric_meter()``:
  the SDK drops what a replay records. Its updates reach this registry through the same
  buffer as the SDK's own metrics.
- **The Temporal SDK's own metrics** (``temporal_*``, worker and API): the process's SDK
  runtime (:meth:`ProcessMetrics.install_sdk_runtime`) writes every metric update to a
  ``MetricBuffer`` instead of running the SDK's Prometheus exporter on a port of its own;
  :meth:`ProcessMetrics.drain` moves the updates into this registry (at each scrape and every
  :data:`DRAIN_INTERVAL_SECONDS`), so operators scrape one endpoint per process.
- **API requests**: :class:`infraudit.api.metrics.RequestMetrics`, an ASGI middleware.

Label values come from small fixed sets only (the event catalog, outcomes, status classes,
route templates, HTTP methods): never a URL, an id, an org, a secret or a payload, both for
privacy and because every distinct value is a new time series kept in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from temporalio import workflow
from temporalio.runtime import (
    BUFFERED_METRIC_KIND_COUNTER,
    BUFFERED_METRIC_KIND_HISTOGRAM,
    BufferedMetricUpdate,
    MetricBuffer,
    MetricBufferDurationFormat,
    Runtime,
    TelemetryConfig,
)

from infraudit import events, logs, ops_http, search_attributes
from infraudit.contract import Attempt, DeliveryStatus

# --- names and label values ---------------------------------------------------------------------

DELIVERIES = "infraudit_deliveries"
DELIVERY_LATENCY = "infraudit_delivery_latency_seconds"
ATTEMPTS = "infraudit_attempts"
ATTEMPT_DURATION = "infraudit_attempt_duration_seconds"
ATTEMPTS_IN_FLIGHT = "infraudit_attempts_in_flight"
API_REQUESTS = "infraudit_api_requests"
API_REQUEST_DURATION = "infraudit_api_request_duration_seconds"

#: ``outcome`` of a delivery that ended.
DELIVERY_OUTCOMES: tuple[DeliveryStatus, ...] = ("delivered", "failed")
#: ``status_class`` of an attempt: the receiver's status by its first digit, ``none`` when it
#: did not answer (refused, reset, timed out), ``other`` for a code outside 200-599.
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx", "none", "other")
#: ``event_type`` of an event type outside the catalog (only another service's starter with a
#: bad ``EventType`` search attribute could make one).
OTHER = "other"

#: Histogram buckets, in seconds. A delivery's latency spans its retries: with the guide's
#: schedule the second attempt comes 5 minutes after the first and the third 15 minutes later.
DELIVERY_LATENCY_BUCKETS = (
    0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600, 1200, 1800, 3600,
)  # fmt: skip
#: One POST: up to the HTTP timeout (10 s by default, at most 300 s).
ATTEMPT_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
API_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
#: The SDK's histograms (all durations: task latencies, RPC latencies, schedule-to-start).
SDK_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)

#: Metric updates the SDK may buffer between two drains; beyond it the SDK drops updates (and
#: logs an error). A busy worker makes a few dozen per delivery, so this is minutes of them.
SDK_BUFFER_SIZE = 100_000
#: Seconds between drains of the SDK's buffer when nobody scrapes.
DRAIN_INTERVAL_SECONDS = 1.0
#: The classic text format, which every Prometheus version and agent reads; ``generate_latest``
#: writes exactly it for names like ours (newer clients label it ``version=1.0.0``, which only
#: differs for names outside the classic character set).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def status_class(status: int | None) -> str:
    """The ``status_class`` label of a receiver's answer (None: it did not answer)."""
    if status is None:
        return "none"
    if 200 <= status <= 599:
        return f"{status // 100}xx"
    return "other"


def event_type_label(value: object) -> str:
    """The ``event_type`` label: a type of the catalog, else :data:`OTHER` (bounded either way)."""
    return value if isinstance(value, str) and events.is_known(value) else OTHER


# --- recorded by workflow code ------------------------------------------------------------------


def record_delivery_end(status: DeliveryStatus, attempts: Sequence[Attempt]) -> None:
    """Count a delivery that ended, from ``DeliverWebhook``; replay-safe (see the module doc).

    ``event_type`` is the delivery's ``EventType`` search attribute, which the workflow has
    set by then. The latency of a delivered one runs from the delivery's start (the fan-out of
    the accepted event; a test ping's request) to the end of the attempt that got the 2xx, read
    from that attempt's record: the workflow's own clock stands still while a local activity
    runs, so it would read 0 for a first attempt that landed. A worker that dies after
    recording but before completing the workflow task counts that delivery again on the next
    worker: the counters are at-least-once, like every metric the SDK records in workflows.
    """
    info = workflow.info()
    event_type = event_type_label(info.typed_search_attributes.get(search_attributes.EVENT_TYPE))
    meter = workflow.metric_meter()
    meter.create_counter(DELIVERIES).add(1, {"event_type": event_type, "outcome": status})
    if status != "delivered" or not attempts:
        return
    last = attempts[-1]
    if last.started_at is not None and last.duration_ms is not None:
        landed = last.started_at + timedelta(milliseconds=last.duration_ms)
    else:
        landed = workflow.now()
    latency = max(0.0, (landed - info.workflow_start_time).total_seconds())
    meter.create_histogram_float(DELIVERY_LATENCY, unit="s").record(latency)


# --- one process's registry ---------------------------------------------------------------------

#: Applies one buffered update of a metric recorded in workflow code: (value, attributes).
_Recorder = Callable[[float, Mapping[str, object]], None]


class ProcessMetrics:
    """A process's registry: its role's metrics (subclasses) and the Temporal SDK's."""

    def __init__(self) -> None:
        # No ``*_created`` series beside every counter and histogram: they double what is
        # scraped and stored, and no rate or alert here needs them. (A switch of the library's,
        # for the whole process: these processes have no other prometheus-client registry.)
        disable_created_metrics()
        self.registry = CollectorRegistry()
        self._sdk = _SdkMetrics()
        self.registry.register(self._sdk)
        self._buffer: MetricBuffer | None = None
        #: Metrics recorded through the workflow meter, by name: routed to our own definitions.
        self._from_workflows: dict[str, _Recorder] = {}

    def install_sdk_runtime(self) -> None:
        """Make the process's Temporal SDK report into this registry.

        Replaces the default SDK runtime (the one :func:`infraudit.logs.setup` made, whose
        logging it keeps) with one whose metrics also go to a buffer that :meth:`drain` empties.
        Call it once, after the logging setup and before any client connects: a client keeps
        the runtime it was made with.
        """
        buffer = MetricBuffer(SDK_BUFFER_SIZE, MetricBufferDurationFormat.SECONDS)
        telemetry = TelemetryConfig(
            logging=logs.temporal_core(), metrics=buffer, attach_service_name=False
        )
        Runtime.set_default(Runtime(telemetry=telemetry), error_if_already_set=False)
        self._buffer = buffer

    def drain(self) -> None:
        """Move the SDK's buffered updates into the registry."""
        if self._buffer is None:
            return
        for update in self._buffer.retrieve_updates():
            record = self._from_workflows.get(update.metric.name)
            if record is not None:
                record(update.value, update.attributes)
            else:
                self._sdk.add(update)

    async def scrape(self) -> ops_http.Response:
        """``GET /metrics``: the registry in Prometheus's text format, SDK updates included."""
        self.drain()
        return ops_http.Response(200, generate_latest(self.registry), CONTENT_TYPE)

    @contextlib.asynccontextmanager
    async def draining(self) -> AsyncIterator[None]:
        """Drain the SDK's buffer every :data:`DRAIN_INTERVAL_SECONDS` for the block, so that a
        process nobody scrapes for a while does not make the SDK drop updates."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(DRAIN_INTERVAL_SECONDS)
                self.drain()

        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class WorkerMetrics(ProcessMetrics):
    """The worker's metrics: deliveries, attempts, in-flight attempts."""

    def __init__(self) -> None:
        super().__init__()
        registry = self.registry
        self.deliveries = Counter(
            DELIVERIES,
            "Deliveries that ended, by event type and outcome (delivered, failed).",
            ["event_type", "outcome"],
            registry=registry,
        )
        self.delivery_latency = Histogram(
            DELIVERY_LATENCY,
            "Seconds from a delivery's start (the event accepted and fanned out) to the 2xx, "
            "retries included; delivered deliveries only.",
            buckets=DELIVERY_LATENCY_BUCKETS,
            registry=registry,
        )
        self.attempts = Counter(
            ATTEMPTS,
            "POST attempts that ended, by outcome (succeeded: a 2xx) and the receiver's status "
            "class (none: no answer).",
            ["outcome", "status_class"],
            registry=registry,
        )
        self.attempt_duration = Histogram(
            ATTEMPT_DURATION,
            "Seconds one POST attempt took, from sending to the response body (or the error).",
            buckets=ATTEMPT_DURATION_BUCKETS,
            registry=registry,
        )
        self.attempts_in_flight = Gauge(
            ATTEMPTS_IN_FLIGHT,
            "send_webhook executions (local and regular) running in this worker now.",
            registry=registry,
        )
        # Every series that can exist, at 0: a rate over a series that appears with its first
        # increment misses that increment.
        for event_type in events.EVENT_TYPES:
            for outcome in DELIVERY_OUTCOMES:
                self.deliveries.labels(event_type, outcome)
        for status in STATUS_CLASSES:
            self.attempts.labels(_attempt_outcome(status), status)
        self._from_workflows[DELIVERIES] = self._count_delivery
        self._from_workflows[DELIVERY_LATENCY] = self._observe_latency

    def count_attempt(self, attempt: Attempt) -> None:
        """One POST attempt that ended (with an answer or an error)."""
        status = status_class(attempt.response_status)
        self.attempts.labels("succeeded" if attempt.succeeded else "failed", status).inc()
        if attempt.duration_ms is not None:
            self.attempt_duration.observe(attempt.duration_ms / 1000)

    def _count_delivery(self, value: float, attributes: Mapping[str, object]) -> None:
        event_type = event_type_label(attributes.get("event_type"))
        self.deliveries.labels(event_type, str(attributes.get("outcome"))).inc(value)

    def _observe_latency(self, value: float, attributes: Mapping[str, object]) -> None:
        self.delivery_latency.observe(value)


class ApiMetrics(ProcessMetrics):
    """The API's metrics: requests by method, route template and status."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = Counter(
            API_REQUESTS,
            "HTTP requests answered, by method, route template (unmatched: no route) and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.request_duration = Histogram(
            API_REQUEST_DURATION,
            "Seconds from a request's arrival to the end of its answer, by method and route.",
            ["method", "route"],
            buckets=API_DURATION_BUCKETS,
            registry=self.registry,
        )

    def count_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One request answered; the caller bounds ``method`` and ``route``."""
        self.requests.labels(method, route, str(status)).inc()
        self.request_duration.labels(method, route).observe(seconds)


def _attempt_outcome(status: str) -> str:
    return "succeeded" if status == "2xx" else "failed"


# --- the SDK's metrics --------------------------------------------------------------------------


#: A series' labels, sorted by name.
_Labels = tuple[tuple[str, str], ...]


@dataclass
class _Histogram:
    """One histogram series: counts per bucket of :data:`SDK_BUCKETS` (+Inf last), sum, count."""

    buckets: list[int] = field(default_factory=lambda: [0] * (len(SDK_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        index = next((i for i, bound in enumerate(SDK_BUCKETS) if value <= bound), -1)
        self.buckets[index] += 1
        self.total += value
        self.count += 1


@dataclass
class _Family:
    """One SDK metric: its Prometheus name and type, and its series by label set (counters and
    gauges in ``values``, histograms in ``histograms``)."""

    name: str
    kind: str
    help: str
    values: dict[_Labels, float] = field(default_factory=dict)
    histograms: dict[_Labels, _Histogram] = field(default_factory=dict)

    def samples(self) -> Iterable[tuple[str, dict[str, str], float]]:
        """(sample name, labels, value) of every series, as the exposition format lists them."""
        for labels, value in self.values.items():
            suffix = "_total" if self.kind == "counter" else ""
            yield f"{self.name}{suffix}", dict(labels), value
        bounds = [*map(str, SDK_BUCKETS), "+Inf"]
        for labels, histogram in self.histograms.items():
            cumulative = 0
            for bound, count in zip(bounds, histogram.buckets, strict=True):
                cumulative += count
                yield f"{self.name}_bucket", {**dict(labels), "le": bound}, cumulative
            yield f"{self.name}_count", dict(labels), histogram.count
            yield f"{self.name}_sum", dict(labels), histogram.total


class _SdkMetrics(Collector):
    """The Temporal SDK's metrics, accumulated from buffered updates.

    Counters add the deltas, gauges keep the last value, histograms count into
    :data:`SDK_BUCKETS`. Names follow Prometheus's conventions, as the SDK's own exporter
    writes them with ``counters_total_suffix`` and ``unit_suffix``: a counter's samples end in
    ``_total``, a duration's name in ``_seconds`` (``temporal_request_total``,
    ``temporal_activity_schedule_to_start_latency_seconds``). The SDK's labels (namespace,
    task_queue, workflow_type, activity_type, operation, ...) are kept as they come.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._families: dict[str, _Family] = {}

    def add(self, update: BufferedMetricUpdate) -> None:
        metric = update.metric
        labels = tuple(sorted((key, _label_value(v)) for key, v in update.attributes.items()))
        with self._lock:
            family = self._families.get(metric.name)
            if family is None:
                family = self._families[metric.name] = _new_family(
                    metric.name, metric.kind, metric.unit, metric.description
                )
            if family.kind == "histogram":
                family.histograms.setdefault(labels, _Histogram()).observe(update.value)
            elif family.kind == "counter":
                family.values[labels] = family.values.get(labels, 0.0) + update.value
            else:
                family.values[labels] = float(update.value)

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            snapshot = [
                (f.name, f.kind, f.help, list(f.samples())) for f in self._families.values()
            ]
        for name, kind, help_text, samples in snapshot:
            metric = Metric(name, help_text, kind)
            for sample_name, labels, value in samples:
                metric.add_sample(sample_name, labels, value)
            yield metric


def _new_family(name: str, kind: int, unit: str | None, description: str | None) -> _Family:
    if kind == BUFFERED_METRIC_KIND_HISTOGRAM:
        prometheus_name = f"{name}_seconds" if unit == "s" else name
        return _Family(prometheus_name, "histogram", description or name)
    if kind == BUFFERED_METRIC_KIND_COUNTER:
        # Its samples get ``_total``; a name that has it already keeps one (local_activity_total).
        return _Family(name.removesuffix("_total"), "counter", description or name)
    return _Family(name, "gauge", description or name)


def _label_value(value: object) -> str:
    """Attribute values are text, numbers or booleans; booleans as Prometheus writes them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
