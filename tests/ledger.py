"""A receiver that keeps a ledger of every POST by delivery id, for the reliability tests.

Unlike ``tests/receiver.py`` (answers scripted in arrival order), it decides each answer from
the delivery id and how many times that id came before, so many deliveries can each fail
first and then succeed, whatever order they arrive in. It speaks HTTP/1.1 with keep-alive on
bare asyncio streams (the worker's client reuses connections), can hold a request without
answering (an endpoint that hangs) and can stall after the status line (a worker killed while
it reads the answer). Used by ``tests/test_reliability.py`` and the load test, ``tests/load.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from infraudit import signing


@dataclass(frozen=True)
class Reply:
    """How to answer one POST.

    ``delay``: seconds to wait before answering (a slow receiver).
    ``hold``: never answer, keep the connection open (the worker's timeout ends it).
    ``stall``: send the status line and part of the body, then hold (the status arrived).
    """

    status: int = 200
    delay: float = 0.0
    hold: bool = False
    stall: bool = False


#: Decides the reply from (delivery id, n), n = 1 for the first POST of that id.
Rule = Callable[[str, int], Reply]


def always_ok(_delivery_id: str, _n: int) -> Reply:
    """Every POST answered 200."""
    return Reply()


def fail_first(times: int, status: int = 503) -> Rule:
    """The first ``times`` POSTs of each delivery answered ``status``, later ones 200."""
    return lambda _delivery_id, n: Reply(status) if n <= times else Reply()


@dataclass(frozen=True)
class Receipt:
    """One POST as it arrived; ``status`` is what it was answered (None: held or stalled)."""

    delivery_id: str
    webhook_id: str
    event: str
    body: bytes
    signature: str
    arrived: float
    status: int | None


@dataclass
class Ledger:
    """Every POST received, by delivery id; ``holding`` counts requests held unanswered now."""

    rule: Rule = always_ok
    url: str = ""
    receipts: list[Receipt] = field(default_factory=list)
    holding: int = 0
    most_held: int = 0
    _by_id: dict[str, list[Receipt]] = field(default_factory=lambda: defaultdict(list))
    _open: dict[asyncio.StreamWriter, asyncio.Task[None]] = field(default_factory=dict)

    def of(self, delivery_id: str) -> list[Receipt]:
        """The POSTs of one delivery, in arrival order."""
        return list(self._by_id.get(delivery_id, []))

    def by_delivery(self) -> dict[str, list[Receipt]]:
        """Every delivery id seen, with its POSTs in arrival order."""
        return {d: list(posts) for d, posts in self._by_id.items()}

    def answered_2xx(self, delivery_id: str) -> bool:
        """Whether some POST of the delivery was answered with a 2xx."""
        return any(r.status is not None and 200 <= r.status < 300 for r in self.of(delivery_id))

    async def wait_until(
        self, condition: Callable[[Ledger], bool], within: float = 30.0, what: str = ""
    ) -> None:
        """Wait (without blocking the loop) until ``condition(self)`` holds."""
        deadline = time.monotonic() + within
        while not condition(self):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"receiver: {what or 'condition'} not met in {within}s "
                    f"({len(self.receipts)} POSTs so far)"
                )
            await asyncio.sleep(0.02)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection: answer requests until the peer closes or a reply holds it."""
        task = asyncio.current_task()
        assert task is not None
        self._open[writer] = task
        try:
            while await self._one(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._open.pop(writer, None)
            writer.close()

    def close_all(self) -> None:
        """Drop every open connection (held ones included)."""
        for writer in list(self._open):
            writer.transport.abort()

    async def closed(self) -> None:
        """Drop every open connection and wait until their handlers have ended."""
        tasks = list(self._open.values())
        self.close_all()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read one request and answer it; False when the connection is done."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        delivery_id = headers.get(signing.DELIVERY_HEADER.lower(), "")
        reply = self.rule(delivery_id, len(self._by_id[delivery_id]) + 1)
        answered = None if reply.hold or reply.stall else reply.status
        receipt = Receipt(
            delivery_id=delivery_id,
            webhook_id=headers.get(signing.WEBHOOK_HEADER.lower(), ""),
            event=headers.get(signing.EVENT_HEADER.lower(), ""),
            body=body,
            signature=headers.get(signing.SIGNATURE_HEADER.lower(), ""),
            arrived=time.monotonic(),
            status=answered,
        )
        self.receipts.append(receipt)
        self._by_id[delivery_id].append(receipt)
        if reply.hold or reply.stall:
            if reply.stall:
                writer.write(f"HTTP/1.1 {reply.status} OK\r\nContent-Length: 10\r\n\r\nok".encode())
                await writer.drain()
            self.holding += 1
            self.most_held = max(self.most_held, self.holding)
            try:
                await reader.read()  # until the worker gives up and closes (or dies)
            finally:
                self.holding -= 1
            return False
        if reply.delay:
            await asyncio.sleep(reply.delay)
        writer.write(f"HTTP/1.1 {reply.status} X\r\nContent-Length: 2\r\n\r\nok".encode())
        await writer.drain()
        return True


@asynccontextmanager
async def ledger(rule: Rule = always_ok) -> AsyncIterator[Ledger]:
    """A :class:`Ledger` listening on a free port of 127.0.0.1 for the block."""
    book = Ledger(rule)
    server = await asyncio.start_server(book.serve, "127.0.0.1", 0, backlog=4096)
    book.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"
    try:
        yield book
    finally:
        server.close()
        await book.closed()
