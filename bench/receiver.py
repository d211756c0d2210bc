"""The receiver: a minimal HTTP/1.1 keep-alive server on 127.0.0.1, in a process of its own.

It runs apart from the systems measured so that its CPU is not billed to them, and it is written
on bare asyncio streams so that it stays far faster than anything it measures. Every row of a
run POSTs to this one receiver. For each POST it reads the ``X-InfraAudit-Delivery`` header (the
delivery key, sent by the engine and by every baseline) and notes, for the attempt it answers
2xx, when that request arrived (headers and body read) and which attempt of that key it was; the
driver reads those notes over ``GET /_log`` (and ``GET /_count`` while waiting) to compute
publish-to-receipt latency.

The failure mix (``GET /_mode?fail=20&slow=10&slow_seconds=8``) makes the *first* attempt of a
fixed share of keys fail: :func:`bucket` puts each key in one of 100 buckets, buckets below
``fail`` answer 500, the next ``slow`` buckets answer 200 after ``slow_seconds``; every later
attempt answers 200 at once. ``GET /_mode`` alone turns it off. The choice is a hash of the key,
so the driver knows which deliveries were meant to be retried or slow without asking.

Run as ``python -m bench.receiver``: it prints its port on stdout once listening.
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from infraudit import signing

_KEY_HEADER = signing.DELIVERY_HEADER.lower().encode()
_OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
_FAILED = (
    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 6\r\n\r\nfailed"
)


def bucket(key: str) -> int:
    """The key's bucket, 0-99: the failure mix treats buckets below its shares specially."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % 100


@dataclass
class Mode:
    """What the first attempt of a key gets: shares in percent, and the slow answer's delay."""

    fail: int = 0
    slow: int = 0
    slow_seconds: float = 0.0

    def first_attempt(self, key: str) -> str:
        """``fail``, ``slow`` or ``ok`` for the first attempt of ``key``."""
        share = bucket(key)
        if share < self.fail:
            return "fail"
        if share < self.fail + self.slow:
            return "slow"
        return "ok"


@dataclass
class Log:
    """Accepted deliveries since the last ``/_log`` read, and attempts per key in this mode."""

    arrivals: list[tuple[str, float, int]] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)
    refused: int = 0
    mode: Mode = field(default_factory=Mode)

    def text(self) -> bytes:
        """All accepted deliveries as ``key time attempt`` lines; then forget them."""
        lines = "".join(f"{key} {at!r} {n}\n" for key, at, n in self.arrivals)
        self.arrivals = []
        return lines.encode()

    def set_mode(self, query: str) -> bytes:
        """Switch the failure mix (empty query: off) and forget attempt counts."""
        params = {name: values[-1] for name, values in parse_qs(query).items()}
        self.mode = Mode(
            fail=int(params.get("fail", 0)),
            slow=int(params.get("slow", 0)),
            slow_seconds=float(params.get("slow_seconds", 0)),
        )
        self.attempts = {}
        self.refused = 0
        return b"ok"


def _response(body: bytes) -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def _deliver(log: Log, key: str, arrived: float) -> bytes:
    """The answer to one delivery attempt, as the mode says; 2xx answers are logged."""
    attempt = log.attempts.get(key, 0) + 1
    log.attempts[key] = attempt
    what = log.mode.first_attempt(key) if attempt == 1 else "ok"
    if what == "fail":
        log.refused += 1
        return _FAILED
    log.arrivals.append((key, arrived, attempt))
    if what == "slow":
        await asyncio.sleep(log.mode.slow_seconds)
    return _OK


async def _serve(log: Log, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One keep-alive connection: read requests until the peer closes."""
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
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
            arrived = time.time()
            target = request_line.split(b" ")[1].decode() if b" " in request_line else "/"
            path, _, query = target.partition("?")
            if path == "/_count":
                writer.write(_response(str(len(log.arrivals)).encode()))
            elif path == "/_log":
                writer.write(_response(log.text()))
            elif path == "/_mode":
                writer.write(_response(log.set_mode(query)))
            elif path == "/_refused":
                writer.write(_response(str(log.refused).encode()))
            else:
                writer.write(await _deliver(log, key, arrived))
            await writer.drain()
            if close:
                return
    except ConnectionError:
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
