"""A tiny HTTP/1.1 server for the operators' probes: ``GET`` a path, get a status and a body.

The worker serves ``/healthz``, ``/readyz`` and ``/metrics`` with it, and the API its
``/metrics`` on a listener apart from the public port (docs/operations.md "Metrics"). It runs
in the process's own event loop, beside the Temporal worker or uvicorn, and installs no signal
handlers, so the process's graceful stop stays the one of :mod:`infraudit.cli.processes`
(a second uvicorn server would catch SIGTERM itself).

Deliberately small: one request per connection (``Connection: close``), ``GET`` and ``HEAD``
only, a request head of at most :data:`MAX_HEAD_BYTES` read within
:data:`REQUEST_TIMEOUT_SECONDS`; everything else is answered 400, 404 or 405. Probes and
Prometheus need no more, and nothing here parses a body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http import HTTPStatus

log = logging.getLogger(__name__)

#: Longest request line plus headers accepted (bytes); a scraper sends a few hundred.
MAX_HEAD_BYTES = 8 * 1024
#: Seconds a client has to send its request head before the connection is dropped.
REQUEST_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Response:
    """What a route answers: status code, body bytes and their media type."""

    status: int
    body: bytes
    content_type: str = "application/json"


#: A route: called per request, no arguments (probes take none).
Route = Callable[[], Awaitable[Response]]


class ListenError(RuntimeError):
    """The listener could not bind its address (in use, not permitted, unknown host)."""


def check_free(host: str, port: int, *, what: str) -> None:
    """Raise :class:`ListenError` now if ``host:port`` cannot be bound, for a listener that a
    framework opens later where its failure would read as a traceback (uvicorn's lifespan)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as err:
        raise _listen_error(host, port, what, err) from None


def _listen_error(host: str, port: int, what: str, err: OSError) -> ListenError:
    return ListenError(f"cannot listen on {host}:{port} for {what}: {err.strerror or err}")


@asynccontextmanager
async def serving(
    host: str, port: int, routes: Mapping[str, Route], *, what: str
) -> AsyncIterator[asyncio.Server]:
    """Serve ``routes`` on ``host:port`` for the block; ``what`` names the listener in errors.

    Raises :class:`ListenError` in one line when the address cannot be bound, so a port clash
    reads as one, not as a traceback from the event loop.
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _answer(reader, writer, routes)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    try:
        server = await asyncio.start_server(handle, host, port, limit=MAX_HEAD_BYTES)
    except OSError as err:
        raise _listen_error(host, port, what, err) from None
    try:
        yield server
    finally:
        server.close()
        await server.wait_closed()


async def _answer(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, routes: Mapping[str, Route]
) -> None:
    """Read one request head, route it, write the answer."""
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS):
            head = await reader.readuntil(b"\r\n\r\n")
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
        return  # the client went away or never finished asking: nobody to answer
    except asyncio.LimitOverrunError:
        await _write(writer, "GET", _plain(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE))
        return
    parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        await _write(writer, "GET", _plain(HTTPStatus.BAD_REQUEST))
        return
    method, target, _ = parts
    route = routes.get(target.split("?", 1)[0])
    if route is None:
        response = _plain(HTTPStatus.NOT_FOUND)
    elif method not in ("GET", "HEAD"):
        response = _plain(HTTPStatus.METHOD_NOT_ALLOWED)
    else:
        try:
            response = await route()
        except Exception:
            log.exception("%s failed", target.split("?", 1)[0])
            response = _plain(HTTPStatus.INTERNAL_SERVER_ERROR)
    await _write(writer, method, response)


def _plain(status: HTTPStatus) -> Response:
    return Response(status.value, f"{status.phrase}\n".encode(), "text/plain; charset=utf-8")


async def _write(writer: asyncio.StreamWriter, method: str, response: Response) -> None:
    phrase = HTTPStatus(response.status).phrase
    head = (
        f"HTTP/1.1 {response.status} {phrase}\r\n"
        f"Content-Type: {response.content_type}\r\n"
        f"Content-Length: {len(response.body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    )
    writer.write(head.encode("latin-1") + (b"" if method == "HEAD" else response.body))
    with contextlib.suppress(ConnectionError):
        await writer.drain()
