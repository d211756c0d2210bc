"""A real HTTP receiver on 127.0.0.1 whose answers a test scripts, recording every request."""

from __future__ import annotations

import asyncio
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    """One request as the receiver got it."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Answer:
    """What the receiver answers: status, body and an optional delay before answering."""

    status: int = 200
    body: bytes = b"ok"
    delay: float = 0.0


@dataclass
class Receiver:
    """Scripted answers (the last one repeats) and the requests received so far."""

    url: str
    answers: list[Answer] = field(default_factory=lambda: [Answer()])
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, *answers: Answer) -> None:
        """Answer the next requests with ``answers`` in order, repeating the last."""
        with self.lock:
            self.answers = list(answers)

    def next_answer(self, request: Received) -> Answer:
        with self.lock:
            self.requests.append(request)
            return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    async def wait_for(self, count: int, within: float = 20.0) -> list[Received]:
        """Wait (without blocking the event loop) until ``count`` requests arrived."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            await asyncio.sleep(0.02)
        raise AssertionError(f"expected {count} requests, got {len(self.requests)}")


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        request = Received(self.path, dict(self.headers.items()), body, time.time())
        answer = self.server.receiver.next_answer(request)
        if answer.delay:
            time.sleep(answer.delay)
        try:
            self.send_response(answer.status)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, format: str, *args: object) -> None:
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: Receiver


class _Server6(_Server):
    address_family = socket.AF_INET6


@contextmanager
def running_receiver(path: str = "/hook", host: str = "127.0.0.1") -> Iterator[Receiver]:
    """A receiver listening on a free port of ``host`` (127.0.0.1, or ``::1``) for the block."""
    server = (_Server6 if ":" in host else _Server)((host, 0), _Handler)
    port = server.server_address[1]
    authority = f"[{host}]" if ":" in host else host
    server.receiver = Receiver(url=f"http://{authority}:{port}{path}")
    with serving(server):
        yield server.receiver


@contextmanager
def serving(server: socketserver.BaseServer) -> Iterator[None]:
    """Serve ``server`` from a daemon thread for the block, then shut it down and close it."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
