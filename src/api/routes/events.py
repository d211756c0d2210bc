"""``/v1/events`` and ``/v1/event-types``: publish an event, list the catalog."""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlalchemy.ext.asyncio import AsyncSession

from infraudit import client as engine
from infraudit import event_data, events, ids
from infraudit.api.deps import OrgDep, ResourcesDep, SessionDep, SettingsDep, temporal_calls
from infraudit.api.errors import ApiError, error_responses
from infraudit.api.schemas import EventAccepted, EventIn, EventTypeList, EventTypeOut
from infraudit.api.strict_json import StrictJSONRoute
from infraudit.store import webhooks

router = APIRouter(prefix="/v1", tags=["events"], route_class=StrictJSONRoute)

#: Subscribers read per query when the answer lists an event's delivery ids.
_SUBSCRIBERS_PER_QUERY = 1000


async def subscribed_delivery_ids(
    session: AsyncSession, *, org_id: str, event: str, event_id: str
) -> list[str]:
    """The delivery ids of the org's enabled endpoints subscribed to ``event`` now, by
    endpoint id: the deliveries the fan-out will start if nothing changes before it runs.

    A delivery id is derived from (event id, endpoint id), so the answer needs no word from
    the fan-out, which starts them moments later from its own read of the store.
    """
    delivery_ids: list[str] = []
    after: str | None = None
    while True:
        page = await webhooks.subscribers_page(
            session,
            org_id=org_id,
            event_type=event,
            after_webhook_id=after,
            limit=_SUBSCRIBERS_PER_QUERY,
        )
        delivery_ids += [ids.delivery_id(event_id, sub.webhook_id) for sub in page]
        if len(page) < _SUBSCRIBERS_PER_QUERY:
            return delivery_ids
        after = page[-1].webhook_id


@router.post(
    "/events",
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(409, 413, 422, 429),
)
async def publish(
    body: EventIn, org: OrgDep, settings: SettingsDep, res: ResourcesDep, session: SessionDep
) -> EventAccepted:
    """Accept an event for the caller's org and fan it out to the subscribed endpoints.

    The answer comes as soon as the PublishEvent workflow has started (the event is durable in
    Temporal, so never lost), without waiting for the fan-out: its delivery ids are those of the
    endpoints subscribed when the request was read (:func:`subscribed_delivery_ids`, read
    before the start). The same ``id`` with the same event again delivers nothing twice, and
    with another event it is a 409 naming ``id``. Everything that can be refused (``EventIn``,
    the configured size limit) is checked before the workflow starts. Over the org's event rate
    it is a 429 before anything starts; Temporal down or hung is a 503 within about
    ``temporal_rpc_timeout`` seconds, saying the id to publish it again with.
    """
    try:
        event_data.check_size(body.data, max_event_bytes=settings.max_event_bytes)
    except ValueError as err:
        raise ApiError(status.HTTP_422_UNPROCESSABLE_CONTENT, str(err), field="data") from err
    res.quotas.take_event(org)
    # The id is fixed before the start, so a 503 can name the one to publish again with.
    event_id = body.id or ids.new_event_id()
    delivery_ids = await subscribed_delivery_ids(
        session, org_id=org, event=body.event, event_id=event_id
    )
    unfinished = (
        f"the event may not have been recorded. Publish it again with the same id "
        f"({event_id!r}): an event id is delivered once, however often it is sent."
    )
    try:
        async with temporal_calls(res, unfinished) as client:
            await engine.start_publish(
                client,
                org_id=org,
                event=body.event,
                data=body.data,
                event_id=event_id,
                task_queue=settings.task_queue,
            )
    except engine.EventIdConflict as err:
        raise ApiError(status.HTTP_409_CONFLICT, f"id: {err}", field="id") from err
    return EventAccepted(event_id=event_id, delivery_ids=delivery_ids)


@router.get("/event-types")
async def event_types() -> EventTypeList:
    """The catalog: every event type, ``reserved`` marking those only the engine sends."""
    return EventTypeList(
        data=[
            EventTypeOut(name=n, description=d, reserved=n in events.RESERVED)
            for n, d in events.EVENT_TYPES.items()
        ]
    )
