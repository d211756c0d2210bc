"""Settings → Webhooks in a real browser: Debian's Chromium, driven by Playwright, against the
real stack (API over uvicorn, the session's worker and Temporal dev server, receivers on
127.0.0.1). Each test follows what a customer does and asserts what they would see.

One browser for the module, a fresh context (no cookies, no storage) per test; every test also
fails on a console error (a CSP violation among them) through the ``tab`` fixture.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.async_api import Browser, Page, expect
from pydantic import SecretStr, ValidationError
from temporalio.client import Client

from infraudit import egress, signing
from infraudit.api import page as page_frame
from infraudit.api.signin import SignInKeys
from infraudit.cli.commands import create_api_key
from infraudit.config import Settings
from infraudit.store import webhooks
from infraudit.store.db import Database
from infraudit.store.secret_box import new_key
from tests.api_fixtures import running_api
from tests.browser import (
    DESKTOP,
    PHONE,
    TIME_ZONE,
    Tab,
    blocking_violations,
    chromium,
    new_tab,
    overflows_horizontally,
    sign_in,
)
from tests.conftest import Endpoints
from tests.helpers import eventually, start_test_delivery
from tests.receiver import Answer, Receiver

#: Where the page's delivery links point (a setting; nothing is fetched from it).
TEMPORAL_UI = "http://temporal-ui.example:8233"
#: Seconds to wait for a delivery to show its outcome (the worker retries within about 1 s).
DELIVERY_WAIT = 30_000


def page_settings(settings: Settings, **changes: object) -> Settings:
    """The session's settings for an API serving the page: dev mode (receivers are http on
    127.0.0.1), a sign-in key, a Temporal UI base."""
    return settings.model_copy(
        update={
            "dev": True,
            "signin_key": SecretStr(new_key()),
            "temporal_ui_url": TEMPORAL_UI,
            **changes,
        }
    )


@dataclass
class Site:
    base: str
    settings: Settings


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
async def site(settings: Settings, client: Client, worker: None) -> AsyncIterator[Site]:
    served = page_settings(settings)
    async with running_api(served, client) as base:
        yield Site(base, served)


@pytest.fixture
async def tab(browser: Browser, site: Site) -> AsyncIterator[Tab]:
    async with new_tab(browser, base_url=site.base) as opened:
        yield opened
        assert opened.watch.unexpected_errors() == []


@pytest.fixture
async def key(settings: Settings, org_id: str) -> str:
    """An API key of the test's own org."""
    return await create_api_key(settings.database_url, org_id)


async def v1(site: Site, key: str, method: str, path: str) -> httpx.Response:
    """The JSON API, as the same org."""
    async with httpx.AsyncClient(
        base_url=site.base, headers={"Authorization": f"Bearer {key}"}
    ) as http:
        return await http.request(method, path)


async def local_time_shown(page: Page, selector: str) -> None:
    """The ``<time>`` reads in the browser's zone (Asia/Kolkata, +05:30); UTC in its title."""
    element = page.locator(selector).first
    # A row htmx has just swapped in is localised by app.js a moment later: wait for it.
    await expect(element).to_contain_text("GMT+5:30")
    moment = datetime.fromisoformat((await element.get_attribute("datetime") or "").rstrip("Z"))
    moment = moment.replace(tzinfo=UTC)
    local = moment.astimezone(ZoneInfo(TIME_ZONE))
    text = await element.inner_text()
    assert local.strftime("%I:%M:%S") in text and "GMT+5:30" in text, text
    assert await element.get_attribute("title") == moment.strftime("%Y-%m-%d %H:%M:%S UTC")


# --- the guide's steps ------------------------------------------------------------------------


