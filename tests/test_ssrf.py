"""The SSRF policy (production rules, ``INFRAUDIT_DEV=0``): every spelling of an address and
every name is resolved and checked at send time, on the address actually connected to.

The suite's receivers live on 127.0.0.1, so these tests run workers with the policy on
(``build_worker`` with production settings, as ``python worker.py`` builds it) and prove that
loopback, private, link-local, CGNAT and IPv6 forms of them are refused with nothing reaching a
real server listening there, nothing recorded from it and no retry; that dev mode and
``INFRAUDIT_ALLOW_PRIVATE_TARGETS`` deliver the same URLs; that a name which changes its answer
(DNS rebinding) cannot move a checked connection; and that TLS keeps the name (SNI, certificate,
``Host``) while connecting to the checked address. Registration gives the fast 422.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pydantic
import pytest
import trustme
from pydantic import SecretStr
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from infraudit import deliveries, egress, urls
from infraudit.activities.send import SendActivities, http_error_text, new_http_client
from infraudit.cli.stack import DEV_ORG
from infraudit.config import Settings
from infraudit.deliveries import DeliveryDetail
from infraudit.store.db import Database
from infraudit.store.secret_box import Keyring
from infraudit.worker import build_worker
from infraudit.workflows.delivery import DeliverWebhook
from tests.api_fixtures import caller, running_api
from tests.cli_support import StackPorts, UpProcess, stack_env
from tests.conftest import Endpoints
from tests.helpers import eventually, start_test_delivery
from tests.worker_process import worker_env, worker_process

#: What the servers below answer: no delivery log may ever show it from a refused target.
INTERNAL_BODY = b"internal-only: db password hunter2"
#: The end of every send-time refusal.
NOT_SENT = "; nothing was sent, and it is not retried"
#: A public address (example.com's) that the routing backend below sends to a local server.
PUBLIC = "93.184.215.14"


# --- servers and network stand-ins --------------------------------------------------------


@dataclass
class Listener:
    """A server on 127.0.0.1 and ::1 (one port) that counts every connection it accepts and
    answers any request 200 with :data:`INTERNAL_BODY`; records ``Host`` headers and, over TLS,
    the server names (SNI) clients asked for."""

    port: int = 0
    connections: int = 0
    hosts: list[str] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            headers = dict(line.split(":", 1) for line in head.split("\r\n")[1:] if ":" in line)
            lowered = {k.strip().lower(): v.strip() for k, v in headers.items()}
            await reader.readexactly(int(lowered.get("content-length", "0")))
            self.hosts.append(lowered.get("host", ""))
            writer.write(
                b"HTTP/1.1 200 OK\r\nConnection: close\r\n"
                + f"Content-Length: {len(INTERNAL_BODY)}\r\n\r\n".encode()
                + INTERNAL_BODY
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def listening(tls: ssl.SSLContext | None = None) -> AsyncIterator[Listener]:
    """A :class:`Listener` on a free port of both loopbacks for the block."""
    listener = Listener()
    if tls is not None:
        tls.sni_callback = lambda _obj, name, _ctx: listener.server_names.append(name)
    for _ in range(20):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        try:
            server = await asyncio.start_server(
                listener.handle, host=["127.0.0.1", "::1"], port=port, ssl=tls
            )
            break
        except OSError:
            continue
    else:
        raise AssertionError("no port free on both loopbacks")
    listener.port = port
    try:
        yield listener
    finally:
        server.close()
        await server.wait_closed()


class Routing(httpcore.AsyncNetworkBackend):
    """The socket layer under the guard: records every host it is asked to connect to, and
    sends connections for ``routes`` (address -> local port) to 127.0.0.1, standing in for hosts
    on the internet."""

    def __init__(self, routes: dict[str, int] | None = None) -> None:
        self.asked: list[str] = []
        self.routes = routes or {}
        self.real = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.asked.append(host)
        if host in self.routes:
            host, port = "127.0.0.1", self.routes[host]
        return await self.real.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def sleep(self, seconds: float) -> None:
        await self.real.sleep(seconds)


def answering(table: dict[str, list[str]]) -> egress.Resolver:
    """A resolver that knows the names of ``table`` and no others."""

    async def resolve(host: str, port: int) -> list[urls.Address]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [ipaddress.ip_address(a) for a in table[host]]

    return resolve


# --- workers ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def production(client: Client, settings: Settings) -> AsyncIterator[Settings]:
    """A worker built as ``python worker.py`` builds it with ``INFRAUDIT_DEV=0``; its settings."""
    prod = settings.model_copy(
        update={
            "dev": False,
            "allow_private_targets": False,
            "task_queue": f"ssrf-prod-{uuid.uuid4().hex[:8]}",
        }
    )
    async with build_worker(client, prod) as built, built:
        yield prod


@asynccontextmanager
async def worker_with(
    client: Client, settings: Settings, db: Database, http: httpx.AsyncClient
) -> AsyncIterator[Settings]:
    """The real DeliverWebhook and send activity on a queue of their own, POSTing through
    ``http`` (a guard a test configured); yields the settings that start deliveries there."""
    here = settings.model_copy(update={"task_queue": f"ssrf-{uuid.uuid4().hex[:8]}"})
    sender = SendActivities(db, http, response_body_limit=settings.response_body_limit)
    try:
        async with Worker(
            client,
            task_queue=here.task_queue,
            workflows=[DeliverWebhook],
            activities=[sender.send_webhook],
            workflow_failure_exception_types=[pydantic.ValidationError],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            yield here
    finally:
        await http.aclose()


async def deliver_all(
    client: Client, settings: Settings, endpoints: Endpoints, org_id: str, targets: list[str]
) -> list[DeliveryDetail]:
    """Register each URL straight in the store (as a row written before the rules, or by the
    API under another policy, would be), deliver one event to each at once, and read the
    delivery log's entries in the same order."""
    started = []
    for url in targets:
        webhook_id, _ = await endpoints.add(org_id, url)
        handle = await start_test_delivery(
            client, settings, org_id=org_id, webhook_id=webhook_id, url=url
        )
        started.append((webhook_id, handle))

    async def logged(webhook_id: str, handle: WorkflowHandle[Any, Any]) -> DeliveryDetail:
        with suppress(WorkflowFailureError):  # the log says how it ended
            await handle.result()
        detail = await deliveries.get_delivery(
            client, org_id=org_id, webhook_id=webhook_id, delivery_id=handle.id
        )
        assert detail is not None
        return detail

    return list(await asyncio.gather(*(logged(*one) for one in started)))


