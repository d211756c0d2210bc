"""Worker processes of the benchmark, one per system measured, each in a process of its own.

A worker runs apart from the driver (which starts workflows and waits) so that /proc can say
how much CPU the worker itself spends per delivery. Modes:

- ``bare``: baseline A, :class:`bench.bare.BareDelivery` and a plain httpx POST activity;
- ``engine``: the project's own ``build_worker`` (settings from ``INFRAUDIT_*`` variables);
- ``engine-unsandboxed``: the same workflows and activities with the workflow sandbox off, a
  diagnostic that tells how much of the worker's CPU per delivery the sandbox takes;
- ``fanout``: only ``PublishEvent`` and ``fan_out_page`` on ``--task-queue``, starting the
  deliveries on ``INFRAUDIT_TASK_QUEUE``, which no worker polls: only fan-out is timed.

Run as ``python -m bench.workers MODE --address HOST:PORT --task-queue Q``; it prints ``ready``
once polling and stops on SIGTERM.
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
from temporalio.worker import Worker

from bench.bare import BARE_ACTIVITY, BareDelivery
from infraudit import signing, temporal
from infraudit.activities.fanout import FanOutActivities
from infraudit.activities.send import new_http_client
from infraudit.config import Settings
from infraudit.store.db import Database
from infraudit.store.secret_box import Keyring
from infraudit.worker import build_worker
from infraudit.workflows.publish import PublishEvent

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
            raise RuntimeError(f"HTTP {response.status_code}")
        return response.status_code


@asynccontextmanager
async def bare_worker(client: Client, task_queue: str) -> AsyncIterator[Worker]:
    """Baseline A's worker: same HTTP client and activity slots as the engine's."""
    http = new_http_client()
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


@asynccontextmanager
async def fanout_worker(
    client: Client, task_queue: str, settings: Settings
) -> AsyncIterator[Worker]:
    """PublishEvent only, as tests/test_publish.py runs it, so deliveries are started, not run."""
    db = Database(settings.database_url, Keyring.from_settings(settings))
    try:
        yield Worker(
            client,
            task_queue=task_queue,
            workflows=[PublishEvent],
            activities=[FanOutActivities(db, client, settings).fan_out_page],
        )
    finally:
        await db.dispose()


async def run(mode: str, task_queue: str) -> None:
    """Poll until SIGTERM, after printing ``ready``."""
    settings = Settings()
    client = await temporal.connect(settings)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    if mode == "bare":
        built = bare_worker(client, task_queue)
    elif mode == "engine":
        built = build_worker(client, settings.model_copy(update={"task_queue": task_queue}))
    elif mode == "engine-unsandboxed":
        settings = settings.model_copy(update={"task_queue": task_queue})
        built = build_worker(client, settings, sandboxed=False)
    else:
        built = fanout_worker(client, task_queue, settings)
    async with built as worker, worker:
        print("ready", flush=True)
        await stop.wait()


def main() -> None:
    """Command line of a worker process."""
    parser = argparse.ArgumentParser(prog="python -m bench.workers")
    parser.add_argument("mode", choices=["bare", "engine", "engine-unsandboxed", "fanout"])
    parser.add_argument("--task-queue", required=True)
    args = parser.parse_args()
    asyncio.run(run(args.mode, args.task_queue))
    # The worker has shut down cleanly by now; skipping interpreter finalisation avoids a
    # PyGILState_Release abort from the SDK's core threads that the bench would print.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
