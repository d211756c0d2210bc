"""Debian's Chromium driven by Playwright, for the Settings page tests and the screenshot script.

Never ``playwright install``: that downloads a browser build, and nothing may download at run
time. ``make test`` installs the ``chromium`` package when ``/usr/bin/chromium`` is missing.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from axe_playwright_python.async_playwright import Axe
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    Response,
    ViewportSize,
    async_playwright,
)

CHROMIUM = "/usr/bin/chromium"
#: Headless and quiet: no sandbox (tests run as root in a container), no GPU, and nothing that
#: would reach the network on its own (component updates, sync, first-run pings).
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
#: The narrow phone width the page must work at.
PHONE: ViewportSize = {"width": 375, "height": 740}
#: A zone with a half-hour offset, so a time shown in UTC cannot pass for local by accident.
TIME_ZONE = "Asia/Kolkata"
#: axe-core impacts that fail a test.
BLOCKING_IMPACTS = frozenset({"serious", "critical"})
_RESOURCE_FAILED = re.compile(r"^Failed to load resource: the server responded with a status of")


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """One headless Chromium for the block."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Watch:
    """What a browser context did that a test asserts on: every URL it requested, console
    errors and uncaught script errors, and the pages it loaded with an error status."""

    urls: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    error_documents: set[str] = field(default_factory=set)

    def attach(self, context: BrowserContext) -> None:
        context.on("request", self._request)
        context.on("response", self._response)
        context.on("page", self.attach_page)

    def attach_page(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.console_errors.append(f"page error: {error}"))

    def _request(self, request: Request) -> None:
        self.urls.append(request.url)

    def _response(self, response: Response) -> None:
        if response.request.resource_type == "document" and response.status >= 400:
            self.error_documents.add(response.url)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            location = message.location.get("url", "")
            self.console_errors.append(f"{message.text} ({location})")

    def unexpected_errors(self) -> list[str]:
        """Console errors, less Chromium's note on each page it loaded with an error status
        (a 404 page, a form shown again with a 422): those are answers a test asked for."""
        return [
            error
            for error in self.console_errors
            if not (
                _RESOURCE_FAILED.match(error)
                and any(error.endswith(f"({url})") for url in self.error_documents)
            )
        ]


@dataclass
class Tab:
    """A fresh browser context with one page, watched."""

    context: BrowserContext
    page: Page
    watch: Watch


@asynccontextmanager
async def new_tab(
    browser: Browser, *, viewport: ViewportSize | None = None, base_url: str | None = None
) -> AsyncIterator[Tab]:
    """A new context (no cookies, no storage) in the browser's time zone of choice, en-US."""
    context = await browser.new_context(
        viewport=viewport or DESKTOP,
        locale="en-US",
        timezone_id=TIME_ZONE,
        base_url=base_url,
    )
    watch = Watch()
    watch.attach(context)
    try:
        page = await context.new_page()
        yield Tab(context, page, watch)
    finally:
        await context.close()


async def sign_in(page: Page, base_url: str, key: str) -> None:
    """Sign in through the form, as a person would: the key is typed, never put in a URL."""
    await page.goto(f"{base_url}/settings/sign-in")
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{base_url}/settings/webhooks")


async def blocking_violations(page: Page) -> list[str]:
    """axe-core's serious and critical violations on the page, one line each."""
    results = await Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + ", ".join(str(node["target"]) for node in v["nodes"])
        for v in results.response["violations"]
        if v.get("impact") in BLOCKING_IMPACTS
    ]


async def overflows_horizontally(page: Page) -> bool:
    """Whether the page is wider than the viewport (a phone user would have to scroll sideways)."""
    return bool(
        await page.evaluate(
            "document.documentElement.scrollWidth > document.documentElement.clientWidth"
        )
    )
