"""``/v1/webhooks``: register, read, change and remove endpoints; send a test ping."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from infraudit import client as engine
from infraudit.api.deps import (
    OrgDep,
    QuotasDep,
    ResourcesDep,
    SessionDep,
    SettingsDep,
    temporal_calls,
)
from infraudit.api.errors import ApiError, error_responses
from infraudit.api.schemas import (
    PingAccepted,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookOut,
    WebhookUpdate,
)
from infraudit.config import Settings
from infraudit.store import webhooks
from infraudit.store.models import Webhook
from infraudit.urls import check_endpoint_url

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


def _check_url(url: str, settings: Settings) -> None:
    """422 naming ``url`` unless the URL meets the rules of :mod:`infraudit.urls` (the one place
    they are checked); the message never repeats the URL, which may carry credentials."""
    problem = check_endpoint_url(url, dev=settings.dev)
    if problem:
        raise ApiError(status.HTTP_422_UNPROCESSABLE_CONTENT, f"url: {problem}", field="url")


async def found(session: SessionDep, org: str, webhook_id: str) -> Webhook:
    """The org's endpoint or a 404 (another org's endpoint is a 404 too)."""
    hook = await webhooks.get_webhook(session, org, webhook_id)
    if hook is None:
        raise ApiError(
            status.HTTP_404_NOT_FOUND, f"webhook {webhook_id} not found", field="webhook_id"
        )
    return hook


@router.post("", status_code=status.HTTP_201_CREATED, responses=error_responses(409, 413, 422, 429))
async def create_webhook(
    body: WebhookCreate,
    org: OrgDep,
    session: SessionDep,
    settings: SettingsDep,
    quotas: QuotasDep,
) -> WebhookCreated:
    """Register an endpoint. The response carries the signing secret, this once only.

    429 over the org's rate of webhook changes, 409 when the org has its most webhooks.
    """
    quotas.take_webhook_write(org)
    _check_url(body.url, settings)
    await quotas.check_webhook_cap(session, org)
    hook, secret = await webhooks.create_webhook(
        session,
        org_id=org,
        url=body.url,
        event_types=body.event_types,
        description=body.description,
    )
    return WebhookCreated(**WebhookOut.model_validate(hook).model_dump(), secret=secret)


@router.get("")
async def list_webhooks(org: OrgDep, session: SessionDep) -> WebhookList:
    """The org's endpoints, oldest first."""
    return WebhookList(
        data=[WebhookOut.model_validate(h) for h in await webhooks.list_webhooks(session, org)]
    )


@router.get("/{webhook_id}", responses=error_responses(404, 422))
async def get_webhook(webhook_id: str, org: OrgDep, session: SessionDep) -> WebhookOut:
    """One endpoint."""
    return WebhookOut.model_validate(await found(session, org, webhook_id))


@router.patch("/{webhook_id}", responses=error_responses(404, 413, 422, 429))
async def update_webhook(
    webhook_id: str,
    body: WebhookUpdate,
    org: OrgDep,
    session: SessionDep,
    settings: SettingsDep,
    quotas: QuotasDep,
) -> WebhookOut:
    """Change url, event types, description or enabled."""
    quotas.take_webhook_write(org)
    hook = await found(session, org, webhook_id)
    if body.url is not None:
        _check_url(body.url, settings)
    updated = await webhooks.update_webhook(
        session,
        hook,
        url=body.url,
        event_types=body.event_types,
        description=body.description,
        enabled=body.enabled,
    )
    return WebhookOut.model_validate(updated)


@router.delete(
    "/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(404, 422, 429),
)
async def delete_webhook(
    webhook_id: str, org: OrgDep, session: SessionDep, quotas: QuotasDep
) -> Response:
    """Remove an endpoint; its deliveries still retrying stop at their next attempt."""
    quotas.take_webhook_write(org)
    await webhooks.delete_webhook(session, await found(session, org, webhook_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{webhook_id}/test",
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(404, 409, 413, 422, 429),
)
async def send_test(
    webhook_id: str, org: OrgDep, session: SessionDep, settings: SettingsDep, res: ResourcesDep
) -> PingAccepted:
    """Send a ``webhook.ping`` to the endpoint, whatever it subscribes to."""
    hook = await found(session, org, webhook_id)
    if not hook.enabled:
        raise ApiError(
            status.HTTP_409_CONFLICT,
            f"webhook {webhook_id} is disabled; enable it to send a test",
            field="webhook_id",
        )
    res.quotas.take_ping(hook.id)
    unfinished = "the test ping may not have started. Send it again: at worst it arrives twice."
    async with temporal_calls(res, unfinished) as client:
        delivery_id = await engine.send_test_ping(
            client, settings, org_id=org, webhook_id=hook.id, url=hook.url
        )
    return PingAccepted(delivery_id=delivery_id)
