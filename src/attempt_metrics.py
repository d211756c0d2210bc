"""Attempt metrics, observed from outside the send activity by a Temporal worker interceptor.

Every execution of ``send_webhook`` passes through :class:`AttemptMetrics`: the regular
activity's and the local one's (a delivery's first attempt runs as a local activity, which
``ActivityInboundInterceptor`` sees as well; ``activity.info().is_local`` tells them apart, and
both count alike). While it runs it is in the in-flight gauge; when it ends, the attempts it
made are counted from what it returns (a list of :class:`~infraudit.contract.Attempt`) or from
the attempt records its ``ApplicationError`` carries in its details.

Those lists also hold the attempts made before (the delivery's log so far), so the attempts of
*this* execution are the records that started after it began: an execution makes at most one
attempt, and one that sends nothing (its endpoint deleted, say) adds no record. The send
activity itself knows nothing of metrics.

Counting never changes what the activity did: a failure to count is logged, and the result
or the error goes back to the SDK as it came.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from infraudit.activities.send import attempts_from_details
from infraudit.contract import Attempt
from infraudit.metrics import WorkerMetrics

log = logging.getLogger(__name__)

#: The activity observed: the POST of a delivery (``SendActivities.send_webhook``).
SEND_ACTIVITY = "send_webhook"


class AttemptMetrics(Interceptor):
    """A worker interceptor that counts POST attempts into ``metrics``."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self._metrics = metrics

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _CountAttempts(next, self._metrics)


class _CountAttempts(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, metrics: WorkerMetrics) -> None:
        super().__init__(next)
        self._metrics = metrics

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        if activity.info().activity_type != SEND_ACTIVITY:
            return await super().execute_activity(input)
        began = datetime.now(UTC)
        with self._metrics.attempts_in_flight.track_inprogress():
            try:
                attempts = await super().execute_activity(input)
            except ApplicationError as err:
                self._count(err.details, began, failed=True)
                raise
        self._count(attempts, began, failed=False)
        return attempts

    def _count(self, outcome: Any, began: datetime, *, failed: bool) -> None:
        """Count the attempts in ``outcome`` (the result, or the failure's details) that
        started after ``began``."""
        try:
            records: Iterable[Attempt] = attempts_from_details(outcome) if failed else outcome
            for attempt in records:
                if attempt.started_at is not None and attempt.started_at >= began:
                    self._metrics.count_attempt(attempt)
        except Exception:
            log.warning("could not count the attempts of a send_webhook execution", exc_info=True)
