"""The event catalog: every event type InfraAudit may deliver, with what triggers it.

Events enter through the API, the Python client and the PublishEvent workflow; each of them
refuses a type that is not listed here, so a typo never turns into a silent non-delivery.
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