async def test_guide_steps_add_a_webhook_copy_its_secret_once_and_see_the_test_event(
    tab: Tab, site: Site, key: str, receiver: Receiver
) -> None:
    page = tab.page
    await tab.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.base)
    await page.goto(site.base)  # `/` leads to Settings → Webhooks, which asks to sign in
    await expect(page).to_have_url(f"{site.base}/settings/sign-in")
    await sign_in(page, site.base, key)
    await expect(page.get_by_text("No webhooks yet")).to_be_visible()

    await page.get_by_role("link", name="Add webhook").first.click()
    await page.get_by_label("Endpoint URL").fill(receiver.url)
    await page.get_by_label("Description").fill("prod alerts")
    await page.get_by_label("drift.detected", exact=True).check()
    await page.get_by_label("alert.created", exact=True).check()
    await page.get_by_role("button", name="Save").click()

    secret = await page.get_by_role("textbox", name="Signing secret").input_value()
    assert secret.startswith("whsec_")
    await expect(page.get_by_text("It is shown only this once.")).to_be_visible()
    await page.get_by_role("button", name="Copy").click()
    await expect(page.get_by_text("Copied to the clipboard.")).to_be_visible()
    assert await page.evaluate("navigator.clipboard.readText()") == secret
    webhook_page = page.url

    # Never again: back after leaving, a reload, the list, the webhook's page opened later.
    await page.get_by_role("navigation", name="Breadcrumb").get_by_role("link").first.click()
    await expect(page).to_have_url(f"{site.base}/settings/webhooks")

    async def secret_gone() -> None:
        await expect(page.get_by_role("heading", level=1)).to_be_visible()
        assert await page.locator("#secret").count() == 0
        assert secret not in await page.content()

    await page.go_back()
    await expect(page).to_have_url(webhook_page)
    await secret_gone()
    await page.reload()
    await secret_gone()
    for url in (f"{site.base}/settings/webhooks", webhook_page):
        await page.goto(url)
        await secret_gone()

    row = page.locator("tr", has_text=receiver.url)
    await page.goto(f"{site.base}/settings/webhooks")
    await expect(row).to_contain_text("prod alerts")
    await expect(row).to_contain_text("alert.created")
    await expect(row).to_contain_text("drift.detected")
    await expect(row).to_contain_text("enabled")
    await expect(row).to_contain_text("None yet")

    await row.get_by_role("link", name=receiver.url).click()
    await page.get_by_role("button", name="Send test event").click()
    outcome = page.locator(".test-result")
    await expect(outcome.locator(".badge-delivered")).to_be_visible(timeout=DELIVERY_WAIT)
    await expect(outcome).to_contain_text("HTTP 200")
    first = page.locator("#history tbody tr").first
    await expect(first.locator(".badge-delivered")).to_be_visible(timeout=DELIVERY_WAIT)
    await expect(first.locator("td.response")).to_have_text("200")
    await expect(first).to_contain_text("webhook.ping")
    await local_time_shown(page, "#history tbody time")

    # What arrived is signed with the secret the page showed.
    [received] = await receiver.wait_for(1)
    assert signing.verify_signature(
        received.body, secret, received.headers[signing.SIGNATURE_HEADER]
    )
    delivery_id = received.headers[signing.DELIVERY_HEADER]

    await first.get_by_role("link", name=delivery_id).click()
    await expect(page.get_by_role("heading", name="Request payload")).to_be_visible()
    shown = await page.locator("pre.code").first.inner_text()
    assert shown == json.dumps(json.loads(received.body), indent=2, ensure_ascii=False)
    temporal = page.get_by_role("link", name="Open in the Temporal UI")
    expected_link = f"{TEMPORAL_UI}/namespaces/default/workflows/{delivery_id}"
    assert await temporal.get_attribute("href") == expected_link
    attempt = page.locator("section.attempt")
    await expect(attempt).to_have_count(1)
    await expect(attempt).to_contain_text("200")
    await expect(attempt.locator("pre")).to_have_text("ok")

    await page.goto(f"{site.base}/settings/webhooks")
    await expect(row.locator(".badge-delivered")).to_be_visible()
    await local_time_shown(page, "tr .latest time")


