"""``/v1/webhooks/{id}/deliveries``: the delivery log, read from Temporal."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from infraudit import deliveries
from infraudit.api.deps import OrgDep, ResourcesDep, SessionDep, temporal_calls
from infraudit.api.errors import ApiError, error_responses
from infraudit.api.schemas import DeliveryList
from infraudit.api.webhooks import found

router = APIRouter(prefix="/v1/webhooks/{webhook_id}/deliveries", tags=["deliveries"])

#: What a 503 of these read-only routes tells the caller.
UNREAD = "the delivery log cannot be read now. Nothing was changed; retry in a few seconds."


@router.get("", responses=error_responses(404, 422))
async def list_deliveries(
    webhook_id: str,
    org: OrgDep,
    session: SessionDep,
    res: ResourcesDep,
    limit: Annotated[int, Query(ge=1, le=deliveries.MAX_LOG_ROWS)] = deliveries.MAX_LOG_ROWS,
) -> DeliveryList:
    """The endpoint's newest deliveries, newest first (at most 100)."""
    await found(session, org, webhook_id)
    async with temporal_calls(res, UNREAD) as client:
        rows = await deliveries.list_deliveries(
            client, org_id=org, webhook_id=webhook_id, limit=limit
        )
    return DeliveryList(data=rows)


@router.get("/{delivery_id}", responses=error_responses(404, 422))
async def get_delivery(
    webhook_id: str, delivery_id: str, org: OrgDep, session: SessionDep, res: ResourcesDep
) -> deliveries.DeliveryDetail:
    """One delivery with every attempt; a pending one says when its next attempt is due."""
    await found(session, org, webhook_id)
    async with temporal_calls(res, UNREAD) as client:
        detail = await deliveries.get_delivery(
            client, org_id=org, webhook_id=webhook_id, delivery_id=delivery_id
        )
    if detail is None:
        raise ApiError(
            status.HTTP_404_NOT_FOUND, f"delivery {delivery_id} not found", field="delivery_id"
        )
    return detail
