"""Endpoint URLs: every URL the sender cannot use is refused at the edge with a 422 naming
``url``; every usable one is accepted and delivered exactly as written.

The refusals go through the real API (create and update), in dev mode and outside it; the
deliveries through the real API, worker and receivers on 127.0.0.1 and ::1.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from infraudit import urls
from infraudit.config import Settings
from tests.api_fixtures import Caller, caller, running_api
from tests.helpers import eventually
from tests.receiver import Receiver, running_receiver

#: Refused in every mode: no HTTP client could use them, or httpx would read them differently
#: from how they read (a browser, urlsplit), so the stored URL would not be the one POSTed to.
UNUSABLE = {
    "port above 65535": "http://127.0.0.1:99999/hook",
    "port with a leading zero": "http://127.0.0.1:08080/hook",
    "userinfo that is not UTF-8": "http://%FF%FE:%C3%28@127.0.0.1:9000/hook",
    "a quote httpx would encode": 'http://127.0.0.1:9000/x"onmouseover=alert(1)',
    "angle brackets in the query": 'http://127.0.0.1:9000/q?a="><img/src=x>',
    "braces and a pipe": "http://127.0.0.1:9000/{a|b}",
    "a backtick and a caret": "http://127.0.0.1:9000/a`b^c",
    "port 0": "http://127.0.0.1:0/hook",
    "negative port": "http://example.com:-1/hook",
    "signed port": "http://example.com:+80/hook",
    "port with underscore": "http://example.com:8_0/hook",
    "port in other digits": "http://example.com:\u0668\u0660/hook",
    "port not a number": "http://example.com:http/hook",
    "space in host": "https://exa mple.com/hook",
    "space in path": "https://example.com/a b",
    "leading space": " https://example.com/hook",
    "trailing newline": "https://example.com/hook\n",
    "tab in host": "https://exam\tple.com/hook",
    "NUL": "https://example.com/\x00",
    "zero-width space": "https://ex\u200bample.com/hook",
    "right-to-left override": "https://example.com/\u202ekooh",
    "fragment": "https://example.com/hook#section",
    "backslash": "https://example.com\\@evil.example/hook",
    "two @": "https://a@b@example.com/hook",
    "bad percent-escape": "https://example.com/%zz",
    "unclosed bracket": "https://[::1/hook",
    "bracketed non-address": "https://[example]/hook",
    "IPv6 zone": "http://[fe80::1%25eth0]/hook",
    "IPv4 octet over 255": "https://256.1.1.1/hook",
    "five-part IPv4": "https://1.2.3.4.5/hook",
    "decimal IPv4": "http://2130706433/hook",
    "hex IPv4": "http://0x7f.1/hook",
    "short IPv4": "http://127.1/hook",
    "octal IPv4": "http://0177.0.0.1/hook",
    "ideographic dots": "https://127\u30020\u30020\u30021/hook",
    "symbol IDNA refuses": "https://\u2603.example/hook",
    "fullwidth letters": "https://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/hook",
    "bad punycode": "https://xn--zz.example/hook",
    "empty label": "https://a..b.example/hook",
    "leading hyphen": "https://-a.example/hook",
    "underscore": "https://exa_mple.com/hook",
    "label over 63": f"https://{'a' * 64}.example/hook",
    "host over 253": f"https://{'.'.join(['a' * 60] * 5)}/hook",
    "percent in host": "https://exa%6Dple.com/hook",
    "trailing dot": "https://example.com./hook",
    "unspecified address": "http://0.0.0.0:8000/hook",
    "unspecified IPv6": "http://[::]:8000/hook",
    "multicast": "https://224.0.0.1/hook",
    "IPv6 multicast": "https://[ff02::1]/hook",
    "broadcast": "https://255.255.255.255/hook",
    "no slashes": "https:example.com/hook",
    "no host": "https:///hook",
    "nothing after scheme": "https://",
    "mailto": "mailto:ops@example.com",
    "ftp": "ftp://example.com/hook",
    "not a URL": "not a url",
    "over 2048 characters": "https://example.com/" + "a" * 2100,
}

#: Usable, but outside dev mode only https to a public host is allowed.
LOCAL_OR_PLAIN = {
    "plain http": "http://example.com/hook",
    "loopback": "https://127.0.0.1/hook",
    "IPv6 loopback": "https://[::1]/hook",
    "IPv4-mapped loopback": "https://[::ffff:127.0.0.1]/hook",
    "NAT64 of a private address": "https://[64:ff9b::a00:1]/hook",
    "6to4 of a private address": "https://[2002:a00:1::]/hook",
    "local-use NAT64 of a private address": "https://[64:ff9b:1::a00:1]/hook",
    "IPv4-compatible loopback": "https://[::127.0.0.1]/hook",
    "IPv4-compatible loopback, hex": "https://[::7f00:1]/hook",
    "IPv4-translated (SIIT) loopback": "https://[::ffff:0:7f00:1]/hook",
    "unique local IPv6": "https://[fc00::1]/hook",
    "link-local IPv6": "https://[fe80::1]/hook",
    "private": "https://10.1.2.3/hook",
    "shared address space": "https://100.64.0.1/hook",
    "cloud metadata": "https://169.254.169.254/latest",
    "documentation range": "https://192.0.2.1/hook",
    "localhost": "https://localhost/hook",
    "LOCALHOST with port": "https://LOCALHOST:8443/hook",
    "under localhost": "https://api.localhost/hook",
    "mDNS": "https://printer.local/hook",
    "internal": "https://metadata.google.internal/hook",
    "home.arpa": "https://nas.home.arpa/hook",
    "single label": "https://intranet/hook",
}

#: Accepted outside dev mode; stored and shown exactly as given.
PUBLIC = {
    "plain": "https://hooks.example.com/infraudit",
    "IDN host": "https://b\u00fccher.example/hook",
    "IDN host in capitals": "https://B\u00dcCHER.example/hook",
    "A-label host": "https://xn--bcher-kva.example/hook",
    "explicit port": "https://example.com:8443/hook",
    "default port": "https://example.com:443/hook",
    "empty port": "https://example.com:/hook",
    "encoded path and query": "https://example.com/p%20q/%C3%A9?x=1&y=%2F&z=",
    "non-ASCII path": "https://example.com/caf\u00e9?q=\u00fc",
    "query only": "https://example.com?token=abc",
    "userinfo": "https://user:pa%40ss@example.com/hook",
    "public IPv4": "https://8.8.8.8/hook",
    "public IPv6 with port": "https://[2606:4700:4700::1111]:8443/hook",
    "digits in labels": "https://123.example.com/hook",
}


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    return body["error"]


@pytest.fixture(scope="module")
async def dev_api(settings: Settings, client: Client) -> AsyncIterator[str]:
    async with running_api(settings.model_copy(update={"dev": True}), client) as base:
        yield base


@pytest.fixture(scope="module")
async def prod_api(settings: Settings) -> AsyncIterator[str]:
    async with running_api(settings.model_copy(update={"dev": False}), None) as base:
        yield base


@pytest.fixture(scope="module")
async def dev_caller(dev_api: str, settings: Settings) -> AsyncIterator[Caller]:
    """One org for the refusal tests (they create nothing that others could see)."""
    async with caller(dev_api, settings.database_url, f"urls-dev-{uuid.uuid4().hex[:8]}") as c:
        yield c


@pytest.fixture(scope="module")
async def prod_caller(prod_api: str, settings: Settings) -> AsyncIterator[Caller]:
    async with caller(prod_api, settings.database_url, f"urls-prod-{uuid.uuid4().hex[:8]}") as c:
        yield c


async def register(c: Caller, url: str) -> httpx.Response:
    return await c.http.post("/v1/webhooks", json={"url": url, "event_types": ["alert.created"]})


async def assert_refused(c: Caller, url: str) -> None:
    """422 naming ``url`` on create and on update, and the existing webhook keeps its URL."""
    created = await register(c, url)
    assert created.status_code == 422, (url, created.text)
    assert error_of(created)["field"] == "url"
    assert error_of(created)["message"].startswith("url: ")
    keeper = await register(c, "https://example.com/keep")
    assert keeper.status_code == 201, keeper.text
    hook_id = keeper.json()["id"]
    patched = await c.http.patch(f"/v1/webhooks/{hook_id}", json={"url": url})
    assert patched.status_code == 422, (url, patched.text)
    assert error_of(patched)["field"] == "url"
    assert (await c.http.get(f"/v1/webhooks/{hook_id}")).json()["url"] == (
        "https://example.com/keep"
    )
    assert (await c.http.delete(f"/v1/webhooks/{hook_id}")).status_code == 204


@pytest.mark.parametrize("url", UNUSABLE.values(), ids=UNUSABLE.keys())
async def test_an_unusable_url_is_refused_in_dev_mode_and_outside_it(
    dev_caller: Caller, prod_caller: Caller, url: str
) -> None:
    await assert_refused(dev_caller, url)
    await assert_refused(prod_caller, url)


@pytest.mark.parametrize("url", LOCAL_OR_PLAIN.values(), ids=LOCAL_OR_PLAIN.keys())
async def test_plain_http_and_local_targets_are_refused_outside_dev_mode_only(
    dev_caller: Caller, prod_caller: Caller, url: str
) -> None:
    await assert_refused(prod_caller, url)
    accepted = await register(dev_caller, url)
    assert accepted.status_code == 201, accepted.text


@pytest.mark.parametrize("url", PUBLIC.values(), ids=PUBLIC.keys())
async def test_a_usable_public_url_is_accepted_as_given_and_parsed_as_the_sender_will(
    prod_caller: Caller, url: str
) -> None:
    created = await register(prod_caller, url)
    assert created.status_code == 201, created.text
    hook_id = created.json()["id"]
    assert created.json()["url"] == url
    assert (await prod_caller.http.get(f"/v1/webhooks/{hook_id}")).json()["url"] == url
    moved = await prod_caller.http.patch(f"/v1/webhooks/{hook_id}", json={"url": url + "x"})
    assert moved.status_code == 200, moved.text
    sent = httpx.Request("POST", url)
    target = urls.parse(url)
    assert (target.host, target.port) == (sent.url.raw_host.decode(), sent.url.port)


def test_an_idn_host_is_sent_to_its_a_label() -> None:
    sent = httpx.Request("POST", "https://B\u00dcCHER.example/hook")
    assert sent.url.raw_host == b"xn--bcher-kva.example"
    assert urls.parse("https://B\u00dcCHER.example/hook").host == "xn--bcher-kva.example"


async def test_a_refusal_never_repeats_the_credentials_in_the_url(
    dev_caller: Caller, prod_caller: Caller
) -> None:
    for c, url in [
        (dev_caller, "https://user:hunter2@exa mple.com/hook?token=tok-secret"),
        (dev_caller, "https://user:hunter2@example.com:99999/hook?token=tok-secret"),
        (dev_caller, "https://user:hunter2@\u2603.example/hook?token=tok-secret"),
        (prod_caller, "https://user:hunter2@10.0.0.1/hook?token=tok-secret"),
        (prod_caller, "http://user:hunter2@example.com/hook?token=tok-secret"),
    ]:
        response = await register(c, url)
        assert response.status_code == 422, url
        assert "hunter2" not in response.text
        assert "tok-secret" not in response.text


async def ping_and_receive(c: Caller, url: str, receiver: Receiver) -> tuple[str, str]:
    """Register ``url`` through the API, send it a test ping; (received path, delivery id)."""
    created = await register(c, url)
    assert created.status_code == 201, created.text
    hook_id = created.json()["id"]
    ping = await c.http.post(f"/v1/webhooks/{hook_id}/test")
    assert ping.status_code == 202, ping.text
    delivery_id = ping.json()["delivery_id"]
    (received,) = await receiver.wait_for(1)
    assert received.headers["X-InfraAudit-Webhook"] == hook_id

    async def status() -> str:
        row = await c.http.get(f"/v1/webhooks/{hook_id}/deliveries/{delivery_id}")
        return row.json()["status"] if row.status_code == 200 else "unknown"

    assert await eventually(status, lambda s: s != "pending" and s != "unknown") == "delivered"
    return received.path, delivery_id


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize(
    ("suffix", "expected_path"),
    [
        ("/hook", "/hook"),
        ("", "/"),
        ("/hook/a%20b/%C3%A9?token=x&y=%2F&z=", "/hook/a%20b/%C3%A9?token=x&y=%2F&z="),
        ("/caf\u00e9?q=\u00fc", "/caf%C3%A9?q=%C3%BC"),
    ],
    ids=["path", "no path", "encoded path and query", "non-ASCII path and query"],
)
async def test_a_dev_mode_url_is_delivered_to_the_path_and_query_it_names(
    dev_api: str, settings: Settings, client: Client, suffix: str, expected_path: str
) -> None:
    with running_receiver(path="") as receiver:
        async with caller(dev_api, settings.database_url, f"org-{uuid.uuid4().hex[:8]}") as c:
            path, delivery_id = await ping_and_receive(c, receiver.url + suffix, receiver)
    assert path == expected_path
    summary = await (await client.get_workflow_handle(delivery_id).describe()).static_summary()
    assert summary == f"webhook.ping → {urls.redact(receiver.url + suffix)}"
    assert "?" not in (summary or "")


@pytest.mark.usefixtures("worker")
async def test_userinfo_is_sent_as_basic_auth_and_kept_out_of_the_summary(
    dev_api: str, settings: Settings, client: Client, receiver: Receiver
) -> None:
    url = receiver.url.replace("http://", "http://hook-user:pa%40ss@")
    async with caller(dev_api, settings.database_url, f"org-{uuid.uuid4().hex[:8]}") as c:
        _, delivery_id = await ping_and_receive(c, url, receiver)
    expected = base64.b64encode(b"hook-user:pa@ss").decode()
    assert receiver.requests[0].headers["Authorization"] == f"Basic {expected}"
    summary = await (await client.get_workflow_handle(delivery_id).describe()).static_summary()
    assert summary == f"webhook.ping → {receiver.url}"


@pytest.mark.usefixtures("worker")
async def test_an_ipv6_literal_is_accepted_and_delivered_in_dev_mode(
    dev_api: str, settings: Settings
) -> None:
    with running_receiver(host="::1") as receiver:
        async with caller(dev_api, settings.database_url, f"org-{uuid.uuid4().hex[:8]}") as c:
            path, _ = await ping_and_receive(c, receiver.url + "?v=6", receiver)
    assert path == "/hook?v=6"


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("https://user:pw@example.com:8443/a/b?token=t#frag", "https://example.com:8443/a/b"),
        ("http://127.0.0.1:99999/hook", "http://127.0.0.1:99999/hook"),
        ("https://[::1/hook?x", "https://[::1/hook"),
        ("https://a@b@example.com/p", "https://example.com/p"),
        ("HTTPS://Example.com?q=1", "https://Example.com"),
        ("https://ex\nample.com/a b\u202e", "https://ex%0Aample.com/a%20b%E2%80%AE"),
        ("not a url", "(not an absolute URL)"),
        ("", "(not an absolute URL)"),
    ],
)
def test_redact_drops_credentials_and_never_raises_on_old_rows(stored: str, shown: str) -> None:
    assert urls.redact(stored) == shown


#: Hosts httpx refuses with a message that quotes them (the fullwidth one is "localhost").
QUOTED_BY_HTTPX = ["0177.0.0.1", "\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54"]


@pytest.mark.parametrize("host", QUOTED_BY_HTTPX, ids=["octal", "fullwidth"])
async def test_a_refusal_never_quotes_the_host_back(dev_caller: Caller, host: str) -> None:
    """The URL may carry credentials: messages say what is wrong, not what was sent."""
    response = await register(dev_caller, f"http://u:pw@{host}/hook")
    assert response.status_code == 422, response.text
    assert host not in response.json()["error"]["message"]
