"""Workflows of the benchmark's own workers: baseline A, and the stand-in that seeds stored work.

Baseline A is the least a Temporal delivery can be: one workflow, one regular activity. No
memo, no search attributes, no database, no signing: whatever the engine costs beyond this is
ours, not Temporal's. Its retry policy has the engine's shape with the bench's short first wait
(:data:`RETRY_INITIAL_SECONDS`, which the engine's workers get too). Activities are named, not
imported, so the sandbox imports nothing but this module.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from infraudit.contract import DELIVER_WEBHOOK

BARE_ACTIVITY = "bare_post"
#: Seconds before the second attempt in every row that retries (A, C, D, E, F). The engine's
#: default is 5 minutes; a failure mix must finish within the run.
RETRY_INITIAL_SECONDS = 1.0
#: Each later wait is the previous one times this (the engine's default).
RETRY_BACKOFF = 3.0


@workflow.defn(name="BareDelivery")
class BareDelivery:
    """POST through one activity, at most 3 attempts, 10 s each plus 5 s of grace."""

    @workflow.run
    async def run(self, url: str) -> int:
        """The receiver's status code; the workflow id goes along as the delivery key."""
        status: int = await workflow.execute_activity(
            BARE_ACTIVITY,
            args=[url, workflow.info().workflow_id],
            start_to_close_timeout=timedelta(seconds=15),
            schedule_to_close_timeout=timedelta(minutes=30),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=RETRY_INITIAL_SECONDS),
                backoff_coefficient=RETRY_BACKOFF,
                maximum_attempts=3,
            ),
            result_type=int,
        )
        return status


@workflow.defn(name=DELIVER_WEBHOOK)
class SeededDelivery:
    """Completes at once: a closed delivery in the namespace, started as the engine starts one.

    Registered only on the seeding task queue, never beside the engine's ``DeliverWebhook``.
    """

    @workflow.run
    async def run(self, delivery: dict[str, Any]) -> None:
        """Nothing to send: the stored execution (history, memo, visibility row) is the point."""
        del delivery
