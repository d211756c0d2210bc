"""``/v1/events`` and ``/v1/event-types``: publish an event, list the catalog."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, status

from infraudit import client as engine
from infraudit import events
from infraudit.api.deps import OrgDep, ResourcesDep, SettingsDep, temporal_client
from infraudit.api.schemas import EventAccepted, EventIn, EventTypeList, EventTypeOut

router = APIRouter(prefix="/v1", tags=["events"])

#: How long the response waits for the fan-out to list its delivery ids.
FAN_OUT_WAIT_SECONDS = 10.0


@router.post("/events", status_code=status.HTTP_202_ACCEPTED)
async def publish(
    body: EventIn, org: OrgDep, settings: SettingsDep, res: ResourcesDep
) -> EventAccepted:
    """Accept an event for the caller's org and fan it out to the subscribed endpoints.

    The answer comes after the PublishEvent workflow has started, so an accepted event is never
    lost; the same ``id`` again delivers nothing twice and answers with the same delivery ids.
    """
    event_id, handle = await engine.start_publish(
        await temporal_client(res),
        org_id=org,
        event=body.event,
        data=body.data,
        event_id=body.id,
        task_queue=settings.task_queue,
    )
    try:
        async with asyncio.timeout(FAN_OUT_WAIT_SECONDS):
            result = await handle.result()
    except TimeoutError:
        return EventAccepted(event_id=event_id, delivery_ids=None)
    return EventAccepted(event_id=event_id, delivery_ids=result.delivery_ids)


@router.get("/event-types")
async def event_types() -> EventTypeList:
    """Every event type an endpoint can subscribe to."""
    return EventTypeList(
        data=[EventTypeOut(name=n, description=d) for n, d in events.EVENT_TYPES.items()]
    )
