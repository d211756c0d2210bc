"""Outbound connections to endpoints: resolve, check every address, connect only to a checked one.

Customers type endpoint URLs, so a URL could make our workers call our own network (server-side
request forgery): a loopback admin port, a private service, the cloud metadata endpoint at
169.254.169.254. The URL's text cannot settle this: the system resolver reads ``2130706433``,
``0x7f000001``, ``0177.0.0.1`` and ``127.1`` as 127.0.0.1, and a name can resolve to anything,
differently from one lookup to the next (DNS rebinding). So the policy is enforced where the
connection is made, as Svix does (``NonLocalDnsResolver`` in svix-server) and smokescreen does:

- :class:`Guard` is the HTTP client's network backend. For every new connection it resolves the
  host once (an address literal in any spelling, or a name), keeps the addresses the policy
  allows (:func:`infraudit.urls.address_problem`), refuses with :class:`RefusedTarget` when none
  is left, and connects to one of the kept addresses: never to a second lookup's answer, so
  there is no window between check and connect. httpcore hands the TLS layer the URL's host as
  server name separately, and httpx writes the ``Host`` header from the URL, so SNI, certificate
  verification and ``Host`` all stay the original name's.
- A refusal happens before any packet goes to the target, with one text per kind of host (never
  the resolved address, never anything that depends on the port): a customer cannot use it to
  tell closed, open and TLS ports of our network apart, nor to read our internal DNS.
- :func:`registration_problem` applies the same check when a URL is registered, as a courtesy
  (a fast, clear 422): its lookup is bounded and a lookup that fails or takes too long lets the
  URL through, because the send-time check is the guarantee.

The policy is lifted by dev mode or ``INFRAUDIT_ALLOW_PRIVATE_TARGETS``
(``Settings.private_targets_allowed``); the guard still resolves and connects the same way then.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable

import anyio
import httpcore
import httpx

from infraudit import urls

#: Looks up ``(host, port)``: the addresses to try, in the order to try them; raises OSError
#: (``socket.gaierror``) when the name does not resolve. Tests pass their own.
Resolver = Callable[[str, int], Awaitable[list[urls.Address]]]

#: Seconds the API waits for a registration-time lookup before letting the URL through.
REGISTRATION_LOOKUP_SECONDS = 2.0
#: Seconds before the next address is tried while the previous one is still connecting
#: (Happy Eyeballs, RFC 8305; the same delay anyio uses): a host whose IPv6 address is
#: unreachable from the worker does not spend the whole timeout on it.
CONNECTION_ATTEMPT_DELAY = 0.25

#: The reason given for a host name none of whose addresses is public. It names no address and
#: no kind: the customer can look up their own name, while naming what our resolver answered
#: would read out our internal DNS.
NAME_NOT_PUBLIC = (
    "the endpoint's host resolves only to addresses that are not public (loopback, private, "
    "link-local or reserved)"
)


class RefusedTarget(Exception):
    """The endpoint's host is, or resolves only to, addresses the policy refuses; nothing was
    sent. The message is the reason in the customer's terms."""


async def system_resolver(host: str, port: int) -> list[urls.Address]:
    """The addresses the system resolver gives ``host`` (the resolver an HTTP client would use,
    so every spelling it reads is covered), in its order of preference, without repeats."""
    infos = await anyio.getaddrinfo(host.encode("ascii"), port, type=socket.SOCK_STREAM)
    found: list[urls.Address] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0])
        if address not in found:
            found.append(address)
    return found