async def deliver(
    client: Client, settings: Settings, endpoints: Endpoints, org_id: str, url: str
) -> DeliveryDetail:
    """:func:`deliver_all` for one URL."""
    (detail,) = await deliver_all(client, settings, endpoints, org_id, [url])
    return detail


# --- the address rule ---------------------------------------------------------------------

#: Every kind of address the policy refuses, with the words a refusal uses for it.
NOT_PUBLIC = {
    "127.0.0.1": "a loopback address",
    "127.255.255.254": "a loopback address",
    "10.0.0.5": "a private address",
    "172.16.0.1": "a private address",
    "192.168.1.1": "a private address",
    "169.254.169.254": "a link-local address",
    "100.64.0.1": "a shared (carrier-grade NAT) address",
    "0.1.2.3": "a reserved address",
    "192.0.0.1": "a reserved address",
    "192.0.2.1": "a documentation address",
    "198.51.100.7": "a documentation address",
    "203.0.113.9": "a documentation address",
    "198.18.0.1": "a benchmarking address",
    "192.88.99.1": "a reserved address",
    "240.0.0.1": "a reserved address",
    "0.0.0.0": "the unspecified address",
    "224.0.0.1": "a multicast address",
    "255.255.255.255": "the broadcast address",
    "::": "the unspecified address",
    "::1": "a loopback address",
    "fe80::1": "a link-local address",
    "fe80::1%eth0": "a link-local address",
    "fc00::1": "a private address",
    "fd12:3456::1": "a private address",
    "fec0::1": "a private address",
    "ff02::1": "a multicast address",
    "64:ff9b:1::a00:1": "a private address",
    "2001:db8::1": "a documentation address",
    "3fff::1": "a documentation address",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2": "a reserved address",  # Teredo
    "100::1": "a reserved address",
    "4000::1": "a reserved address",
    "::ffff:127.0.0.1": "an IPv6 form of a loopback address",  # IPv4-mapped
    "::ffff:10.0.0.5": "an IPv6 form of a private address",
    "::ffff:169.254.169.254": "an IPv6 form of a link-local address",
    "64:ff9b::7f00:1": "an IPv6 form of a loopback address",  # NAT64
    "64:ff9b::6440:1": "an IPv6 form of a shared (carrier-grade NAT) address",
    "2002:a00:5::1": "an IPv6 form of a private address",  # 6to4
    "2002:a9fe:a9fe::": "an IPv6 form of a link-local address",
    "::ffff:0:7f00:1": "a reserved address",  # IPv4-translated
    "::7f00:1": "a reserved address",  # IPv4-compatible
}
PUBLIC_ADDRESSES = [
    "8.8.8.8",
    PUBLIC,
    "172.32.0.1",
    "100.128.0.1",
    "2606:4700:4700::1111",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
]


