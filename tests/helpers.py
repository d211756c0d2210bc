"""Small helpers for the integration tests."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from temporalio.client import Client, WorkflowHandle, WorkflowHistory

from infraudit import ids
from infraudit.activities.fanout import start_delivery
from infraudit.config import Settings
from infraudit.contract import DeliverWebhookInput, DeliveryOutcome, DeliveryPolicy

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
) -> WorkflowHandle[Any, Any]:
    """Start one DeliverWebhook as the fan-out does; returns its handle."""
    event_id = f"evt_{uuid.uuid4().hex}"
    delivery_id = ids.delivery_id(event_id, webhook_id)
    await start_delivery(
        client,
        task_queue=settings.task_queue,
        delivery=DeliverWebhookInput(
            webhook_id=webhook_id,
            org_id=org_id,
            event=event,
            event_id=event_id,
            data=data or {"resource": "sg-0123", "severity": "high"},
            timestamp=datetime.now(UTC),
            policy=DeliveryPolicy.from_settings(settings),
        ),
        delivery_id=delivery_id,
        url=url,
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