def _literal(host: str) -> urls.Address | None:
    """``host`` as an address when it is one in canonical form (what :func:`urls.parse`
    allows); other spellings go through the resolver like names."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def allowed(
    host: str, addresses: Iterable[urls.Address], *, allow_private: bool
) -> list[urls.Address]:
    """The ``addresses`` of ``host`` (at least one) the policy lets a connection go to, or
    RefusedTarget.

    Like Svix, the disallowed ones are dropped and the rest kept (a name with one public and
    one private address is reached at the public one only); none left is a refusal.
    """
    kept = [a for a in addresses if urls.address_problem(a, allow_private=allow_private) is None]
    if kept:
        return kept
    literal = _literal(host)
    if literal is not None:
        kind = urls.non_public(literal)
        if kind is None or allow_private:
            raise RefusedTarget("the endpoint's address is one no request can be sent to")
        raise RefusedTarget(f"the endpoint's address is {kind}")
    raise RefusedTarget(NAME_NOT_PUBLIC)


class Guard(httpcore.AsyncNetworkBackend):
    """httpcore network backend that resolves, checks and connects to a checked address only.

    ``allow_private`` lifts the policy (dev mode, ``INFRAUDIT_ALLOW_PRIVATE_TARGETS``);
    ``resolver`` and ``backend`` (the one that opens sockets) are the system resolver and
    httpcore's anyio backend (what httpx uses on asyncio) unless a test passes its own.
    """

    def __init__(
        self,
        *,
        allow_private: bool,
        resolver: Resolver = system_resolver,
        backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.allow_private = allow_private
        self._resolve = resolver
        self._backend = backend or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """A stream to one of ``host``'s allowed addresses; RefusedTarget when it has none.

        ``timeout`` (the connect timeout) bounds the lookup and each connection attempt. Lookup
        failures become httpcore's ConnectError/ConnectTimeout, as without the guard.
        """
        literal = _literal(host)
        if literal is not None:
            addresses = [literal]
        else:
            try:
                with anyio.fail_after(timeout):
                    addresses = await self._resolve(host, port)
            except TimeoutError:
                raise httpcore.ConnectTimeout("timed out looking up the host") from None
            except OSError as err:
                raise httpcore.ConnectError(str(err)) from err
            if not addresses:
                raise httpcore.ConnectError("the host resolves to no address")
        checked = allowed(host, addresses, allow_private=self.allow_private)
        return await self._first_connection(checked, port, timeout, local_address, socket_options)

    async def _first_connection(
        self,
        addresses: list[urls.Address],
        port: int,
        connect_timeout: float | None,
        local_address: str | None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None,
    ) -> httpcore.AsyncNetworkStream:
        """The first of ``addresses`` to accept a connection, trying the next one each
        :data:`CONNECTION_ATTEMPT_DELAY` or as soon as the previous one failed; the other
        attempts are cancelled (a late one that connects anyway is closed)."""
        winner: httpcore.AsyncNetworkStream | None = None
        errors: list[Exception] = []

        async def attempt(address: urls.Address, failed: anyio.Event) -> None:
            nonlocal winner
            try:
                stream = await self._backend.connect_tcp(
                    str(address),
                    port,
                    timeout=connect_timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as err:
                errors.append(err)
                failed.set()
                return
            if winner is None:
                winner = stream
                group.cancel_scope.cancel()
            else:
                await stream.aclose()

        async with anyio.create_task_group() as group:
            for address in addresses:
                failed = anyio.Event()
                group.start_soon(attempt, address, failed)
                with anyio.move_on_after(CONNECTION_ATTEMPT_DELAY):
                    await failed.wait()
        if winner is not None:
            return winner
        raise errors[0]

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Never: endpoints are TCP hosts (the client is built without ``uds``)."""
        raise RefusedTarget("the endpoint is not a network host")

    async def sleep(self, seconds: float) -> None:
        """httpcore's pause between its own connection retries (none are configured)."""
        await self._backend.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (same request handling and exception mapping) with its connection
    pool built on a :class:`Guard`.

    ``httpx.AsyncHTTPTransport`` takes no network backend, so this builds the pool it would
    build, plus the backend; every method it inherits works on ``self._pool``. Not calling its
    ``__init__`` keeps a second pool on the unguarded backend from ever existing.
    """

    def __init__(
        self, guard: Guard, *, verify: ssl.SSLContext | bool, limits: httpx.Limits
    ) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=guard,
        )


async def registration_problem(
    url: str,
    *,
    dev: bool,
    allow_private: bool,
    resolver: Resolver | None = None,
    lookup_seconds: float = REGISTRATION_LOOKUP_SECONDS,
) -> str | None:
    """Why ``url`` cannot be registered, or None: :func:`urls.check_endpoint_url`, then, while
    the policy holds, a lookup of a host name refused when it yields no public address.

    The lookup is bounded by ``lookup_seconds``; a name that does not resolve (yet) or answers
    too slowly is let through: at send time the guard decides, for each connection.
    """
    problem = urls.check_endpoint_url(url, dev=dev, allow_private=allow_private)
    if problem or dev or allow_private:
        return problem
    target = urls.parse(url)
    if target.address is not None:
        return None
    resolve = resolver or system_resolver
    try:
        with anyio.fail_after(lookup_seconds):
            addresses = await resolve(target.host, target.port or 443)
        if addresses:
            allowed(target.host, addresses, allow_private=False)
    except (OSError, TimeoutError):
        return None
    except RefusedTarget:
        return f"{NAME_NOT_PUBLIC}; accepted only in dev mode"
    return None