@pytest.mark.parametrize(("address", "kind"), NOT_PUBLIC.items(), ids=NOT_PUBLIC.keys())
def test_every_non_public_kind_is_named_and_refused_unless_the_policy_is_lifted(
    address: str, kind: str
) -> None:
    parsed = ipaddress.ip_address(address)
    assert urls.non_public(parsed) == kind
    assert urls.address_problem(parsed, allow_private=False) is not None
    lifted = urls.address_problem(parsed, allow_private=True)
    unsendable = kind in ("the unspecified address", "a multicast address", "the broadcast address")
    assert (lifted is not None) == unsendable


@pytest.mark.parametrize("address", PUBLIC_ADDRESSES)
def test_public_addresses_and_their_ipv6_forms_are_allowed(address: str) -> None:
    assert urls.non_public(ipaddress.ip_address(address)) is None
    assert urls.address_problem(ipaddress.ip_address(address), allow_private=False) is None


# --- the guard: every spelling the system resolver reads ----------------------------------

#: Hosts as httpcore hands them to the guard, spelled every way the system resolver reads
#: 127.0.0.1 (decimal, hex, octal, short, padded, case), resolved by the real resolver.
LOOPBACK_SPELLINGS = [
    "2130706433",
    "0x7f000001",
    "0x7f.1",
    "0x7f.0x0.0x0.0x1",
    "017700000001",
    "0177.0.0.1",
    "0000177.0.0.1",
    "127.1",
    "127.0.1",
    "127.000.000.001",
    "localhost",
    "LOCALHOST",
]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
async def test_the_guard_resolves_every_spelling_and_refuses_loopback_before_any_connection(
    host: str,
) -> None:
    socket_layer = Routing()
    guard = egress.Guard(allow_private=False, backend=socket_layer)
    async with listening() as server:
        with pytest.raises(egress.RefusedTarget) as refused:
            await guard.connect_tcp(host, server.port, timeout=5)
    assert str(refused.value) == egress.NAME_NOT_PUBLIC
    assert socket_layer.asked == [] and server.connections == 0
    # The same spelling with the policy lifted reaches the server: it really means loopback.
    lifted = egress.Guard(allow_private=True, backend=socket_layer)
    async with listening() as server:
        stream = await lifted.connect_tcp(host, server.port, timeout=5)
        await stream.aclose()
    assert ipaddress.ip_address(socket_layer.asked[0]).is_loopback


async def test_a_name_is_reached_only_at_its_public_addresses() -> None:
    socket_layer = Routing({PUBLIC: 0})
    resolver = answering(
        {
            "metadata.cloud.example": ["169.254.169.254"],
            "split.example": ["10.0.0.5", "fd00::5", "127.0.0.1"],
            "mixed.example": ["10.0.0.5", PUBLIC],
        }
    )
    guard = egress.Guard(allow_private=False, resolver=resolver, backend=socket_layer)
    for name in ("metadata.cloud.example", "split.example"):
        with pytest.raises(egress.RefusedTarget, match="resolves only to addresses that are not"):
            await guard.connect_tcp(name, 443, timeout=5)
    assert socket_layer.asked == []
    async with listening() as public_host:
        socket_layer.routes[PUBLIC] = public_host.port
        stream = await guard.connect_tcp("mixed.example", 443, timeout=5)
        await stream.aclose()
    assert socket_layer.asked == [PUBLIC]


