"""Small helpers for the integration tests."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from temporalio.client import Client, WorkflowHandle, WorkflowHistory

from infraudit.client import deliver_once
from infraudit.config import Settings
from infraudit.contract import DeliveryOutcome

T = TypeVar("T")


async def start_test_delivery(
    client: Client,
    settings: Settings,
    *,
    org_id: str,
    webhook_id: str,
    url: str,
    event: str = "drift.detected",
    data: dict[str, Any] | None = None,
) -> WorkflowHandle[Any, DeliveryOutcome]:
    """Start one DeliverWebhook as the engine does; returns its handle."""
    delivery_id = await deliver_once(
        client,
        settings,
        org_id=org_id,
        webhook_id=webhook_id,
        url=url,
        event=event,
        data=data or {"resource": "sg-0123", "severity": "high"},
    )
    return client.get_workflow_handle(delivery_id, result_type=DeliveryOutcome)


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    within: float = 20.0,
) -> T:
    """Poll ``probe`` until ``accept`` holds (visibility lags writes by about a second)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await probe()
        if accept(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met in {within}s; last value: {value!r}")
        await asyncio.sleep(0.1)


def history_text(history: WorkflowHistory) -> str:
    """The history as JSON plus every payload decoded: what a reader of it could see."""
    raw = history.to_json()
    decoded: list[str] = [raw]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "data" and isinstance(value, str):
                    decoded.append(base64.b64decode(value).decode("utf-8", errors="replace"))
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads(raw))
    return "\n".join(decoded)