async def test_refused_input_is_shown_by_its_field_and_saves_nothing(
    tab: Tab, site: Site, key: str, settings: Settings, client: Client, browser: Browser
) -> None:
    page = tab.page
    await sign_in(page, site.base, key)

    async def submit(url: str, types: list[str]) -> int:
        await page.goto(f"{site.base}/settings/webhooks/new")
        await page.get_by_label("Endpoint URL").fill(url)
        for name in types:
            await page.get_by_label(name, exact=True).check()
        async with page.expect_response(lambda r: r.request.method == "POST") as answer:
            await page.get_by_role("button", name="Save").click()
        return (await answer.value).status

    async def reason(url: str, served: Settings) -> str:
        problem = await egress.registration_problem(
            url, dev=served.dev, allow_private=served.private_targets_allowed
        )
        assert problem
        return problem

    assert await submit("not a url", []) == 422
    await expect(page.locator("#url-error")).to_have_text(await reason("not a url", site.settings))
    await expect(page.locator("#event_types-error")).to_have_text("choose at least one event type")
    await expect(page.get_by_label("Endpoint URL")).to_have_value("not a url")
    await expect(page.get_by_label("Endpoint URL")).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_role("alert")).to_contain_text("Nothing was saved.")

    unsendable = "https://0.0.0.0/hook"  # refused by the URL policy even in dev mode
    assert await submit(unsendable, ["job.completed"]) == 422
    await expect(page.locator("#url-error")).to_have_text(await reason(unsendable, site.settings))
    await expect(page.locator("#event_types-error")).to_have_count(0)
    await expect(page.get_by_label("job.completed", exact=True)).to_be_checked()

    assert (await v1(site, key, "GET", "/v1/webhooks")).json() == {"data": []}
    await page.goto(f"{site.base}/settings/webhooks")
    await expect(page.get_by_text("No webhooks yet")).to_be_visible()

    # Outside dev mode the page refuses what the API refuses there: http, local targets.
    strict = page_settings(settings, dev=False)
    async with running_api(strict, client) as base, new_tab(browser) as other:
        page = other.page
        await sign_in(page, base, key)
        site_strict = Site(base, strict)
        for url in ("http://example.com/hook", "https://127.0.0.1/hook"):
            await page.goto(f"{base}/settings/webhooks/new")
            await page.get_by_label("Endpoint URL").fill(url)
            await page.get_by_label("cost.anomaly", exact=True).check()
            await page.get_by_role("button", name="Save").click()
            await expect(page.locator("#url-error")).to_have_text(await reason(url, strict))
        assert (await v1(site_strict, key, "GET", "/v1/webhooks")).json() == {"data": []}
        assert other.watch.unexpected_errors() == []


# --- the delivery log -------------------------------------------------------------------------


async def test_an_endpoint_answering_500_shows_failed_with_its_body_and_every_attempt(
    tab: Tab, site: Site, key: str, org_id: str, endpoints: Endpoints, receiver: Receiver
) -> None:
    receiver.script(Answer(500, b'{"error": "database is locked"}'))
    webhook_id, _ = await endpoints.add(org_id, receiver.url, ["alert.created"])
    page = tab.page
    await sign_in(page, site.base, key)
    await page.goto(f"{site.base}/settings/webhooks/{webhook_id}")
    await page.get_by_role("button", name="Send test event").click()

    outcome = page.locator(".test-result")
    await expect(outcome.locator(".badge-failed")).to_be_visible(timeout=DELIVERY_WAIT)
    await expect(outcome).to_contain_text("3 attempts failed")
    row = page.locator("#history tbody tr").first
    await expect(row.locator(".badge-failed")).to_be_visible(timeout=DELIVERY_WAIT)
    await expect(row.locator("td.response")).to_have_text("500")

    await row.locator("td a").click()
    await expect(page.locator("#delivery .facts").first).to_contain_text("failed")
    attempts = page.locator("section.attempt")
    await expect(attempts).to_have_count(3)
    for number in range(3):
        attempt = attempts.nth(number)
        await expect(attempt.get_by_role("heading", level=3)).to_contain_text(
            f"Attempt {number + 1}"
        )
        await expect(attempt).to_contain_text("500")
        await expect(attempt).to_contain_text(re.compile(r"\d+ ms"))
        await expect(attempt.locator("pre")).to_have_text('{"error": "database is locked"}')
    assert len(await receiver.wait_for(3)) == 3