async def test_the_http_client_connects_only_through_the_guard() -> None:
    """IDNA dots, capitals, brackets: whatever httpx makes of the URL reaches the guard."""
    socket_layer = Routing()
    http = new_http_client(egress.Guard(allow_private=False, backend=socket_layer))
    async with listening() as server, http:
        for host in ("127\u30020\u30020\u30021", "LOCALHOST", "[::1]", "[::ffff:7f00:1]", "127.1"):
            with pytest.raises(egress.RefusedTarget):
                await http.post(f"http://{host}:{server.port}/hook", content=b"{}")
    assert socket_layer.asked == [] and server.connections == 0


# --- at send time, through a production worker --------------------------------------------

REFUSED_AT_SEND = {
    "loopback": ("http://127.0.0.1:{port}/hook", "the endpoint's address is a loopback address"),
    "IPv6 loopback": ("http://[::1]:{port}/hook", "the endpoint's address is a loopback address"),
    "IPv4-mapped loopback": (
        "http://[::ffff:127.0.0.1]:{port}/hook",
        "the endpoint's address is an IPv6 form of a loopback address",
    ),
    "localhost": ("http://localhost:{port}/hook", egress.NAME_NOT_PUBLIC),
    "LOCALHOST, https": ("https://LOCALHOST:{port}/hook", egress.NAME_NOT_PUBLIC),
    "private": ("https://10.0.0.5:{port}/hook", "the endpoint's address is a private address"),
    "cloud metadata": (
        "http://169.254.169.254/latest/meta-data/",
        "the endpoint's address is a link-local address",
    ),
    "CGNAT": (
        "https://100.64.0.1/hook",
        "the endpoint's address is a shared (carrier-grade NAT) address",
    ),
    "IPv6 link-local": ("https://[fe80::1]/hook", "the endpoint's address is a link-local address"),
    "unique local": ("https://[fd00::1]/hook", "the endpoint's address is a private address"),
    "IPv4-mapped private": (
        "https://[::ffff:10.0.0.5]/hook",
        "the endpoint's address is an IPv6 form of a private address",
    ),
    "NAT64 metadata": (
        "https://[64:ff9b::a9fe:a9fe]/hook",
        "the endpoint's address is an IPv6 form of a link-local address",
    ),
    "6to4 private": (
        "https://[2002:a00:5::]/hook",
        "the endpoint's address is an IPv6 form of a private address",
    ),
}
#: Spellings the URL rules themselves refuse (a row stored before them): the delivery ends
#: before any attempt, saying why.
UNUSABLE_AT_SEND = {
    "decimal": "http://2130706433:{port}/hook",
    "hex": "http://0x7f000001:{port}/hook",
    "octal": "http://0177.0.0.1:{port}/hook",
    "short": "http://127.1:{port}/hook",
}


async def test_a_production_worker_refuses_local_targets_at_send_time_and_nothing_reaches_them(
    client: Client, production: Settings, endpoints: Endpoints, org_id: str
) -> None:
    async with listening() as internal:
        targets = [url for url, _ in REFUSED_AT_SEND.values()] + list(UNUSABLE_AT_SEND.values())
        details = await deliver_all(
            client,
            production,
            endpoints,
            org_id,
            [url.format(port=internal.port) for url in targets],
        )
    logs = dict(zip(REFUSED_AT_SEND, details[: len(REFUSED_AT_SEND)], strict=True))
    gone = dict(zip(UNUSABLE_AT_SEND, details[len(REFUSED_AT_SEND) :], strict=True))
    assert internal.connections == 0
    for name, detail in logs.items():
        (attempt,) = detail.attempts  # one attempt: not retried
        expected = f"refused: {REFUSED_AT_SEND[name][1]}{NOT_SENT}"
        assert (detail.status, attempt.error) == ("failed", expected), name
        assert attempt.response_status is None and attempt.response_body is None
        assert (detail.response_status, detail.response_body) == (None, None)
        assert detail.error == f"1 attempt failed; last: {expected}"
    for name, detail in gone.items():
        assert (detail.status, detail.attempts) == ("failed", []), name
        assert detail.error is not None
        assert detail.error.startswith("endpoint URL cannot be used: "), detail.error


