"""Endpoint URLs: the rules a webhook URL must meet, and the form in which one may be shown.

The rules are checked once, where a URL enters (the API's create and update), so that every later
reader (the fan-out's summary, the POST activity) can use a stored URL as it is. They come in two
layers:

- :func:`parse`: the URL is one the sender can use, read the way the sender reads it (httpx), in
  any mode. Anything that httpx would refuse, silently change or read differently from a browser
  is refused here with a reason, instead of failing every delivery later.
- :func:`check_endpoint_url`: what this deployment allows on top of that: ``https`` to a public
  host outside dev mode. :func:`address_problem` holds the address rule on its own: the worker's
  connection guard (:mod:`infraudit.egress`) applies it at send time to every address a host
  resolves to, which is where the policy is enforced; here it only gives a fast, clear 422.

Userinfo (``https://user:password@host/``) is allowed: httpx sends it as HTTP Basic auth, a
common way for receivers to authenticate senders. It is a credential, so :func:`redact` drops it
(and the query string, where tokens also live) from everything but the owner's own API view.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote, unquote

import httpx

#: Longest URL accepted (characters); browsers and proxies commonly cap near here.
MAX_URL_LENGTH = 2048
#: DNS limits (RFC 1035 section 2.3.4): a name of at most 253 characters, labels of 1-63.
_MAX_HOST_LENGTH = 253

#: The OpenAPI ``format`` of an endpoint URL. No pattern can state the rules of this module
#: (IDN hosts, the checks of :func:`parse`, what the deployment allows), so the document names
#: them with a format of their own: clients treat an unknown format as a note, and our
#: schema-driven tests generate values for it (tests/schemathesis_hooks.py).
OPENAPI_FORMAT = "webhook-url"
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
#: ASCII characters RFC 3986 does not allow unencoded, which httpx percent-encodes on the way
#: out: a URL holding them would be sent as another URL than the one stored.
_REENCODED = frozenset('"<>^`{|}')
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
#: A port as written: digits without a leading zero (":0443" reads as 443 to some parsers and
#: is refused by others, so it is not accepted in any spelling but the plain one).
_PORT = re.compile(r"[1-9][0-9]{0,4}")
#: Dots that IDNA treats as ``.``: a host written with them reads as another host than it shows.
_UNICODE_DOTS = ("\u3002", "\uff0e", "\uff61")
#: Names that only mean something on the local network (RFC 6761, RFC 8375, common practice).
_LOCAL_SUFFIXES = ("localhost", "localdomain", "local", "internal", "home.arpa")
#: IPv6 prefixes that carry an IPv4 address: NAT64 (RFC 6052); 6to4 has its own property.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
#: IPv4 ranges that are not public, by kind: the IANA IPv4 Special-Purpose Address Registry
#: (RFC 6890 and later), every entry not marked globally reachable, plus multicast and the
#: deprecated 6to4 relay anycast range (RFC 7526). Written out rather than taken from
#: ``ipaddress``'s ``is_global``, whose coverage changes between Python versions.
_IPV4_KINDS: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple(
    (ipaddress.IPv4Network(network), kind)
    for network, kind in (
        ("0.0.0.0/32", "the unspecified address"),
        ("0.0.0.0/8", "a reserved address"),  # "this network": Linux connects it to itself
        ("10.0.0.0/8", "a private address"),
        ("100.64.0.0/10", "a shared (carrier-grade NAT) address"),
        ("127.0.0.0/8", "a loopback address"),
        ("169.254.0.0/16", "a link-local address"),  # cloud metadata: 169.254.169.254
        ("172.16.0.0/12", "a private address"),
        ("192.0.0.0/24", "a reserved address"),
        ("192.0.2.0/24", "a documentation address"),
        ("192.88.99.0/24", "a reserved address"),
        ("192.168.0.0/16", "a private address"),
        ("198.18.0.0/15", "a benchmarking address"),
        ("198.51.100.0/24", "a documentation address"),
        ("203.0.113.0/24", "a documentation address"),
        ("224.0.0.0/4", "a multicast address"),
        ("255.255.255.255/32", "the broadcast address"),
        ("240.0.0.0/4", "a reserved address"),
    )
)
#: IPv6 ranges that are not public, by kind (IANA IPv6 Special-Purpose Address Registry). The
#: forms that carry an IPv4 address (mapped, NAT64, 6to4) are judged by that address instead;
#: everything outside global unicast ``2000::/3`` is refused as reserved.
_IPV6_KINDS: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(network), kind)
    for network, kind in (
        ("::/128", "the unspecified address"),
        ("::1/128", "a loopback address"),
        ("64:ff9b:1::/48", "a private address"),  # local-use NAT64 (RFC 8215)
        ("fc00::/7", "a private address"),  # unique local (RFC 4193)
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a private address"),  # site-local, deprecated (RFC 3879)
        ("ff00::/8", "a multicast address"),
        ("2001::/23", "a reserved address"),  # IETF protocol assignments, Teredo among them
        ("2001:db8::/32", "a documentation address"),
        ("3fff::/20", "a documentation address"),
    )
)
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")

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
    if any(c in _REENCODED for c in url):
        return 'must percent-encode the characters " < > ^ ` { | } (HTTP clients change them)'
    if "#" in url:
        return "must not have a fragment ('#…'): it is never sent to the endpoint"
    if _BAD_PERCENT.search(url):
        return "has a '%' that is not followed by two hex digits"
    return None


def _authority_problem(authority: str) -> str | None:
    """What in ``user@host:port`` httpx would read other than as written, if anything."""
    if authority.count("@") > 1:
        return "userinfo must percent-encode '@' as %40"
    userinfo, _, host_port = authority.rpartition("@")
    try:
        unquote(userinfo, errors="strict")
    except UnicodeDecodeError:
        # httpx would send U+FFFD in place of the bytes: not the credentials registered.
        return "userinfo must percent-encode UTF-8 text"
    if any(dot in host_port for dot in _UNICODE_DOTS):
        return "host must separate its labels with '.'"
    port = host_port.rpartition("]")[2] if host_port.startswith("[") else host_port
    _, colon, port_text = port.rpartition(":")
    if colon and port_text and not (_PORT.fullmatch(port_text) and 1 <= int(port_text) <= 65535):
        return "port must be a number from 1 to 65535, without leading zeros"
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
    except (httpx.InvalidURL, ValueError):  # IDNAError is a ValueError
        # Not httpx's message: it quotes the host, and the URL may carry credentials.
        raise InvalidEndpointUrl(
            "is not a URL an HTTP client can use (its host or port is malformed)"
        ) from None
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
    """False for addresses no request can go to (in any mode), IPv4 ones inside IPv6 included."""
    for one in (address, _embedded_ipv4(address)):
        if one is not None and (one.is_unspecified or one.is_multicast or one == _BROADCAST):
            return False
    return True


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


def non_public(address: Address) -> str | None:
    """What kind of non-public address ``address`` is ("a loopback address", "an IPv6 form of
    a private address", ...), or None when it is a public one.

    Public means globally reachable unicast. An IPv6 address that carries an IPv4 one
    (IPv4-mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``) is judged by
    the IPv4 address it reaches; other IPv4-in-IPv6 forms (IPv4-compatible ``::a.b.c.d``,
    IPv4-translated ``::ffff:0:a.b.c.d``) lie in ``::/8`` and are refused as reserved.
    """
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        kind = non_public(embedded)
        return None if kind is None else f"an IPv6 form of {kind}"
    if isinstance(address, ipaddress.IPv4Address):
        kinds: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = _IPV4_KINDS
    else:
        address = ipaddress.IPv6Address(int(address))  # without a zone ("%eth0")
        kinds = _IPV6_KINDS
    for network, kind in kinds:
        if address in network:
            return kind
    if isinstance(address, ipaddress.IPv6Address) and address not in _GLOBAL_UNICAST:
        return "a reserved address"
    # A second net for ranges registered after the tables above were written.
    return None if address.is_global else "a reserved address"


def address_problem(address: Address, *, allow_private: bool) -> str | None:
    """Why the worker must not send to ``address``, or None when it may.

    Unless ``allow_private`` (dev mode or ``INFRAUDIT_ALLOW_PRIVATE_TARGETS``), only public
    addresses are allowed (:func:`non_public`): a loopback, private, link-local or reserved
    target would let a customer make our workers call our own network.
    """
    if not _sendable(address):
        return "host is an address no request can be sent to"
    if allow_private:
        return None
    kind = non_public(address)
    if kind is not None:
        return f"must not point at {kind} (accepted only in dev mode)"
    return None


def check_endpoint_url(url: str, *, dev: bool, allow_private: bool) -> str | None:
    """Why ``url`` cannot be an endpoint, or None when it can.

    On top of :func:`parse`, outside dev mode (``INFRAUDIT_DEV``) only ``https`` is allowed
    (plain http leaks the payload) and, unless ``allow_private`` (dev mode or
    ``INFRAUDIT_ALLOW_PRIVATE_TARGETS``), only a public host: a local name or a non-public
    address literal would let a customer make our workers call our own network. What a host
    name resolves to is checked by :func:`infraudit.egress.registration_problem` (a courtesy)
    and by the worker's connection guard at send time (the guarantee).
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
        return address_problem(target.address, allow_private=allow_private)
    if allow_private:
        return None
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