async def test_a_pending_delivery_turns_delivered_without_a_reload(
    browser: Browser,
    settings: Settings,
    client: Client,
    worker: None,
    key: str,
    org_id: str,
    endpoints: Endpoints,
    receiver: Receiver,
) -> None:
    # Ten seconds between the attempts: time to watch the delivery wait for its second.
    slow = page_settings(settings, retry_initial_interval=10.0, delivery_window=120.0)
    receiver.script(Answer(503, b"busy"), Answer(200, b"ok"))
    webhook_id, _ = await endpoints.add(org_id, receiver.url)
    async with running_api(slow, client) as base, new_tab(browser, base_url=base) as tab:
        page = tab.page
        await sign_in(page, base, key)
        await page.goto(f"{base}/settings/webhooks/{webhook_id}")
        await page.evaluate("window.sameDocument = true")
        await page.get_by_role("button", name="Send test event").click()

        outcome = page.locator(".test-result")
        await expect(outcome).to_contain_text("last answer HTTP 503", timeout=DELIVERY_WAIT)
        detail = await tab.context.new_page()
        await detail.goto(await outcome.get_by_role("link").get_attribute("href") or "")
        await detail.evaluate("window.sameDocument = true")
        await expect(detail.locator("#delivery .badge-pending").first).to_be_visible()
        await expect(detail.get_by_text("Next attempt")).to_be_visible()
        await expect(detail.locator("section.attempt").first).to_contain_text("busy")
        row = page.locator("#history tbody tr").first
        await expect(row.locator(".badge-pending")).to_be_visible()

        for shown in (page, detail):
            await expect(shown.locator(".badge-delivered").first).to_be_visible(
                timeout=DELIVERY_WAIT
            )
            assert await shown.evaluate("window.sameDocument") is True
        await expect(row.locator("td.response")).to_have_text("200")
        await expect(detail.locator("section.attempt")).to_have_count(2)
        await expect(detail.get_by_text("Next attempt")).to_have_count(0)
        assert tab.watch.unexpected_errors() == []


async def test_the_history_shows_exactly_the_newest_100_of_105_newest_first(
    tab: Tab,
    site: Site,
    key: str,
    org_id: str,
    settings: Settings,
    client: Client,
    endpoints: Endpoints,
    receiver: Receiver,
) -> None:
    webhook_id, _ = await endpoints.add(org_id, receiver.url, ["job.completed"])

    async def deliver() -> str:
        handle = await start_test_delivery(
            client, settings, org_id=org_id, webhook_id=webhook_id, url=receiver.url
        )
        return handle.id

    async def delivered() -> int:
        query = f"WebhookId = '{webhook_id}' AND DeliveryStatus = 'delivered'"
        return (await client.count_workflows(query)).count

    oldest = [await deliver() for _ in range(5)]
    await eventually(delivered, lambda n: n == 5, within=60)
    newest = [await deliver() for _ in range(100)]
    await eventually(delivered, lambda n: n == 105, within=90)

    page = tab.page
    await sign_in(page, site.base, key)
    await page.goto(f"{site.base}/settings/webhooks/{webhook_id}")
    rows = page.locator("#history tbody tr")
    await expect(rows).to_have_count(100)
    shown = await rows.evaluate_all("rows => rows.map(r => r.dataset.delivery)")
    assert set(shown) == set(newest) and not set(shown) & set(oldest)
    times = await rows.locator("time").evaluate_all(
        "times => times.map(t => t.getAttribute('datetime'))"
    )
    assert times == sorted(times, reverse=True)
    logged = (await v1(site, key, "GET", f"/v1/webhooks/{webhook_id}/deliveries")).json()
    assert shown == [row["delivery_id"] for row in logged["data"]]


# --- changes, scoping, security ---------------------------------------------------------------