async def test_closed_open_and_tls_internal_ports_read_the_same(
    client: Client, production: Settings, endpoints: Endpoints, org_id: str
) -> None:
    """No internal port scan: a refusal happens before any packet, in words that do not depend
    on the port or on what listens there."""
    ca = trustme.CA()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(tls)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    async with listening() as plain, listening(tls) as secure:
        logs = await deliver_all(
            client,
            production,
            endpoints,
            org_id,
            [f"https://127.0.0.1:{port}/hook" for port in (plain.port, closed, secure.port)],
        )
    assert plain.connections == secure.connections == 0
    errors = {detail.attempts[0].error for detail in logs}
    assert errors == {f"refused: the endpoint's address is a loopback address{NOT_SENT}"}


@pytest.mark.parametrize(
    "lift", [{"dev": True}, {"dev": False, "allow_private_targets": True}], ids=["dev", "allow"]
)
async def test_dev_mode_or_allow_private_targets_deliver_the_same_urls(
    client: Client, settings: Settings, endpoints: Endpoints, org_id: str, lift: dict[str, bool]
) -> None:
    lifted = settings.model_copy(update={**lift, "task_queue": f"ssrf-{uuid.uuid4().hex[:8]}"})
    assert lifted.private_targets_allowed
    async with build_worker(client, lifted) as built, built, listening() as internal:
        logs = await deliver_all(
            client,
            lifted,
            endpoints,
            org_id,
            [
                url.format(port=internal.port)
                for url in (
                    "http://127.0.0.1:{port}/hook",
                    "http://localhost:{port}/hook",
                    "http://[::1]:{port}/hook",
                    "http://[::ffff:127.0.0.1]:{port}/hook",
                )
            ],
        )
    assert {(d.status, d.response_status) for d in logs} == {("delivered", 200)}
    assert {d.response_body for d in logs} == {INTERNAL_BODY.decode()}
    assert internal.connections == 4


async def test_dns_rebinding_cannot_move_a_checked_connection(
    client: Client, settings: Settings, db: Database, endpoints: Endpoints, org_id: str
) -> None:
    """The name answers a public address first and 127.0.0.1 afterwards. The first attempt
    connects to the public address it checked (one lookup, the original ``Host``); the next
    connection looks the name up again, is refused, and nothing reaches loopback."""
    answers = [[PUBLIC], ["127.0.0.1"]]
    lookups: list[str] = []

    async def rebinding(host: str, port: int) -> list[urls.Address]:
        lookups.append(host)
        return [ipaddress.ip_address(a) for a in answers[min(len(lookups), 2) - 1]]

    async with listening() as internal, listening() as public_host:
        socket_layer = Routing({PUBLIC: public_host.port})
        guard = egress.Guard(allow_private=False, resolver=rebinding, backend=socket_layer)
        url = f"http://rebind.customer.example:{internal.port}/hook"
        async with worker_with(client, settings, db, new_http_client(guard)) as here:
            first = await deliver(client, here, endpoints, org_id, url)
            # The public host closed that connection (Connection: close): a new one is needed.
            second = await deliver(client, here, endpoints, org_id, url)
    assert (first.status, first.response_status) == ("delivered", 200)
    assert public_host.hosts == [f"rebind.customer.example:{internal.port}"]
    assert socket_layer.asked == [PUBLIC]
    assert lookups == ["rebind.customer.example"] * 2
    assert second.status == "failed"
    assert second.attempts[0].error == f"refused: {egress.NAME_NOT_PUBLIC}{NOT_SENT}"
    assert internal.connections == 0


# --- TLS: the name stays the name ---------------------------------------------------------


