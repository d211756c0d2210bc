"""A small OTLP/HTTP trace collector on 127.0.0.1 that decodes what the engine exports.

It answers ``POST /v1/traces`` as a real collector does (protobuf ``ExportTraceServiceRequest``
in, ``ExportTraceServiceResponse`` out) and keeps every span with its service, its attributes
and its events' attributes, so a test can check a trace's shape and what it holds.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage

from tests.receiver import serving

#: An attribute's value as the test compares it: scalars as they are, arrays as tuples.
Value = str | bool | int | float | tuple[object, ...]


@dataclass(frozen=True)
class Span:
    """One exported span; ids in hex, ``parent_id`` empty for a root."""

    trace_id: str
    span_id: str
    parent_id: str
    name: str
    service: str
    attributes: dict[str, Value]
    resource: dict[str, Value]
    events: tuple[dict[str, Value], ...]
    status: str

    def texts(self) -> Iterator[str]:
        """Every string the span carries: name, status, attribute keys and values (its own,
        its resource's and its events')."""
        yield self.name
        yield self.status
        for attributes in (self.attributes, self.resource, *self.events):
            for key, value in attributes.items():
                yield key
                yield repr(value)


@dataclass
class Collector:
    """Spans received so far and how many export requests brought them."""

    url: str
    spans: list[Span] = field(default_factory=list)
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, request: ExportTraceServiceRequest) -> None:
        with self.lock:
            self.requests += 1
            for resource_spans in request.resource_spans:
                resource = _attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend(_span(s, resource) for s in scope_spans.spans)


def _value(value: AnyValue) -> Value:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(v) for v in value.array_value.values)
    if kind == "kvlist_value":
        return tuple(sorted(_attributes(value.kvlist_value.values).items()))
    if kind == "bytes_value":
        return value.bytes_value.hex()
    found: Value = getattr(value, kind) if kind else ""
    return found


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, Value]:
    return {pair.key: _value(pair.value) for pair in pairs}


def _span(span: SpanMessage, resource: dict[str, Value]) -> Span:
    return Span(
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_id=span.parent_span_id.hex(),
        name=span.name,
        service=str(resource.get("service.name", "")),
        attributes=_attributes(span.attributes),
        resource=resource,
        events=tuple(_attributes(e.attributes) for e in span.events),
        status=span.status.message,
    )


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path != "/v1/traces":
            self.send_error(404)
            return
        self.server.collector.add(ExportTraceServiceRequest.FromString(body))
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    collector: Collector


@contextmanager
def running_collector() -> Iterator[Collector]:
    """A collector on a free port of 127.0.0.1 for the block; ``url`` is its base URL (the
    exporter appends ``/v1/traces``, as to any OTLP/HTTP endpoint)."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.collector = Collector(url=f"http://127.0.0.1:{server.server_address[1]}")
    with serving(server):
        yield server.collector