async def test_edit_disable_enable_and_delete_show_in_the_list_and_another_orgs_id_is_a_404(
    tab: Tab, site: Site, key: str, org_id: str, endpoints: Endpoints, db: Database
) -> None:
    webhook_id, _ = await endpoints.add(org_id, "https://example.com/a", ["drift.detected"])
    other_org = f"other-{uuid.uuid4().hex[:8]}"
    theirs, _ = await endpoints.add(other_org, "https://example.com/b")
    page = tab.page
    await sign_in(page, site.base, key)
    row = page.locator(f'tr[data-webhook="{webhook_id}"]')

    await page.goto(f"{site.base}/settings/webhooks/{webhook_id}")
    await page.get_by_label("Endpoint URL").fill("https://example.org/new")
    await page.get_by_label("Description").fill("edited here")
    await page.get_by_label("drift.detected", exact=True).uncheck()
    await page.get_by_label("cost.anomaly", exact=True).check()
    await page.get_by_role("button", name="Save changes").click()
    await expect(page.get_by_role("status")).to_have_text("Changes saved.")
    await page.goto(f"{site.base}/settings/webhooks")
    await expect(row).to_contain_text("https://example.org/new")
    await expect(row).to_contain_text("edited here")
    await expect(row).to_contain_text("cost.anomaly")
    await expect(row).not_to_contain_text("drift.detected")

    await row.get_by_role("link").first.click()
    await page.get_by_role("button", name="Disable").click()
    await expect(page.get_by_role("status")).to_contain_text("Webhook disabled")
    await expect(page.get_by_role("button", name="Send test event")).to_be_disabled()
    await page.goto(f"{site.base}/settings/webhooks")
    await expect(row.locator(".badge-disabled")).to_be_visible()
    await row.get_by_role("link").first.click()
    await page.get_by_role("button", name="Enable").click()
    await page.goto(f"{site.base}/settings/webhooks")
    await expect(row.locator(".badge-enabled")).to_be_visible()

    await row.get_by_role("link").first.click()
    await page.get_by_role("link", name="Delete…").click()
    await expect(page.get_by_role("heading", name="Delete this webhook?")).to_be_visible()
    await page.get_by_role("button", name="Delete webhook").click()
    await expect(page.get_by_role("status")).to_have_text("Webhook deleted.")
    await expect(row).to_have_count(0)
    assert (await v1(site, key, "GET", f"/v1/webhooks/{webhook_id}")).status_code == 404

    for path in (f"/{theirs}", f"/{theirs}/deliveries/del_x", f"/{theirs}/delete", "/wh_nothing"):
        answer = await page.goto(f"{site.base}/settings/webhooks{path}")
        assert answer is not None and answer.status == 404, path
        await expect(page.get_by_role("heading", name="Not found")).to_be_visible()
        await expect(page.locator(".alert-error")).to_contain_text("not found")
    await page.goto(f"{site.base}/settings/webhooks")
    token = await page.locator('meta[name="csrf-token"]').get_attribute("content")
    refused = await page.request.post(
        f"{site.base}/settings/webhooks/{theirs}/delete", form={"csrf_token": token or ""}
    )
    assert refused.status == 404
    async with db.session() as session:
        assert await webhooks.get_webhook(session, other_org, theirs) is not None