async def test_tls_uses_the_original_name_for_sni_the_certificate_and_host(
    client: Client, settings: Settings, db: Database, endpoints: Endpoints, org_id: str
) -> None:
    """The guard maps the name to 127.0.0.1 (policy lifted for loopback in this test only) and
    connects to that address; the server still sees the name as SNI and ``Host``, and the
    certificate is checked against the name."""
    name = "hooks.customer.example"
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(server_tls)
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    resolver = answering({name: ["127.0.0.1"], "other.customer.example": ["127.0.0.1"]})

    def client_for(verify: ssl.SSLContext | bool) -> httpx.AsyncClient:
        return new_http_client(egress.Guard(allow_private=True, resolver=resolver), verify=verify)

    async with listening(server_tls) as server:
        url = f"https://{name}:{server.port}/hook"
        async with worker_with(client, settings, db, client_for(trusting)) as here:
            detail = await deliver(client, here, endpoints, org_id, url)
        assert (detail.status, detail.response_status) == ("delivered", 200)
        assert server.server_names == [name]
        assert server.hosts == [f"{name}:{server.port}"]

        # The certificate is verified against the name, and against the system's CAs unless
        # a test says otherwise.
        wrong_name = f"https://other.customer.example:{server.port}/hook"
        for http, target, reason in (
            (client_for(trusting), wrong_name, "Hostname mismatch"),
            (client_for(True), url, "unable to get local issuer certificate"),
        ):
            async with http:
                with pytest.raises(httpx.ConnectError) as failed:
                    await http.post(target, content=b"{}")
            assert http_error_text(failed.value, answered=False).startswith(
                "ConnectError: the TLS handshake with the receiver failed "
                f"(certificate verify failed: {reason}"
            )
    assert len(server.hosts) == 1


# --- registration: the fast 422 -----------------------------------------------------------

#: Literal forms the production API refuses at once, beyond tests/test_urls.py's table.
REFUSED_AT_REGISTRATION = {
    "benchmarking": "https://198.18.0.1/hook",
    "reserved": "https://240.0.0.1/hook",
    "this network": "https://0.1.2.3/hook",
    "IETF assignments": "https://192.0.0.1/hook",
    "IPv4-translated": "https://[::ffff:0:7f00:1]/hook",
    "IPv4-compatible": "https://[::7f00:1]/hook",
    "local-use NAT64": "https://[64:ff9b:1::a00:1]/hook",
    "site-local": "https://[fec0::1]/hook",
    "Teredo": "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/hook",
    "IPv6 documentation": "https://[2001:db8::1]/hook",
    "6to4 of metadata": "https://[2002:a9fe:a9fe::]/hook",
    "mapped CGNAT": "https://[::ffff:100.64.0.1]/hook",
    "resolves to private": "https://intranet.customer.example/hook",
    "resolves to metadata": "https://metadata.customer.example/hook",
}
#: Accepted by the production API: a public answer, a mixed one (the public address is the one
#: connected to), and names that do not resolve now (the send-time check decides then).
ACCEPTED_AT_REGISTRATION = [
    "https://public.customer.example/hook",
    "https://mixed.customer.example/hook",
    "https://not-yet.customer.example/hook",
]
RESOLVER = answering(
    {
        "intranet.customer.example": ["10.1.2.3", "fd00::3"],
        "metadata.customer.example": ["169.254.169.254"],
        "public.customer.example": [PUBLIC, "2606:4700:4700::1111"],
        "mixed.customer.example": ["10.1.2.3", PUBLIC],
    }
)


async def test_registration_refuses_non_public_targets_and_names_at_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(egress, "system_resolver", RESOLVER)
    prod = settings.model_copy(update={"dev": False, "allow_private_targets": False})
    allow = prod.model_copy(update={"allow_private_targets": True})
    async with (
        running_api(prod, None) as base,
        caller(base, settings.database_url, f"ssrf-{uuid.uuid4().hex[:8]}") as c,
        running_api(allow, None) as allow_base,
        caller(allow_base, settings.database_url, f"ssrf-{uuid.uuid4().hex[:8]}") as a,
    ):

        async def register(who: httpx.AsyncClient, url: str) -> httpx.Response:
            return await who.post(
                "/v1/webhooks", json={"url": url, "event_types": ["alert.created"]}
            )

        for name, url in REFUSED_AT_REGISTRATION.items():
            response = await register(c.http, url)
            assert response.status_code == 422, (name, response.text)
            error = response.json()["error"]
            assert error["field"] == "url", name
            if name.startswith("resolves"):
                # The same words as the refusal at send time (egress.NAME_NOT_PUBLIC).
                expected = f"url: {egress.NAME_NOT_PUBLIC}; accepted only in dev mode"
                assert error["message"] == expected, name
            else:
                assert error["message"].startswith("url: must not point at "), name
            allowed = await register(a.http, url)
            assert allowed.status_code == 201, (name, allowed.text)
        for url in ACCEPTED_AT_REGISTRATION:
            assert (await register(c.http, url)).status_code == 201, url
        # Lifting the address policy does not lift https.
        plain = await register(a.http, "http://10.1.2.3/hook")
        assert plain.status_code == 422
        assert plain.json()["error"]["message"] == (
            "url: must use https (http is accepted only in dev mode)"
        )


