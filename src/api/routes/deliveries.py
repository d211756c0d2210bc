"""``/v1/webhooks/{id}/deliveries``: the delivery log, read from Temporal."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from infraudit import deliveries
from infraudit.api import actions
from infraudit.api.deps import OrgDep, ResourcesDep, WebhookDep
from infraudit.api.errors import error_responses
from infraudit.api.schemas import DeliveryList

router = APIRouter(prefix="/v1/webhooks/{webhook_id}/deliveries", tags=["deliveries"])


@router.get("", responses=error_responses(404, 422))
async def list_deliveries(
    hook: WebhookDep,
    org: OrgDep,
    res: ResourcesDep,
    limit: Annotated[int, Query(ge=1, le=deliveries.MAX_LOG_ROWS)] = deliveries.MAX_LOG_ROWS,
) -> DeliveryList:
    """The endpoint's newest deliveries, newest first (at most 100)."""
    return DeliveryList(data=await actions.list_deliveries(hook.id, org=org, res=res, limit=limit))


@router.get("/{delivery_id}", responses=error_responses(404, 422))
async def get_delivery(
    hook: WebhookDep, delivery_id: str, org: OrgDep, res: ResourcesDep
) -> deliveries.DeliveryDetail:
    """One delivery with every attempt; a pending one says when its next attempt is due."""
    return await actions.get_delivery(hook.id, delivery_id, org=org, res=res)