class Captured(logging.Handler):
    """Every log line of the API process during a test, access log included."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    handler = Captured()
    loggers = [logging.getLogger(name) for name in ("", "uvicorn.access", "uvicorn.error")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        yield handler.lines
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


async def test_the_key_stays_out_of_urls_logs_and_storage_and_forms_resist_csrf(
    tab: Tab, site: Site, key: str, org_id: str, endpoints: Endpoints, log_lines: list[str]
) -> None:
    webhook_id, _ = await endpoints.add(org_id, "https://example.com/hook")
    page = tab.page
    await sign_in(page, site.base, key)
    answer = await page.goto(f"{site.base}/settings/webhooks/{webhook_id}")
    assert answer is not None
    headers = answer.headers
    assert headers["content-security-policy"] == page_frame.CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"
    script = await page.request.get(f"{site.base}/settings/static/app.js")
    assert script.headers["content-security-policy"] == page_frame.CONTENT_SECURITY_POLICY
    assert all(url.startswith(site.base) for url in tab.watch.urls), tab.watch.urls

    [cookie] = [c for c in await tab.context.cookies() if c["name"] == "infraudit_signin"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/settings" and cookie["expires"] == -1  # gone with the browser
    assert key not in cookie["value"] and org_id not in cookie["value"].split(".")[1]
    assert "infraudit_signin" not in await page.evaluate("document.cookie")
    stored = await page.evaluate("JSON.stringify([localStorage, sessionStorage])")
    assert key not in stored

    # CSRF: no token, or a browser saying another site sent it: refused, nothing changed.
    token = await page.locator('meta[name="csrf-token"]').get_attribute("content") or ""
    disable = f"{site.base}/settings/webhooks/{webhook_id}/disable"
    assert (await page.request.post(disable, form={})).status == 403
    assert (await page.request.post(disable, form={"csrf_token": "forged"})).status == 403
    cross = {"Sec-Fetch-Site": "cross-site"}
    assert (
        await page.request.post(disable, form={"csrf_token": token}, headers=cross)
    ).status == 403
    assert (await v1(site, key, "GET", f"/v1/webhooks/{webhook_id}")).json()["enabled"] is True
    assert (await page.request.post(disable, form={"csrf_token": token})).ok
    assert (await v1(site, key, "GET", f"/v1/webhooks/{webhook_id}")).json()["enabled"] is False
    # htmx requests carry the token in a header (app.js adds it; no form field here).
    enable = f"/settings/webhooks/{webhook_id}/enable"
    await page.evaluate(f"htmx.ajax('POST', '{enable}', {{swap: 'none'}})")
    await eventually(
        lambda: v1(site, key, "GET", f"/v1/webhooks/{webhook_id}"),
        lambda answer: answer.json()["enabled"] is True,
        within=10,
    )

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_text("You are signed out.")).to_be_visible()
    assert not [c for c in await tab.context.cookies() if c["name"] == "infraudit_signin"]
    await page.goto(f"{site.base}/settings/webhooks/{webhook_id}")
    await expect(page).to_have_url(f"{site.base}/settings/sign-in")
    await page.get_by_label("API key").fill("iak_not-a-key")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#api_key-error")).to_contain_text("not a valid API key")

    assert not [url for url in tab.watch.urls if key in url]
    assert any("/settings/sign-in" in line for line in log_lines)  # the access log was on
    assert not [line for line in log_lines if key in line]


async def test_no_serious_accessibility_problem_at_desktop_and_phone_width(
    browser: Browser, site: Site, key: str, org_id: str, endpoints: Endpoints, receiver: Receiver
) -> None:
    webhook_id, _ = await endpoints.add(org_id, receiver.url)
    for viewport in (DESKTOP, PHONE):
        async with new_tab(browser, viewport=viewport, base_url=site.base) as tab:
            page = tab.page
            await sign_in(page, site.base, key)
            await page.goto(f"{site.base}/settings/webhooks/{webhook_id}")
            if viewport == DESKTOP:
                await page.get_by_role("button", name="Send test event").click()
            delivered = page.locator("#history .badge-delivered").first
            await expect(delivered).to_be_visible(timeout=DELIVERY_WAIT)
            delivery_page = await page.locator("#history tbody a").first.get_attribute("href")

            await page.goto(f"{site.base}/settings/webhooks/new")
            await page.get_by_role("button", name="Save").click()  # the form with its errors
            await expect(page.locator("#url-error")).to_be_visible()
            for path in ("/settings/webhooks", "/settings/webhooks/new", delivery_page or ""):
                if path != "/settings/webhooks/new":
                    await page.goto(f"{site.base}{path}")
                assert await blocking_violations(page) == [], (viewport, path)
                assert not await overflows_horizontally(page), (viewport, path)
            assert tab.watch.unexpected_errors() == []


async def test_every_control_of_the_form_is_labelled_and_reached_by_the_keyboard(
    tab: Tab, site: Site, key: str
) -> None:
    page = tab.page
    await sign_in(page, site.base, key)
    await page.goto(f"{site.base}/settings/webhooks/new")
    controls = page.locator("main input:not([type=hidden]), main button, main a[href]")
    expected = await controls.evaluate_all("els => els.map(e => e.id || e.textContent.trim())")
    for index in range(await controls.count()):
        control = controls.nth(index)
        if await control.evaluate("e => e.tagName") == "INPUT":
            label = await control.evaluate("e => e.labels.length")
            assert label == 1, await control.get_attribute("id")
    reached: list[str] = []
    await page.locator("body").focus()
    for _ in range(60):
        await page.keyboard.press("Tab")
        focused = await page.evaluate(
            "() => { const e = document.activeElement;"
            " return e.closest('main') ? (e.id || e.textContent.trim()) : null }"
        )
        if focused is not None and focused not in reached:
            reached.append(focused)
    assert reached == expected
    await page.get_by_label("Endpoint URL").focus()
    await page.keyboard.type("https://example.com/keyboard")
    await page.get_by_label("job.completed", exact=True).focus()
    await page.keyboard.press("Space")
    await page.get_by_role("button", name="Save").focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("textbox", name="Signing secret")).to_be_visible()


# --- the sign-in cookie -----------------------------------------------------------------------


def test_a_forged_altered_or_expired_sign_in_is_refused() -> None:
    keys = SignInKeys(b"k" * 32, max_age=3600)
    now = datetime.now(UTC).timestamp()
    value = keys.sign("acme", now=now)
    signin = keys.read(value, now=now + 10)
    assert signin is not None and signin.org_id == "acme"
    assert signin.csrf_token == keys.csrf_token(signin.nonce)
    again = keys.read(keys.sign("acme", now=now), now=now)
    assert again is not None and again.nonce != signin.nonce
    assert again.csrf_token != signin.csrf_token
    payload, mac = value.split(".")
    other = SignInKeys(b"o" * 32, max_age=3600)
    for bad in [
        None,
        "",
        "garbage",
        f"{payload}.{mac[:-2]}AA",
        f"{payload[:-2]}AA.{mac}",
        other.sign("acme", now=now),
        value + ".x",
    ]:
        assert keys.read(bad, now=now) is None, bad
    assert keys.read(value, now=now + 3600) is None  # expired
    assert keys.read(value, now=now - 60) is None  # from the future
    later = now + timedelta(hours=1).total_seconds() - 1
    assert keys.read(value, now=later) is not None

    sealed = keys.seal_secret("whsec_x", webhook_id="wh_a", signin=signin)
    assert "whsec_x" not in sealed
    assert keys.open_secret(sealed, webhook_id="wh_a", signin=signin) == "whsec_x"
    assert keys.open_secret(sealed, webhook_id="wh_b", signin=signin) is None
    assert keys.open_secret(sealed, webhook_id="wh_a", signin=again) is None
    assert other.open_secret(sealed, webhook_id="wh_a", signin=signin) is None
    assert keys.open_secret("x" + sealed[1:], webhook_id="wh_a", signin=signin) is None


def test_the_page_settings_refuse_a_short_key_and_default_to_the_local_temporal_ui(
    settings: Settings,
) -> None:
    base = settings.model_dump(exclude={"signin_key", "temporal_ui_url"})
    with pytest.raises(ValidationError, match="at least 32 characters"):
        Settings(**base, signin_key=SecretStr("too-short"))
    assert Settings(**base, signin_key=SecretStr(new_key())).signin_key is not None
    assert Settings(**base).temporal_ui_url == f"http://127.0.0.1:{settings.temporal_ui_port}"
    chosen = Settings(**base, temporal_ui_url="https://temporal.example.com/ui/")
    assert chosen.temporal_ui_url == "https://temporal.example.com/ui"
