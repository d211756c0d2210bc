"""What a caller can do with its org's webhooks and deliveries, written once for both front doors.

The JSON routes (``/v1``, :mod:`infraudit.api.routes`) and the Settings page
(:mod:`infraudit.api.routes.settings_page`) call these functions, so every rule (the URL policy,
the rate limits, the cap, no ping to a disabled webhook, 404 for another org's id) is checked in
one place and refused with the same :class:`~infraudit.api.errors.ApiError`: the JSON routes
send it as the error body, the page shows its message next to the field it names. Bodies are the
request models of :mod:`infraudit.api.schemas`, whichever door they came through.
"""

from __future__ import annotations

from fastapi import status
from sqlalchemy.ext.asyncio import AsyncSession

from infraudit import client as engine
from infraudit import deliveries, egress
from infraudit.api.deps import Resources, load_webhook, temporal_calls
from infraudit.api.errors import ApiError
from infraudit.api.quotas import Quotas
from infraudit.api.schemas import (
    PingAccepted,
    WebhookCreate,
    WebhookCreated,
    WebhookOut,
    WebhookUpdate,
)
from infraudit.config import Settings
from infraudit.store import webhooks
from infraudit.store.models import Webhook

#: What a 503 of the delivery log's reads tells the caller.
LOG_UNREAD = "the delivery log cannot be read now. Nothing was changed; retry in a few seconds."
#: What a 503 of a test ping tells the caller.
PING_UNFINISHED = "the test ping may not have started. Send it again: at worst it arrives twice."


async def check_url(url: str, settings: Settings) -> None:
    """422 naming ``url`` unless the URL may be registered (:func:`infraudit.egress.
    registration_problem`: the rules of :mod:`infraudit.urls`, then where the host resolves);
    the message never repeats the URL, which may carry credentials."""
    problem = await egress.registration_problem(
        url, dev=settings.dev, allow_private=settings.private_targets_allowed
    )
    if problem:
        raise ApiError(status.HTTP_422_UNPROCESSABLE_CONTENT, f"url: {problem}", field="url")


async def list_webhooks(org: str, session: AsyncSession) -> list[WebhookOut]:
    """The org's endpoints, oldest first, as the API shows them (never the secret)."""
    return [WebhookOut.model_validate(h) for h in await webhooks.list_webhooks(session, org)]


async def create_webhook(
    body: WebhookCreate,
    *,
    org: str,
    session: AsyncSession,
    settings: Settings,
    quotas: Quotas,
) -> WebhookCreated:
    """Register an endpoint; the answer carries the signing secret, this once only.

    In this order: the org's write token (429), the URL policy (422), the org's cap (409).
    """
    quotas.take_webhook_write(org)
    await check_url(body.url, settings)
    await quotas.check_webhook_cap(session, org)
    hook, secret = await webhooks.create_webhook(
        session,
        org_id=org,
        url=body.url,
        event_types=body.event_types,
        description=body.description,
    )
    return WebhookCreated(**WebhookOut.model_validate(hook).model_dump(), secret=secret)


async def update_webhook(
    webhook_id: str,
    body: WebhookUpdate,
    *,
    org: str,
    session: AsyncSession,
    settings: Settings,
    quotas: Quotas,
) -> WebhookOut:
    """Change the fields ``body`` gives. The write token is taken before the webhook is looked
    up, so a change that then fails (a 404, a bad URL) counts too (``docs/api.md``, Limits)."""
    quotas.take_webhook_write(org)
    hook = await load_webhook(session, org, webhook_id)
    if body.url is not None:
        await check_url(body.url, settings)
    updated = await webhooks.update_webhook(
        session,
        hook,
        url=body.url,
        event_types=body.event_types,
        description=body.description,
        enabled=body.enabled,
    )
    return WebhookOut.model_validate(updated)


async def delete_webhook(
    webhook_id: str, *, org: str, session: AsyncSession, quotas: Quotas
) -> None:
    """Remove an endpoint (write token first, as for updates); its deliveries still retrying
    stop at their next attempt."""
    quotas.take_webhook_write(org)
    await webhooks.delete_webhook(session, await load_webhook(session, org, webhook_id))


async def send_test(hook: Webhook, *, org: str, res: Resources) -> PingAccepted:
    """Start a ``webhook.ping`` to an enabled endpoint, whatever it subscribes to: 409 when it
    is disabled, then the ping's rate limit (429), then 503 if Temporal does not take it."""
    if not hook.enabled:
        raise ApiError(
            status.HTTP_409_CONFLICT,
            f"webhook {hook.id} is disabled; enable it to send a test",
            field="webhook_id",
        )
    res.quotas.take_ping(hook.id)
    async with temporal_calls(res, PING_UNFINISHED) as client:
        delivery_id = await engine.send_test_ping(
            client, res.settings, org_id=org, webhook_id=hook.id, url=hook.url
        )
    return PingAccepted(delivery_id=delivery_id)


async def list_deliveries(
    webhook_id: str, *, org: str, res: Resources, limit: int = deliveries.MAX_LOG_ROWS
) -> list[deliveries.DeliveryRow]:
    """The endpoint's newest deliveries, newest first (at most 100).

    ``webhook_id`` is one the caller found in the org (``WebhookDep``, :func:`list_webhooks`);
    the log's query is scoped to the org as well, so no other id could show anything.
    """
    async with temporal_calls(res, LOG_UNREAD) as client:
        return await deliveries.list_deliveries(
            client, org_id=org, webhook_id=webhook_id, limit=limit
        )


async def get_delivery(
    webhook_id: str, delivery_id: str, *, org: str, res: Resources
) -> deliveries.DeliveryDetail:
    """One delivery of the endpoint with every attempt, or a 404 naming ``delivery_id``
    (also when it is another endpoint's or another org's)."""
    async with temporal_calls(res, LOG_UNREAD) as client:
        detail = await deliveries.get_delivery(
            client, org_id=org, webhook_id=webhook_id, delivery_id=delivery_id
        )
    if detail is None:
        raise ApiError(
            status.HTTP_404_NOT_FOUND, f"delivery {delivery_id} not found", field="delivery_id"
        )
    return detail
