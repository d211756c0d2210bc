"""The receiver: a minimal HTTP/1.1 keep-alive server answering 200, in a process of its own.

It runs apart from the engine so that its CPU is not billed to the engine, and it is written on
bare asyncio streams (aiohttp is not installed) so that it stays far faster than anything it
measures. For each POST it notes when the request arrived, keyed by the ``X-InfraAudit-Delivery``
header that the engine and both baselines send; the driver reads those notes over
``GET /_log`` (and ``GET /_count`` while waiting) to compute start-to-received latency.

Run as ``python -m bench.receiver``: it prints its port on stdout once listening.
"""

from __future__ import annotations

import asyncio
import signal
import time

from infraudit import signing

_KEY_HEADER = signing.DELIVERY_HEADER.lower().encode()
_OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


class Log:
    """Arrival times by delivery key, since the last ``/_log`` read."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[str, float]] = []

    def text(self) -> bytes:
        """All arrivals as ``key time`` lines; then forget them."""
        lines = "".join(f"{key} {at!r}\n" for key, at in self.arrivals)
        self.arrivals = []
        return lines.encode()


def _response(body: bytes) -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def _serve(log: Log, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One keep-alive connection: read requests until the peer closes."""
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            arrived = time.time()
            request_line, _, header_block = head.partition(b"\r\n")
            length = 0
            key = ""
            close = False
            for line in header_block.split(b"\r\n"):
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == _KEY_HEADER:
                    key = value.strip().decode()
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            if length:
                await reader.readexactly(length)
            path = request_line.split(b" ")[1] if b" " in request_line else b"/"
            if path == b"/_count":
                writer.write(_response(str(len(log.arrivals)).encode()))
            elif path == b"/_log":
                writer.write(_response(log.text()))
            else:
                log.arrivals.append((key, arrived))
                writer.write(_OK)
            await writer.drain()
            if close:
                return
    finally:
        writer.close()


async def main() -> None:
    """Listen on a free port of 127.0.0.1, print it, serve until SIGTERM."""
    log = Log()
    server = await asyncio.start_server(
        lambda r, w: _serve(log, r, w), "127.0.0.1", 0, backlog=1024
    )
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
