"""``/v1/events`` and ``/v1/event-types``: publish an event, list the catalog."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, status
from temporalio.service import RPCError

from infraudit import client as engine
from infraudit import event_data, events, ids, temporal
from infraudit.api.deps import OrgDep, ResourcesDep, SettingsDep, temporal_calls
from infraudit.api.errors import ApiError, error_responses
from infraudit.api.schemas import EventAccepted, EventIn, EventTypeList, EventTypeOut

router = APIRouter(prefix="/v1", tags=["events"])

#: How long the response waits for the fan-out to list its delivery ids.
FAN_OUT_WAIT_SECONDS = 10.0


@router.post(
    "/events",
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(409, 413, 422, 429),
)
async def publish(
    body: EventIn, org: OrgDep, settings: SettingsDep, res: ResourcesDep
) -> EventAccepted:
    """Accept an event for the caller's org and fan it out to the subscribed endpoints.

    The answer comes after the PublishEvent workflow has started, so an accepted event is never
    lost; the same ``id`` with the same event again delivers nothing twice and answers with the
    same delivery ids, and with another event it is a 409 naming ``id``. Everything that can be
    refused (``EventIn``, the configured size limit) is checked before the workflow starts.
    Over the org's event rate it is a 429 before anything starts; Temporal down or hung is a 503
    within about ``temporal_rpc_timeout`` seconds, saying the id to publish it again with.
    """
    try:
        event_data.check_size(body.data, max_event_bytes=settings.max_event_bytes)
    except ValueError as err:
        raise ApiError(status.HTTP_422_UNPROCESSABLE_CONTENT, str(err), field="data") from err
    res.quotas.take_event(org)
    # The id is fixed before the start, so a 503 can name the one to publish again with.
    event_id = body.id or ids.new_event_id()
    unfinished = (
        f"the event may not have been recorded. Publish it again with the same id "
        f"({event_id!r}): an event id is delivered once, however often it is sent."
    )
    try:
        async with temporal_calls(res, unfinished) as client:
            _, handle = await engine.start_publish(
                client,
                org_id=org,
                event=body.event,
                data=body.data,
                event_id=event_id,
                task_queue=settings.task_queue,
            )
    except engine.EventIdConflict as err:
        raise ApiError(status.HTTP_409_CONFLICT, f"id: {err}", field="id") from err
    try:
        async with asyncio.timeout(FAN_OUT_WAIT_SECONDS):
            result = await handle.result()
    except TimeoutError:
        return EventAccepted(event_id=event_id, delivery_ids=None)
    except RPCError as err:
        # Temporal went away after recording the event: it is accepted all the same.
        if not temporal.is_outage(err):
            raise
        return EventAccepted(event_id=event_id, delivery_ids=None)
    return EventAccepted(event_id=event_id, delivery_ids=result.delivery_ids)


@router.get("/event-types")
async def event_types() -> EventTypeList:
    """The catalog: every event type, ``reserved`` marking those only the engine sends."""
    return EventTypeList(
        data=[
            EventTypeOut(name=n, description=d, reserved=n in events.RESERVED)
            for n, d in events.EVENT_TYPES.items()
        ]
    )
