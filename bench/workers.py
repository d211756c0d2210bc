"""Worker processes of the benchmark that are not the engine's own, each in a process of its own.

The engine's rows run the real ``infraudit worker`` command; these are the other workers, run
apart from the driver so that /proc can say how much CPU each spends. Modes:

- ``bare``: baseline A, :class:`bench.bare.BareDelivery` and a plain httpx POST activity;
- ``seed``: a stand-in for ``DeliverWebhook`` that completes at once without a POST, so that
  closed deliveries can be stored faster than the engine delivers them (the scale rows).

Run as ``python -m bench.workers MODE --task-queue Q`` with ``INFRAUDIT_TEMPORAL_ADDRESS`` set;
it prints ``ready`` once polling and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from bench.bare import BARE_ACTIVITY, BareDelivery, SeededDelivery
from bench.signed import engine_http_client
from infraudit import signing, temporal
from infraudit.config import Settings

#: The engine's worker allows this many activities at once; baseline A gets the same.
MAX_CONCURRENT_ACTIVITIES = 1000


class BareActivities:
    """Baseline A's activity with the one httpx client of the process (as the engine has)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    @activity.defn(name=BARE_ACTIVITY)
    async def post(self, url: str, key: str) -> int:
        """One POST with a small body; a non-2xx raises so Temporal retries, as ours does."""
        response = await self._http.post(
            url, content=b'{"bench":true}', headers={signing.DELIVERY_HEADER: key}, timeout=10
        )
        if not response.is_success:
            # Benign, like the engine's own failed attempts: an outcome, not a worker alarm.
            raise ApplicationError(
                f"HTTP {response.status_code}", category=ApplicationErrorCategory.BENIGN
            )
        return response.status_code


@asynccontextmanager
async def bare_worker(client: Client, task_queue: str) -> AsyncIterator[Worker]:
    """Baseline A's worker: same HTTP client and activity slots as the engine's."""
    http = engine_http_client()
    try:
        yield Worker(
            client,
            task_queue=task_queue,
            workflows=[BareDelivery],
            activities=[BareActivities(http).post],
            max_concurrent_activities=MAX_CONCURRENT_ACTIVITIES,
        )
    finally:
        await http.aclose()


def seed_worker(client: Client, task_queue: str) -> Worker:
    """The seeding stand-in: no sandbox and many workflow tasks at once, to store work fast."""
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[SeededDelivery],
        workflow_runner=UnsandboxedWorkflowRunner(),
        max_concurrent_workflow_tasks=500,
    )


async def run(mode: str, task_queue: str) -> None:
    """Poll until SIGTERM, after printing ``ready``."""
    settings = Settings()
    client = await temporal.connect(settings)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    if mode == "bare":
        async with bare_worker(client, task_queue) as worker, worker:
            print("ready", flush=True)
            await stop.wait()
        return
    async with seed_worker(client, task_queue):
        print("ready", flush=True)
        await stop.wait()


def main() -> None:
    """Command line of a worker process."""
    parser = argparse.ArgumentParser(prog="python -m bench.workers")
    parser.add_argument("mode", choices=["bare", "seed"])
    parser.add_argument("--task-queue", required=True)
    args = parser.parse_args()
    asyncio.run(run(args.mode, args.task_queue))
    # The worker has shut down cleanly by now; skipping interpreter finalisation avoids a
    # PyGILState_Release abort from the SDK's core threads that the bench would print.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
