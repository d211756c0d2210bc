"""``/v1/webhooks``: register, read, change and remove endpoints; send a test ping."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from infraudit.api import actions
from infraudit.api.deps import (
    OrgDep,
    QuotasDep,
    ResourcesDep,
    SessionDep,
    SettingsDep,
    WebhookDep,
)
from infraudit.api.errors import error_responses
from infraudit.api.schemas import (
    PingAccepted,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookOut,
    WebhookUpdate,
)
from infraudit.api.strict_json import StrictJSONRoute

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], route_class=StrictJSONRoute)


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
    return await actions.create_webhook(
        body, org=org, session=session, settings=settings, quotas=quotas
    )


@router.get("")
async def list_webhooks(org: OrgDep, session: SessionDep) -> WebhookList:
    """The org's endpoints, oldest first."""
    return WebhookList(data=await actions.list_webhooks(org, session))


@router.get("/{webhook_id}", responses=error_responses(404, 422))
async def get_webhook(hook: WebhookDep) -> WebhookOut:
    """One endpoint."""
    return WebhookOut.model_validate(hook)


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
    return await actions.update_webhook(
        webhook_id, body, org=org, session=session, settings=settings, quotas=quotas
    )


@router.delete(
    "/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(404, 422, 429),
)
async def delete_webhook(
    webhook_id: str, org: OrgDep, session: SessionDep, quotas: QuotasDep
) -> Response:
    """Remove an endpoint; its deliveries still retrying stop at their next attempt."""
    await actions.delete_webhook(webhook_id, org=org, session=session, quotas=quotas)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{webhook_id}/test",
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(404, 409, 413, 422, 429),
)
async def send_test(hook: WebhookDep, org: OrgDep, res: ResourcesDep) -> PingAccepted:
    """Send a ``webhook.ping`` to the endpoint, whatever it subscribes to."""
    return await actions.send_test(hook, org=org, res=res)