async def test_a_registration_lookup_that_hangs_lets_the_url_through_after_its_bound() -> None:
    async def never(host: str, port: int) -> list[urls.Address]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    problem = await egress.registration_problem(
        "https://slow.customer.example/hook",
        dev=False,
        allow_private=False,
        resolver=never,
        lookup_seconds=0.2,
    )
    assert problem is None


# --- processes as operators start them ----------------------------------------------------


@pytest.mark.parametrize(
    ("variables", "delivered"),
    [({}, False), ({"INFRAUDIT_ALLOW_PRIVATE_TARGETS": "1"}, True)],
    ids=["defaults", "allow-private-targets"],
)
async def test_a_worker_started_directly_enforces_the_policy_unless_told_otherwise(
    client: Client,
    settings: Settings,
    endpoints: Endpoints,
    org_id: str,
    tmp_path: Path,
    variables: dict[str, str],
    delivered: bool,
) -> None:
    """``python worker.py`` with no INFRAUDIT_DEV is a production worker: it is the one that
    connects, so it refuses loopback whoever started the delivery."""
    here = settings.model_copy(update={"task_queue": f"ssrf-proc-{uuid.uuid4().hex[:8]}"})
    env = worker_env(client, database_url=settings.database_url, task_queue=here.task_queue)
    del env["INFRAUDIT_DEV"]
    env.update(variables)
    async with listening() as internal:
        with worker_process(env, tmp_path / "worker.log") as worker:
            await worker.ready()
            detail = await deliver(
                client, here, endpoints, org_id, f"http://127.0.0.1:{internal.port}/hook"
            )
    if delivered:
        assert (detail.status, detail.response_status, internal.connections) == (
            "delivered",
            200,
            1,
        )
    else:
        assert detail.attempts[0].error == (
            f"refused: the endpoint's address is a loopback address{NOT_SENT}"
        )
        assert internal.connections == 0
        assert "refused: the endpoint's address is a loopback address" in worker.log()


async def test_make_run_with_dev_0_runs_the_stack_under_production_rules(
    tmp_path: Path,
) -> None:
    """``INFRAUDIT_DEV=0 make run``: the announcement says which rules hold and gives a key;
    the API refuses local targets at once, and a loopback row already in the store (written
    under dev mode, say) is refused by the stack's worker when pinged."""
    ports = StackPorts.pick()
    env = {**stack_env(ports), "INFRAUDIT_DEV": "0"}
    with UpProcess(tmp_path, env) as up:
        key = await asyncio.to_thread(up.wait_ready)
        assert "with production rules: https endpoints at public addresses only" in up.stdout
        async with (
            listening() as internal,
            httpx.AsyncClient(
                base_url=ports.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
            ) as api,
        ):
            for url in (f"http://127.0.0.1:{internal.port}/hook", "https://127.0.0.1/hook"):
                answer = await api.post(
                    "/v1/webhooks", json={"url": url, "event_types": ["alert.created"]}
                )
                assert answer.status_code == 422 and answer.json()["error"]["field"] == "url"
            state = tmp_path / ".infraudit"
            key_env = Settings(
                database_url=f"sqlite:///{state / 'infraudit.db'}",
                secret_keys=SecretStr((state / "secret.key").read_text().strip()),
            )
            stored = Database(key_env.database_url, Keyring.from_settings(key_env))
            try:
                webhook_id, _ = await Endpoints(stored).add(
                    DEV_ORG, f"http://127.0.0.1:{internal.port}/hook"
                )
            finally:
                await stored.dispose()
            ping = await api.post(f"/v1/webhooks/{webhook_id}/test")
            assert ping.status_code == 202, ping.text
            path = f"/v1/webhooks/{webhook_id}/deliveries/{ping.json()['delivery_id']}"
            detail = await eventually(
                lambda: api.get(path),
                lambda r: r.status_code == 200 and r.json()["status"] == "failed",
            )
        assert up.stop() == 0
    assert [a["error"] for a in detail.json()["attempts"]] == [
        f"refused: the endpoint's address is a loopback address{NOT_SENT}"
    ]
    assert detail.json()["response_body"] is None and internal.connections == 0
