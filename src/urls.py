"""Endpoint URLs: the rules a webhook URL must meet, and the form in which one may be shown.

The rules are checked once, where a URL enters (the API's create and update), so that every later
reader (the fan-out's summary, the POST activity) can use a stored URL as it is. They come in two
layers:

- :func:`parse`: the URL is one the sender can use, read the way the sender reads it (httpx), in
  any mode. Anything that httpx would refuse, silently change or read differently from a browser
  is refused here with a reason, instead of failing every delivery later.
- :func:`check_endpoint_url`: what this deployment allows on top of that: ``https`` to a public
  host outside dev mode. :func:`address_problem` holds the address rule on its own, so a check of
  the addresses a host name resolves to at send time can reuse it.

Userinfo (``https://user:password@host/``) is allowed: httpx sends it as HTTP Basic auth, a
common way for receivers to authenticate senders. It is a credential, so :func:`redact` drops it
(and the query string, where tokens also live) from everything but the owner's own API view.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote

import httpx

#: Longest URL accepted (characters); browsers and proxies commonly cap near here.
MAX_URL_LENGTH = 2048
#: DNS limits (RFC 1035 section 2.3.4): a name of at most 253 characters, labels of 1-63.
_MAX_HOST_LENGTH = 253

_DNS_LABEL = "[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_TOP_LABEL = "[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?"
#: The common ASCII form of an endpoint URL, as the OpenAPI document states it: a DNS name, an
#: optional port 1-65535 and a plain path. The rules below accept more (IDN hosts, IP literals,
#: userinfo, query strings, percent-encoding); everything this pattern matches is accepted in
#: dev mode, so schema-driven clients and tests generate only URLs we take.
DOCUMENTED_PATTERN = (
    rf"^https?://(?:{_DNS_LABEL}\.){{0,2}}{_TOP_LABEL}"
    r"(?::(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
    r"(?:/[A-Za-z0-9._~!$&'()*+,;=:@/-]*)?$"
)
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_PORT = re.compile(r"[0-9]{1,5}")
#: Dots that IDNA treats as ``.``: a host written with them reads as another host than it shows.
_UNICODE_DOTS = ("\u3002", "\uff0e", "\uff61")
#: Names that only mean something on the local network (RFC 6761, RFC 8375, common practice).
_LOCAL_SUFFIXES = ("localhost", "localdomain", "local", "internal", "home.arpa")
#: IPv6 prefixes that carry an IPv4 address: NAT64 (RFC 6052); 6to4 has its own property.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class InvalidEndpointUrl(ValueError):
    """A URL the sender cannot use; the message says why and never repeats the URL."""


@dataclass(frozen=True, slots=True)
class EndpointUrl:
    """A URL as the sender will use it: ``host`` is the ASCII (IDNA) form, without brackets;
    ``address`` is set when the host is an IP literal; ``port`` is None for the scheme's
    default."""

    scheme: str
    host: str
    port: int | None
    address: Address | None


def _authority(url: str) -> tuple[str, str, str]:
    """``(scheme, authority, rest)`` of ``scheme://authority/rest``, split on text alone (so
    it never raises); the authority is empty when there is no ``://``."""
    scheme, sep, after = url.partition("://")
    if not sep:
        return "", "", url
    end = min((i for i in (after.find(c) for c in "/?#") if i >= 0), default=len(after))
    return scheme, after[:end], after[end:]


def _text_problem(url: str) -> str | None:
    """What in the characters of ``url`` makes it unusable or ambiguous, if anything."""
    if len(url) > MAX_URL_LENGTH:
        return f"must be at most {MAX_URL_LENGTH} characters"
    if any(unicodedata.category(c)[0] in "CZ" for c in url):
        return "must not contain spaces, control or invisible characters (percent-encode them)"
    if "\\" in url:
        return "must not contain a backslash (browsers read it as '/', HTTP clients do not)"
    if "#" in url:
        return "must not have a fragment ('#…'): it is never sent to the endpoint"
    if _BAD_PERCENT.search(url):
        return "has a '%' that is not followed by two hex digits"
    return None


def _authority_problem(authority: str) -> str | None:
    """What in ``user@host:port`` httpx would read other than as written, if anything."""
    if authority.count("@") > 1:
        return "userinfo must percent-encode '@' as %40"
    host_port = authority.rpartition("@")[2]
    if any(dot in host_port for dot in _UNICODE_DOTS):
        return "host must separate its labels with '.'"
    port = host_port.rpartition("]")[2] if host_port.startswith("[") else host_port
    _, colon, port_text = port.rpartition(":")
    if colon and port_text and not (_PORT.fullmatch(port_text) and 1 <= int(port_text) <= 65535):
        return "port must be a number from 1 to 65535"
    return None


