"""Baseline A's workflow: the least a Temporal delivery can be (one workflow, one activity).

No memo, no search attributes, no database, no signing: whatever the engine costs beyond this
is ours, not Temporal's. The activity is named, not imported, so the sandbox imports nothing
but this module.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

BARE_ACTIVITY = "bare_post"


@workflow.defn(name="BareDelivery")
class BareDelivery:
    """POST once through an activity, retried by Temporal's default policy."""

    @workflow.run
    async def run(self, url: str) -> int:
        """The receiver's status code; the workflow id goes along as the delivery key."""
        status: int = await workflow.execute_activity(
            BARE_ACTIVITY,
            args=[url, workflow.info().workflow_id],
            start_to_close_timeout=timedelta(seconds=15),
            result_type=int,
        )
        return status
