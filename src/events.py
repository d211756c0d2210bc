"""The event catalog: every event type InfraAudit may deliver, with what triggers it.

Events enter through the API, the Python client and the PublishEvent workflow; each of them
refuses a type that is not listed here, so a typo never turns into a silent non-delivery.

Some types are reserved for the engine itself (:data:`RESERVED`): ``webhook.ping`` is the test
delivery that ``POST /v1/webhooks/{id}/test`` sends to one endpoint whatever it subscribes to.
Customers cannot publish a reserved type (a ping fanned out to every subscriber would be a
broadcast nobody asked for), and an endpoint cannot subscribe to one: it receives pings anyway,
so such a subscription would mean nothing.
"""

from __future__ import annotations

from types import MappingProxyType

PING = "webhook.ping"

EVENT_TYPES: MappingProxyType[str, str] = MappingProxyType(
    {
        "drift.detected": "A new drift finding is created",
        "drift.resolved": "A drift finding is resolved",
        "alert.created": "A new alert is created",
        "vulnerability.found": "A new CVE is detected",
        "compliance.violation": "A compliance control fails during an assessment",
        "cost.anomaly": "A cost anomaly is detected",
        "job.completed": "A scheduled job finishes (success or failure)",
        "remediation.completed": "A remediation action completes",
        PING: "A test delivery sent on request (infraudit webhook test)",
    }
)

#: Types only the engine sends; never published by customers, never subscribed to.
RESERVED: frozenset[str] = frozenset({PING})

#: The types customers publish and subscribe to: the catalog less the reserved ones.
PUBLIC_TYPES: tuple[str, ...] = tuple(name for name in EVENT_TYPES if name not in RESERVED)


def is_known(event_type: str) -> bool:
    """Whether ``event_type`` is in the catalog."""
    return event_type in EVENT_TYPES


def check_known(event_type: str) -> str:
    """Return ``event_type`` or raise ValueError naming the valid choices."""
    if not is_known(event_type):
        raise ValueError(
            f"unknown event type {event_type!r}; expected one of: {', '.join(EVENT_TYPES)}"
        )
    return event_type


def check_public(event_type: str) -> str:
    """Return ``event_type`` when customers may publish it and subscribe to it.

    Raises ValueError for a type outside the catalog or a reserved one, naming the choices.
    """
    public = ", ".join(PUBLIC_TYPES)
    if event_type in RESERVED:
        raise ValueError(
            f"event type {event_type!r} is reserved for test deliveries, which every endpoint "
            f"receives whatever it subscribes to; expected one of: {public}"
        )
    if not is_known(event_type):
        raise ValueError(f"unknown event type {event_type!r}; expected one of: {public}")
    return event_type