def _host_problem(host: str) -> str | None:
    """What makes an ASCII host name (not an address) unusable, if anything."""
    if len(host) > _MAX_HOST_LENGTH:
        return f"host must be at most {_MAX_HOST_LENGTH} characters"
    if not all(_LABEL.fullmatch(label) for label in host.split(".")):
        return (
            "host must be a DNS name: labels of letters, digits and inner hyphens, 1-63 "
            "characters, separated by single dots, no trailing dot"
        )
    return None


def parse(url: str) -> EndpointUrl:
    """``url`` read the way the sender reads it, or :class:`InvalidEndpointUrl` with the reason.

    These rules hold in every mode: an absolute ``http``/``https`` URL with a host, at most
    2048 characters, no whitespace, control or invisible characters, no backslash, no fragment,
    only well-formed percent-escapes, a port (if given) of 1-65535, a host that is a DNS name
    (non-ASCII names must IDNA-encode) or an IPv4/IPv6 literal without a zone, and not an address
    no one can send to (unspecified, multicast, broadcast).
    """
    problem = _text_problem(url) or _authority_problem(_authority(url)[1])
    if problem:
        raise InvalidEndpointUrl(problem)
    try:
        parsed = httpx.URL(url)
        _ = parsed.host  # decodes "xn--" labels: one that is not valid punycode raises here
    except (httpx.InvalidURL, ValueError) as err:  # IDNAError is a ValueError
        raise InvalidEndpointUrl(f"is not a URL an HTTP client can use ({err})") from None
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        raise InvalidEndpointUrl("must be an absolute http(s) URL with a host")
    host = parsed.raw_host.decode("ascii")
    address: Address | None = None
    if ":" in host:
        if "%" in host:
            raise InvalidEndpointUrl("an IPv6 host must not carry a zone ('%…')")
        address = ipaddress.IPv6Address(host)
    elif _NUMERIC_LABEL.fullmatch(host.rpartition(".")[2]):
        # Browsers (WHATWG) read a host ending in a number as IPv4, and the system resolver
        # reads many forms of it (127.1, 0x7f.1, 2130706433): only the dotted-decimal one is
        # what it looks like.
        try:
            address = ipaddress.IPv4Address(host)
        except ValueError:
            raise InvalidEndpointUrl(
                "host looks like an IPv4 address but is not one in dotted-decimal form (a.b.c.d)"
            ) from None
    elif problem := _host_problem(host):
        raise InvalidEndpointUrl(problem)
    if address is not None and not _sendable(address):
        raise InvalidEndpointUrl("host is an address no request can be sent to")
    return EndpointUrl(scheme=parsed.scheme, host=host, port=parsed.port, address=address)


def _sendable(address: Address) -> bool:
    return not (address.is_unspecified or address.is_multicast or address == _BROADCAST)


def _embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4 or NAT64), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_problem(address: Address, *, dev: bool) -> str | None:
    """Why the worker must not send to ``address``, or None when it may.

    Outside dev mode only globally reachable addresses are allowed (an IPv6 address carrying an
    IPv4 one must carry a global one too): a loopback, private, link-local or reserved target
    would let a customer make our workers call our own network.
    """
    if not _sendable(address):
        return "host is an address no request can be sent to"
    if dev:
        return None
    embedded = _embedded_ipv4(address)
    if not address.is_global or (embedded is not None and not embedded.is_global):
        return "must not point at a loopback, private or reserved address (dev mode only)"
    return None


def check_endpoint_url(url: str, *, dev: bool) -> str | None:
    """Why ``url`` cannot be an endpoint, or None when it can.

    On top of :func:`parse`, outside dev mode (``INFRAUDIT_DEV``) only ``https`` to a public
    host is allowed: plain http leaks the payload, and a local name or a non-global address
    literal would let a customer make our workers call our own network. Host names that resolve
    to such addresses are not caught here (that needs the address the connection uses).
    """
    try:
        target = parse(url)
    except InvalidEndpointUrl as err:
        return str(err)
    if dev:
        return None
    if target.scheme != "https":
        return "must use https (http is accepted only in dev mode)"
    if target.address is not None:
        return address_problem(target.address, dev=dev)
    host = target.host
    local = any(host == name or host.endswith(f".{name}") for name in _LOCAL_SUFFIXES)
    if "." not in host or local:
        return "must be a public host name, not a local one (accepted only in dev mode)"
    return None


def redact(url: str) -> str:
    """``url`` fit to show in logs, summaries and errors: ``scheme://host[:port]/path``.

    Userinfo, query string and fragment are dropped (credentials and tokens live there), and
    any space, control or invisible character is percent-encoded so a log line stays one line.
    Never raises, so it is safe on stored URLs written before the rules existed.
    """
    scheme, authority, rest = _authority(url)
    if not authority:
        return "(not an absolute URL)"
    path = re.split(r"[?#]", rest, maxsplit=1)[0]
    shown = f"{scheme.lower()}://{authority.rpartition('@')[2]}{path}"
    return "".join(quote(c, safe="") if unicodedata.category(c)[0] in "CZ" else c for c in shown)
